//! `/admin/v1/overview`: the fleet at a glance, for the console's first page.

use super::respond::{json_reply, ApiError};
use super::state::AdminState;
use crate::health::HealthState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// The fleet at a glance.
#[derive(Debug, Serialize, ToSchema)]
pub struct OverviewView {
    /// The gateway's version.
    pub version: String,
    /// How many sites there are.
    pub sites: i64,
    /// Sites by the state their last stored health check found (every state listed).
    pub sites_by_state: BTreeMap<String, i64>,
    /// Client requests this gateway process refused in the last hour (60-61 minutes)
    /// for their credential or site, by reason (`wpgate_auth_failures_total`'s reasons).
    pub auth_failures_last_hour: BTreeMap<String, u64>,
    /// Whether this process hears the store's changes as they happen (PostgreSQL's
    /// LISTEN); otherwise it polls the change log.
    pub change_listener_connected: bool,
    pub keyring_primary: String,
    pub keyring_keys: usize,
}

/// The fleet at a glance: sites per health state (from the store, so every replica
/// answers alike), refused client authentications by reason over the last hour (this
/// process), the change listener and the keyring.
#[utoipa::path(
    get,
    path = "/admin/v1/overview",
    tag = "operations",
    responses(
        (status = 200, body = OverviewView),
    )
)]
pub async fn overview(State(state): State<AdminState>) -> Result<Response, ApiError> {
    let counts = state
        .fleet
        .store()
        .health_state_counts()
        .await
        .map_err(ApiError::from)?;
    let mut sites_by_state: BTreeMap<String, i64> = HealthState::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), 0))
        .collect();
    for (s, n) in counts {
        *sites_by_state.entry(s).or_default() += n;
    }
    let metrics = state.fleet.metrics();
    let keyring = state.fleet.keyring();
    let view = OverviewView {
        version: env!("CARGO_PKG_VERSION").to_string(),
        sites: sites_by_state.values().sum(),
        sites_by_state,
        auth_failures_last_hour: metrics
            .recent_auth_failures
            .last_hour()
            .into_iter()
            .map(|(reason, n)| (reason.to_string(), n))
            .collect(),
        change_listener_connected: metrics.store_listener_connected.get() == 1,
        keyring_primary: keyring.primary_id().to_string(),
        keyring_keys: keyring.key_ids().count(),
    };
    Ok(json_reply(StatusCode::OK, &view))
}
