//! The one mapping from a client-facing error to its HTTP status and stable code.
//!
//! Clients see the code and a short message; the exact internal reason (unknown key,
//! revoked, ...) goes to logs only, so a rejection never helps an attacker enumerate.

use bytes::Bytes;
use serde::Serialize;

/// The methods the gateway forwards (`TRACE`, `TRACK` and `CONNECT` never are): a 405's
/// `Allow`, and what a CORS preflight allows.
pub const FORWARDED_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/// Every error a client can receive from the gateway itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    MalformedRequest,
    MalformedPath,
    MethodNotAllowed,
    RouteNotAllowed,
    CorsOriginNotAllowed,
    MissingSiteId,
    InvalidSiteId,
    AmbiguousCredentials,
    MissingCredentials,
    InvalidCredentials,
    RoleNotAllowed,
    RateLimited,
    SiteDisabled,
    SiteUnavailable,
    JwksUnavailable,
    VerifierUnavailable,
    StoreUnavailable,
    UpstreamUnreachable,
    UpstreamTimeout,
    UpstreamError,
    Internal,
    // The admin API (`/admin/v1`).
    AdminUnauthorized,
    AdminForbidden,
    AdminInvalidRequest,
    AdminNotFound,
    AdminConflict,
    AdminVersionConflict,
    AdminBodyTooLarge,
    AdminPreconditionRequired,
    AdminReloadRefused,
    AdminCredentialRejected,
    SiteCredentialRequired,
    AdminRateLimited,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 33] = [
        ErrorCode::MalformedRequest,
        ErrorCode::MalformedPath,
        ErrorCode::MethodNotAllowed,
        ErrorCode::RouteNotAllowed,
        ErrorCode::CorsOriginNotAllowed,
        ErrorCode::MissingSiteId,
        ErrorCode::InvalidSiteId,
        ErrorCode::AmbiguousCredentials,
        ErrorCode::MissingCredentials,
        ErrorCode::InvalidCredentials,
        ErrorCode::RoleNotAllowed,
        ErrorCode::RateLimited,
        ErrorCode::SiteDisabled,
        ErrorCode::SiteUnavailable,
        ErrorCode::JwksUnavailable,
        ErrorCode::VerifierUnavailable,
        ErrorCode::StoreUnavailable,
        ErrorCode::UpstreamUnreachable,
        ErrorCode::UpstreamTimeout,
        ErrorCode::UpstreamError,
        ErrorCode::Internal,
        ErrorCode::AdminUnauthorized,
        ErrorCode::AdminForbidden,
        ErrorCode::AdminInvalidRequest,
        ErrorCode::AdminNotFound,
        ErrorCode::AdminConflict,
        ErrorCode::AdminVersionConflict,
        ErrorCode::AdminBodyTooLarge,
        ErrorCode::AdminPreconditionRequired,
        ErrorCode::AdminReloadRefused,
        ErrorCode::AdminCredentialRejected,
        ErrorCode::SiteCredentialRequired,
        ErrorCode::AdminRateLimited,
    ];

    /// The stable, documented code. Never change one: clients match on it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MalformedRequest => "request.malformed",
            ErrorCode::MalformedPath => "request.malformed_path",
            ErrorCode::MethodNotAllowed => "request.method_not_allowed",
            ErrorCode::RouteNotAllowed => "route.not_allowed",
            ErrorCode::CorsOriginNotAllowed => "cors.origin_not_allowed",
            ErrorCode::MissingSiteId => "request.missing_site_id",
            ErrorCode::InvalidSiteId => "request.invalid_site_id",
            ErrorCode::AmbiguousCredentials => "request.ambiguous_credentials",
            ErrorCode::MissingCredentials => "auth.missing_credentials",
            ErrorCode::InvalidCredentials => "auth.invalid_credentials",
            ErrorCode::RoleNotAllowed => "auth.role_not_allowed",
            ErrorCode::RateLimited => "auth.rate_limited",
            ErrorCode::JwksUnavailable => "auth.jwks_unavailable",
            ErrorCode::VerifierUnavailable => "auth.verifier_unavailable",
            ErrorCode::SiteDisabled => "site.disabled",
            ErrorCode::SiteUnavailable => "site.unavailable",
            ErrorCode::StoreUnavailable => "store.unavailable",
            ErrorCode::UpstreamUnreachable => "upstream.unreachable",
            ErrorCode::UpstreamTimeout => "upstream.timeout",
            ErrorCode::UpstreamError => "upstream.error",
            ErrorCode::Internal => "internal.error",
            ErrorCode::AdminUnauthorized => "admin.unauthorized",
            ErrorCode::AdminForbidden => "admin.forbidden",
            ErrorCode::AdminInvalidRequest => "admin.invalid_request",
            ErrorCode::AdminNotFound => "admin.not_found",
            ErrorCode::AdminConflict => "admin.conflict",
            ErrorCode::AdminVersionConflict => "admin.version_conflict",
            ErrorCode::AdminBodyTooLarge => "admin.body_too_large",
            ErrorCode::AdminPreconditionRequired => "admin.precondition_required",
            ErrorCode::AdminReloadRefused => "admin.reload_refused",
            ErrorCode::AdminCredentialRejected => "admin.credential_rejected",
            ErrorCode::SiteCredentialRequired => "site.credential_required",
            ErrorCode::AdminRateLimited => "admin.rate_limited",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            ErrorCode::MalformedRequest
            | ErrorCode::MalformedPath
            | ErrorCode::MissingSiteId
            | ErrorCode::InvalidSiteId
            | ErrorCode::AmbiguousCredentials => 400,
            ErrorCode::MissingCredentials | ErrorCode::InvalidCredentials => 401,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::SiteDisabled
            | ErrorCode::RouteNotAllowed
            | ErrorCode::CorsOriginNotAllowed
            | ErrorCode::RoleNotAllowed => 403,
            ErrorCode::RateLimited => 429,
            ErrorCode::JwksUnavailable | ErrorCode::VerifierUnavailable => 503,
            ErrorCode::UpstreamUnreachable | ErrorCode::UpstreamError => 502,
            ErrorCode::StoreUnavailable | ErrorCode::SiteUnavailable => 503,
            ErrorCode::UpstreamTimeout => 504,
            ErrorCode::Internal => 500,
            ErrorCode::AdminUnauthorized => 401,
            ErrorCode::AdminForbidden => 403,
            ErrorCode::AdminInvalidRequest => 400,
            ErrorCode::AdminNotFound => 404,
            ErrorCode::AdminConflict | ErrorCode::SiteCredentialRequired => 409,
            ErrorCode::AdminVersionConflict => 412,
            ErrorCode::AdminBodyTooLarge => 413,
            ErrorCode::AdminPreconditionRequired => 428,
            ErrorCode::AdminReloadRefused | ErrorCode::AdminCredentialRejected => 422,
            ErrorCode::AdminRateLimited => 429,
        }
    }

    /// The short, public message. It says what the client can do, never why exactly.
    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::MalformedRequest => "the request is not valid HTTP",
            ErrorCode::MalformedPath => {
                "the request path is not accepted: no dot segments, encoded slashes, \
                 backslashes or control characters"
            }
            ErrorCode::MethodNotAllowed => "this method is not forwarded",
            ErrorCode::RouteNotAllowed => {
                "this path is not forwarded to the site: only the WordPress REST API \
                 and the paths the site allows"
            }
            ErrorCode::CorsOriginNotAllowed => {
                "browser requests from this Origin are not allowed: a site lists the \
                 origins it accepts"
            }
            ErrorCode::MissingSiteId => "the X-Website-ID header is required",
            ErrorCode::InvalidSiteId => {
                "send exactly one X-Website-ID header of 1-64 characters [A-Za-z0-9_-]"
            }
            ErrorCode::AmbiguousCredentials => {
                "send one credential: either X-API-Key or Authorization, not both"
            }
            ErrorCode::MissingCredentials => {
                "an API key is required (X-API-Key or Authorization: Bearer)"
            }
            ErrorCode::InvalidCredentials => "the credential is not valid for this site",
            ErrorCode::RoleNotAllowed => {
                "this WordPress user does not hold a role this site requires"
            }
            ErrorCode::RateLimited => "too many failed authentications; retry later",
            ErrorCode::JwksUnavailable => {
                "the keys to verify this token cannot be fetched right now; retry later"
            }
            ErrorCode::VerifierUnavailable => {
                "the site cannot be asked to verify this token right now; retry later"
            }
            ErrorCode::SiteDisabled => "this site is disabled",
            ErrorCode::SiteUnavailable => "this site is unreachable right now; retry later",
            ErrorCode::StoreUnavailable => "the gateway cannot reach its store; try again",
            ErrorCode::UpstreamUnreachable => "the site could not be reached",
            ErrorCode::UpstreamTimeout => "the site did not answer in time",
            ErrorCode::UpstreamError => "the site's answer could not be relayed",
            ErrorCode::Internal => "internal error",
            ErrorCode::AdminUnauthorized => {
                "an admin token is required: Authorization: Bearer wpgat_..."
            }
            ErrorCode::AdminForbidden => "this admin token's scope does not allow this",
            ErrorCode::AdminInvalidRequest => "the request is not valid",
            ErrorCode::AdminNotFound => "no such resource",
            ErrorCode::AdminConflict => "it already exists",
            ErrorCode::AdminVersionConflict => {
                "the resource was changed since you read it: read it again and retry"
            }
            ErrorCode::AdminBodyTooLarge => "the request body is larger than 64 KiB",
            ErrorCode::AdminPreconditionRequired => {
                "send If-Match with the ETag of the version you read"
            }
            ErrorCode::AdminReloadRefused => {
                "the new configuration was refused; the previous one keeps serving"
            }
            ErrorCode::AdminCredentialRejected => {
                "the new credential failed its check against the site; the old one is kept"
            }
            ErrorCode::SiteCredentialRequired => {
                "moving the site's upstream to another origin needs a new credential in the same call"
            }
            ErrorCode::AdminRateLimited => {
                "too many failed admin token checks from this address; retry after Retry-After seconds"
            }
        }
    }

    /// The `WWW-Authenticate` challenge that goes with a 401 (RFC 6750 style).
    pub fn www_authenticate(self) -> Option<&'static str> {
        match self {
            ErrorCode::MissingCredentials => Some(r#"Bearer realm="wpgate""#),
            ErrorCode::InvalidCredentials => {
                Some(r#"Bearer realm="wpgate", error="invalid_token""#)
            }
            ErrorCode::AdminUnauthorized => Some(r#"Bearer realm="wpgate-admin""#),
            _ => None,
        }
    }

    /// The `Allow` header that goes with a 405: the methods the gateway forwards.
    pub fn allow(self) -> Option<&'static str> {
        match self {
            ErrorCode::MethodNotAllowed => Some(FORWARDED_METHODS),
            _ => None,
        }
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'static str,
    message: &'a str,
    request_id: &'a str,
}

/// The JSON body of a rejection: `{"error":{"code","message","request_id"}}`.
pub fn error_body(code: ErrorCode, request_id: &str) -> Bytes {
    error_body_with(code, code.message(), request_id)
}

/// Like [`error_body`] with a message of its own: the admin API says which field of a
/// request is wrong (operators are not attackers to keep in the dark).
pub fn error_body_with(code: ErrorCode, message: &str, request_id: &str) -> Bytes {
    let env = Envelope {
        error: Body {
            code: code.as_str(),
            message,
            request_id,
        },
    };
    // Serializing three strings cannot fail; fall back to a fixed body rather than panic.
    serde_json::to_vec(&env)
        .map(Bytes::from)
        .unwrap_or_else(|_| Bytes::from_static(br#"{"error":{"code":"internal.error"}}"#))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_code_is_unique_and_mapped_to_its_class() {
        let mut seen = HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "duplicate {}", code.as_str());
            let (prefix, _) = code.as_str().split_once('.').unwrap();
            let status = code.status();
            match prefix {
                "request" => assert!(matches!(status, 400 | 405), "{code:?}"),
                "route" | "cors" => assert_eq!(status, 403, "{code:?}"),
                "auth" => assert!(matches!(status, 401 | 403 | 429 | 503), "{code:?}"),
                "site" => assert!(matches!(status, 403 | 409 | 503), "{code:?}"),
                "store" => assert_eq!(status, 503, "{code:?}"),
                "upstream" => assert!(status == 502 || status == 504, "{code:?}"),
                "internal" => assert_eq!(status, 500, "{code:?}"),
                "admin" => assert!(
                    matches!(
                        status,
                        400 | 401 | 403 | 404 | 409 | 412 | 413 | 422 | 428 | 429
                    ),
                    "{code:?}"
                ),
                other => panic!("unknown prefix {other}"),
            }
            // A 401 always carries a challenge, nothing else does.
            assert_eq!(code.www_authenticate().is_some(), status == 401, "{code:?}");
            // A 405 always says what is allowed, nothing else does.
            assert_eq!(code.allow().is_some(), status == 405, "{code:?}");
            assert!(!code.message().is_empty());
        }
    }

    #[test]
    fn the_full_table() {
        let table: Vec<(&str, u16)> = ErrorCode::ALL
            .iter()
            .map(|c| (c.as_str(), c.status()))
            .collect();
        assert_eq!(
            table,
            vec![
                ("request.malformed", 400),
                ("request.malformed_path", 400),
                ("request.method_not_allowed", 405),
                ("route.not_allowed", 403),
                ("cors.origin_not_allowed", 403),
                ("request.missing_site_id", 400),
                ("request.invalid_site_id", 400),
                ("request.ambiguous_credentials", 400),
                ("auth.missing_credentials", 401),
                ("auth.invalid_credentials", 401),
                ("auth.role_not_allowed", 403),
                ("auth.rate_limited", 429),
                ("site.disabled", 403),
                ("site.unavailable", 503),
                ("auth.jwks_unavailable", 503),
                ("auth.verifier_unavailable", 503),
                ("store.unavailable", 503),
                ("upstream.unreachable", 502),
                ("upstream.timeout", 504),
                ("upstream.error", 502),
                ("internal.error", 500),
                ("admin.unauthorized", 401),
                ("admin.forbidden", 403),
                ("admin.invalid_request", 400),
                ("admin.not_found", 404),
                ("admin.conflict", 409),
                ("admin.version_conflict", 412),
                ("admin.body_too_large", 413),
                ("admin.precondition_required", 428),
                ("admin.reload_refused", 422),
                ("admin.credential_rejected", 422),
                ("site.credential_required", 409),
                ("admin.rate_limited", 429),
            ]
        );
    }

    #[test]
    fn body_is_the_documented_json() {
        let body = error_body(ErrorCode::InvalidCredentials, "req-1\"x");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "auth.invalid_credentials");
        assert_eq!(v["error"]["request_id"], "req-1\"x");
        assert!(v["error"]["message"].is_string());
    }
}
