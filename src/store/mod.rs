//! The store: sites, API keys, the audit log and gateway settings behind one trait.
//! Every write is one transaction that also writes its audit record.

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
    pub request_id: Option<String>,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: i64,
    pub at: i64,
    pub entry: AuditEntry,
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

    /// Newest first, optionally only for one target.
    async fn list_audit(
        &self,
        target: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError>;

    async fn get_setting(&self, name: &str) -> Result<Option<String>, StoreError>;
    /// Stores `value` unless the setting exists; returns the value that is stored (so
    /// two processes that race to create it agree on one).
    async fn insert_setting_if_absent(&self, name: &str, value: &str)
        -> Result<String, StoreError>;
}

/// Opens (creating if needed) the store named by the configuration and migrates it.
pub async fn open(url: &StoreUrl) -> Result<Arc<dyn Store>, StoreError> {
    match url {
        StoreUrl::Sqlite(path) => Ok(Arc::new(sqlite::SqliteStore::open(path).await?)),
    }
}

/// Logs one store query at debug level (target `wpgate::store`): how single-flight and
/// caching are observed. Only ids, never values.
pub(crate) fn trace_query(op: &'static str, id: &str) {
    tracing::debug!(target: "wpgate::store", op, id, "store query");
}
