//! `/admin/v1/sites/{id}/keys`, `/admin/v1/keys/{key_id}/revoke` and
//! `/admin/v1/keys/{key_id}/rotate`.

use super::context::Caller;
use super::extract::{present, ApiJson, KeyIdParam, KeyIdPath, SitePath};
use super::openapi::ErrorEnvelope;
use super::respond::{json_reply, ApiError};
use super::state::AdminState;
use super::views::{IssuedKeyView, KeyView, RotatedKeyView};
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use utoipa::ToSchema;

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueKey {
    /// A note for operators, e.g. who the key is for.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = super::schema::text)]
    label: Option<String>,
    /// Lifetime, e.g. `30d`, `12h` (default: no expiry).
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = super::schema::duration)]
    expires_in: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeKey {
    /// Keep accepting the key this much longer, e.g. `1h` (default: refused at once).
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = super::schema::duration)]
    grace: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    /// How long the old key keeps being accepted, e.g. `1h`; `0s` refuses it at once
    /// (default: `24h`).
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = super::schema::duration)]
    grace: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
}

/// A duration as the admin API takes it (`schema::DURATION`): 1-6 digits and a unit.
fn duration(field: &str, raw: &str) -> Result<Duration, ApiError> {
    let parsed = [("s", 1), ("m", 60), ("h", 3600), ("d", 86_400)]
        .into_iter()
        .find_map(|(unit, seconds)| {
            let digits = raw.strip_suffix(unit)?;
            let ok = (1..=6).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
            ok.then(|| digits.parse::<u64>().ok().map(|n| n * seconds))
                .flatten()
        });
    parsed.map(Duration::from_secs).ok_or_else(|| {
        ApiError::invalid(format!(
            "{field}: {raw:?} is not a duration: digits and a unit, s, m, h or d \
             (examples: 30d, 12h, 90s)"
        ))
    })
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
    params(KeyIdParam),
    request_body(content = Option<RevokeKey>, description = "Optional"),
    responses(
        (status = 200, body = KeyView),
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
    params(KeyIdParam),
    request_body(content = Option<RotateKey>, description = "Optional"),
    responses(
        (status = 201, body = RotatedKeyView),
        (status = 409, description = "The key is already revoked or has expired: issue a new one", body = ErrorEnvelope),
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
