//! The admin listener (default 127.0.0.1:9090), separate from the proxy:
//! `/healthz` (the process answers), `/readyz` (the store answers and the keyring is
//! loaded; 503 otherwise) and `/metrics` (Prometheus text format), and the
//! authenticated admin API under `/admin/v1` (`api`).

pub mod api;
pub mod health;
pub mod keys;
pub mod sites;
pub mod token;
pub mod views;

use crate::fleet::Fleet;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
pub struct AdminState {
    pub fleet: Arc<Fleet>,
    /// Admin API tokens (verification and its short-lived cache).
    pub tokens: Arc<token::AdminTokens>,
    /// The latest health report of each site (for `/sites/{id}/health` and `/test`).
    pub health: Arc<crate::health::HealthBoard>,
    /// The client health checks use (for running a check on demand).
    pub health_client: Option<reqwest::Client>,
    pub health_timeout: Duration,
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state.clone())
        .merge(api::router(state))
}

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
        Ok(Err(e)) => not_ready(format!("store: {e}")),
        Err(_) => not_ready("store: no answer within 2s".into()),
    }
}

fn not_ready(why: String) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"status": "not_ready", "reason": why})),
    )
        .into_response()
}

async fn metrics() -> Response {
    match crate::metrics::get() {
        Some(m) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            m.render(),
        )
            .into_response(),
        None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
