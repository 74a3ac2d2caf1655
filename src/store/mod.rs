//! The store: sites, API keys, the audit log and gateway settings behind one trait.
//! Every write is one transaction that also writes its audit record. Site health
//! results and their leases (`health`) are shared through it too: not audited, they
//! are observations, not changes.

pub mod copy;
mod health;
pub mod postgres;
mod records;
pub mod sql;
pub mod sqlite;

pub use health::{
    HealthClaim, HealthClaims, HealthResult, HealthStore, NextCheck, SiteHealthRecord,
};
pub use records::{
    upstream_credential_place, AdminScope, AdminTokenRecord, ApiKeyRecord, AuditEntry, AuditRecord,
    Change, ChangeEvent, ChangeKind, ChangesSince, ImportBatch, RecordCounts, Reseal, SealedSlot,
    SealedValue, SiteRecord, SiteWrite, StoredCredential, JWT_SECRET_FIELD, SEALED_SLOT_KINDS,
    UPSTREAM_CREDENTIAL_FIELD,
};

use crate::config::StoreUrl;
use async_trait::async_trait;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("{what} was changed by someone else (expected version {expected}); reload and retry")]
    VersionConflict { what: String, expected: i64 },
    #[error("store holds an invalid record: {0}")]
    Corrupt(String),
}

/// Which audit entries to read: newest first, at most `limit`.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuditPage<'a> {
    /// Only the entries about this site (its keys included).
    pub site_id: Option<&'a str>,
    /// Only entries at or after this time (unix seconds).
    pub since: Option<i64>,
    /// Only entries older than this one (its id): the cursor of the next page.
    pub before: Option<i64>,
    pub limit: u32,
}

/// One page of the audit log and the cursor of the next (the `before` that reads it;
/// `None` on the last page).
pub async fn read_audit(
    store: &dyn Store,
    page: &AuditPage<'_>,
) -> Result<(Vec<AuditRecord>, Option<i64>), StoreError> {
    // One more than asked tells whether another page follows.
    let mut entries = store
        .audit_page(&AuditPage {
            limit: page.limit.saturating_add(1),
            ..*page
        })
        .await?;
    let more = entries.len() > page.limit as usize;
    entries.truncate(page.limit as usize);
    let next = if more {
        entries.last().map(|e| e.id)
    } else {
        None
    };
    Ok((entries, next))
}

/// The schema migrations a store has applied, against the ones this binary carries.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SchemaStatus {
    /// Versions applied successfully, ascending.
    pub applied: Vec<i64>,
    /// Versions this binary carries, ascending.
    pub expected: Vec<i64>,
    /// Applied versions whose script differs from this binary's (by checksum).
    pub changed: Vec<i64>,
    /// Versions recorded as failed (a migration that did not finish).
    pub failed: Vec<i64>,
}

impl SchemaStatus {
    /// Versions this binary carries that the store has not applied.
    pub fn missing(&self) -> Vec<i64> {
        let applied = &self.applied;
        let mut out: Vec<i64> = self.expected.clone();
        out.retain(|v| !applied.contains(v));
        out
    }

    /// Versions the store has applied that this binary does not know (a newer binary
    /// migrated it).
    pub fn unknown(&self) -> Vec<i64> {
        let expected = &self.expected;
        let mut out: Vec<i64> = self.applied.clone();
        out.retain(|v| !expected.contains(v));
        out
    }

    /// The store's schema is exactly the one this binary expects.
    pub fn is_current(&self) -> bool {
        self.missing().is_empty()
            && self.unknown().is_empty()
            && self.changed.is_empty()
            && self.failed.is_empty()
    }
}

