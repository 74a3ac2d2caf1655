//! Site health in the store (`site_health`): each site's latest check, and the lease that
//! lets one process of many check it (`health::prober`). Every replica on a shared store
//! reads the same results; each site is checked by one of them at a time.
//!
//! Times of the schedule (`due_at`, `claimed_at`) are milliseconds on the store's own
//! clock (PostgreSQL's `now()`, SQLite's `julianday('now')`), so replicas whose clocks
//! differ still agree on when a lease ends; `checked_at` is unix seconds on the checking
//! process's clock, as shown to operators.

use super::StoreError;
use async_trait::async_trait;

/// A site's health as stored: its latest check and its lease.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SiteHealthRecord {
    pub site_id: String,
    /// A `health::HealthState` name; `unknown` until the first check.
    pub state: String,
    pub message: String,
    /// Unix seconds when the latest check started; `None`: never checked.
    pub checked_at: Option<i64>,
    pub duration_ms: i64,
    /// Failed checks in a row (0 after a check that did not fail).
    pub consecutive_failures: i64,
    pub wordpress_user: Option<String>,
    /// Who wrote the latest result: a replica id, or `cli`.
    pub checked_by: Option<String>,
    /// Grows with every result written: readers ask for what changed after the highest
    /// they have seen ([`HealthStore::site_health_since`]).
    pub seq: i64,
    /// When the site is next due (store clock, ms).
    pub due_at: i64,
    /// Who holds the lease (a check is running, or its process died), if anyone.
    pub holder: Option<String>,
    /// When the current (or last) lease was taken (store clock, ms).
    pub claimed_at: Option<i64>,
    /// When the current lease ends (store clock, ms); `None` without a lease.
    pub lease_until: Option<i64>,
}

/// A site claimed for a check: the lease is the pair (holder, `claimed_at`).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct HealthClaim {
    pub site_id: String,
    /// When the check was due (store clock, ms; 0: at once).
    pub due_at: i64,
    /// Store clock, ms.
    pub claimed_at: i64,
    /// Failed checks in a row before this one.
    pub consecutive_failures: i64,
}

/// What one claim call got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthClaims {
    pub claimed: Vec<HealthClaim>,
    /// Milliseconds from the claim until the next site can be claimed (its `due_at`, or
    /// the end of its lease), after the claim (negative: some site is overdue, e.g.
    /// beyond `limit`); `None`: no sites.
    pub next_due_in_ms: Option<i64>,
}

/// When a site is checked next: due `at`, but no sooner than `min_wait_ms` after the
/// result is written (both on the store's clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextCheck {
    /// Store clock, ms.
    pub at: i64,
    pub min_wait_ms: i64,
}

/// The result of one check, as written.
#[derive(Debug, Clone, Copy)]
pub struct HealthResult<'a> {
    pub state: &'a str,
    pub message: &'a str,
    /// Unix seconds when the check started.
    pub checked_at: i64,
    pub duration_ms: i64,
    /// Counts toward `consecutive_failures` (else it is reset to 0).
    pub failed: bool,
    pub wordpress_user: Option<&'a str>,
    /// The replica id (or `cli`) that ran the check.
    pub checked_by: &'a str,
}

/// The store's part of health checking. Every [`super::Store`] is one.
#[async_trait]
pub trait HealthStore {
    /// Claims up to `limit` sites whose `due_at` has passed and that no live lease
    /// holds, earliest due first, for `holder`, in one statement: each gets `claimed_at
    /// = now` and `lease_until = now + lease_ms`, so no other process claims it before
    /// the lease ends. Processes claiming at the same time never get the same site.
    async fn claim_health_checks(
        &self,
        holder: &str,
        limit: u32,
        lease_ms: i64,
    ) -> Result<HealthClaims, StoreError>;

    /// Writes the result of a claimed check and ends its lease; the site is next due as
    /// `next` says. Only while `claim` is still the site's lease: `None` when it was
    /// lost (it ran out and another process claimed the site, the site changed or was
    /// deleted), and nothing is written.
    async fn finish_health_check(
        &self,
        holder: &str,
        claim: &HealthClaim,
        result: &HealthResult<'_>,
        next: NextCheck,
    ) -> Result<Option<SiteHealthRecord>, StoreError>;

    /// Writes the result of a check run on demand (`site test`), leases and schedule
    /// left as they are; `None` for an unknown site.
    async fn record_health_check(
        &self,
        site_id: &str,
        result: &HealthResult<'_>,
    ) -> Result<Option<SiteHealthRecord>, StoreError>;

    /// Makes the site due now and ends any lease on it (a check in flight is then not
    /// written: it was about what the site was).
    async fn health_due_now(&self, site_id: &str) -> Result<(), StoreError>;

    async fn get_site_health(&self, site_id: &str) -> Result<Option<SiteHealthRecord>, StoreError>;

    /// Records whose `seq` is above `after`, by `seq`, at most `limit`.
    async fn site_health_since(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<SiteHealthRecord>, StoreError>;

    /// How many sites are in each state (the states no site is in are left out).
    async fn health_state_counts(&self) -> Result<Vec<(String, i64)>, StoreError>;

    /// Every record, by site id, starting after `after`.
    async fn list_site_health(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<SiteHealthRecord>, StoreError>;
}
