//! `/admin/v1/doctor`: `wpgate doctor`'s report from the running gateway (its keyring,
//! its store, its trust for https upstreams), so the CLI and the API say the same.

use super::extract::{site_id, ApiQuery};
use super::openapi::ErrorEnvelope;
use super::respond::{json_reply, ApiError};
use super::state::AdminState;
use crate::doctor::{self, Check, CheckName, Report, Source, Sources};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use utoipa::IntoParams;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DoctorQuery {
    /// Check only this site (also when it is disabled); default: every site.
    #[param(schema_with = super::schema::site_id)]
    site: Option<String>,
    /// How many sites are checked at once: 1-1024 (default 32).
    #[param(minimum = 1, maximum = 1024)]
    concurrency: Option<usize>,
}

/// Run every doctor check now (read-only) and return the report: the gateway's checks
/// (store, schema, every sealed record opens with the keyring), then each site's (DNS,
/// TCP, TLS, REST index, users/me with the site's credential, required namespaces,
/// clock), each failure with its fix. `exit_code` is what `wpgate doctor` would exit
/// with. The answer is 200 whatever the checks found.
#[utoipa::path(
    get,
    path = "/admin/v1/doctor",
    tag = "health",
    params(DoctorQuery),
    responses(
        (status = 200, body = Report),
        (status = 404, body = ErrorEnvelope, description = "the site named does not exist"),
    )
)]
pub async fn doctor(
    State(state): State<AdminState>,
    ApiQuery(q): ApiQuery<DoctorQuery>,
) -> Result<Response, ApiError> {
    let only = q.site.as_deref().map(|s| site_id(s, "site")).transpose()?;
    if let Some(id) = &only {
        state.fleet.site(id).await?;
    }
    let concurrency = q.concurrency.unwrap_or(doctor::DEFAULT_CONCURRENCY);
    if !(1..=1024).contains(&concurrency) {
        return Err(ApiError::invalid("concurrency: must be 1-1024"));
    }
    let mut settings = doctor::Settings::new(state.health_timeout, state.upstream_ca_file.clone());
    settings.concurrency = concurrency;
    let keyring = state.fleet.keyring();
    let keyring_text = format!(
        "the gateway's keyring ({} keys, primary {})",
        keyring.key_ids().count(),
        keyring.primary_id()
    );
    let sources = Sources {
        config: Check::pass(
            CheckName::Config,
            "the running gateway's configuration (validated at start and at each reload)",
        ),
        keyring: Source::Ready(keyring, keyring_text),
        store: Source::Ready(state.fleet.shared_store(), "the gateway's store".into()),
    };
    let report = doctor::run(sources, only.as_ref(), &settings).await;
    Ok(json_reply(StatusCode::OK, &report))
}
