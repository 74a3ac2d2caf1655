//! The admin listener (default 127.0.0.1:9090), separate from the proxy:
//! `/healthz` (the process answers), `/readyz` (200 `ready` when the store answers;
//! 200 `degraded` while it does not and cached sites and keys keep serving — a shared
//! store outage must not take every replica out of the load balancer at once) and `/metrics` (Prometheus text format), and the
//! authenticated admin API under `/admin/v1` (`api`).

pub mod api;
pub mod health;
pub mod keys;
pub mod ops;
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
    /// Reloads the configuration and keyring (`None` where the process cannot).
    pub reloader: Option<Arc<crate::config::reload::Reloader>>,
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
