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
        (name = "tokens", description = "The admin API's own bearer tokens"),
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

/// Adds the answers every operation can give, whatever its own (authentication, the
/// failure limit, a read token's refusal, a refused parameter or body, the store
/// down), to each operation of `doc` after its routes are collected: no handler can
/// forget one, and none repeats them.
pub(super) fn add_common_responses(doc: &mut OpenApiDoc) {
    use utoipa::openapi::path::Operation;
    for (path, item) in doc.paths.paths.iter_mut() {
        let meta = path.ends_with("/openapi.json");
        let operations: [(&str, &mut Option<Operation>); 5] = [
            ("get", &mut item.get),
            ("post", &mut item.post),
            ("put", &mut item.put),
            ("patch", &mut item.patch),
            ("delete", &mut item.delete),
        ];
        for (method, op) in operations {
            let Some(op) = op.as_mut() else { continue };
            let has_params = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
            let has_body = op.request_body.is_some();
            let mut common = vec![
                (
                    "401",
                    "admin.unauthorized: no valid admin token (`WWW-Authenticate: Bearer`)",
                ),
                (
                    "429",
                    "admin.rate_limited: too many failed token checks from this address; \
                     `Retry-After` says when to try again",
                ),
                ("500", "internal.error: see the gateway's log"),
            ];
            if !meta {
                common.push((
                    "503",
                    "store.unavailable: the store does not answer; try again",
                ));
            }
            if method != "get" {
                common.push((
                    "403",
                    "admin.forbidden: a read token cannot change anything",
                ));
            }
            if has_params || has_body {
                common.push(("400", "admin.invalid_request: the message names the field"));
            }
            if has_body {
                common.push(("413", "admin.body_too_large: the body is over 64 KiB"));
            }
            for (status, what) in common {
                op.responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| error_response(what).into());
            }
        }
    }
}

/// What the derive cannot state: `UpdateSite` needs at least one field.
pub(super) fn add_schema_rules(doc: &mut OpenApiDoc) {
    use utoipa::openapi::schema::Schema;
    use utoipa::openapi::RefOr;
    let Some(components) = doc.components.as_mut() else {
        return;
    };
    if let Some(RefOr::T(Schema::Object(update))) = components.schemas.get_mut("UpdateSite") {
        update.min_properties = Some(1);
    }
}

/// A documented error answer: the JSON envelope.
fn error_response(description: &str) -> utoipa::openapi::Response {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorEnvelope")))
                .build(),
        )
        .build()
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
