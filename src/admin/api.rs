//! The admin API under `/admin/v1`: one axum router, every route documented in the
//! OpenAPI description it serves at `/admin/v1/openapi.json` (both come from the same
//! `routes!` calls, so they cannot drift).
//!
//! Every request gets an X-Request-ID (a sane incoming one is kept). Every route needs
//! `Authorization: Bearer wpgat_...`: GET needs a `read` or `write` token, anything else
//! a `write` token. There is no other way in. Errors are
//! `{"error":{"code","message","request_id"}}` with the codes of `crate::error`.

use super::token::AdminIdentity;
use super::views::CredentialView;
use super::{health, keys, sites, AdminState};
use crate::error::{error_body_with, ErrorCode};
use crate::fleet::{Actor, FleetError};
use crate::store::StoreError;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json, Router};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::OpenApi as OpenApiDoc;
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Request bodies larger than this are refused with 413 `admin.body_too_large`.
pub const BODY_LIMIT: usize = 64 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "wpgate admin API",
        description = "Manage the sites, upstream credentials and API keys of a wpgate \
            gateway. Authenticate with `Authorization: Bearer <admin token>` (create one \
            with `wpgate admin token create --scope read|write`); GET needs a read or \
            write token, every other method a write token. Secrets are write-only."
    ),
    modifiers(&BearerToken),
    security(("admin_token" = [])),
    components(schemas(ErrorEnvelope, CredentialView)),
    tags(
        (name = "sites", description = "WordPress sites and their upstream credentials"),
        (name = "keys", description = "Client API keys"),
        (name = "health", description = "Site health: the latest check, or one now"),
        (name = "audit", description = "Who changed what"),
        (name = "operations", description = "Reload the configuration and keyring; keyring status"),
        (name = "meta", description = "This description"),
    )
)]
struct ApiDoc;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The documented routes. Every route of the admin API is added here and only here.
fn documented() -> OpenApiRouter<AdminState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(sites::list_sites, sites::create_site))
        .routes(routes!(
            sites::get_site,
            sites::update_site,
            sites::delete_site
        ))
        .routes(routes!(sites::enable_site))
        .routes(routes!(sites::disable_site))
        .routes(routes!(sites::set_credential))
        .routes(routes!(keys::issue_key, keys::list_keys))
        .routes(routes!(keys::revoke_key))
        .routes(routes!(keys::list_audit))
        .routes(routes!(health::site_health))
        .routes(routes!(health::test_site))
        .routes(routes!(super::ops::reload))
        .routes(routes!(super::ops::keyring_status))
        .routes(routes!(openapi_json))
}

/// The OpenAPI description of the admin API.
pub fn openapi() -> OpenApiDoc {
    documented().into_openapi()
}

/// The `/admin/v1` router, to merge into the admin listener's.
pub fn router(state: AdminState) -> Router {
    let (routes, doc) = documented().split_for_parts();
    routes
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .fallback(not_found)
        .layer(Extension(Arc::new(doc)))
        .layer(middleware::from_fn(request_context))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

// ---- request context, errors ----

/// The request id of an admin API request (kept from X-Request-ID or minted).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Set on an error response; the request-context layer renders it as the JSON body
/// (it knows the request id, the code that failed does not need to).
#[derive(Debug, Clone)]
struct ErrorInfo {
    code: ErrorCode,
    message: String,
}

/// Who made the request, set by `authenticate` on the response for the log line.
#[derive(Debug, Clone)]
struct LoggedActor(String);

async fn request_context(mut req: Request, next: Next) -> Response {
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

/// An admin API error: a code from the table in `crate::error` and a message that says
/// what to fix.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode) -> Self {
        ApiError {
            code,
            message: code.message().to_string(),
        }
    }

    pub fn with(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }

    /// 400 `admin.invalid_request` naming what is wrong.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::with(ErrorCode::AdminInvalidRequest, message)
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = status.into_response();
        if let Some(challenge) = self.code.www_authenticate() {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        resp.extensions_mut().insert(ErrorInfo {
            code: self.code,
            message: self.message,
        });
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => {
                Self::with(ErrorCode::AdminNotFound, format!("{what} does not exist"))
            }
            StoreError::AlreadyExists(what) => {
                Self::with(ErrorCode::AdminConflict, format!("{what} already exists"))
            }
            e @ StoreError::VersionConflict { .. } => {
                Self::with(ErrorCode::AdminVersionConflict, e.to_string())
            }
            StoreError::Unavailable(why) => {
                tracing::error!(target: "wpgate::admin", error = %why, "store unavailable");
                Self::new(ErrorCode::StoreUnavailable)
            }
            StoreError::Corrupt(why) => {
                tracing::error!(target: "wpgate::admin", error = %why, "store holds an invalid record");
                Self::new(ErrorCode::Internal)
            }
        }
    }
}

impl From<FleetError> for ApiError {
    fn from(e: FleetError) -> Self {
        match e {
            FleetError::Store(e) => e.into(),
            FleetError::SiteId(e) => Self::invalid(format!("id: {e}")),
            FleetError::Upstream(e) => Self::invalid(format!("upstream: {e}")),
            FleetError::Credential(e) => Self::invalid(format!("credential: {e}")),
            FleetError::Policy(e) => Self::invalid(format!("auth: {e}")),
            FleetError::Invalid(msg) => Self::invalid(msg),
            FleetError::Unconfirmed(msg) => Self::with(ErrorCode::AdminCredentialRejected, msg),
            e @ (FleetError::Keyring(_) | FleetError::Crypto(_)) => {
                tracing::error!(target: "wpgate::admin", error = %e, "keyring or sealing failed");
                Self::new(ErrorCode::Internal)
            }
        }
    }
}

