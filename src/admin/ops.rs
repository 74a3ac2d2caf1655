//! Gateway-wide operations: `/admin/v1/reload` and `/admin/v1/keyring`.

use super::openapi::ErrorEnvelope;
use super::respond::{json_reply, ApiError};
use super::state::AdminState;
use crate::error::ErrorCode;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use utoipa::ToSchema;

/// What a reload changed.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReloadView {
    /// Settings whose new value is now in effect.
    pub applied: Vec<String>,
    /// Settings that changed but take effect only after a restart or graceful upgrade.
    pub restart_required: Vec<String>,
    pub keyring_primary: String,
    pub keyring_keys: usize,
    /// The certificate each TLS listener serves after the reload (empty without TLS).
    pub certificates: Vec<CertificateView>,
}

/// A TLS listener's certificate (never its key).
#[derive(Debug, Serialize, ToSchema)]
pub struct CertificateView {
    /// `proxy` or `admin`.
    pub listener: String,
    pub subject: String,
    /// Hex bytes separated by `:`.
    pub serial: String,
    /// Unix time at which it expires.
    pub not_after: i64,
}

/// Re-read the configuration and keyring, validate them and swap them in. A refused
/// snapshot leaves the running one in place and says why.
#[utoipa::path(
    post,
    path = "/admin/v1/reload",
    tag = "operations",
    responses(
        (status = 200, body = ReloadView),
        (status = 422, body = ErrorEnvelope, description = "refused: the message says why"),
    )
)]
pub async fn reload(State(state): State<AdminState>) -> Result<Response, ApiError> {
    let Some(reloader) = &state.reloader else {
        return Err(ApiError::with(
            ErrorCode::AdminReloadRefused,
            "this process cannot reload",
        ));
    };
    match reloader.reload("admin_api").await {
        Ok(r) => Ok(json_reply(
            StatusCode::OK,
            &ReloadView {
                applied: r.applied.iter().map(|s| s.to_string()).collect(),
                restart_required: r.restart_required.iter().map(|s| s.to_string()).collect(),
                keyring_primary: r.keyring_primary,
                keyring_keys: r.keyring_keys,
                certificates: r
                    .certificates
                    .into_iter()
                    .map(|c| CertificateView {
                        listener: c.listener.to_string(),
                        subject: c.info.subject,
                        serial: c.info.serial,
                        not_after: c.info.not_after,
                    })
                    .collect(),
            },
        )),
        Err(reason) => Err(ApiError::with(
            ErrorCode::AdminReloadRefused,
            reason.to_string(),
        )),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyringKeyView {
    pub id: String,
    pub primary: bool,
    /// Stored records this key seals (0: it can be retired).
    pub sealed_records: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyringView {
    pub primary: String,
    pub keys: Vec<KeyringKeyView>,
    /// Records sealed by a key this keyring lacks (always empty on a running gateway).
    pub missing: Vec<KeyringKeyView>,
}

/// The keyring's keys (never their secrets), its primary, and how many stored records
/// each key still seals.
#[utoipa::path(
    get,
    path = "/admin/v1/keyring",
    tag = "operations",
    responses(
        (status = 200, body = KeyringView),
    )
)]
pub async fn keyring_status(State(state): State<AdminState>) -> Result<Response, ApiError> {
    let keyring = state.fleet.keyring();
    let counts = state
        .fleet
        .store()
        .sealed_key_counts()
        .await
        .map_err(ApiError::from)?;
    Ok(json_reply(StatusCode::OK, &keyring_view(&keyring, &counts)))
}

/// The keyring status shared by the CLI (`wpgate keyring status`) and the admin API.
pub fn keyring_view(keyring: &crate::crypto::Keyring, counts: &[(String, i64)]) -> KeyringView {
    let count = |id: &str| {
        counts
            .iter()
            .find(|(k, _)| k == id)
            .map(|(_, n)| *n)
            .unwrap_or(0)
    };
    KeyringView {
        primary: keyring.primary_id().to_string(),
        keys: keyring
            .key_ids()
            .map(|id| KeyringKeyView {
                id: id.to_string(),
                primary: id == keyring.primary_id(),
                sealed_records: count(id),
            })
            .collect(),
        missing: counts
            .iter()
            .filter(|(k, _)| !keyring.contains(k))
            .map(|(k, n)| KeyringKeyView {
                id: k.clone(),
                primary: false,
                sealed_records: *n,
            })
            .collect(),
    }
}
