//! `wpgate doctor`: checks everything a gateway needs, read-only, and says for each
//! failure what it means and the exact command or WordPress screen that fixes it.
//!
//! Gateway checks: the configuration loads and validates (the caller loads it), the
//! store answers and its schema is the one this binary expects, and every sealed record
//! in the store opens with the keyring (`gateway`). Then per site, several at a time
//! (`site`): its stored record resolves (credential opened for its origin), DNS, TCP,
//! TLS for https upstreams (`tls`: trusted as the proxy trusts, certificate expiry), and
//! the health check's steps one by one — the REST index, `users/me` with the site's own
//! credential injected as the proxy injects it, the required namespaces — and the site's
//! clock against this machine's.
//!
//! Nothing here writes: the CLI opens the store read-only (`store::open_read_only`) and
//! never creates a keyring; the admin API reads the running gateway's.
//!
//! The report ([`Report`]) is what the CLI prints with `--json` and what
//! `GET /admin/v1/doctor` answers: its field names are stable (see the README).

mod gateway;
mod site;
mod tls;

pub use gateway::load_keyring;

use crate::crypto::Keyring;
use crate::site::SiteId;
use crate::store::{SiteRecord, Store};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use utoipa::ToSchema;

/// Exit status: every check passed (warnings allowed).
pub const EXIT_PASSED: u8 = 0;
/// Exit status: a site check failed (the gateway's own checks passed).
pub const EXIT_SITE_FAILED: u8 = 1;
/// Exit status: a gateway check failed (configuration, keyring, store or schema).
pub const EXIT_GATEWAY_FAILED: u8 = 3;

/// How a check came out. Ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    /// Not run: not applicable, or an earlier check failed (the message says which).
    Skip,
    /// Passed, but something needs attention soon (a certificate near its expiry, clock
    /// skew, a credential that could not be confirmed). Not a failure.
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Skip => "skip",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }

    /// The overall status of several checks: a skip counts as a pass.
    fn worst(statuses: impl IntoIterator<Item = Status>) -> Status {
        statuses
            .into_iter()
            .map(|s| if s == Status::Skip { Status::Pass } else { s })
            .max()
            .unwrap_or(Status::Pass)
    }
}

/// What is checked; the names are stable (`check` in the JSON report).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckName {
    /// The configuration loads and validates (TLS listener certificates included).
    Config,
    /// The keyring loads, and every sealed record in the store opens with it.
    Keyring,
    /// The store answers.
    Store,
    /// The store's applied migrations are exactly this binary's.
    Schema,
    /// The site's stored record can be used: its credential opens for its origin.
    Record,
    /// The upstream host resolves.
    Dns,
    /// A TCP connection to the upstream's address.
    Tcp,
    /// https upstreams: the certificate is valid for the host, trusted as the proxy
    /// trusts, and not near its expiry.
    Tls,
    /// `GET /wp-json/` answers as a WordPress REST index.
    RestIndex,
    /// `GET /wp-json/wp/v2/users/me` accepts the site's own credential.
    Credential,
    /// The REST namespaces the site requires are offered.
    Namespaces,
    /// The site's `Date` header against this machine's clock.
    Clock,
}

impl CheckName {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckName::Config => "config",
            CheckName::Keyring => "keyring",
            CheckName::Store => "store",
            CheckName::Schema => "schema",
            CheckName::Record => "record",
            CheckName::Dns => "dns",
            CheckName::Tcp => "tcp",
            CheckName::Tls => "tls",
            CheckName::RestIndex => "rest_index",
            CheckName::Credential => "credential",
            CheckName::Namespaces => "namespaces",
            CheckName::Clock => "clock",
        }
    }
}

/// One check's result. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Check {
    pub check: CheckName,
    pub status: Status,
    /// What was found; for a failure, what it means.
    pub message: String,
    /// For a failure or warning: the exact fix (a command with the real site id, or the
    /// WordPress screen), when there is one.
    pub fix: Option<String>,
}

impl Check {
    pub fn pass(check: CheckName, message: impl Into<String>) -> Self {
        Check::new(check, Status::Pass, message, None)
    }

    pub fn skip(check: CheckName, message: impl Into<String>) -> Self {
        Check::new(check, Status::Skip, message, None)
    }

