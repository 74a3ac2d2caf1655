//! The OpenAPI description's frame (title, security, tags), the error body as it
//! documents it (`respond` and the request-context layer write the real one), and the
//! route that serves it.

use super::views::CredentialView;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use std::sync::Arc;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::OpenApi as OpenApiDoc;
use utoipa::{Modify, OpenApi, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "wpgate admin API",
        description = "Manage the sites, upstream credentials and API keys of a wpgate \
            gateway. Authenticate with `Authorization: Bearer <admin token>` (create one \
            with `wpgate admin token create --scope read|write`); GET needs a read or \
            write token, every other method a write token. Secrets are write-only. \
            Failed token checks are limited per client address: past the limit, 429 \
            `admin.rate_limited` with `Retry-After`."
    ),
    modifiers(&BearerToken),
    security(("admin_token" = [])),
    components(schemas(ErrorEnvelope, CredentialView)),
    tags(
        (name = "sites", description = "WordPress sites: their upstream credentials, the \
            paths forwarded to them, the browser origins allowed to call them (CORS)"),
        (name = "keys", description = "Client API keys"),
        (name = "health", description = "Site health: the latest check, or one now; the \
            doctor's full report"),
        (name = "audit", description = "Who changed what"),
        (name = "operations", description = "Reload the configuration and keyring; keyring status"),
        (name = "meta", description = "This description"),
    )
)]
pub(super) struct ApiDoc;

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

/// The error body, for the OpenAPI description.
#[derive(Serialize, ToSchema)]
pub struct ErrorEnvelope {
    error: ErrorBodyDoc,
}

#[derive(Serialize, ToSchema)]
struct ErrorBodyDoc {
    /// Stable code, e.g. `admin.not_found`.
    code: String,
    /// What to fix. A refused field is named first, e.g. `label: must be at most 200
    /// characters`.
    message: String,
    request_id: String,
}

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
pub(super) async fn openapi_json(Extension(doc): Extension<Arc<OpenApiDoc>>) -> Response {
    Json(doc.as_ref()).into_response()
}
