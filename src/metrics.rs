//! Every metric family wpgate exports, defined in one place. `serve` builds one
//! [`Metrics`] (its own registry) and hands it to what records: the fleet (caches, store
//! follower), the proxy, the health prober, the reloader and the admin listener.
//! Names follow Prometheus conventions (`wpgate_` prefix, `_total`, `_seconds`).
//!
//! Site labels: requests for unknown sites are counted under `site="unknown"` (an
//! attacker cannot create label values), and with `metrics.per_site_labels = false`
//! every site is counted under `site="_all"` so fleets of 100k sites stay cheap.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// Label value for requests whose site id is not a known site.
pub const UNKNOWN_SITE: &str = "unknown";
/// Label value for every site when per-site labels are off.
pub const ALL_SITES: &str = "_all";
/// The `reason` values of `wpgate_admin_auth_failures_total`.
pub const ADMIN_AUTH_FAILURE_REASONS: [&str; 3] = ["malformed", "refused", "rate_limited"];

/// `wpgate_requests_total` handles for one `site` label value, one per status class,
/// each resolved on its first use (a series appears only once it is counted). A cached
/// site keeps its own, so a request costs no label lookup.
#[derive(Default)]
pub struct SiteCounters {
    requests: [OnceLock<IntCounter>; STATUS_CLASSES.len()],
}

impl SiteCounters {
    fn request(&self, family: &IntCounterVec, site: &str, status: u16) -> &IntCounter {
        let i = status_class_index(status);
        self.requests[i].get_or_init(|| family.with_label_values(&[site, STATUS_CLASSES[i]]))
    }
}

