//! `/admin/v1/sites/{id}/keys`, `/admin/v1/keys/{key_id}/revoke`,
//! `/admin/v1/keys/{key_id}/rotate` and `/admin/v1/audit`.

use super::context::Caller;
use super::extract::{page_limit, site_id, ApiJson, ApiQuery, KeyIdPath, SitePath};
use super::openapi::ErrorEnvelope;
use super::respond::{json_reply, ApiError};
use super::state::AdminState;
use super::views::{AuditEntryView, IssuedKeyView, KeyView, RotatedKeyView};
use crate::site::SiteId;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueKey {
    /// A note for operators, e.g. who the key is for.
    label: Option<String>,
    /// Lifetime, e.g. `30d`, `12h` (default: no expiry).
    expires_in: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeKey {
    /// Keep accepting the key this much longer, e.g. `1h` (default: refused at once).
    grace: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    /// How long the old key keeps being accepted, e.g. `1h`; `0s` refuses it at once
    /// (default: `24h`).
    grace: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only the entries about this site (its keys included).
    site: Option<String>,
    /// How many, newest first: 1-1000 (default 100).
    limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditList {
    pub entries: Vec<AuditEntryView>,
}

fn duration(field: &str, raw: &str) -> Result<Duration, ApiError> {
    humantime::parse_duration(raw)
        .map_err(|e| ApiError::invalid(format!("{field}: {e} (examples: 30d, 12h, 90s)")))
}

/// Issue an API key for a site. The answer holds the whole key: the only time it is shown.
#[utoipa::path(
    post,
    path = "/admin/v1/sites/{id}/keys",
    tag = "keys",
    params(SitePath),
    request_body(content = Option<IssueKey>, description = "Optional"),
    responses(
        (status = 201, body = IssuedKeyView),
        (status = 400, body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope),
    )
)]
pub async fn issue_key(
    State(state): State<AdminState>,
    caller: Caller,
    SitePath { id }: SitePath,
    ApiJson(body): ApiJson<IssueKey>,
) -> Result<Response, ApiError> {
    let expires_in = body
        .expires_in
        .as_deref()
        .map(|d| duration("expires_in", d))
        .transpose()?;
    let (record, key) = state
        .fleet
        .issue_key(&id, body.label, expires_in, &caller.actor)
        .await?;
    let view = IssuedKeyView {
        key: key.expose_str().unwrap_or_default().to_string(),
        record: KeyView::from(&record),
    };
    Ok(no_store(json_reply(StatusCode::CREATED, &view)))
}

/// A reply that holds a whole key: never kept by a cache.
fn no_store(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// List a site's API keys (never their secrets).
#[utoipa::path(
    get,
    path = "/admin/v1/sites/{id}/keys",
    tag = "keys",
    params(SitePath),
    responses(
        (status = 200, body = KeyList),
        (status = 401, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope),
    )
)]
pub async fn list_keys(
    State(state): State<AdminState>,
    SitePath { id }: SitePath,
) -> Result<Response, ApiError> {
    state.fleet.site(&id).await?;
    let keys = state.fleet.store().list_api_keys(id.as_str()).await?;
    Ok(json_reply(
        StatusCode::OK,
        &KeyList {
            keys: keys.iter().map(KeyView::from).collect(),
        },
    ))
}

/// Revoke a key: refused from now on, or after `grace`.
#[utoipa::path(
    post,
    path = "/admin/v1/keys/{key_id}/revoke",
    tag = "keys",
    params(("key_id" = String, Path, description = "Key id (the 12 characters after wpg_)")),
    request_body(content = Option<RevokeKey>, description = "Optional"),
    responses(
        (status = 200, body = KeyView),
        (status = 400, body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope),
    )
)]
pub async fn revoke_key(
    State(state): State<AdminState>,
    caller: Caller,
    KeyIdPath(key_id): KeyIdPath,
    ApiJson(body): ApiJson<RevokeKey>,
) -> Result<Response, ApiError> {
    let grace = body
        .grace
        .as_deref()
        .map(|g| duration("grace", g))
        .transpose()?;
    let record = state
        .fleet
        .revoke_key(&key_id, grace, &caller.actor)
        .await?;
    Ok(json_reply(StatusCode::OK, &KeyView::from(&record)))
}

/// Rotate a key in one audited step: issue its successor (same site, same label; a key
/// that expires gets the same lifetime from now) and revoke it, still accepted for
/// `grace`. The answer holds the new key: the only time it is shown. A key already
/// revoked or expired is not rotated (400): issue a new one.
#[utoipa::path(
    post,
    path = "/admin/v1/keys/{key_id}/rotate",
    tag = "keys",
    params(("key_id" = String, Path, description = "Key id (the 12 characters after wpg_)")),
    request_body(content = Option<RotateKey>, description = "Optional"),
    responses(
        (status = 201, body = RotatedKeyView),
        (status = 400, body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope),
    )
)]
pub async fn rotate_key(
    State(state): State<AdminState>,
    caller: Caller,
    KeyIdPath(key_id): KeyIdPath,
    ApiJson(body): ApiJson<RotateKey>,
) -> Result<Response, ApiError> {
    let grace = body
        .grace
        .as_deref()
        .map(|g| duration("grace", g))
        .transpose()?
        .unwrap_or(crate::fleet::DEFAULT_ROTATION_GRACE);
    let rotated = state
        .fleet
        .rotate_key(&key_id, grace, &caller.actor)
        .await?;
    let view = RotatedKeyView {
        key: rotated.key.expose_str().unwrap_or_default().to_string(),
        record: KeyView::from(&rotated.new),
        replaces: KeyView::from(&rotated.old),
    };
    Ok(no_store(json_reply(StatusCode::CREATED, &view)))
}

/// The audit log, newest first.
#[utoipa::path(
    get,
    path = "/admin/v1/audit",
    tag = "audit",
    params(AuditQuery),
    responses(
        (status = 200, body = AuditList),
        (status = 400, body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope),
    )
)]
pub async fn list_audit(
    State(state): State<AdminState>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Response, ApiError> {
    let limit = page_limit(q.limit)?;
    let site = q.site.as_deref().map(|s| site_id(s, "site")).transpose()?;
    let records = state
        .fleet
        .store()
        .list_audit(site.as_ref().map(SiteId::as_str), limit)
        .await?;
    Ok(json_reply(
        StatusCode::OK,
        &AuditList {
            entries: records.iter().map(AuditEntryView::from).collect(),
        },
    ))
}
