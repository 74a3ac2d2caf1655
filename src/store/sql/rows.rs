//! Rows as the shared queries read them, and their records. API keys and audit
//! entries are read straight into their records (they are their rows).

use crate::store::{
    AdminTokenRecord, Change, ChangeKind, RecordCounts, SiteRecord, StoreError, StoredCredential,
};

/// A `sites` row; lists as JSON array text (see `Dialect::array_read`).
#[derive(sqlx::FromRow)]
pub struct SiteRow {
    id: String,
    name: String,
    upstream_url: String,
    enabled: bool,
    credential_kind: String,
    credential_username: Option<String>,
    credential_sealed: Option<String>,
    auth_policy: Option<String>,
    jwt_secret_sealed: Option<String>,
    required_namespaces: Option<String>,
    health_fail_fast: bool,
    allowed_paths: Option<String>,
    allowed_origins: Option<String>,
    created_at: i64,
    updated_at: i64,
    version: i64,
}

impl TryFrom<SiteRow> for SiteRecord {
    type Error = StoreError;
    fn try_from(row: SiteRow) -> Result<Self, StoreError> {
        Ok(SiteRecord {
            id: row.id,
            name: row.name,
            upstream_url: row.upstream_url,
            enabled: row.enabled,
            credential: StoredCredential {
                kind: row.credential_kind.parse().map_err(StoreError::Corrupt)?,
                username: row.credential_username,
                sealed_secret: row.credential_sealed,
            },
            auth_policy: row.auth_policy,
            jwt_secret_sealed: row.jwt_secret_sealed,
            required_namespaces: list(row.required_namespaces, "required_namespaces")?,
            health_fail_fast: row.health_fail_fast,
            allowed_paths: list(row.allowed_paths, "allowed_paths")?,
            allowed_origins: list(row.allowed_origins, "allowed_origins")?,
            created_at: row.created_at,
            updated_at: row.updated_at,
            version: row.version,
        })
    }
}

/// A list column as read: JSON array text, NULL for none.
fn list(text: Option<String>, column: &str) -> Result<Vec<String>, StoreError> {
    match text {
        Some(text) => {
            serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
        }
        None => Ok(Vec::new()),
    }
}

/// A list as stored: JSON array text, NULL for none.
fn list_json(items: &[String]) -> Option<String> {
    (!items.is_empty()).then(|| serde_json::to_string(items).unwrap_or_default())
}

/// A site's list columns as the shared statements bind them.
pub struct SiteLists {
    pub namespaces: Option<String>,
    pub allowed_paths: Option<String>,
    pub allowed_origins: Option<String>,
}

impl SiteLists {
    pub fn of(site: &SiteRecord) -> Self {
        SiteLists {
            namespaces: list_json(&site.required_namespaces),
            allowed_paths: list_json(&site.allowed_paths),
            allowed_origins: list_json(&site.allowed_origins),
        }
    }
}

/// A site's allowed origins as [`crate::store::Store::site_origins`] reads them.
#[derive(sqlx::FromRow)]
pub struct SiteOriginsRow {
    id: String,
    allowed_origins: Option<String>,
}

impl TryFrom<SiteOriginsRow> for (String, Vec<String>) {
    type Error = StoreError;
    fn try_from(row: SiteOriginsRow) -> Result<Self, StoreError> {
        let origins = list(row.allowed_origins, "allowed_origins")?;
        Ok((row.id, origins))
    }
}

#[derive(sqlx::FromRow)]
pub struct AdminTokenRow {
    id: String,
    label: Option<String>,
    scope: String,
    secret_hash: String,
    created_at: i64,
    revoked_at: Option<i64>,
    last_used_at: Option<i64>,
}

impl TryFrom<AdminTokenRow> for AdminTokenRecord {
    type Error = StoreError;
    fn try_from(row: AdminTokenRow) -> Result<Self, StoreError> {
        Ok(AdminTokenRecord {
            id: row.id,
            label: row.label,
            scope: row.scope.parse().map_err(StoreError::Corrupt)?,
            secret_hash: row.secret_hash,
            created_at: row.created_at,
            revoked_at: row.revoked_at,
            last_used_at: row.last_used_at,
        })
    }
}

/// A change-log row with the oldest `seq` still kept.
#[derive(sqlx::FromRow)]
pub struct ChangeRow {
    seq: i64,
    kind: String,
    id: String,
    pub oldest: Option<i64>,
}

impl TryFrom<ChangeRow> for Change {
    type Error = StoreError;
    fn try_from(row: ChangeRow) -> Result<Self, StoreError> {
        Ok(Change {
            seq: row.seq,
            kind: ChangeKind::parse(&row.kind)
                .ok_or_else(|| StoreError::Corrupt(format!("change kind {:?}", row.kind)))?,
            id: row.id,
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct CountsRow {
    sites: i64,
    api_keys: i64,
    admin_tokens: i64,
    settings: i64,
    audit: i64,
}

impl From<CountsRow> for RecordCounts {
    fn from(row: CountsRow) -> Self {
        let n = |v: i64| u64::try_from(v).unwrap_or_default();
        RecordCounts {
            sites: n(row.sites),
            api_keys: n(row.api_keys),
            admin_tokens: n(row.admin_tokens),
            settings: n(row.settings),
            audit: n(row.audit),
        }
    }
}

/// Converts every row, failing on the first that does not convert.
pub fn records<R, T>(rows: Vec<R>) -> Result<Vec<T>, StoreError>
where
    T: TryFrom<R, Error = StoreError>,
{
    rows.into_iter().map(T::try_from).collect()
}
