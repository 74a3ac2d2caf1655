//! `/admin/v1/sites/{id}/health` (the latest report) and `/admin/v1/sites/{id}/test`
//! (check now: the "test connection" button).

use super::api::{json_reply, ApiError, ApiPath, ErrorEnvelope};
use super::AdminState;
use crate::error::ErrorCode;
use crate::fleet::FleetError;
use crate::health::{HealthReport, HealthState};
use crate::store::StoreError;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

/// A site's health as the last check found it.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthView {
    pub site_id: String,
    /// `unknown`, `healthy`, `degraded`, `auth_failed`, `unreachable` or `disabled`.
    pub state: String,
    /// What is wrong and what to do about it (or what was confirmed).
    pub message: String,
    /// RFC 3339; `null` when the site has not been checked yet.
    pub checked_at: Option<String>,
    pub duration_ms: u64,
    /// Non-healthy results in a row.
    pub consecutive_failures: u32,
    /// The WordPress user the credential authenticated as.
    pub wordpress_user: Option<String>,
}

impl HealthView {
    fn new(site_id: &str, report: Option<HealthReport>) -> Self {
        match report {
            Some(r) => HealthView {
                site_id: site_id.to_string(),
                state: r.state.as_str().to_string(),
                message: r.message,
                checked_at: Some(crate::time::rfc3339(r.checked_at)),
                duration_ms: r.duration_ms,
                consecutive_failures: r.consecutive_failures,
                wordpress_user: r.wordpress_user,
            },
            None => HealthView {
                site_id: site_id.to_string(),
                state: HealthState::Unknown.as_str().to_string(),
                message: format!(
                    "not checked yet: POST /admin/v1/sites/{site_id}/test checks it now"
                ),
                checked_at: None,
                duration_ms: 0,
                consecutive_failures: 0,
                wordpress_user: None,
            },
        }
    }
}

fn check_site_id(raw: &str) -> Result<(), ApiError> {
    if crate::site::is_valid_site_id(raw.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "id: site id must be 1-64 characters of [A-Za-z0-9_-]",
        ))
    }
}

/// The latest health report of a site.
#[utoipa::path(
    get,
    path = "/admin/v1/sites/{id}/health",
    tag = "health",
    params(("id" = String, Path, description = "Site id")),
    responses(
        (status = 200, body = HealthView),
        (status = 401, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope),
    )
)]
pub async fn site_health(
    State(state): State<AdminState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    check_site_id(&id)?;
    state.fleet.site(&id).await?;
    Ok(json_reply(
        StatusCode::OK,
        &HealthView::new(&id, state.health.get(&id)),
    ))
}

/// Check a site now (reachable, credential accepted, required namespaces present) and
/// return the result, which also becomes its current health.
#[utoipa::path(
    post,
    path = "/admin/v1/sites/{id}/test",
    tag = "health",
    params(("id" = String, Path, description = "Site id")),
    responses(
        (status = 200, body = HealthView),
        (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope),
    )
)]
pub async fn test_site(
    State(state): State<AdminState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    check_site_id(&id)?;
    let site = match state.fleet.resolve_site(&id).await {
        Ok(Some(site)) => site,
        Ok(None) => {
            return Err(ApiError::with(
                ErrorCode::AdminNotFound,
                format!("site {id} does not exist"),
            ))
        }
        Err(e) => {
            return Err(match e.as_ref() {
                FleetError::Store(StoreError::Unavailable(_)) => {
                    ApiError::new(ErrorCode::StoreUnavailable)
                }
                other => {
                    tracing::error!(target: "wpgate::admin", site = %id, error = %other, "site cannot be loaded");
                    ApiError::with(
                        ErrorCode::Internal,
                        format!("site {id} cannot be loaded: see the gateway's log"),
                    )
                }
            })
        }
    };
    let client = match &state.health_client {
        Some(c) => c.clone(),
        None => crate::health::client(None, state.health_timeout).map_err(|e| {
            tracing::error!(target: "wpgate::admin", error = %e, "cannot build the health check client");
            ApiError::new(ErrorCode::Internal)
        })?,
    };
    let target = crate::health::targets::probe_target(&site);
    let report = crate::health::probe(&client, &target, state.health_timeout).await;
    let report = state.health.record(&id, report);
    crate::health::targets::metrics_hook(Arc::clone(&state.health))(&id, &report);
    Ok(json_reply(
        StatusCode::OK,
        &HealthView::new(&id, Some(report)),
    ))
}
