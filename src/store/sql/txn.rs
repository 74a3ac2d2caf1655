//! What every write of [`SqlStore`] shares: the commit that writes the audit record, a
//! site row's guarded update, binding key and token rows, and the mapping of unique and
//! import errors.

use super::rows::SiteLists;
use super::{is_unique_violation, Backend, SqlStore};
use crate::store::{AdminTokenRecord, ApiKeyRecord, AuditEntry, SiteRecord, StoreError};
use sqlx::{Database, Encode, Executor, IntoArguments, Transaction, Type};

/// A statement being bound.
pub(super) type Query<'q, DB> = sqlx::query::Query<'q, DB, <DB as Database>::Arguments<'q>>;

impl<B: Backend> SqlStore<B>
where
    for<'c> &'c mut <B::Db as Database>::Connection: Executor<'c, Database = B::Db>,
    for<'q> <B::Db as Database>::Arguments<'q>: IntoArguments<'q, B::Db>,
    for<'q> &'q str: Encode<'q, B::Db> + Type<B::Db>,
    for<'q> Option<&'q str>: Encode<'q, B::Db> + Type<B::Db>,
    for<'q> i64: Encode<'q, B::Db> + Type<B::Db>,
    for<'q> Option<i64>: Encode<'q, B::Db> + Type<B::Db>,
    for<'q> &'q [u8]: Encode<'q, B::Db> + Type<B::Db>,
    for<'q> bool: Encode<'q, B::Db> + Type<B::Db>,
{
    /// Ends a write (its changes recorded): writes its audit record and commits.
    pub(super) async fn commit(
        &self,
        mut tx: Transaction<'static, B::Db>,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        self.insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(B::unavailable)
    }

    /// Replaces the site's row if its stored version is `site.version`, at `now`;
    /// `VersionConflict` or `NotFound` otherwise.
    pub(super) async fn update_site_row(
        &self,
        tx: &mut Transaction<'static, B::Db>,
        site: &SiteRecord,
        now: i64,
    ) -> Result<(), StoreError> {
        let lists = SiteLists::of(site);
        let done = sqlx::query(&self.sql.update_site)
            .bind(site.name.as_str())
            .bind(site.upstream_url.as_str())
            .bind(site.enabled)
            .bind(site.credential.kind.as_str())
            .bind(site.credential.username.as_deref())
            .bind(site.credential.sealed_secret.as_deref())
            .bind(site.auth_policy.as_deref())
            .bind(site.jwt_secret_sealed.as_deref())
            .bind(lists.namespaces.as_deref())
            .bind(site.health_fail_fast)
            .bind(lists.allowed_paths.as_deref())
            .bind(lists.allowed_origins.as_deref())
            .bind(now)
            .bind(site.id.as_str())
            .bind(site.version)
            .execute(&mut **tx)
            .await
            .map_err(B::unavailable)?;
        if B::rows_affected(&done) > 0 {
            return Ok(());
        }
        let exists = sqlx::query(&self.sql.site_exists)
            .bind(site.id.as_str())
            .fetch_optional(&mut **tx)
            .await
            .map_err(B::unavailable)?
            .is_some();
        Err(if exists {
            StoreError::VersionConflict {
                what: format!("site {}", site.id),
                expected: site.version,
            }
        } else {
            StoreError::NotFound(format!("site {}", site.id))
        })
    }

    /// Writes an audit record in the transaction.
    pub(super) async fn insert_audit(
        &self,
        tx: &mut Transaction<'static, B::Db>,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        sqlx::query(&self.sql.insert_audit)
            .bind(crate::time::now_unix())
            .bind(audit.actor.as_str())
            .bind(audit.action.as_str())
            .bind(audit.target.as_str())
            .bind(audit.site_id.as_deref())
            .bind(audit.request_id.as_deref())
            .bind(audit.detail.as_deref())
            .execute(&mut **tx)
            .await
            .map_err(B::unavailable)?;
        Ok(())
    }

    /// Binds a site's values in [`SITE_COLUMNS`] order (its lists as [`SiteLists`]
    /// stores them), for one row of an INSERT.
    pub(super) fn bind_site<'q>(
        q: Query<'q, B::Db>,
        site: &'q SiteRecord,
        lists: &'q SiteLists,
    ) -> Query<'q, B::Db> {
        q.bind(site.id.as_str())
            .bind(site.name.as_str())
            .bind(site.upstream_url.as_str())
            .bind(site.enabled)
            .bind(site.credential.kind.as_str())
            .bind(site.credential.username.as_deref())
            .bind(site.credential.sealed_secret.as_deref())
            .bind(site.auth_policy.as_deref())
            .bind(site.jwt_secret_sealed.as_deref())
            .bind(lists.namespaces.as_deref())
            .bind(site.health_fail_fast)
            .bind(lists.allowed_paths.as_deref())
            .bind(lists.allowed_origins.as_deref())
            .bind(site.created_at)
            .bind(site.updated_at)
            .bind(site.version)
    }

    /// Binds an API key's values in [`KEY_COLUMNS`] order, for one row of an INSERT.
    pub(super) fn bind_key<'q>(q: Query<'q, B::Db>, key: &'q ApiKeyRecord) -> Query<'q, B::Db> {
        q.bind(key.key_id.as_str())
            .bind(key.site_id.as_str())
            .bind(key.label.as_deref())
            .bind(key.secret_hash.as_slice())
            .bind(key.created_at)
            .bind(key.expires_at)
            .bind(key.revoked_at)
            .bind(key.grace_until)
            .bind(key.last_used_at)
    }

    /// Binds an admin token's values in [`ADMIN_TOKEN_COLUMNS`] order, for one row of an
    /// INSERT.
    pub(super) fn bind_token<'q>(
        q: Query<'q, B::Db>,
        token: &'q AdminTokenRecord,
    ) -> Query<'q, B::Db> {
        q.bind(token.id.as_str())
            .bind(token.label.as_deref())
            .bind(token.scope.as_str())
            .bind(token.secret_hash.as_str())
            .bind(token.created_at)
            .bind(token.revoked_at)
            .bind(token.last_used_at)
    }
}

/// An INSERT's error: a record already there is `AlreadyExists(what)`, anything else
/// the store's.
pub(super) fn already_exists<B: Backend>(
    e: sqlx::Error,
    what: impl FnOnce() -> String,
) -> StoreError {
    if is_unique_violation(&e) {
        StoreError::AlreadyExists(what())
    } else {
        B::unavailable(e)
    }
}

/// An import's error: a record already there or a key without its site is the caller's
/// mistake, anything else the store's.
pub(super) fn import_error<B: Backend>(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            StoreError::AlreadyExists(format!("a record being imported ({d})"))
        }
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
            StoreError::NotFound("the site of an API key being imported".into())
        }
        _ => B::unavailable(e),
    }
}
