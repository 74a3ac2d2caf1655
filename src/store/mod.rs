//! The store: sites, API keys, the audit log and gateway settings behind one trait.
//! Every write is one transaction that also writes its audit record.

pub mod migrate;
pub mod postgres;
pub mod sqlite;

use crate::config::StoreUrl;
use crate::site::CredentialKind;
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

/// A site's upstream credential as stored: its secret only ever sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCredential {
    pub kind: CredentialKind,
    /// The WordPress user name (`app_password`) or the header name (`header`).
    pub username: Option<String>,
    /// Sealed text (see `crypto`), bound to `Place::site(id, "upstream_credential")`.
    pub sealed_secret: Option<String>,
}

/// The field name a site's upstream credential is sealed under.
pub const UPSTREAM_CREDENTIAL_FIELD: &str = "upstream_credential";
/// The field name a site's JWT HMAC secret is sealed under.
pub const JWT_SECRET_FIELD: &str = "jwt_hmac_secret";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteRecord {
    pub id: String,
    pub name: String,
    pub upstream_url: String,
    pub enabled: bool,
    pub credential: StoredCredential,
    /// Client authentication policy as JSON (`auth::policy::AuthPolicy`); `None` means
    /// API keys only.
    pub auth_policy: Option<String>,
    /// The JWT HMAC secret, sealed for `Place::site(id, JWT_SECRET_FIELD)`.
    pub jwt_secret_sealed: Option<String>,
    /// REST namespaces the health check requires in the site's index.
    pub required_namespaces: Vec<String>,
    /// Proxy requests get 503 `site.unavailable` at once while the site is unreachable.
    pub health_fail_fast: bool,
    pub created_at: i64,
    pub updated_at: i64,
    /// Bumped on every update; updates name the version they expect.
    pub version: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub key_id: String,
    pub site_id: String,
    pub label: Option<String>,
    /// HMAC-SHA-256 of the key's secret under the gateway's pepper.
    pub secret_hash: Vec<u8>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// Set with `revoked_at`: the key is accepted until then.
    pub grace_until: Option<i64>,
}

/// Who did what, written with the change it describes. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub actor: String,
    pub action: String,
    pub target: String,
    /// The site the change concerns (also for key events, whose target is the key), so a
    /// site's history can be listed in one query.
    pub site_id: Option<String>,
    pub request_id: Option<String>,
    pub detail: Option<String>,
}

/// What an admin API token may do: `read` (GET) or `write` (everything).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminScope {
    Read,
    Write,
}

impl AdminScope {
    pub fn as_str(self) -> &'static str {
        match self {
            AdminScope::Read => "read",
            AdminScope::Write => "write",
        }
    }
}

impl std::str::FromStr for AdminScope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read" => Ok(AdminScope::Read),
            "write" => Ok(AdminScope::Write),
            other => Err(format!("unknown admin token scope {other:?} (read, write)")),
        }
    }
}

/// An admin API token as stored: only an argon2id hash (PHC string) of its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminTokenRecord {
    /// Public part of the token (`wpgat_<id>_<secret>`): finds the record.
    pub id: String,
    pub label: Option<String>,
    pub scope: AdminScope,
    pub secret_hash: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: i64,
    pub at: i64,
    pub entry: AuditEntry,
}

/// What a committed write touched: the cache entry every replica must forget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    Site,
    ApiKey,
    AdminToken,
    Setting,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Site => "site",
            ChangeKind::ApiKey => "api_key",
            ChangeKind::AdminToken => "admin_token",
            ChangeKind::Setting => "setting",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "site" => ChangeKind::Site,
            "api_key" => ChangeKind::ApiKey,
            "admin_token" => ChangeKind::AdminToken,
            "setting" => ChangeKind::Setting,
            _ => return None,
        })
    }
}

/// One row of the change log: every write appends one per record it touched, in the
/// same transaction, so `seq` order is commit order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub seq: i64,
    pub kind: ChangeKind,
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangesSince {
    /// Oldest first.
    pub changes: Vec<Change>,
    /// False when changes after the asked-for `seq` were already pruned: the reader
    /// must forget everything it caches.
    pub complete: bool,
}

/// What a backend that pushes changes (PostgreSQL LISTEN/NOTIFY) tells its listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeEvent {
    Changed(Change),
    /// The listening connection was (re)established: notifications may have been
    /// missed while it was down, so read the change log now.
    Connected,
    Disconnected,
}

/// The kind tags of [`SealedSlot`] in the order `sealed_not_by` reads them: site
/// credentials, site JWT secrets, settings (each by id).
pub const SEALED_SLOT_KINDS: [&str; 3] = ["c", "j", "s"];

