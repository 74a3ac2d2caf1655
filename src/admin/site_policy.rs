//! `/admin/v1/sites/{id}/auth` (how clients authenticate to a site) and
//! `/admin/v1/sites/{id}/health-settings` (what its health check requires): the CLI's
//! `site set-auth` and `site set-health`.

use super::context::Caller;
use super::extract::{present, ApiJson, SitePath};
use super::openapi::ErrorEnvelope;
use super::respond::{json_reply, ApiError};
use super::sites::SecretText;
use super::state::AdminState;
use super::views::SiteView;
use crate::auth::policy::{AuthPolicy, JwtPolicy, Method};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use utoipa::ToSchema;

/// A site's whole client authentication policy (replaces the one it has).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthBody {
    /// Accepted methods: `api_key`, `jwt` (at least one).
    #[schema(min_items = 1)]
    methods: Vec<Method>,
    /// JWT settings; required when `methods` holds `jwt`.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    jwt: Option<JwtPolicy>,
    /// The HMAC secret for HS* algorithms (write-only; never returned). Without it, a
    /// site that already has one keeps it.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = super::schema::secret)]
    jwt_secret: Option<SecretText>,
}

/// Set how clients authenticate to a site (replaces its whole auth policy).
#[utoipa::path(
    put,
    path = "/admin/v1/sites/{id}/auth",
    tag = "sites",
    params(SitePath),
    request_body = AuthBody,
    responses(
        (status = 200, body = SiteView),
        (status = 404, body = ErrorEnvelope),
    )
)]
pub async fn set_auth(
    State(state): State<AdminState>,
    caller: Caller,
    SitePath { id }: SitePath,
    ApiJson(body): ApiJson<AuthBody>,
) -> Result<Response, ApiError> {
    let policy = AuthPolicy {
        methods: body.methods,
        jwt: body.jwt,
    };
    let secret = body.jwt_secret.map(SecretText::into_secret);
    let record = state
        .fleet
        .set_auth_policy(&id, &policy, secret, &caller.actor)
        .await?;
    Ok(json_reply(StatusCode::OK, &SiteView::from(&record)))
}

/// A site's health settings (replaces them).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthSettingsBody {
    /// REST namespaces the site must offer, e.g. `myplugin/v1`: `[A-Za-z0-9/._-]`, 1-128
    /// characters each.
    #[schema(schema_with = super::schema::namespaces)]
    required_namespaces: Vec<String>,
    /// Answer 503 `site.unavailable` at once while the health check finds the site
    /// unreachable.
    fail_fast: bool,
}

/// Set a site's health settings: REST namespaces it must offer, and whether proxy
/// requests fail fast while it is unreachable.
#[utoipa::path(
    put,
    path = "/admin/v1/sites/{id}/health-settings",
    tag = "health",
    params(SitePath),
    request_body = HealthSettingsBody,
    responses(
        (status = 200, body = SiteView),
        (status = 404, body = ErrorEnvelope),
    )
)]
pub async fn set_health_settings(
    State(state): State<AdminState>,
    caller: Caller,
    SitePath { id }: SitePath,
    ApiJson(body): ApiJson<HealthSettingsBody>,
) -> Result<Response, ApiError> {
    let record = state
        .fleet
        .set_health(&id, body.required_namespaces, body.fail_fast, &caller.actor)
        .await?;
    Ok(json_reply(StatusCode::OK, &SiteView::from(&record)))
}