    pub fn warn(check: CheckName, message: impl Into<String>, fix: Option<String>) -> Self {
        Check::new(check, Status::Warn, message, fix)
    }

    pub fn fail(check: CheckName, message: impl Into<String>, fix: Option<String>) -> Self {
        Check::new(check, Status::Fail, message, fix)
    }

    fn new(
        check: CheckName,
        status: Status,
        message: impl Into<String>,
        fix: Option<String>,
    ) -> Self {
        Check {
            check,
            status,
            message: message.into(),
            fix,
        }
    }
}

/// A sealed record that does not open with the keyring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SealedFailure {
    /// `site_credential`, `site_jwt_secret` or `setting`.
    pub kind: String,
    /// The site id, or the setting's name.
    pub id: String,
    /// The keyring key the record names, when it can be read.
    pub key_id: Option<String>,
    /// Why it does not open (never the value).
    pub reason: String,
}

/// The keyring check's count: every sealed record in the store, opened.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct SealedRecords {
    pub checked: u64,
    pub failed: Vec<SealedFailure>,
}

/// The checks of one site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SiteReport {
    pub site_id: String,
    /// The upstream URL as stored.
    pub upstream: String,
    pub enabled: bool,
    /// `pass`, `warn` or `fail`: the worst of its checks.
    pub status: Status,
    pub duration_ms: u64,
    /// The WordPress user the credential authenticated as.
    pub wordpress_user: Option<String>,
    pub checks: Vec<Check>,
}

/// How many sites ended how.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Summary {
    pub sites: usize,
    pub passed: usize,
    pub warned: usize,
    pub failed: usize,
}

/// The settings a run used (echoed in the report).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SettingsView {
    pub timeout_ms: u64,
    pub concurrency: usize,
    pub clock_skew_warn_seconds: u64,
    pub certificate_warn_days: u64,
}

/// The whole report: `wpgate doctor --json` prints it, `GET /admin/v1/doctor` answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Report {
    /// `pass`, `warn` or `fail`: the worst of every check.
    pub status: Status,
    /// The CLI's exit status for this report: 0 passed (warnings allowed), 1 a site check
    /// failed, 3 a gateway check failed.
    pub exit_code: u8,
    /// RFC 3339, when the run started.
    pub checked_at: String,
    pub duration_ms: u64,
    pub settings: SettingsView,
    /// config, keyring, store, schema.
    pub gateway: Vec<Check>,
    /// The sealed records the keyring check opened, and those that failed.
    pub sealed_records: SealedRecords,
    /// By site id.
    pub sites: Vec<SiteReport>,
    pub summary: Summary,
}

/// How a run checks.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Bounds each network step (resolving, connecting, the TLS handshake, each request).
    pub timeout: Duration,
    /// Sites checked at once.
    pub concurrency: usize,
    /// Clock skew above this is warned.
    pub clock_skew_warn: Duration,
    /// A certificate expiring within this is warned.
    pub certificate_warn: Duration,
    /// `upstream.ca_file`: trust only this CA bundle for https upstreams, as the proxy
    /// does (else the system's trust store).
    pub ca_file: Option<PathBuf>,
}

/// The default `--concurrency`.
pub const DEFAULT_CONCURRENCY: usize = 32;
/// The default clock-skew warning threshold.
pub const DEFAULT_CLOCK_SKEW_WARN: Duration = Duration::from_secs(60);
/// The default certificate-expiry warning threshold (14 days).
pub const DEFAULT_CERTIFICATE_WARN: Duration = Duration::from_secs(14 * 24 * 3600);

impl Settings {
    pub fn new(timeout: Duration, ca_file: Option<PathBuf>) -> Self {
        Settings {
            timeout,
            concurrency: DEFAULT_CONCURRENCY,
            clock_skew_warn: DEFAULT_CLOCK_SKEW_WARN,
            certificate_warn: DEFAULT_CERTIFICATE_WARN,
            ca_file,
        }
    }

    fn view(&self) -> SettingsView {
        SettingsView {
            timeout_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
            concurrency: self.concurrency,
            clock_skew_warn_seconds: self.clock_skew_warn.as_secs(),
            certificate_warn_days: self.certificate_warn.as_secs() / 86_400,
        }
    }
}

