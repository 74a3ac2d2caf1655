//! The health results every process on a store shares, and the leases that let one
//! process check each site: [`Ledger`] turns the store's `site_health` records into
//! [`HealthReport`]s and back, on behalf of one replica (its id is the lease holder and
//! the `checked_by` of what it writes).

use std::sync::Arc;

use rand::Rng;

use super::{HealthReport, HealthState};
use crate::store::{
    HealthClaim, HealthClaims, HealthResult, NextCheck, SiteHealthRecord, Store, StoreError,
};

/// The most records one read asks for.
const PAGE: u32 = 1000;

/// A fresh replica id for this process: 12 random hex digits (logged at start, written
/// as the holder of its leases and the `checked_by` of its results).
pub fn new_replica_id() -> String {
    format!(
        "{:012x}",
        rand::thread_rng().gen::<u64>() & 0xffff_ffff_ffff
    )
}

/// A site's latest check as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReport {
    pub site: String,
    pub report: HealthReport,
    /// The record's `seq`: a higher one is a later result.
    pub seq: i64,
}

impl StoredReport {
    /// `None` for a site never checked (or a state this version does not know).
    fn of(record: SiteHealthRecord) -> Option<StoredReport> {
        let checked_at = record.checked_at?;
        let Some(state) = HealthState::parse(&record.state) else {
            tracing::warn!(site = %record.site_id, state = %record.state, "health: unknown state in the store; ignored");
            return None;
        };
        Some(StoredReport {
            report: HealthReport {
                state,
                message: record.message,
                checked_at,
                duration_ms: u64::try_from(record.duration_ms).unwrap_or(0),
                consecutive_failures: u32::try_from(record.consecutive_failures)
                    .unwrap_or(u32::MAX),
                wordpress_user: record.wordpress_user,
                checked_by: record.checked_by,
            },
            site: record.site_id,
            seq: record.seq,
        })
    }
}

/// One replica's access to the shared health records.
pub struct Ledger {
    store: Arc<dyn Store>,
    replica: Arc<str>,
}

impl Ledger {
    pub fn new(store: Arc<dyn Store>, replica: impl Into<Arc<str>>) -> Self {
        Ledger {
            store,
            replica: replica.into(),
        }
    }

    /// This replica's id.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    fn result<'a>(&'a self, r: &'a HealthReport) -> HealthResult<'a> {
        HealthResult {
            state: r.state.as_str(),
            message: &r.message,
            checked_at: r.checked_at,
            duration_ms: i64::try_from(r.duration_ms).unwrap_or(i64::MAX),
            failed: r.state.is_failure(),
            wordpress_user: r.wordpress_user.as_deref(),
            checked_by: &self.replica,
        }
    }

    /// Claims up to `limit` due sites for `lease_ms`.
    pub(super) async fn claim(
        &self,
        limit: u32,
        lease_ms: i64,
    ) -> Result<HealthClaims, StoreError> {
        self.store
            .claim_health_checks(&self.replica, limit, lease_ms)
            .await
    }

    /// Writes a claimed check's result, the site next due as `next` says; `None` when
    /// the lease was lost and nothing was written.
    pub(super) async fn finish(
        &self,
        claim: &HealthClaim,
        report: &HealthReport,
        next: NextCheck,
    ) -> Result<Option<StoredReport>, StoreError> {
        let written = self
            .store
            .finish_health_check(&self.replica, claim, &self.result(report), next)
            .await?;
        Ok(written.and_then(StoredReport::of))
    }

    /// Writes the result of a check run on demand (its failures in a row counted on
    /// from the stored ones); returns what is stored, `None` for an unknown site.
    pub async fn record(
        &self,
        site: &str,
        report: &HealthReport,
    ) -> Result<Option<StoredReport>, StoreError> {
        let written = self
            .store
            .record_health_check(site, &self.result(report))
            .await?;
        Ok(written.and_then(StoredReport::of))
    }

    /// Makes `site` due now (any process may take it).
    pub async fn due_now(&self, site: &str) -> Result<(), StoreError> {
        self.store.health_due_now(site).await
    }

    /// The site's latest result as stored now; `None` when never checked or unknown.
    pub async fn current(&self, site: &str) -> Result<Option<StoredReport>, StoreError> {
        Ok(self
            .store
            .get_site_health(site)
            .await?
            .and_then(StoredReport::of))
    }

    /// Results written after `after` (a `seq`), oldest first.
    pub(super) async fn since(&self, after: i64) -> Result<Vec<StoredReport>, StoreError> {
        let mut out = Vec::new();
        let mut after = after;
        loop {
            let page = self.store.site_health_since(after, PAGE).await?;
            let full = page.len() == PAGE as usize;
            if let Some(last) = page.last() {
                after = last.seq;
            }
            out.extend(page.into_iter().filter_map(StoredReport::of));
            if !full {
                return Ok(out);
            }
        }
    }

    /// Every site's latest result, by site id.
    pub(super) async fn all(&self) -> Result<Vec<StoredReport>, StoreError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.store.list_site_health(after.as_deref(), PAGE).await?;
            let full = page.len() == PAGE as usize;
            after = page.last().map(|r| r.site_id.clone());
            out.extend(page.into_iter().filter_map(StoredReport::of));
            if !full {
                return Ok(out);
            }
        }
    }
}