/// Every store also keeps the fleet's health results and leases ([`HealthStore`]).
#[async_trait]
pub trait Store: HealthStore + Send + Sync + 'static {
    /// Checks the store answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Which schema migrations the store has applied, against this binary's.
    async fn schema(&self) -> Result<SchemaStatus, StoreError>;

    async fn get_site(&self, id: &str) -> Result<Option<SiteRecord>, StoreError>;
    /// Sites ordered by id, starting after `after`, that match `filter`.
    async fn find_sites(
        &self,
        after: Option<&str>,
        limit: u32,
        filter: &SiteFilter,
    ) -> Result<Vec<SiteRecord>, StoreError>;
    /// Sites ordered by id, starting after `after`.
    async fn list_sites(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<SiteRecord>, StoreError>;
    /// `(site id, allowed origins)` of every site that allows some browser origin
    /// (CORS), by id; sites without any are not read (a partial index holds the others).
    async fn site_origins(&self) -> Result<Vec<(String, Vec<String>)>, StoreError>;
    async fn create_site(&self, site: &SiteRecord, audit: &AuditEntry) -> Result<(), StoreError>;
    /// Replaces the site if its stored version is `site.version`; returns the new record
    /// (version + 1).
    async fn update_site(
        &self,
        site: &SiteRecord,
        audit: &AuditEntry,
    ) -> Result<SiteRecord, StoreError>;
    /// Deletes the site and its API keys.
    async fn delete_site(&self, id: &str, audit: &AuditEntry) -> Result<(), StoreError>;
    /// Creates and updates sites (bulk onboarding) all in one transaction, each with its
    /// audit entry and change-log row: every write or none. The first failing write
    /// (`AlreadyExists`, `VersionConflict`, `NotFound`) fails the whole batch. Returns the
    /// sites as written (an update's version + 1), in order.
    async fn write_sites(&self, writes: &[SiteWrite]) -> Result<Vec<SiteRecord>, StoreError>;

    async fn get_api_key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, StoreError>;
    async fn list_api_keys(&self, site_id: &str) -> Result<Vec<ApiKeyRecord>, StoreError>;
    async fn insert_api_key(
        &self,
        key: &ApiKeyRecord,
        audit: &AuditEntry,
    ) -> Result<(), StoreError>;
    /// Marks the key revoked at `revoked_at`, still accepted until `grace_until`
    /// (`== revoked_at` for no grace). Revoking again can only shorten the grace.
    async fn revoke_api_key(
        &self,
        key_id: &str,
        revoked_at: i64,
        grace_until: i64,
        audit: &AuditEntry,
    ) -> Result<ApiKeyRecord, StoreError>;

    /// Issues `new` and revokes `old_key_id` as [`Store::revoke_api_key`] does, in one
    /// transaction with one audit record (a rotation); returns the old key as revoked.
    /// `NotFound` for a missing old key or site; nothing is written then.
    async fn rotate_api_key(
        &self,
        old_key_id: &str,
        revoked_at: i64,
        grace_until: i64,
        new: &ApiKeyRecord,
        audit: &AuditEntry,
    ) -> Result<ApiKeyRecord, StoreError>;

    /// Sets each listed key's `last_used_at` to `at`, unless it is later already (several
    /// replicas write in any order; the time never moves back). Batched, not audited and
    /// not in the change log: it changes nothing a cache holds. Unknown ids are skipped;
    /// returns how many keys were updated.
    async fn record_key_use(&self, key_ids: &[String], at: i64) -> Result<u64, StoreError>;

    /// Deletes up to `limit` keys that were revoked (their grace over) or expired before
    /// `before`, in one transaction, writing `audit(key)` for each key deleted; returns
    /// them. Replicas purging at the same time delete (and audit) each key once.
    async fn purge_api_keys(
        &self,
        before: i64,
        limit: u32,
        audit: &(dyn for<'k> Fn(&'k ApiKeyRecord) -> AuditEntry + Sync),
    ) -> Result<Vec<ApiKeyRecord>, StoreError>;

    /// The ids of up to `limit` sites whose upstream URL is one of `urls` (as stored).
    async fn sites_with_upstream(
        &self,
        urls: &[&str],
        limit: u32,
    ) -> Result<Vec<String>, StoreError>;

    /// Records an event that changes nothing (a refused admin token check): the audit
    /// record alone, in a transaction of its own.
    async fn append_audit(&self, audit: &AuditEntry) -> Result<(), StoreError>;

    /// Newest first, optionally only the entries about one site (its keys included).
    async fn list_audit(
        &self,
        site_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        self.audit_page(&AuditPage {
            site_id,
            since: None,
            before: None,
            limit,
        })
        .await
    }

    /// One page of the audit log, newest first.
    async fn audit_page(&self, page: &AuditPage<'_>) -> Result<Vec<AuditRecord>, StoreError>;

    async fn create_admin_token(
        &self,
        token: &AdminTokenRecord,
        audit: &AuditEntry,
    ) -> Result<(), StoreError>;
    async fn get_admin_token(&self, id: &str) -> Result<Option<AdminTokenRecord>, StoreError>;
    /// Every admin token, revoked ones included, oldest first.
    async fn list_admin_tokens(&self) -> Result<Vec<AdminTokenRecord>, StoreError>;
    /// Marks the token revoked at `at` (an earlier revocation time is kept).
    async fn revoke_admin_token(
        &self,
        id: &str,
        at: i64,
        audit: &AuditEntry,
    ) -> Result<AdminTokenRecord, StoreError>;
    /// Records that the token was just used (not audited: it is not a change).
    async fn touch_admin_token(&self, id: &str, at: i64) -> Result<(), StoreError>;

    async fn get_setting(&self, name: &str) -> Result<Option<String>, StoreError>;
    /// Stores `value` unless the setting exists; returns the value that is stored (so
    /// two processes that race to create it agree on one).
    async fn insert_setting_if_absent(&self, name: &str, value: &str)
        -> Result<String, StoreError>;

    // ---- the change log (cross-process cache invalidation) ----

    /// The newest change's `seq` (0 when there is none).
    async fn latest_change(&self) -> Result<i64, StoreError>;
    /// Changes after `seq`, oldest first, at most `limit`.
    async fn changes_since(&self, seq: i64, limit: u32) -> Result<ChangesSince, StoreError>;
    /// Deletes changes recorded before `before` (unix seconds); returns how many.
    async fn prune_changes(&self, before: i64) -> Result<u64, StoreError>;
    /// Starts pushing committed changes to `events` (reconnecting by itself) if the
    /// backend can; returns false when it cannot (readers poll the change log).
    fn spawn_listener(&self, _events: tokio::sync::mpsc::UnboundedSender<ChangeEvent>) -> bool {
        false
    }

    // ---- sealed values (keyring rotation) ----

    /// How many stored values each keyring key seals, by key id.
    async fn sealed_key_counts(&self) -> Result<Vec<(String, i64)>, StoreError>;
    /// Up to `limit` sealed values not sealed with `key_id`, in slot order, starting
    /// after the slot `after` (a cursor, so that a rewrap reads each value once).
    async fn sealed_not_by(
        &self,
        key_id: &str,
        after: Option<&SealedSlot>,
        limit: u32,
    ) -> Result<Vec<SealedValue>, StoreError>;
    /// Applies a batch of re-seals in one transaction (each only where the slot still
    /// holds the old value); returns how many were replaced.
    async fn reseal(&self, batch: &[Reseal], audit: &AuditEntry) -> Result<u64, StoreError>;

    // ---- binding upstream credentials to their origin (`fleet::binding`) ----

    /// Up to `limit` site upstream credentials still sealed in format `v1` (bound to
    /// their site only, not to an origin), by site id after `after`, each with its site's
    /// upstream URL.
    async fn unbound_credentials(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<SealedValue>, StoreError>;
    /// Replaces each credential with its origin-bound re-seal where the site still holds
    /// the old value and the upstream URL it was read with, in one transaction; each
    /// replacement writes its own audit entry. Returns how many were replaced. Records no
    /// change: the value opens to the same secret for the same upstream, so what caches
    /// hold stays right (and gateways of an older version keep serving from theirs).
    async fn bind_credentials(&self, batch: &[(Reseal, AuditEntry)]) -> Result<u64, StoreError>;

    // ---- export and import (`wpgate store migrate`) ----
    // Sites are exported with `list_sites`, admin tokens with `list_admin_tokens`.

    /// How many records of each kind the store holds (the change log is not counted).
    async fn record_counts(&self) -> Result<RecordCounts, StoreError>;
    /// API keys of every site ordered by key id, starting after `after`.
    async fn export_api_keys(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ApiKeyRecord>, StoreError>;
    /// Every setting as `(name, value)`, ordered by name, values as stored.
    async fn export_settings(&self) -> Result<Vec<(String, String)>, StoreError>;
    /// Audit records with `id > after`, oldest first.
    async fn export_audit(&self, after: i64, limit: u32) -> Result<Vec<AuditRecord>, StoreError>;
    /// Inserts the batch exactly as given, in one transaction, writing neither audit nor
    /// change-log rows (it copies history; it makes none). `AlreadyExists` when a record
    /// is already there, `NotFound` when a key's site is missing; nothing is written then.
    /// Audit ids stay as given and later entries are numbered after the highest.
    async fn import(&self, batch: &ImportBatch) -> Result<(), StoreError>;
}

/// Opens (creating if needed) the store named by the configuration and migrates it.
pub async fn open(url: &StoreUrl) -> Result<Arc<dyn Store>, StoreError> {
    match url {
        StoreUrl::Sqlite(path) => Ok(Arc::new(sqlite::SqliteStore::open(path).await?)),
        StoreUrl::Postgres(url) => Ok(Arc::new(postgres::PostgresStore::open(url).await?)),
    }
}

/// Opens an existing store without creating or migrating anything, on connections that
/// refuse writes (SQLite opened read-only; PostgreSQL sessions with
/// `default_transaction_read_only`): what `wpgate doctor` reads. PostgreSQL connects on
/// the first call.
pub async fn open_read_only(url: &StoreUrl) -> Result<Arc<dyn Store>, StoreError> {
    match url {
        StoreUrl::Sqlite(path) => Ok(Arc::new(sqlite::SqliteStore::open_read_only(path).await?)),
        StoreUrl::Postgres(url) => Ok(Arc::new(postgres::PostgresStore::open_read_only(url)?)),
    }
}

/// Logs one store query at debug level (target `wpgate::store`): how single-flight and
/// caching are observed. Only ids, never values.
pub(crate) fn trace_query(op: &'static str, id: &str) {
    tracing::debug!(target: "wpgate::store", op, id, "store query");
}

/// Which sites [`Store::find_sites`] lists: those whose id or name contains `text`
/// (ASCII letters in either case), and whose stored health state is `state`; `None`
/// matches every site.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SiteFilter {
    pub text: Option<String>,
    pub state: Option<String>,
}

impl SiteFilter {
    /// The text in lower case (ASCII) and as a `LIKE` pattern that finds it anywhere
    /// (`%`, `_` and `\\` in it escaped); empty when there is none.
    pub fn text_pattern(&self) -> (String, String) {
        let Some(text) = self.text.as_deref().filter(|t| !t.is_empty()) else {
            return (String::new(), String::new());
        };
        let lower = text.to_ascii_lowercase();
        let mut pattern = String::with_capacity(lower.len() + 2);
        pattern.push('%');
        for c in lower.chars() {
            if matches!(c, '%' | '_' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('%');
        (lower, pattern)
    }
}
