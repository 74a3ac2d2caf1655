//! Glue between the fleet and health: which sites the prober checks, what a report does
//! to the metrics, and the check a new credential must pass before the fleet stores it.
//! Health depends on the fleet here, never the other way round.

use crate::fleet::{CredentialCheck, Fleet, FleetError, ResolvedSite};
use crate::health::{
    HealthBoard, HealthReport, HealthState, ProbeTarget, ReportHook, TargetSource,
};
use crate::metrics::{Metrics, ALL_SITES};
use crate::store::SiteRecord;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

/// Every site in the store, as the prober sees it.
pub struct FleetTargets {
    pub fleet: Arc<Fleet>,
}

const PAGE: u32 = 500;

#[async_trait]
impl TargetSource for FleetTargets {
    async fn targets(&self) -> Vec<ProbeTarget> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = match self.fleet.store().list_sites(after.as_deref(), PAGE).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "health: cannot list sites");
                    return out;
                }
            };
            let Some(last) = page.last().map(|s| s.id.clone()) else {
                break;
            };
            for record in &page {
                match self.fleet.resolve_site(&record.id).await {
                    Ok(Some(site)) => out.push(probe_target(&site)),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(site = %record.id, error = %e, "health: site cannot be loaded");
                        if let Some(t) = unusable_target(record, &e) {
                            out.push(t);
                        }
                    }
                }
            }
            if page.len() < PAGE as usize {
                break;
            }
            after = Some(last);
        }
        out
    }
}

/// Updates `wpgate_site_health` and the check-duration histogram after each report.
/// With per-site labels off, `site="_all"` carries the number of sites in each state.
pub fn metrics_hook(board: Arc<HealthBoard>, metrics: Arc<Metrics>) -> ReportHook {
    Arc::new(move |site: &str, report: &HealthReport| {
        let m = &metrics;
        m.health_check_duration
            .observe(report.duration_ms as f64 / 1000.0);
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
            m.site_health
                .with_label_values(&[label, state.as_str()])
                .set(i64::from(state == report.state));
        }
    })
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
