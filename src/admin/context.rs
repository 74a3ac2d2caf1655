//! Every admin API request's context: an X-Request-ID (a sane incoming one is kept),
//! one log line, the error body rendered with the request id, and the bearer token
//! check. Every route needs `Authorization: Bearer wpgat_...`: GET needs a `read` or
//! `write` token, anything else a `write` token. There is no other way in.
//!
//! The client of a token check is the TCP peer: the admin listener is private, and no
//! X-Forwarded-For is believed on it. Failed checks are limited per client, audited
//! and counted (`super::failures`).

use super::respond::{ApiError, ErrorInfo};
use super::state::AdminState;
use super::token::{AdminIdentity, Checked};
use crate::error::{error_body_with, ErrorCode};
use crate::fleet::Actor;
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The request id of an admin API request (kept from X-Request-ID or minted).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Who made the request, set by `authenticate` on the response for the log line.
#[derive(Debug, Clone)]
struct LoggedActor(String);

pub(super) async fn request_context(mut req: Request, next: Next) -> Response {
    let request_id = crate::proxy::request_id::take_or_mint(req.headers());
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let mut resp = next.run(req).await;
    if let Some(err) = resp.extensions_mut().remove::<ErrorInfo>() {
        let body = error_body_with(err.code, &err.message, &request_id);
        resp.headers_mut().remove(header::CONTENT_LENGTH);
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        *resp.body_mut() = Body::from(body);
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut()
            .insert(crate::proxy::request_id::HEADER, v);
    }
    let actor = resp.extensions().get::<LoggedActor>().map(|a| a.0.clone());
    // Never the Authorization header, the query or the body.
    tracing::info!(
        target: "wpgate::admin",
        request_id = %request_id,
        method = %method,
        path = %path,
        status = resp.status().as_u16(),
        actor = actor.as_deref().unwrap_or("-"),
        "admin request"
    );
    resp
}

/// The token from `Authorization: Bearer <token>` (exactly one header).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(v), None) = (values.next(), values.next()) else {
        return None;
    };
    let v = v.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// The address of the peer, as the listener recorded it. A request that reaches the
/// router without one (only in tests that call it directly) counts as `0.0.0.0`: one
/// shared budget, never none.
fn client_ip(req: &Request) -> IpAddr {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

fn request_id(req: &Request) -> Option<String> {
    req.extensions().get::<RequestId>().map(|r| r.0.clone())
}

pub(super) async fn authenticate(
    State(state): State<AdminState>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(token) = bearer(req.headers()) else {
        return ApiError::new(ErrorCode::AdminUnauthorized).into_response();
    };
    // A token verified within the last minute passes without a check, so a client over
    // the failure limit (e.g. another process on the same loopback address) still gets
    // in with a token it used just before: only the exact valid token hits this cache.
    let identity = match state.tokens.remembered(token).await {
        Some(identity) => identity,
        None => match check_token(&state, client_ip(&req), request_id(&req), token).await {
            Ok(identity) => identity,
            Err(resp) => return resp,
        },
    };
    let logged = LoggedActor(identity.actor_name());
    // Default-deny: only GET and HEAD are reads; any other method changes something.
    let read_only = matches!(*req.method(), Method::GET | Method::HEAD);
    let mut resp = if read_only || identity.can_write() {
        req.extensions_mut().insert(identity);
        next.run(req).await
    } else {
        ApiError::with(
            ErrorCode::AdminForbidden,
            "this token has scope read: changes need a write token",
        )
        .into_response()
    };
    resp.extensions_mut().insert(logged);
    resp
}

/// Checks a token that is not remembered, within the client's failure limit.
async fn check_token(
    state: &AdminState,
    client: IpAddr,
    request_id: Option<String>,
    token: &str,
) -> Result<AdminIdentity, Response> {
    let failures = &state.failures;
    // Over the limit: refused at once, without waiting for a turn.
    if let Some(retry_after) = failures.retry_after(client) {
        return Err(rate_limited(state, retry_after));
    }
    let _turn = failures.turn(client).await;
    // While this request waited, another may have verified the same token, or failed
    // and taken the client over the limit.
    if let Some(identity) = state.tokens.remembered(token).await {
        return Ok(identity);
    }
    if let Some(retry_after) = failures.retry_after(client) {
        return Err(rate_limited(state, retry_after));
    }
    match state.tokens.authenticate(state.fleet.store(), token).await {
        Ok(Checked::Accepted(identity)) => Ok(identity),
        Ok(Checked::Refused { reason, token_id }) => {
            failures.failed(
                &state.fleet,
                client,
                reason,
                token_id.as_deref(),
                request_id.as_deref(),
            );
            Err(ApiError::new(ErrorCode::AdminUnauthorized).into_response())
        }
        Err(e) => Err(ApiError::from(e).into_response()),
    }
}

/// 429 `admin.rate_limited` with `Retry-After`, counted.
fn rate_limited(state: &AdminState, retry_after: u64) -> Response {
    state.failures.limited(&state.fleet);
    let mut resp = ApiError::new(ErrorCode::AdminRateLimited).into_response();
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    resp
}

/// The authenticated caller, as the audit log names it.
pub struct Caller {
    pub identity: AdminIdentity,
    pub actor: Actor,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let identity = parts
            .extensions
            .get::<AdminIdentity>()
            .cloned()
            .ok_or_else(|| ApiError::new(ErrorCode::AdminUnauthorized))?;
        let request_id = parts.extensions.get::<RequestId>().map(|r| r.0.clone());
        Ok(Caller {
            actor: Actor {
                name: identity.actor_name(),
                request_id,
            },
            identity,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, "bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer a".parse().unwrap());
        h.append(header::AUTHORIZATION, "Bearer b".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }
}
