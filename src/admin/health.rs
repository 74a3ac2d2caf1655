//! `/admin/v1/sites/{id}/health` (the latest report) and `/admin/v1/sites/{id}/test`
//! (check now: the "test connection" button; the result is shared through the store).

use super::extract::SitePath;
use super::openapi::ErrorEnvelope;
use super::respond::{json_reply, ApiError};
use super::state::AdminState;
use crate::fleet::FleetError;
use crate::health::{HealthReport, HealthState, ReportOrigin};
use crate::site::SiteId;
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
    /// `unknown`, `healthy`, `degraded`, `auth_failed`, `unreachable`, `disabled` or
    /// `unusable`.
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
    /// The replica (its id, logged at its start) or `cli` that ran the check.
    pub checked_by: Option<String>,
}

impl HealthView {
    /// The view of `report` (`None`: not checked yet).
    pub fn new(site_id: &SiteId, report: Option<HealthReport>) -> Self {
        match report {
            Some(r) => HealthView {
                site_id: site_id.to_string(),
                state: r.state.as_str().to_string(),
                message: r.message,
                checked_at: Some(crate::time::rfc3339(r.checked_at)),
                duration_ms: r.duration_ms,
                consecutive_failures: r.consecutive_failures,
                wordpress_user: r.wordpress_user,
                checked_by: r.checked_by,
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
                checked_by: None,
            },
        }
    }
}

/// The latest health report of a site, as this replica's board holds it (every replica
/// reads the same shared results, within `health.interval / 8`, at most 5 s).
#[utoipa::path(
    get,
    path = "/admin/v1/sites/{id}/health",
    tag = "health",
    params(SitePath),
    responses(
        (status = 200, body = HealthView),
        (status = 404, body = ErrorEnvelope),
    )
)]
pub async fn site_health(
    State(state): State<AdminState>,
    SitePath { id }: SitePath,
) -> Result<Response, ApiError> {
    state.fleet.site(&id).await?;
    Ok(json_reply(
        StatusCode::OK,
        &HealthView::new(&id, state.health.get(id.as_str())),
    ))
}

/// Check a site now (reachable, credential accepted, required namespaces present), as
/// the store holds it now (not as a cache remembers it), and return the result, which
/// becomes its current health on every replica.
#[utoipa::path(
    post,
    path = "/admin/v1/sites/{id}/test",
    tag = "health",
    params(SitePath),
    responses(
        (status = 200, body = HealthView),
        (status = 404, body = ErrorEnvelope),
    )
)]
pub async fn test_site(
    State(state): State<AdminState>,
    SitePath { id }: SitePath,
) -> Result<Response, ApiError> {
    let client = state.check_client()?;
    let checked = crate::health::targets::check_now(
        &state.fleet,
        &state.health_ledger,
        &client,
        state.health_timeout,
        id.as_str(),
    )
    .await
    .map_err(|e| match e {
        FleetError::Store(e) => ApiError::from(e),
        e => ApiError::site_unloadable(&id, &e),
    })?;
    let Some(stored) = checked else {
        return Err(StoreError::NotFound(format!("site {id}")).into());
    };
    state.health.apply(&stored);
    crate::health::targets::metrics_hook(
        Arc::clone(&state.health),
        Arc::clone(state.fleet.metrics()),
    )(id.as_str(), &stored.report, ReportOrigin::Checked);
    Ok(json_reply(
        StatusCode::OK,
        &HealthView::new(&id, Some(stored.report)),
    ))
}