/// The error body, for the OpenAPI description.
#[derive(Serialize, ToSchema)]
pub struct ErrorEnvelope {
    error: ErrorBodyDoc,
}

#[derive(Serialize, ToSchema)]
struct ErrorBodyDoc {
    /// Stable code, e.g. `admin.not_found`.
    code: String,
    message: String,
    request_id: String,
}

async fn not_found() -> ApiError {
    ApiError::with(ErrorCode::AdminNotFound, "no such admin API route")
}

// ---- authentication ----

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

async fn authenticate(State(state): State<AdminState>, mut req: Request, next: Next) -> Response {
    let Some(token) = bearer(req.headers()) else {
        return ApiError::new(ErrorCode::AdminUnauthorized).into_response();
    };
    let identity = match state.tokens.authenticate(state.fleet.store(), token).await {
        Ok(Some(identity)) => identity,
        Ok(None) => return ApiError::new(ErrorCode::AdminUnauthorized).into_response(),
        Err(e) => return ApiError::from(e).into_response(),
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

// ---- extractors with our error shape ----

/// A JSON body (an empty body reads as `{}`); errors are 400 `admin.invalid_request`
/// naming the field, or 413 `admin.body_too_large`.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(ErrorCode::AdminBodyTooLarge)
            } else {
                ApiError::invalid(format!("cannot read the body: {}", e.body_text()))
            }
        })?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        let de = &mut serde_json::Deserializer::from_slice(text);
        serde_path_to_error::deserialize(de)
            .map(ApiJson)
            .map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                if path == "." || path.is_empty() {
                    ApiError::invalid(format!("body: {inner}"))
                } else {
                    ApiError::invalid(format!("{path}: {inner}"))
                }
            })
    }
}

/// Query parameters; errors are 400 `admin.invalid_request`.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e| ApiError::invalid(format!("query: {}", e.body_text())))
    }
}

/// Path parameters; errors are 400 `admin.invalid_request`.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e| ApiError::invalid(format!("path: {}", e.body_text())))
    }
}

/// A JSON response with `status`.
pub fn json_reply<T: Serialize>(status: StatusCode, value: &T) -> Response {
    (status, Json(value)).into_response()
}

// ---- the description itself ----

/// This OpenAPI description (3.1).
#[utoipa::path(
    get,
    path = "/admin/v1/openapi.json",
    tag = "meta",
    responses(
        (status = 200, description = "The OpenAPI description", content_type = "application/json"),
        (status = 401, description = "No valid admin token", body = ErrorEnvelope),
    )
)]
async fn openapi_json(Extension(doc): Extension<Arc<OpenApiDoc>>) -> Response {
    Json(doc.as_ref()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    async fn state() -> (tempfile::TempDir, AdminState) {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::Config::load(&crate::config::LoadOptions {
            config_file: None,
            data_dir: Some(dir.path().join("data")),
        })
        .unwrap();
        let (fleet, _) = crate::fleet::Fleet::open(&config).await.unwrap();
        let state = AdminState {
            reloader: None,
            fleet: Arc::new(fleet),
            tokens: Arc::new(crate::admin::token::AdminTokens::new()),
            health: Arc::new(crate::health::HealthBoard::new()),
            health_client: None,
            health_timeout: std::time::Duration::from_secs(5),
        };
        (dir, state)
    }

    fn concrete(path: &str) -> String {
        path.replace("{id}", "shop")
            .replace("{key_id}", "abcdefghijkl")
    }

    #[tokio::test]
    async fn every_documented_route_is_served_and_authenticated() {
        let (_dir, state) = state().await;
        let app = router(state);
        let doc = serde_json::to_value(openapi()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        let mut seen = Vec::new();
        for (path, item) in paths {
            for method in item.as_object().unwrap().keys() {
                let m: Method = method.to_uppercase().parse().unwrap();
                let req = Request::builder()
                    .method(m.clone())
                    .uri(concrete(path))
                    .body(Body::empty())
                    .unwrap();
                let resp = app.clone().oneshot(req).await.unwrap();
                // 401, not 404/405: the router serves it, and only with a token.
                assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{m} {path}");
                assert!(resp.headers().contains_key("x-request-id"));
                seen.push(format!("{m} {path}"));
            }
        }
        for want in [
            "GET /admin/v1/sites",
            "POST /admin/v1/sites",
            "GET /admin/v1/sites/{id}",
            "PATCH /admin/v1/sites/{id}",
            "DELETE /admin/v1/sites/{id}",
            "POST /admin/v1/sites/{id}/enable",
            "POST /admin/v1/sites/{id}/disable",
            "PUT /admin/v1/sites/{id}/credential",
            "POST /admin/v1/sites/{id}/keys",
            "GET /admin/v1/sites/{id}/keys",
            "POST /admin/v1/keys/{key_id}/revoke",
            "GET /admin/v1/audit",
            "GET /admin/v1/sites/{id}/health",
            "POST /admin/v1/sites/{id}/test",
            "GET /admin/v1/openapi.json",
        ] {
            assert!(seen.iter().any(|s| s == want), "{want} is not documented");
        }
        // Anything else under /admin/v1 is not served at all.
        let req = Request::builder()
            .uri("/admin/v1/nope")
            .body(Body::empty())
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    }

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