pub struct Metrics {
    registry: Registry,
    per_site: AtomicBool,
    /// `wpgate_requests_total` handles for `site="_all"` and `site="unknown"`.
    all_sites: SiteCounters,
    unknown_site: SiteCounters,
    pub requests: IntCounterVec,
    pub request_duration: Histogram,
    pub upstream_duration: Histogram,
    pub auth_failures: IntCounterVec,
    /// The same failures by reason over the last hour, for the admin API's overview.
    pub recent_auth_failures: RecentCounts,
    /// Failed admin token checks, by reason (`malformed`, `refused`, `rate_limited`).
    pub admin_auth_failures: IntCounterVec,
    /// Failed admin token checks left out of the audit log by its rate bound.
    pub admin_auth_failures_unaudited: IntCounter,
    pub site_health: IntGaugeVec,
    pub health_check_duration: Histogram,
    pub cache_requests: IntCounterVec,
    pub store_errors: IntCounterVec,
    /// 1 while the store answers (last check), 0 while it does not.
    pub store_up: IntGauge,
    /// 1 while the change listener (PostgreSQL LISTEN) is connected.
    pub store_listener_connected: IntGauge,
    /// Changes other processes made, applied to this one's caches, by how they arrived.
    pub store_changes_applied: IntCounterVec,
    pub config_reloads: IntCounterVec,
    pub config_last_reload_success: Gauge,
    pub keyring_sealed_records: IntGaugeVec,
    /// When each TLS listener's certificate expires (Unix time), by listener.
    pub tls_certificate_expiry: IntGaugeVec,
    pub build_info: IntGaugeVec,
    /// Requests without `X-Website-ID` sent to `legacy.default_site`.
    pub legacy_requests: IntCounter,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

impl Metrics {
    /// Every family, registered in a registry of its own.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "wpgate_requests_total",
                "Requests answered, by site and status class (2xx, 4xx, ...).",
            ),
            &["site", "status_class"],
        )?;
        let request_duration = Histogram::with_opts(
            HistogramOpts::new(
                "wpgate_request_duration_seconds",
                "Time from request start to the end of the response, as wpgate saw it.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )?;
        let upstream_duration = Histogram::with_opts(
            HistogramOpts::new(
                "wpgate_upstream_duration_seconds",
                "Time from forwarding a request to the end of the site's response.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )?;
        let auth_failures = IntCounterVec::new(
            Opts::new(
                "wpgate_auth_failures_total",
                "Refused authentications, by site and exact reason.",
            ),
            &["site", "reason"],
        )?;
        // One `refused` for an unknown id, a revoked token and a wrong secret alike:
        // /metrics is not authenticated, and a split would tell a guesser which token
        // ids exist (the audit log, behind a token, has the exact reason).
        let admin_auth_failures = IntCounterVec::new(
            Opts::new(
                "wpgate_admin_auth_failures_total",
                "Failed admin API token checks, by reason (malformed, refused, rate_limited).",
            ),
            &["reason"],
        )?;
        let admin_auth_failures_unaudited = IntCounter::new(
            "wpgate_admin_auth_failures_unaudited_total",
            "Failed admin API token checks not written to the audit log (its rate bound).",
        )?;
        let site_health = IntGaugeVec::new(
            Opts::new(
                "wpgate_site_health",
                "1 for the site's current health state, 0 for the others.",
            ),
            &["site", "state"],
        )?;
        let health_check_duration = Histogram::with_opts(
            HistogramOpts::new(
                "wpgate_site_health_check_duration_seconds",
                "Duration of one health check of a site.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )?;
        let cache_requests = IntCounterVec::new(
        Opts::new(
            "wpgate_cache_requests_total",
            "Cache lookups by cache (sites, api_keys) and result (hit, miss, stale: answered past its TTL while the store fails).",
        ),
        &["cache", "result"],
    )?;
        let store_errors = IntCounterVec::new(
            Opts::new(
                "wpgate_store_errors_total",
                "Failed store operations, by operation.",
            ),
            &["op"],
        )?;
        let store_up = IntGauge::new(
            "wpgate_store_up",
            "1 when the store answered the last check, 0 when it did not.",
        )?;
        let store_listener_connected = IntGauge::new(
            "wpgate_store_listener_connected",
            "1 while the change notification listener (PostgreSQL LISTEN) is connected.",
        )?;
        let store_changes_applied = IntCounterVec::new(
            Opts::new(
                "wpgate_store_changes_applied_total",
                "Store changes applied to this process's caches, by source (notify, poll).",
            ),
            &["source"],
        )?;
        let config_reloads = IntCounterVec::new(
            Opts::new(
                "wpgate_config_reloads_total",
                "Configuration reloads by result (success, failure).",
            ),
            &["result"],
        )?;
        let config_last_reload_success = Gauge::new(
            "wpgate_config_last_reload_success_timestamp_seconds",
            "Unix time of the last configuration load or reload that succeeded.",
        )?;
        let keyring_sealed_records = IntGaugeVec::new(
            Opts::new(
                "wpgate_keyring_sealed_records",
                "Stored records sealed by each keyring key (a key at 0 can be retired).",
            ),
            &["key_id"],
        )?;
        let tls_certificate_expiry = IntGaugeVec::new(
            Opts::new(
                "wpgate_tls_certificate_expiry_timestamp_seconds",
                "Unix time at which the certificate a TLS listener serves expires, by listener (proxy, admin).",
            ),
            &["listener"],
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new(
                "wpgate_build_info",
                "Always 1; the labels say which build runs.",
            ),
            &["version"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(request_duration.clone()))?;
        registry.register(Box::new(upstream_duration.clone()))?;
        registry.register(Box::new(auth_failures.clone()))?;
        registry.register(Box::new(admin_auth_failures.clone()))?;
        registry.register(Box::new(admin_auth_failures_unaudited.clone()))?;
        registry.register(Box::new(site_health.clone()))?;
        registry.register(Box::new(health_check_duration.clone()))?;
        registry.register(Box::new(cache_requests.clone()))?;
        registry.register(Box::new(store_errors.clone()))?;
        registry.register(Box::new(store_up.clone()))?;
        registry.register(Box::new(store_listener_connected.clone()))?;
        registry.register(Box::new(store_changes_applied.clone()))?;
        registry.register(Box::new(config_reloads.clone()))?;
        registry.register(Box::new(config_last_reload_success.clone()))?;
        registry.register(Box::new(keyring_sealed_records.clone()))?;
        registry.register(Box::new(tls_certificate_expiry.clone()))?;
        let legacy_requests = IntCounter::new(
            "wpgate_legacy_requests_total",
            "Requests without X-Website-ID sent to legacy.default_site (legacy single-site mode).",
        )?;
        registry.register(Box::new(build_info.clone()))?;
        registry.register(Box::new(legacy_requests.clone()))?;
        for result in ["success", "failure"] {
            config_reloads.with_label_values(&[result]);
        }
        for reason in ADMIN_AUTH_FAILURE_REASONS {
            admin_auth_failures.with_label_values(&[reason]);
        }
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        Ok(Metrics {
            registry,
            per_site: AtomicBool::new(true),
            all_sites: SiteCounters::default(),
            unknown_site: SiteCounters::default(),
            requests,
            request_duration,
            upstream_duration,
            auth_failures,
            recent_auth_failures: RecentCounts::default(),
            admin_auth_failures,
            admin_auth_failures_unaudited,
            site_health,
            health_check_duration,
            cache_requests,
            store_errors,
            store_up,
            store_listener_connected,
            store_changes_applied,
            config_reloads,
            config_last_reload_success,
            keyring_sealed_records,
            tls_certificate_expiry,
            build_info,
            legacy_requests,
        })
    }
}

/// Counts by name over the last hour, in one-minute buckets (the oldest minute partly:
/// the hour is 60 to 61 minutes). Only refusals add to it, never an accepted request.
#[derive(Default)]
pub struct RecentCounts {
    minutes: std::sync::Mutex<std::collections::VecDeque<Minute>>,
}

/// A minute (unix minutes) and the counts by name within it.
type Minute = (u64, Vec<(&'static str, u64)>);

impl RecentCounts {
    const MINUTES: u64 = 60;

    fn minute() -> u64 {
        u64::try_from(crate::time::now_unix()).unwrap_or(0) / 60
    }

    /// Counts one `name` now.
    pub fn add(&self, name: &'static str) {
        self.add_at(name, Self::minute());
    }

    fn add_at(&self, name: &'static str, minute: u64) {
        let mut minutes = self
            .minutes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if minutes.back().is_none_or(|(m, _)| *m != minute) {
            minutes.push_back((minute, Vec::new()));
        }
        while minutes
            .front()
            .is_some_and(|(m, _)| m + Self::MINUTES < minute)
        {
            minutes.pop_front();
        }
        if let Some((_, counts)) = minutes.back_mut() {
            match counts.iter_mut().find(|(n, _)| *n == name) {
                Some((_, c)) => *c += 1,
                None => counts.push((name, 1)),
            }
        }
    }

    /// Each name counted in the last hour, with its count, by name.
    pub fn last_hour(&self) -> Vec<(&'static str, u64)> {
        self.last_hour_at(Self::minute())
    }

    fn last_hour_at(&self, minute: u64) -> Vec<(&'static str, u64)> {
        let minutes = self
            .minutes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut total: Vec<(&'static str, u64)> = Vec::new();
        for (_, counts) in minutes.iter().filter(|(m, _)| m + Self::MINUTES >= minute) {
            for &(name, c) in counts {
                match total.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, t)) => *t += c,
                    None => total.push((name, c)),
                }
            }
        }
        total.sort_unstable();
        total
    }
}

impl Metrics {
    pub fn set_per_site_labels(&self, on: bool) {
        self.per_site.store(on, Ordering::Relaxed);
    }

    /// The `site` label for a known site id.
    pub fn site_label<'a>(&self, site: &'a str) -> &'a str {
        if self.per_site.load(Ordering::Relaxed) {
            site
        } else {
            ALL_SITES
        }
    }

    /// Counts one answered request in `wpgate_requests_total`: for a known site (its id
    /// and its cached handles), else under `site="unknown"`.
    pub fn count_request(&self, site: Option<(&str, &SiteCounters)>, status: u16) {
        let (label, counters) = match site {
            None => (UNKNOWN_SITE, &self.unknown_site),
            Some(_) if !self.per_site.load(Ordering::Relaxed) => (ALL_SITES, &self.all_sites),
            Some((id, counters)) => (id, counters),
        };
        counters.request(&self.requests, label, status).inc();
    }

    /// The text exposition of every family.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "metrics could not be encoded");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The `status_class` label values.
const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];

fn status_class_index(status: u16) -> usize {
    match status {
        100..=599 => usize::from(status / 100 - 1),
        _ => STATUS_CLASSES.len() - 1,
    }
}

/// `2xx`, `4xx`, ... for a status code; `none` when no response was sent.
pub fn status_class(status: u16) -> &'static str {
    STATUS_CLASSES[status_class_index(status)]
}

#[cfg(test)]
mod tests {
    #[test]
    fn recent_counts_keep_the_last_hour() {
        let r = super::RecentCounts::default();
        r.add_at("invalid_key", 1000);
        r.add_at("invalid_key", 1000);
        r.add_at("unknown_site", 1030);
        r.add_at("invalid_key", 1059);
        assert_eq!(
            r.last_hour_at(1059),
            [("invalid_key", 3), ("unknown_site", 1)]
        );
        assert_eq!(
            r.last_hour_at(1060),
            [("invalid_key", 3), ("unknown_site", 1)]
        );
        assert_eq!(
            r.last_hour_at(1061),
            [("invalid_key", 1), ("unknown_site", 1)]
        );
        r.add_at("expired", 1200);
        assert_eq!(r.last_hour_at(1200), [("expired", 1)]);
        assert_eq!(r.minutes.lock().unwrap().len(), 1);
    }

    use super::*;

    #[test]
    fn families_register_and_render() {
        let m = Metrics::new().expect("metrics");
        // Each instance has its own registry: a second one in the same process is fine.
        let other = Metrics::new().expect("a second instance");
        m.requests.with_label_values(&["shop", "2xx"]).inc();
        assert_eq!(other.requests.with_label_values(&["shop", "2xx"]).get(), 0);
        let text = m.render();
        assert!(
            text.contains("wpgate_requests_total{site=\"shop\",status_class=\"2xx\"}"),
            "{text}"
        );
        assert!(text.contains("wpgate_build_info{version="), "{text}");
    }

    #[test]
    fn classes() {
        assert_eq!(status_class(204), "2xx");
        assert_eq!(status_class(429), "4xx");
        assert_eq!(status_class(0), "none");
        assert_eq!(status_class(100), "1xx");
        assert_eq!(status_class(599), "5xx");
        assert_eq!(status_class(600), "none");
        assert_eq!(status_class(99), "none");
    }

    #[test]
    fn cached_site_counters_count_the_same_series() {
        let m = Metrics::new().expect("metrics");
        let series = |site: &str| m.requests.with_label_values(&[site, "2xx"]).get();
        let counters = SiteCounters::default();
        let before = series("cached-site");
        m.count_request(Some(("cached-site", &counters)), 200);
        m.count_request(Some(("cached-site", &counters)), 204);
        assert_eq!(series("cached-site"), before + 2);
        let before = series(UNKNOWN_SITE);
        m.count_request(None, 200);
        assert_eq!(series(UNKNOWN_SITE), before + 1);
    }
}
