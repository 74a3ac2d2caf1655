//! [`HealthStore`] on every [`Backend`]: claiming due sites, writing check results,
//! reading them back. One statement per claim and per result, so nothing here holds a
//! transaction open across a check.

use super::dialect::Dialect;
use super::{Backend, SqlStore};
use crate::store::{
    HealthClaim, HealthClaims, HealthResult, HealthStore, NextCheck, SiteHealthRecord, StoreError,
};
use async_trait::async_trait;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Type};

/// Columns of `site_health` in [`SiteHealthRecord`] order.
const HEALTH_COLUMNS: &str = "site_id, state, message, checked_at, duration_ms, \
    consecutive_failures, wordpress_user, checked_by, seq, due_at, holder, claimed_at, \
    lease_until";

/// The health statements, parameters in the dialect's form.
pub struct HealthQueries {
    /// (holder, lease ms, limit), returns the claims
    claim: String,
    /// ms from now to the earliest `due_at`
    next_due_in: String,
    /// (next due, its least wait, state, message, checked_at, duration_ms, failed,
    /// wordpress_user, checked_by, site id, holder, claimed_at), returns the record
    finish: String,
    /// (state, message, checked_at, duration_ms, failed, wordpress_user, checked_by,
    /// site id), returns the record
    record: String,
    /// (site id)
    pub(super) due_now: String,
    get: String,
    /// (after seq, limit)
    since: String,
    /// (after site id, limit)
    after: String,
    /// `(state, sites)` for each state some site is in
    counts: String,
}

impl HealthQueries {
    pub fn new(d: &Dialect) -> Self {
        let r = |sql: &str| d.render(sql);
        let now = d.now_ms;
        let seq = d.next_health_seq;
        let greatest = d.greatest;
        // Due, and no live lease on it.
        let claimable = format!("due_at <= {now} AND (holder IS NULL OR lease_until <= {now})");
        let result = "state = ?, message = ?, checked_at = ?, duration_ms = ?, \
            consecutive_failures = CASE WHEN ? THEN consecutive_failures + 1 ELSE 0 END, \
            wordpress_user = ?, checked_by = ?";
        HealthQueries {
            // The inner SELECT picks the due rows (locking them on PostgreSQL, skipping
            // rows another claim holds); the outer condition checks them again.
            claim: r(&format!(
                "UPDATE site_health SET holder = ?, claimed_at = {now}, \
                 lease_until = {now} + ? \
                 WHERE site_id IN (SELECT site_id FROM site_health WHERE {claimable} \
                 ORDER BY due_at, site_id LIMIT ?{}) AND {claimable} \
                 RETURNING site_id, due_at, claimed_at, consecutive_failures",
                d.skip_locked
            )),
            next_due_in: r(&format!(
                "SELECT MIN(CASE WHEN holder IS NULL THEN due_at ELSE lease_until END) - {now} \
                 FROM site_health"
            )),
            finish: r(&format!(
                "UPDATE site_health SET holder = NULL, lease_until = NULL, \
                 due_at = {greatest}(?, {now} + ?), {result}, seq = {seq} \
                 WHERE site_id = ? AND holder = ? AND claimed_at = ? \
                 RETURNING {HEALTH_COLUMNS}"
            )),
            record: r(&format!(
                "UPDATE site_health SET {result}, seq = {seq} WHERE site_id = ? \
                 RETURNING {HEALTH_COLUMNS}"
            )),
            counts: r("SELECT state, COUNT(*) FROM site_health GROUP BY state ORDER BY state"),
            due_now: r(
                "UPDATE site_health SET due_at = 0, holder = NULL, lease_until = NULL \
                 WHERE site_id = ?",
            ),
            get: r(&format!(
                "SELECT {HEALTH_COLUMNS} FROM site_health WHERE site_id = ?"
            )),
            since: r(&format!(
                "SELECT {HEALTH_COLUMNS} FROM site_health WHERE seq > ? ORDER BY seq LIMIT ?"
            )),
            after: r(&format!(
                "SELECT {HEALTH_COLUMNS} FROM site_health WHERE site_id > ? \
                 ORDER BY site_id LIMIT ?"
            )),
        }
    }
}

type QueryAs<'q, DB, O> = sqlx::query::QueryAs<'q, DB, O, <DB as Database>::Arguments<'q>>;

