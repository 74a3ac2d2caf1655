//! The records the store keeps and the values its calls take and return.

use crate::crypto::Place;
use crate::site::{CredentialKind, InvalidUpstream, UpstreamTarget};

/// A site's upstream credential as stored: its secret only ever sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCredential {
    pub kind: CredentialKind,
    /// The WordPress user name (`app_password`) or the header name (`header`).
    pub username: Option<String>,
    /// Sealed text (see `crypto`), bound to the site and the origin of its upstream
    /// ([`upstream_credential_place`]).
    pub sealed_secret: Option<String>,
}

/// The field name a site's upstream credential is sealed under.
pub const UPSTREAM_CREDENTIAL_FIELD: &str = "upstream_credential";

/// The place a site's upstream credential is sealed for: the site and the origin of its
/// upstream, so the credential opens for no other site and no other host.
pub fn upstream_credential_place(site_id: &str, upstream: &UpstreamTarget) -> Place {
    Place::site_origin(site_id, UPSTREAM_CREDENTIAL_FIELD, &upstream.origin)
}
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
    /// Path prefixes forwarded besides the REST API (`site::AllowPath` text); empty:
    /// the REST API only.
    pub allowed_paths: Vec<String>,
    /// Browser origins allowed to call the site (`site::AllowOrigin` text, normalised);
    /// empty: none (a request with an `Origin` header is refused).
    pub allowed_origins: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Bumped on every update; updates name the version they expect.
    pub version: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
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
    /// When a gateway last accepted the key, to the minute (written in batches by
    /// `fleet::key_use`, never by the request itself).
    pub last_used_at: Option<i64>,
    /// The secret this record (as cached) last accepted: the request path's shortcut
    /// past the HMAC (`auth::api_key::check`). Never stored, never printed.
    #[sqlx(skip)]
    pub verified: crate::secret::VerifiedMemo,
    /// The round of `fleet::key_use` this record (as cached) was last marked used in:
    /// later requests of the round skip the mark. Never stored.
    #[sqlx(skip)]
    pub marked: crate::fleet::key_use::MarkedIn,
}

/// Who did what, written with the change it describes. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
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

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditRecord {
    pub id: i64,
    pub at: i64,
    #[sqlx(flatten)]
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

    /// The change a rewrite of this slot makes (what caches must forget).
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
    /// For a site's upstream credential: the site's upstream URL as stored, read with
    /// the value (the credential is bound to its origin). `None` for other slots.
    pub upstream_url: Option<String>,
}

impl SealedValue {
    /// The place the value is sealed for (its associated data), by its slot and its
    /// format: an upstream credential in format `v2` is bound to its site's origin, one
    /// in format `v1` (sealed before origin binding) to its site only.
    pub fn place(&self) -> Result<Place, InvalidUpstream> {
        Ok(match &self.slot {
            SealedSlot::SiteCredential(id) => {
                if crate::crypto::sealed_format(&self.sealed) == Some("v1") {
                    Place::site(id, UPSTREAM_CREDENTIAL_FIELD)
                } else {
                    let url = self.upstream_url.as_deref().unwrap_or_default();
                    upstream_credential_place(id, &UpstreamTarget::parse(url)?)
                }
            }
            SealedSlot::SiteJwtSecret(id) => Place::site(id, JWT_SECRET_FIELD),
            SealedSlot::Setting(name) => Place::global(name),
        })
    }
}

/// One re-seal of a rewrap batch: replaces `old.sealed` with `new_sealed` only if the
/// slot still holds `old.sealed` (a concurrent write wins and is left alone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reseal {
    pub old: SealedValue,
    pub new_sealed: String,
}

/// One site written by [`crate::store::Store::write_sites`] (bulk onboarding), with its
/// audit entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteWrite {
    /// A new site (`AlreadyExists` if its id is taken).
    Create { site: SiteRecord, audit: AuditEntry },
    /// Replaces the site if its stored version is `site.version` (as
    /// [`crate::store::Store::update_site`]).
    Update { site: SiteRecord, audit: AuditEntry },
}

impl SiteWrite {
    pub fn site(&self) -> &SiteRecord {
        match self {
            SiteWrite::Create { site, .. } | SiteWrite::Update { site, .. } => site,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_name_their_place_by_slot_and_format() {
        let (k, _) = crate::crypto::Keyring::generate();
        let upstream = UpstreamTarget::parse("https://Shop.example.com/blog").unwrap();
        let v2 = k
            .seal(&upstream_credential_place("shop", &upstream), b"secret")
            .unwrap();
        let v1 = k
            .seal(&Place::site("shop", UPSTREAM_CREDENTIAL_FIELD), b"secret")
            .unwrap();
        let value = |sealed: &str, url: &str| SealedValue {
            slot: SealedSlot::SiteCredential("shop".into()),
            sealed: sealed.to_string(),
            upstream_url: Some(url.into()),
        };
        // A v2 credential opens with the place of its site's origin, whatever the path.
        let place = value(&v2, "https://shop.example.com:443/other")
            .place()
            .unwrap();
        assert_eq!(k.open(&place, &v2).unwrap().expose(), b"secret");
        // Not when the site's upstream is now another origin.
        let moved = value(&v2, "https://evil.example.com/blog").place().unwrap();
        assert!(k.open(&moved, &v2).is_err());
        // A v1 credential names its site only (what a rewrap or re-seal opens it with).
        let place = value(&v1, "https://evil.example.com").place().unwrap();
        assert_eq!(k.open(&place, &v1).unwrap().expose(), b"secret");
        assert!(value(&v2, "not a url").place().is_err());
    }
}
