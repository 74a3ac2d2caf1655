//! `/admin/v1/sites/{id}/health` (the latest report) and `/admin/v1/sites/{id}/test`
//! (check now: the "test connection" button).

use super::extract::SitePath;
use super::openapi::ErrorEnvelope;
use super::respond::{json_reply, ApiError};
use super::state::AdminState;
use crate::health::{HealthReport, HealthState};
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
}

impl HealthView {
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

/// The latest health report of a site.
#[utoipa::path(
    get,
    path = "/admin/v1/sites/{id}/health",
    tag = "health",
    params(SitePath),
    responses(
        (status = 200, body = HealthView),
        (status = 401, body = ErrorEnvelope),
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

/// Check a site now (reachable, credential accepted, required namespaces present) and
/// return the result, which also becomes its current health.
#[utoipa::path(
    post,
    path = "/admin/v1/sites/{id}/test",
    tag = "health",
    params(SitePath),
    responses(
        (status = 200, body = HealthView),
        (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope),
    )
)]
pub async fn test_site(
    State(state): State<AdminState>,
    SitePath { id }: SitePath,
) -> Result<Response, ApiError> {
    let target = match state.fleet.resolve_site(id.as_str()).await {
        Ok(Some(site)) => crate::health::targets::probe_target(&site),
        Ok(None) => return Err(StoreError::NotFound(format!("site {id}")).into()),
        // A record that cannot be used is reported as the site's health (`unusable`).
        Err(e) => {
            let record = state.fleet.site(&id).await?;
            crate::health::targets::unusable_target(&record, &e)
                .ok_or_else(|| ApiError::site_unloadable(&id, &e))?
        }
    };
    let client = state.check_client()?;
    let report = crate::health::probe(&client, &target, state.health_timeout).await;
    let report = state.health.record(id.as_str(), report);
    crate::health::targets::metrics_hook(
        Arc::clone(&state.health),
        Arc::clone(state.fleet.metrics()),
    )(id.as_str(), &report);
    Ok(json_reply(
        StatusCode::OK,
        &HealthView::new(&id, Some(report)),
    ))
}
