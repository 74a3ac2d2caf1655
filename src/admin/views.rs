//! What the admin API and the CLI's `--json` output show of stored records: the same
//! JSON for both, and never a secret (a credential shows its kind, user or header name,
//! and which keyring key seals it).

use crate::auth::policy::AuthPolicy;
use crate::site::CredentialKind;
use crate::store::{AdminTokenRecord, ApiKeyRecord, AuditRecord, SiteRecord};
use serde::Serialize;
use utoipa::ToSchema;

/// A site's upstream credential, without its secret.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CredentialView {
    /// `app_password`, `bearer`, `header` or `none`.
    #[schema(value_type = String)]
    pub kind: &'static str,
    /// The WordPress user (`app_password`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The header name (`header`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header_name: Option<String>,
    /// The keyring key the secret is sealed with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sealed_with: Option<String>,
}

/// A site's health-check settings.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HealthSettingsView {
    /// REST namespaces the health check requires in the site's index, e.g. `myplugin/v1`.
    pub required_namespaces: Vec<String>,
    /// Proxy requests get 503 `site.unavailable` at once while the site is unreachable.
    pub fail_fast: bool,
}

/// Which request paths are forwarded to a site.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RoutesView {
    /// Path prefixes forwarded besides the WordPress REST API (`/wp-json/...` and
    /// `/?rest_route=...`, always forwarded), e.g. `/xmlrpc.php`. Empty: the REST API
    /// only.
    pub allow_paths: Vec<String>,
}

/// Which browser origins may call a site (CORS).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CorsView {
    /// Origins, normalised as browsers send the `Origin` header (e.g.
    /// `https://app.example.com`). Empty: none; a request with an `Origin` header gets
    /// 403 `cors.origin_not_allowed`.
    pub allow_origins: Vec<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SiteView {
    pub id: String,
    pub name: String,
    /// Base URL of the WordPress site.
    pub upstream: String,
    pub enabled: bool,
    pub credential: CredentialView,
    pub health: HealthSettingsView,
    pub routes: RoutesView,
    pub cors: CorsView,
    /// The client authentication policy (`null`: API keys only).
    #[schema(value_type = Option<AuthPolicy>)]
    pub auth: Option<serde_json::Value>,
    /// RFC 3339.
    pub created_at: String,
    pub updated_at: String,
    /// Bumped on every change; the ETag is `"<version>"`.
    pub version: i64,
}

impl From<&SiteRecord> for SiteView {
    fn from(s: &SiteRecord) -> Self {
        let (username, header_name) = match s.credential.kind {
            CredentialKind::AppPassword => (s.credential.username.clone(), None),
            CredentialKind::Header => (None, s.credential.username.clone()),
            CredentialKind::Bearer | CredentialKind::None => (None, None),
        };
        SiteView {
            id: s.id.clone(),
            name: s.name.clone(),
            upstream: s.upstream_url.clone(),
            enabled: s.enabled,
            credential: CredentialView {
                kind: s.credential.kind.as_str(),
                username,
                header_name,
                sealed_with: s
                    .credential
                    .sealed_secret
                    .as_deref()
                    .and_then(crate::crypto::sealed_key_id)
                    .map(str::to_string),
            },
            auth: AuthPolicy::from_json(s.auth_policy.as_deref())
                .ok()
                .and_then(|p| serde_json::to_value(p).ok()),
            health: HealthSettingsView {
                required_namespaces: s.required_namespaces.clone(),
                fail_fast: s.health_fail_fast,
            },
            routes: RoutesView {
                allow_paths: s.allowed_paths.clone(),
            },
            cors: CorsView {
                allow_origins: s.allowed_origins.clone(),
            },
            created_at: crate::time::rfc3339(s.created_at),
            updated_at: crate::time::rfc3339(s.updated_at),
            version: s.version,
        }
    }
}

/// An API key, without its secret.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct KeyView {
    pub key_id: String,
    pub site_id: String,
    pub label: Option<String>,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    /// A revoked key is still accepted until then.
    pub grace_until: Option<String>,
    /// When a gateway last accepted the key, to the minute (gateways write it about
    /// once a minute, `keys.last_used_flush`); `null`: not used since.
    pub last_used_at: Option<String>,
}

impl From<&ApiKeyRecord> for KeyView {
    fn from(k: &ApiKeyRecord) -> Self {
        KeyView {
            key_id: k.key_id.clone(),
            site_id: k.site_id.clone(),
            label: k.label.clone(),
            created_at: crate::time::rfc3339(k.created_at),
            expires_at: k.expires_at.map(crate::time::rfc3339),
            revoked_at: k.revoked_at.map(crate::time::rfc3339),
            grace_until: k.grace_until.map(crate::time::rfc3339),
            last_used_at: k.last_used_at.map(crate::time::rfc3339),
        }
    }
}

/// A key just issued: the only time the whole key is shown.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IssuedKeyView {
    /// The whole key, `wpg_<key id>_<secret>`. Store it now: it is never shown again.
    pub key: String,
    #[serde(flatten)]
    pub record: KeyView,
}

/// A rotation: the new key (the only time it is shown) and the key it replaces.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RotatedKeyView {
    /// The whole new key, `wpg_<key id>_<secret>`. Store it now: it is never shown again.
    pub key: String,
    #[serde(flatten)]
    pub record: KeyView,
    /// The old key, revoked: accepted until its `grace_until`.
    pub replaces: KeyView,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditEntryView {
    pub id: i64,
    /// RFC 3339.
    pub at: String,
    /// `admin:<token label or id>`, `cli:<user>`, `client:<address>` for a refused
    /// admin token (`admin.auth_failed`), or `gateway:retention` for a key purged after
    /// `keys.retention` (`key.purge`).
    pub actor: String,
    /// e.g. `site.create`, `key.revoke`, `key.rotate`, `key.purge`.
    pub action: String,
    /// `site:<id>`, `key:<key id>`, `admin_token:<id>`.
    pub target: String,
    pub site_id: Option<String>,
    /// The X-Request-ID of the admin API call (none for the CLI).
    pub request_id: Option<String>,
    pub detail: Option<String>,
}

impl From<&AuditRecord> for AuditEntryView {
    fn from(r: &AuditRecord) -> Self {
        AuditEntryView {
            id: r.id,
            at: crate::time::rfc3339(r.at),
            actor: r.entry.actor.clone(),
            action: r.entry.action.clone(),
            target: r.entry.target.clone(),
            site_id: r.entry.site_id.clone(),
            request_id: r.entry.request_id.clone(),
            detail: r.entry.detail.clone(),
        }
    }
}

/// An admin token, without its secret or hash.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AdminTokenView {
    pub id: String,
    pub label: Option<String>,
    /// `read` or `write`.
    pub scope: &'static str,
    pub created_at: String,
    pub revoked_at: Option<String>,
    pub last_used_at: Option<String>,
}

impl From<&AdminTokenRecord> for AdminTokenView {
    fn from(t: &AdminTokenRecord) -> Self {
        AdminTokenView {
            id: t.id.clone(),
            label: t.label.clone(),
            scope: t.scope.as_str(),
            created_at: crate::time::rfc3339(t.created_at),
            revoked_at: t.revoked_at.map(crate::time::rfc3339),
            last_used_at: t.last_used_at.map(crate::time::rfc3339),
        }
    }
}