/// Binds a result's values in the order of the shared `SET` list.
fn bind_result<'q, DB: Database, O>(
    q: QueryAs<'q, DB, O>,
    r: &HealthResult<'q>,
) -> QueryAs<'q, DB, O>
where
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    for<'a> Option<&'a str>: Encode<'a, DB> + Type<DB>,
    for<'a> i64: Encode<'a, DB> + Type<DB>,
    for<'a> bool: Encode<'a, DB> + Type<DB>,
{
    q.bind(r.state)
        .bind(r.message)
        .bind(r.checked_at)
        .bind(r.duration_ms)
        .bind(r.failed)
        .bind(r.wordpress_user)
        .bind(r.checked_by)
}

#[async_trait]
impl<B: Backend> HealthStore for SqlStore<B>
where
    for<'c> &'c mut <B::Db as Database>::Connection: Executor<'c, Database = B::Db>,
    for<'q> <B::Db as Database>::Arguments<'q>: IntoArguments<'q, B::Db>,
    for<'q> &'q str: Encode<'q, B::Db> + Type<B::Db>,
    for<'q> Option<&'q str>: Encode<'q, B::Db> + Type<B::Db>,
    for<'q> i64: Encode<'q, B::Db> + Type<B::Db>,
    for<'q> bool: Encode<'q, B::Db> + Type<B::Db>,
    for<'r> String: Decode<'r, B::Db> + Type<B::Db>,
    for<'r> i64: Decode<'r, B::Db>,
    for<'r> &'r str: ColumnIndex<<B::Db as Database>::Row>,
    usize: ColumnIndex<<B::Db as Database>::Row>,
{
    async fn claim_health_checks(
        &self,
        holder: &str,
        limit: u32,
        lease_ms: i64,
    ) -> Result<HealthClaims, StoreError> {
        self.call(async move {
            let claimed: Vec<HealthClaim> = if limit == 0 {
                Vec::new()
            } else {
                sqlx::query_as(&self.health.claim)
                    .bind(holder)
                    .bind(lease_ms)
                    .bind(i64::from(limit))
                    .fetch_all(self.backend.pool())
                    .await
                    .map_err(B::unavailable)?
            };
            let next_due_in_ms: Option<i64> = sqlx::query_scalar(&self.health.next_due_in)
                .fetch_one(self.backend.pool())
                .await
                .map_err(B::unavailable)?;
            Ok(HealthClaims {
                claimed,
                next_due_in_ms,
            })
        })
        .await
    }

    async fn finish_health_check(
        &self,
        holder: &str,
        claim: &HealthClaim,
        result: &HealthResult<'_>,
        next: NextCheck,
    ) -> Result<Option<SiteHealthRecord>, StoreError> {
        self.call(async move {
            let q = sqlx::query_as(&self.health.finish)
                .bind(next.at)
                .bind(next.min_wait_ms);
            bind_result(q, result)
                .bind(claim.site_id.as_str())
                .bind(holder)
                .bind(claim.claimed_at)
                .fetch_optional(self.backend.pool())
                .await
                .map_err(B::unavailable)
        })
        .await
    }

    async fn record_health_check(
        &self,
        site_id: &str,
        result: &HealthResult<'_>,
    ) -> Result<Option<SiteHealthRecord>, StoreError> {
        self.call(async move {
            bind_result(sqlx::query_as(&self.health.record), result)
                .bind(site_id)
                .fetch_optional(self.backend.pool())
                .await
                .map_err(B::unavailable)
        })
        .await
    }

    async fn health_due_now(&self, site_id: &str) -> Result<(), StoreError> {
        self.call(async move {
            sqlx::query(&self.health.due_now)
                .bind(site_id)
                .execute(self.backend.pool())
                .await
                .map_err(B::unavailable)?;
            Ok(())
        })
        .await
    }

    async fn get_site_health(&self, site_id: &str) -> Result<Option<SiteHealthRecord>, StoreError> {
        self.call(async move {
            sqlx::query_as(&self.health.get)
                .bind(site_id)
                .fetch_optional(self.backend.pool())
                .await
                .map_err(B::unavailable)
        })
        .await
    }

    async fn site_health_since(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<SiteHealthRecord>, StoreError> {
        self.call(async move {
            sqlx::query_as(&self.health.since)
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(self.backend.pool())
                .await
                .map_err(B::unavailable)
        })
        .await
    }

    async fn list_site_health(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<SiteHealthRecord>, StoreError> {
        self.call(async move {
            sqlx::query_as(&self.health.after)
                .bind(after.unwrap_or(""))
                .bind(i64::from(limit))
                .fetch_all(self.backend.pool())
                .await
                .map_err(B::unavailable)
        })
        .await
    }

    async fn health_state_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.call(async move {
            sqlx::query_as(&self.health.counts)
                .fetch_all(self.backend.pool())
                .await
                .map_err(B::unavailable)
        })
        .await
    }
}
