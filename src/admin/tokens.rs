//! `/admin/v1/tokens`: the admin API's own bearer tokens (the CLI's `admin token ...`).
//! A token's secret is shown once, in the answer that creates it.

use super::context::Caller;
use super::extract::ApiJson;
use super::openapi::ErrorEnvelope;
use super::respond::{json_reply, ApiError};
use super::state::AdminState;
use super::token::{is_token_id, TokenError};
use super::views::AdminTokenView;
use crate::error::ErrorCode;
use crate::store::AdminScope;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// What a token may do.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScopeBody {
    /// Read sites, keys, health and the audit log.
    Read,
    /// Everything, including creating and revoking tokens.
    Write,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    scope: ScopeBody,
    /// Who the token is for; part of the audit actor (`admin:<label>`): 1-64 characters
    /// of `[A-Za-z0-9._@:-]`.
    #[serde(default, deserialize_with = "super::extract::present")]
    #[schema(pattern = "^[A-Za-z0-9._@:-]{1,64}$", nullable = false)]
    label: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<AdminTokenView>,
}

/// A token just created: `token` is the whole bearer token, shown only this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    pub token: String,
    #[serde(flatten)]
    pub record: AdminTokenView,
}

/// The `{token_id}` of a token route: 12 characters of `[a-z0-9]`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TokenIdPath {
    /// Token id, the part after `wpgat_`
    #[param(schema_with = super::schema::token_id, required = true)]
    #[allow(dead_code)]
    token_id: String,
}

/// The checked `{token_id}` of a request.
pub struct TokenId(String);

impl<S: Send + Sync> FromRequestParts<S> for TokenId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::invalid(format!("path: {}", e.body_text())))?;
        if !is_token_id(&raw) {
            return Err(ApiError::invalid(
                "token_id: 12 characters of [a-z0-9], the part after wpgat_",
            ));
        }
        Ok(TokenId(raw))
    }
}

fn token_error(e: TokenError) -> ApiError {
    match e {
        TokenError::Store(e) => e.into(),
        TokenError::Invalid(message) => ApiError::invalid(message),
        TokenError::Hash(_) => ApiError::new(ErrorCode::Internal),
    }
}

/// List the admin tokens, revoked ones included, oldest first (never a secret or hash).
#[utoipa::path(
    get,
    path = "/admin/v1/tokens",
    tag = "tokens",
    responses(
        (status = 200, body = TokenList),
    )
)]
pub async fn list_tokens(State(state): State<AdminState>) -> Result<Response, ApiError> {
    let all = state.fleet.store().list_admin_tokens().await?;
    Ok(json_reply(
        StatusCode::OK,
        &TokenList {
            tokens: all.iter().map(AdminTokenView::from).collect(),
        },
    ))
}

/// Create an admin token. The answer holds the whole token: the only time it is shown.
#[utoipa::path(
    post,
    path = "/admin/v1/tokens",
    tag = "tokens",
    request_body = CreateToken,
    responses(
        (status = 201, body = CreatedToken),
    )
)]
pub async fn create_token(
    State(state): State<AdminState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateToken>,
) -> Result<Response, ApiError> {
    let scope = match body.scope {
        ScopeBody::Read => AdminScope::Read,
        ScopeBody::Write => AdminScope::Write,
    };
    let (record, token) = state
        .tokens
        .create(state.fleet.store(), scope, body.label, &caller.actor)
        .await
        .map_err(token_error)?;
    let created = CreatedToken {
        token: token.expose_str().unwrap_or_default().to_string(),
        record: AdminTokenView::from(&record),
    };
    let mut resp = json_reply(StatusCode::CREATED, &created);
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// Revoke an admin token: every gateway on the store refuses it within its change-log
/// poll (this one at once).
#[utoipa::path(
    post,
    path = "/admin/v1/tokens/{token_id}/revoke",
    tag = "tokens",
    params(TokenIdPath),
    responses(
        (status = 200, body = AdminTokenView),
        (status = 404, body = ErrorEnvelope),
    )
)]
pub async fn revoke_token(
    State(state): State<AdminState>,
    caller: Caller,
    TokenId(id): TokenId,
) -> Result<Response, ApiError> {
    let record = state
        .tokens
        .revoke(state.fleet.store(), &id, &caller.actor)
        .await
        .map_err(token_error)?;
    Ok(json_reply(StatusCode::OK, &AdminTokenView::from(&record)))
}
