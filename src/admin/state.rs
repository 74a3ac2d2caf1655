//! What every admin handler can reach.

use super::failures::AdminFailures;
use super::respond::ApiError;
use super::token::AdminTokens;
use crate::error::ErrorCode;
use crate::fleet::Fleet;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
pub struct AdminState {
    pub fleet: Arc<Fleet>,
    /// Admin API tokens (verification and its short-lived cache).
    pub tokens: Arc<AdminTokens>,
    /// Failed token checks: the per-client limit and their audit records.
    pub failures: Arc<AdminFailures>,
    /// The latest health report of each site (for `/sites/{id}/health` and `/test`).
    pub health: Arc<crate::health::HealthBoard>,
    /// The shared health results (`/test` writes its result there for every replica).
    pub health_ledger: Arc<crate::health::Ledger>,
    /// The client health checks use (for running a check on demand).
    pub health_client: Option<reqwest::Client>,
    pub health_timeout: Duration,
    /// `upstream.ca_file`, for the doctor's TLS checks (the proxy's trust).
    pub upstream_ca_file: Option<std::path::PathBuf>,
    /// Reloads the configuration and keyring (`None` where the process cannot).
    pub reloader: Option<Arc<crate::config::reload::Reloader>>,
}

impl AdminState {
    /// The client for a check run on demand: the prober's, or one built for this call
    /// where the process runs no prober.
    pub fn check_client(&self) -> Result<reqwest::Client, ApiError> {
        match &self.health_client {
            Some(c) => Ok(c.clone()),
            None => crate::health::client(None, self.health_timeout).map_err(|e| {
                tracing::error!(target: "wpgate::admin", error = %e, "cannot build the health check client");
                ApiError::new(ErrorCode::Internal)
            }),
        }
    }
}
