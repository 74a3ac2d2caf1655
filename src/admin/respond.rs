//! What admin handlers answer: a JSON value, or an `ApiError` — a stable code from the
//! table in `crate::error` and a message that says what to fix. The one mapping from
//! domain errors (`StoreError`, `FleetError`) to a code lives here. The body of an error,
//! `{"error":{"code","message","request_id"}}`, is written by the request-context layer,
//! which knows the request id.

use crate::error::ErrorCode;
use crate::fleet::FleetError;
use crate::site::SiteId;
use crate::store::StoreError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// A JSON response with `status`.
pub fn json_reply<T: Serialize>(status: StatusCode, value: &T) -> Response {
    (status, Json(value)).into_response()
}

/// Set on an error response for the request-context layer to render as the JSON body.
#[derive(Debug, Clone)]
pub(super) struct ErrorInfo {
    pub(super) code: ErrorCode,
    pub(super) message: String,
}

/// An admin API error: a code and a message that says what to fix.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode) -> Self {
        ApiError {
            code,
            message: code.message().to_string(),
        }
    }

    pub fn with(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }

    /// 400 `admin.invalid_request` naming what is wrong.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::with(ErrorCode::AdminInvalidRequest, message)
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// A stored site that cannot be made ready for the request path (its record no
    /// longer opens or parses): the gateway's problem, not the caller's, so it is
    /// logged and answered as internal.
    pub fn site_unloadable(id: &SiteId, e: &FleetError) -> Self {
        match e {
            FleetError::Store(StoreError::Unavailable(_)) => Self::new(ErrorCode::StoreUnavailable),
            other => {
                tracing::error!(target: "wpgate::admin", site = %id, error = %other, "site cannot be loaded");
                Self::with(
                    ErrorCode::Internal,
                    format!("site {id} cannot be loaded: see the gateway's log"),
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = status.into_response();
        if let Some(challenge) = self.code.www_authenticate() {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        resp.extensions_mut().insert(ErrorInfo {
            code: self.code,
            message: self.message,
        });
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => {
                Self::with(ErrorCode::AdminNotFound, format!("{what} does not exist"))
            }
            StoreError::AlreadyExists(what) => {
                Self::with(ErrorCode::AdminConflict, format!("{what} already exists"))
            }
            e @ StoreError::VersionConflict { .. } => {
                Self::with(ErrorCode::AdminVersionConflict, e.to_string())
            }
            StoreError::Unavailable(why) => {
                tracing::error!(target: "wpgate::admin", error = %why, "store unavailable");
                Self::new(ErrorCode::StoreUnavailable)
            }
            StoreError::Corrupt(why) => {
                tracing::error!(target: "wpgate::admin", error = %why, "store holds an invalid record");
                Self::new(ErrorCode::Internal)
            }
        }
    }
}

impl From<FleetError> for ApiError {
    fn from(e: FleetError) -> Self {
        match e {
            FleetError::Store(e) => e.into(),
            FleetError::SiteId(e) => Self::invalid(format!("id: {e}")),
            FleetError::Upstream(e) => Self::invalid(format!("upstream: {e}")),
            FleetError::Credential(e) => Self::invalid(format!("credential: {e}")),
            FleetError::Policy(e) => Self::invalid(format!("auth: {e}")),
            FleetError::Routes(e) => Self::invalid(format!("allow_paths: {e}")),
            FleetError::Cors(e) => Self::invalid(format!("allow_origins: {e}")),
            // The message names the field.
            FleetError::Text(e) => Self::invalid(e.to_string()),
            FleetError::Invalid(msg) => Self::invalid(msg),
            FleetError::Conflict(msg) => Self::with(ErrorCode::AdminConflict, msg),
            FleetError::Unconfirmed(msg) => Self::with(ErrorCode::AdminCredentialRejected, msg),
            e @ FleetError::CredentialRequired { .. } => {
                Self::with(ErrorCode::SiteCredentialRequired, e.to_string())
            }
            e @ FleetError::CredentialUnusable { .. } => {
                tracing::error!(target: "wpgate::admin", error = %e, "site credential unusable");
                Self::with(ErrorCode::Internal, e.to_string())
            }
            e @ (FleetError::Keyring(_) | FleetError::Crypto(_)) => {
                tracing::error!(target: "wpgate::admin", error = %e, "keyring or sealing failed");
                Self::new(ErrorCode::Internal)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::site::{InvalidSiteId, InvalidUpstream};

    fn mapped(e: impl Into<ApiError>) -> (u16, &'static str, String) {
        let e = e.into();
        (e.code.status(), e.code.as_str(), e.message)
    }

    #[test]
    fn domain_errors_map_to_status_and_code() {
        let nf = StoreError::NotFound("site shop".into());
        assert_eq!(
            mapped(nf),
            (404, "admin.not_found", "site shop does not exist".into())
        );
        let dup = StoreError::AlreadyExists("site shop".into());
        assert_eq!(
            mapped(dup),
            (409, "admin.conflict", "site shop already exists".into())
        );
        let (status, code, _) = mapped(StoreError::Unavailable("down".into()));
        assert_eq!((status, code), (503, "store.unavailable"));
        let (status, code, _) = mapped(StoreError::Corrupt("bad row".into()));
        assert_eq!((status, code), (500, "internal.error"));
        let (status, code, message) = mapped(FleetError::SiteId(InvalidSiteId));
        assert_eq!((status, code), (400, "admin.invalid_request"));
        assert!(message.starts_with("id: "), "{message}");
        let (status, _, message) = mapped(FleetError::Upstream(InvalidUpstream::Scheme));
        assert_eq!(status, 400);
        assert!(message.starts_with("upstream: "), "{message}");
        let (status, code, _) = mapped(FleetError::Unconfirmed("no".into()));
        assert_eq!((status, code), (422, "admin.credential_rejected"));
        let (status, code, message) = mapped(FleetError::CredentialRequired {
            site: "shop".into(),
            from: "http://a.example:80".into(),
            to: "http://b.example:80".into(),
        });
        assert_eq!((status, code), (409, "site.credential_required"));
        assert!(message.contains("http://b.example:80"), "{message}");
        let (status, code, message) = mapped(FleetError::Text(crate::site::InvalidText {
            field: "label",
            problem: "must be at most 200 characters",
        }));
        assert_eq!((status, code), (400, "admin.invalid_request"));
        assert_eq!(message, "label: must be at most 200 characters");
        let (status, code, _) = mapped(FleetError::Store(StoreError::NotFound("key k".into())));
        assert_eq!((status, code), (404, "admin.not_found"));
    }

    #[test]
    fn an_unloadable_site_is_internal_unless_the_store_is_down() {
        let id: SiteId = "shop".parse().unwrap();
        let down = FleetError::Store(StoreError::Unavailable("down".into()));
        assert_eq!(
            ApiError::site_unloadable(&id, &down).code,
            ErrorCode::StoreUnavailable
        );
        let broken = FleetError::Invalid("no secret".into());
        let e = ApiError::site_unloadable(&id, &broken);
        assert_eq!(e.code, ErrorCode::Internal);
        assert_eq!(
            e.message,
            "site shop cannot be loaded: see the gateway's log"
        );
    }
}