/// `Store::sealed_not_by` for every backend: reads slot kind by kind from the cursor,
/// one index range each (not a sorted union of everything, so a batch costs its own
/// size whatever the fleet's). `fetch(kind, after_id, want)` returns up to `want`
/// `(id, sealed)` pairs of that kind after `after_id`, in id order, not sealed with the
/// key id being rotated away from.
pub(crate) async fn sealed_by_kinds<F, Fut>(
    after: Option<&SealedSlot>,
    limit: u32,
    mut fetch: F,
) -> Result<Vec<SealedValue>, StoreError>
where
    F: FnMut(&'static str, String, i64) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<(String, String)>, StoreError>>,
{
    let (from_kind, from_id) = after.map_or(("c", ""), SealedSlot::position);
    let mut out = Vec::new();
    for kind in SEALED_SLOT_KINDS.iter().skip_while(|k| **k != from_kind) {
        let want = i64::from(limit) - out.len() as i64;
        if want <= 0 {
            break;
        }
        let after_id = if *kind == from_kind { from_id } else { "" };
        for (id, sealed) in fetch(kind, after_id.to_string(), want).await? {
            out.push(SealedValue {
                slot: SealedSlot::at(kind, id),
                sealed,
            });
        }
    }
    Ok(out)
}

/// Where a sealed value lives, which names the place it is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SealedSlot {
    /// `sites.credential_sealed` of the site.
    SiteCredential(String),
    /// `sites.jwt_secret_sealed` of the site.
    SiteJwtSecret(String),
    /// `settings.value` of the named setting.
    Setting(String),
}

impl SealedSlot {
    /// The place the value is sealed for (its associated data).
    pub fn place(&self) -> crate::crypto::Place {
        match self {
            SealedSlot::SiteCredential(id) => {
                crate::crypto::Place::site(id, UPSTREAM_CREDENTIAL_FIELD)
            }
            SealedSlot::SiteJwtSecret(id) => crate::crypto::Place::site(id, JWT_SECRET_FIELD),
            SealedSlot::Setting(name) => crate::crypto::Place::global(name),
        }
    }

    /// The change a rewrite of this slot makes (what caches must forget).
    /// The slot of kind tag `kind` (one of [`SEALED_SLOT_KINDS`]) and `id`.
    pub fn at(kind: &str, id: String) -> Self {
        match kind {
            "c" => SealedSlot::SiteCredential(id),
            "j" => SealedSlot::SiteJwtSecret(id),
            _ => SealedSlot::Setting(id),
        }
    }

    /// The slot's position in the order `sealed_not_by` reads: kind tag, then id.
    pub fn position(&self) -> (&'static str, &str) {
        match self {
            SealedSlot::SiteCredential(id) => ("c", id),
            SealedSlot::SiteJwtSecret(id) => ("j", id),
            SealedSlot::Setting(name) => ("s", name),
        }
    }

    pub fn change(&self) -> (ChangeKind, &str) {
        match self {
            SealedSlot::SiteCredential(id) | SealedSlot::SiteJwtSecret(id) => {
                (ChangeKind::Site, id)
            }
            SealedSlot::Setting(name) => (ChangeKind::Setting, name),
        }
    }
}

impl std::fmt::Display for SealedSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SealedSlot::SiteCredential(id) => write!(f, "site {id} upstream credential"),
            SealedSlot::SiteJwtSecret(id) => write!(f, "site {id} JWT secret"),
            SealedSlot::Setting(name) => write!(f, "setting {name}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedValue {
    pub slot: SealedSlot,
    pub sealed: String,
}

/// One re-seal of a rewrap batch: replaces `old.sealed` with `new_sealed` only if the
/// slot still holds `old.sealed` (a concurrent write wins and is left alone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reseal {
    pub old: SealedValue,
    pub new_sealed: String,
}

/// How many records of each kind a store holds (`wpgate store migrate`: the target must
/// be empty, and the copy must match the source).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RecordCounts {
    pub sites: u64,
    pub api_keys: u64,
    pub admin_tokens: u64,
    pub settings: u64,
    pub audit: u64,
}

impl RecordCounts {
    pub fn is_empty(&self) -> bool {
        *self == RecordCounts::default()
    }
}

impl std::fmt::Display for RecordCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} sites, {} API keys, {} admin tokens, {} settings, {} audit entries",
            self.sites, self.api_keys, self.admin_tokens, self.settings, self.audit
        )
    }
}

/// Records copied verbatim from another store by [`Store::import`]: ids, versions,
/// timestamps and sealed text exactly as they were (sealed values are never opened).
#[derive(Debug, Clone, Default)]
pub struct ImportBatch {
    /// `(name, value)`, values as stored.
    pub settings: Vec<(String, String)>,
    pub admin_tokens: Vec<AdminTokenRecord>,
    pub sites: Vec<SiteRecord>,
    /// Their sites must be in this batch or already imported.
    pub api_keys: Vec<ApiKeyRecord>,
    /// Keeps each record's `id` and `at`.
    pub audit: Vec<AuditRecord>,
}

impl ImportBatch {
    pub fn len(&self) -> usize {
        self.settings.len()
            + self.admin_tokens.len()
            + self.sites.len()
            + self.api_keys.len()
            + self.audit.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Checks the store answers.
    async fn ping(&self) -> Result<(), StoreError>;

    async fn get_site(&self, id: &str) -> Result<Option<SiteRecord>, StoreError>;
    /// Sites ordered by id, starting after `after`.
    async fn list_sites(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<SiteRecord>, StoreError>;
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

    /// Newest first, optionally only the entries about one site (its keys included).
    async fn list_audit(
        &self,
        site_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError>;

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

/// Logs one store query at debug level (target `wpgate::store`): how single-flight and
/// caching are observed. Only ids, never values.
pub(crate) fn trace_query(op: &'static str, id: &str) {
    tracing::debug!(target: "wpgate::store", op, id, "store query");
}
