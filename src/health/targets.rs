//! Glue between the fleet and health: a site as the prober checks it (read from the
//! store, not the cache), a check run on demand, what a report does to the metrics, and
//! the check a new credential must pass before the fleet stores it. Health depends on
//! the fleet here, never the other way round.

use crate::fleet::{CredentialCheck, Fleet, FleetError, ResolvedSite};
use crate::health::{
    HealthBoard, HealthReport, HealthState, Ledger, ProbeTarget, ReportHook, ReportOrigin,
    StoredReport, TargetSource,
};
use crate::metrics::{Metrics, ALL_SITES};
use crate::store::SiteRecord;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

/// The sites in the store, as the prober checks them.
pub struct FleetTargets {
    pub fleet: Arc<Fleet>,
}

#[async_trait]
impl TargetSource for FleetTargets {
    async fn target(&self, site: &str) -> Option<ProbeTarget> {
        match stored_target(&self.fleet, site).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(site = %site, error = %e, "health: site cannot be loaded");
                None
            }
        }
    }
}

/// What a check of `id` checks: the site as the store holds it now (not as a cache
/// remembers it), opened with the current keyring; a record that does not resolve is
/// checked as `unusable`. `Ok(None)` for an unknown site; an error when the store
/// cannot be read.
pub async fn stored_target(fleet: &Fleet, id: &str) -> Result<Option<ProbeTarget>, FleetError> {
    let Some(record) = fleet.store().get_site(id).await? else {
        return Ok(None);
    };
    match fleet.resolve_record(&record).await {
        Ok(site) => Ok(Some(probe_target(&site))),
        Err(e) => unusable_target(&record, &e).map(Some).ok_or(e),
    }
}

/// Checks a site now (`site test`, `POST /admin/v1/sites/{id}/test`): the site as
/// stored now, its result written to the store so that every replica shows it.
/// Returns what is stored (failures in a row counted on); `Ok(None)` for an unknown
/// site.
pub async fn check_now(
    fleet: &Fleet,
    ledger: &Ledger,
    client: &reqwest::Client,
    timeout: Duration,
    id: &str,
) -> Result<Option<StoredReport>, FleetError> {
    let Some(target) = stored_target(fleet, id).await? else {
        return Ok(None);
    };
    let report = crate::health::probe(client, &target, timeout).await;
    Ok(ledger.record(id, &report).await?)
}

/// Updates `wpgate_site_health` after each report that changes the board (so every
/// replica's gauges follow the same shared results), and the check-duration histogram
/// after each check this process ran; a site deleted from the store loses its gauges.
/// With per-site labels off, `site="_all"` carries the number of sites in each state.
pub fn metrics_hook(board: Arc<HealthBoard>, metrics: Arc<Metrics>) -> ReportHook {
    Arc::new(
        move |site: &str, report: &HealthReport, origin: ReportOrigin| {
            let m = &metrics;
            if origin == ReportOrigin::Checked {
                m.health_check_duration
                    .observe(report.duration_ms as f64 / 1000.0);
            }
            let label = m.site_label(site);
            if label == ALL_SITES {
                for (state, n) in board.counts() {
                    m.site_health
                        .with_label_values(&[label, state.as_str()])
                        .set(i64::try_from(n).unwrap_or(i64::MAX));
                }
                return;
            }
            for state in HealthState::ALL {
                if origin == ReportOrigin::Gone {
                    let _ = m.site_health.remove_label_values(&[label, state.as_str()]);
                    continue;
                }
                m.site_health
                    .with_label_values(&[label, state.as_str()])
                    .set(i64::from(state == report.state));
            }
        },
    )
}

/// What the prober (and the admin API's on-demand test) checks of a resolved site.
pub fn probe_target(site: &ResolvedSite) -> ProbeTarget {
    ProbeTarget {
        site_id: site.id.clone(),
        base_url: site.upstream_url.clone(),
        credential: site.inject.clone(),
        credential_kind: site.credential_kind,
        username: site.credential_username.clone(),
        required_namespaces: site.required_namespaces.clone(),
        enabled: site.enabled,
        unusable: None,
    }
}

/// The target of a site whose record does not resolve: checked as `unusable` (with why)
/// without contacting it. `None` for a store error (nothing is known about the site).
pub fn unusable_target(record: &SiteRecord, e: &FleetError) -> Option<ProbeTarget> {
    if matches!(e, FleetError::Store(_)) {
        return None;
    }
    Some(ProbeTarget {
        site_id: record.id.clone(),
        base_url: record.upstream_url.trim_end_matches('/').to_string(),
        credential: None,
        credential_kind: record.credential.kind,
        username: record.credential.username.clone(),
        required_namespaces: record.required_namespaces.clone(),
        enabled: record.enabled,
        unusable: Some(e.to_string()),
    })
}

/// Confirms a new credential with a health check of the site as it would be with it:
/// the check must find the site healthy or degraded (its index answers, and `users/me`
/// accepts the credential).
pub struct CredentialProbe {
    pub client: reqwest::Client,
    /// Per request of the check.
    pub timeout: Duration,
}

impl CredentialCheck for CredentialProbe {
    type Checked = HealthReport;

    async fn check(&self, candidate: &ResolvedSite) -> Result<HealthReport, String> {
        let report =
            crate::health::probe(&self.client, &probe_target(candidate), self.timeout).await;
        if !matches!(report.state, HealthState::Healthy | HealthState::Degraded) {
            return Err(format!(
                "the new credential was not confirmed ({}): {}; the old credential is kept",
                report.state.as_str(),
                report.message
            ));
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(state: HealthState) -> HealthReport {
        HealthReport {
            state,
            message: String::new(),
            checked_at: 1,
            duration_ms: 2,
            consecutive_failures: 0,
            wordpress_user: None,
            checked_by: None,
        }
    }

    #[test]
    fn a_deleted_site_loses_its_health_gauges() {
        let metrics = Arc::new(Metrics::new().unwrap());
        let hook = metrics_hook(Arc::new(HealthBoard::new()), Arc::clone(&metrics));
        hook("shop", &report(HealthState::Healthy), ReportOrigin::Checked);
        hook(
            "blog",
            &report(HealthState::AuthFailed),
            ReportOrigin::Shared,
        );
        let text = metrics.render();
        assert!(
            text.contains(r#"wpgate_site_health{site="shop",state="healthy"} 1"#),
            "{text}"
        );
        hook("shop", &report(HealthState::Healthy), ReportOrigin::Gone);
        let text = metrics.render();
        assert!(!text.contains(r#"site="shop""#), "{text}");
        assert!(
            text.contains(r#"wpgate_site_health{site="blog",state="auth_failed"} 1"#),
            "{text}"
        );
    }
}