/// A part of the gateway a run works from, as the caller obtained it.
pub enum Source<T> {
    /// Obtained; the text describes it for the report (never a secret).
    Ready(T, String),
    /// Could not be obtained: what it means and the fix.
    Failed {
        message: String,
        fix: Option<String>,
    },
    /// Not tried, because something it depends on failed (says what).
    NotChecked(String),
}

/// What a run starts from: the configuration check the caller made, the keyring, the
/// store.
pub struct Sources {
    pub config: Check,
    pub keyring: Source<Arc<Keyring>>,
    pub store: Source<Arc<dyn Store>>,
}

/// Runs every check: the gateway's, then those of site `only` (or of every site), and
/// returns the report. Reads only.
pub async fn run(sources: Sources, only: Option<&SiteId>, settings: &Settings) -> Report {
    let started = Instant::now();
    let checked_at = crate::time::rfc3339(crate::time::now_unix());
    let mut checks = vec![sources.config];
    let store = gateway::check_store(&sources.store, &mut checks).await;
    let (keyring_check, sealed) = gateway::check_keyring(&sources.keyring, store).await;
    checks.push(keyring_check);
    let sites = match (store, &sources.keyring) {
        (Some(store), Source::Ready(keyring, _)) => {
            match gateway::site_records(store, only).await {
                Ok(records) => check_sites(records, only, Arc::clone(keyring), settings).await,
                Err(e) => {
                    checks.push(Check::fail(
                        CheckName::Store,
                        format!("the sites cannot be read: {e}"),
                        None,
                    ));
                    Vec::new()
                }
            }
        }
        _ => Vec::new(),
    };
    report(checks, sealed, sites, settings, checked_at, started)
}

fn report(
    gateway: Vec<Check>,
    sealed_records: SealedRecords,
    sites: Vec<SiteReport>,
    settings: &Settings,
    checked_at: String,
    started: Instant,
) -> Report {
    let gateway_status = Status::worst(gateway.iter().map(|c| c.status));
    let sites_status = Status::worst(sites.iter().map(|s| s.status));
    let count = |status: Status| sites.iter().filter(|s| s.status == status).count();
    let summary = Summary {
        sites: sites.len(),
        passed: count(Status::Pass),
        warned: count(Status::Warn),
        failed: count(Status::Fail),
    };
    let exit_code = if gateway_status == Status::Fail {
        EXIT_GATEWAY_FAILED
    } else if sites_status == Status::Fail {
        EXIT_SITE_FAILED
    } else {
        EXIT_PASSED
    };
    Report {
        status: gateway_status.max(sites_status),
        exit_code,
        checked_at,
        duration_ms: elapsed_ms(started),
        settings: settings.view(),
        gateway,
        sealed_records,
        sites,
        summary,
    }
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Checks the sites `settings.concurrency` at a time; reports in `records` order. A site
/// named by `only` that the store lacks is reported as a failed record check.
async fn check_sites(
    records: Vec<SiteRecord>,
    only: Option<&SiteId>,
    keyring: Arc<Keyring>,
    settings: &Settings,
) -> Vec<SiteReport> {
    if let (Some(id), true) = (only, records.is_empty()) {
        return vec![site::unknown(id)];
    }
    let context = Arc::new(site::Context::new(keyring, settings, only.is_some()));
    let permits = Arc::new(tokio::sync::Semaphore::new(settings.concurrency.max(1)));
    let mut running = tokio::task::JoinSet::new();
    let mut names = Vec::with_capacity(records.len());
    for (n, record) in records.into_iter().enumerate() {
        names.push((
            record.id.clone(),
            record.upstream_url.clone(),
            record.enabled,
        ));
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            break;
        };
        let context = Arc::clone(&context);
        running.spawn(async move {
            let report = site::check(record, &context).await;
            drop(permit);
            (n, report)
        });
    }
    let mut reports: Vec<Option<SiteReport>> = vec![None; names.len()];
    while let Some(done) = running.join_next().await {
        match done {
            Ok((n, report)) => reports[n] = Some(report),
            Err(e) => tracing::error!(error = %e, "doctor: a site check panicked"),
        }
    }
    reports
        .into_iter()
        .zip(names)
        .map(|(report, (id, upstream, enabled))| {
            report.unwrap_or_else(|| site::crashed(id, upstream, enabled))
        })
        .collect()
}
