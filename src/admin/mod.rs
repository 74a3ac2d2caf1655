//! The admin listener (default 127.0.0.1:9090), separate from the proxy:
//! `/healthz` (the process answers), `/readyz` (200 `ready` when the store answers;
//! 200 `degraded` while it does not and cached sites and keys keep serving — a shared
//! store outage must not take every replica out of the load balancer at once) and `/metrics` (Prometheus text format), and the
//! authenticated admin API under `/admin/v1`.
//!
//! The admin API is one axum router, every route documented in the OpenAPI description
//! it serves at `/admin/v1/openapi.json` (both come from the same `routes!` calls below,
//! so they cannot drift). Handlers live by resource (`sites`, `onboard` for bulk import
//! and export, `keys`, `health`, `ops`);
//! what they share — request context and authentication (`context`), extractors
//! (`extract`), replies and the error mapping (`respond`) — never imports them back.

pub mod audit;
mod console;
mod context;
pub mod doctor;
mod extract;
pub mod failures;
pub mod health;
pub mod keys;
pub mod listener;
pub mod onboard;
mod openapi;
pub mod ops;
pub mod overview;
mod respond;
mod schema;
pub mod site_policy;
pub mod sites;
mod state;
pub mod token;
pub mod tokens;
pub mod views;

pub use respond::ApiError;
pub use state::AdminState;

use crate::error::ErrorCode;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Request bodies larger than this are refused with 413 `admin.body_too_large`.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The whole admin listener: probes, metrics, the admin API and the web console
/// (`/ui/`: static assets, no token needed to load them; the console then calls the
/// admin API with the operator's token like any other client).
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state.clone())
        .merge(console::router())
        .merge(api_router(state))
}

/// The documented routes. Every route of the admin API is added here and only here.
fn documented() -> OpenApiRouter<AdminState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(sites::list_sites, sites::create_site))
        .routes(routes!(
            sites::get_site,
            sites::update_site,
            sites::delete_site
        ))
        .routes(routes!(sites::enable_site))
        .routes(routes!(sites::disable_site))
        .routes(routes!(sites::set_credential))
        .routes(routes!(sites::set_routes))
        .routes(routes!(sites::set_cors))
        .routes(routes!(site_policy::set_auth))
        .routes(routes!(site_policy::set_health_settings))
        .routes(routes!(onboard::import_sites))
        .routes(routes!(onboard::export_sites))
        .routes(routes!(keys::issue_key, keys::list_keys))
        .routes(routes!(keys::revoke_key))
        .routes(routes!(keys::rotate_key))
        .routes(routes!(audit::list_audit))
        .routes(routes!(health::site_health))
        .routes(routes!(health::test_site))
        .routes(routes!(doctor::doctor))
        .routes(routes!(ops::reload))
        .routes(routes!(ops::keyring_status))
        .routes(routes!(overview::overview))
        .routes(routes!(tokens::list_tokens, tokens::create_token))
        .routes(routes!(tokens::revoke_token))
        .routes(routes!(openapi::openapi_json))
}

/// The OpenAPI description of the admin API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = documented().into_openapi();
    openapi::add_common_responses(&mut doc);
    openapi::add_schema_rules(&mut doc);
    doc
}

/// The `/admin/v1` router: every route authenticated, errors in one JSON shape.
fn api_router(state: AdminState) -> Router {
    let (routes, mut doc) = documented().split_for_parts();
    openapi::add_common_responses(&mut doc);
    openapi::add_schema_rules(&mut doc);
    routes
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            context::authenticate,
        ))
        .fallback(not_found)
        .layer(Extension(Arc::new(doc)))
        .layer(middleware::from_fn(context::request_context))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::with(ErrorCode::AdminNotFound, "no such admin API route")
}

// ---- probes and metrics ----

async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<AdminState>) -> Response {
    let store = tokio::time::timeout(Duration::from_secs(2), state.fleet.store().ping()).await;
    let keyring = state.fleet.keyring();
    match store {
        Ok(Ok(())) => Json(json!({
            "status": "ready",
            "store": "ok",
            "keyring": {"primary": keyring.primary_id(), "keys": keyring.key_ids().count()},
        }))
        .into_response(),
        Ok(Err(e)) => degraded(format!("store: {e}")),
        Err(_) => degraded("store: no answer within 2s".into()),
    }
}

fn degraded(why: String) -> Response {
    Json(json!({
        "status": "degraded",
        "store": "unavailable",
        "reason": why,
        "serving": "cached sites and keys, up to cache.max_stale past their TTL",
    }))
    .into_response()
}

async fn metrics(State(state): State<AdminState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.fleet.metrics().render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::extract::Request;
    use axum::http::Method;
    use axum::http::StatusCode;
    use tower::ServiceExt;

    async fn state() -> (tempfile::TempDir, AdminState) {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::Config::load(&crate::config::LoadOptions {
            config_file: None,
            data_dir: Some(dir.path().join("data")),
        })
        .unwrap();
        let (fleet, _) =
            crate::fleet::Fleet::open(&config, Arc::new(crate::metrics::Metrics::new().unwrap()))
                .await
                .unwrap();
        let fleet = Arc::new(fleet);
        let state = AdminState {
            reloader: None,
            health_ledger: Arc::new(crate::health::Ledger::new(fleet.shared_store(), "test")),
            fleet,
            tokens: Arc::new(token::AdminTokens::new()),
            failures: Arc::new(failures::AdminFailures::new(&config.boot.admin)),
            health: Arc::new(crate::health::HealthBoard::new()),
            health_client: None,
            health_timeout: std::time::Duration::from_secs(5),
            upstream_ca_file: None,
        };
        (dir, state)
    }

    fn concrete(path: &str) -> String {
        path.replace("{id}", "shop")
            .replace("{key_id}", "abcdefghijkl")
            .replace("{token_id}", "abcdefghijkl")
    }

    #[tokio::test]
    async fn every_documented_route_is_served_and_authenticated() {
        let (_dir, state) = state().await;
        let app = api_router(state);
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
            "PUT /admin/v1/sites/{id}/routes",
            "PUT /admin/v1/sites/{id}/cors",
            "PUT /admin/v1/sites/{id}/auth",
            "PUT /admin/v1/sites/{id}/health-settings",
            "GET /admin/v1/tokens",
            "POST /admin/v1/tokens",
            "POST /admin/v1/tokens/{token_id}/revoke",
            "POST /admin/v1/import/sites",
            "GET /admin/v1/export/sites",
            "POST /admin/v1/sites/{id}/keys",
            "GET /admin/v1/sites/{id}/keys",
            "POST /admin/v1/keys/{key_id}/revoke",
            "POST /admin/v1/keys/{key_id}/rotate",
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
    fn the_auth_policy_is_described() {
        let doc = serde_json::to_value(openapi()).unwrap();
        let schemas = &doc["components"]["schemas"];
        let jwt = &schemas["JwtPolicy"]["properties"];
        assert!(jwt["act_as"].is_object(), "{jwt}");
        assert!(jwt["require_roles"].is_object(), "{jwt}");
        assert_eq!(
            schemas["ActAs"]["enum"],
            serde_json::json!(["user", "site"]),
            "{}",
            schemas["ActAs"]
        );
        let auth = serde_json::to_string(&schemas["SiteView"]["properties"]["auth"]).unwrap();
        assert!(auth.contains("#/components/schemas/AuthPolicy"), "{auth}");
    }
}
