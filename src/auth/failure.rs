//! Why authentication refused a request: the exact reason (for logs and metrics) and
//! the public code the client sees.

use crate::error::ErrorCode;

/// Why a request was refused. The client sees only the public code; the reason goes to
/// logs (and metrics) so operators can tell a revoked key from a typo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    MissingCredentials,
    Ambiguous,
    Malformed,
    UnsupportedScheme,
    UnknownSite,
    UnknownKey,
    InvalidKey,
    WrongSite,
    Revoked,
    Expired,
    SiteDisabled,
    /// The store could not be asked for the key.
    StoreUnavailable,
    /// JWT: `nbf` (or `iat`) is in the future beyond the leeway.
    NotYetValid,
    /// JWT: the signature does not verify with the site's key.
    BadSignature,
    /// JWT: `alg` is not in the site's allowlist, does not fit the key, or is `none`.
    AlgNotAllowed,
    WrongIssuer,
    WrongAudience,
    /// JWT: `exp - iat` exceeds the site's maximum token lifetime.
    LifetimeExceeded,
    /// JWT: the JWKS could not be fetched and no usable copy is cached.
    JwksUnavailable,
    /// The site does not accept this kind of credential (its auth methods).
    MethodNotAllowed,
    /// Too many failed authentications from this client.
    RateLimited,
    /// Delegated verification: the site could not be asked (5xx, 429, timeout, no
    /// connection). Not the client's fault: never counted against it.
    VerifierUnavailable,
    /// Delegated verification: WordPress refused the token (401/403 from `users/me`).
    VerifierRefused,
    /// Delegated verification: the site's answer is no WordPress user (a page served to
    /// everyone, a redirect, JSON without a user id): refused.
    VerifierBadAnswer,
    /// Delegated verification: a valid WordPress user without a role the site requires.
    RoleNotAllowed,
}

impl AuthFailure {
    pub fn reason(self) -> &'static str {
        match self {
            AuthFailure::MissingCredentials => "missing_credentials",
            AuthFailure::Ambiguous => "ambiguous_credentials",
            AuthFailure::Malformed => "malformed",
            AuthFailure::UnsupportedScheme => "unsupported_scheme",
            AuthFailure::UnknownSite => "unknown_site",
            AuthFailure::UnknownKey => "unknown_key",
            AuthFailure::InvalidKey => "invalid_key",
            AuthFailure::WrongSite => "wrong_site",
            AuthFailure::Revoked => "revoked",
            AuthFailure::Expired => "expired",
            AuthFailure::SiteDisabled => "site_disabled",
            AuthFailure::StoreUnavailable => "store_unavailable",
            AuthFailure::NotYetValid => "not_yet_valid",
            AuthFailure::BadSignature => "bad_signature",
            AuthFailure::AlgNotAllowed => "alg_not_allowed",
            AuthFailure::WrongIssuer => "wrong_issuer",
            AuthFailure::WrongAudience => "wrong_audience",
            AuthFailure::LifetimeExceeded => "lifetime_exceeded",
            AuthFailure::JwksUnavailable => "jwks_unavailable",
            AuthFailure::MethodNotAllowed => "method_not_allowed",
            AuthFailure::RateLimited => "rate_limited",
            AuthFailure::VerifierUnavailable => "verifier_unavailable",
            AuthFailure::VerifierRefused => "verifier_refused",
            AuthFailure::VerifierBadAnswer => "verifier_bad_answer",
            AuthFailure::RoleNotAllowed => "role_not_allowed",
        }
    }

    pub fn code(self) -> ErrorCode {
        match self {
            AuthFailure::MissingCredentials => ErrorCode::MissingCredentials,
            AuthFailure::Ambiguous => ErrorCode::AmbiguousCredentials,
            AuthFailure::SiteDisabled => ErrorCode::SiteDisabled,
            AuthFailure::StoreUnavailable => ErrorCode::StoreUnavailable,
            AuthFailure::JwksUnavailable => ErrorCode::JwksUnavailable,
            AuthFailure::RateLimited => ErrorCode::RateLimited,
            AuthFailure::VerifierUnavailable => ErrorCode::VerifierUnavailable,
            AuthFailure::RoleNotAllowed => ErrorCode::RoleNotAllowed,
            // One public answer for every bad credential, so none can be told apart.
            AuthFailure::Malformed
            | AuthFailure::UnsupportedScheme
            | AuthFailure::UnknownSite
            | AuthFailure::UnknownKey
            | AuthFailure::InvalidKey
            | AuthFailure::WrongSite
            | AuthFailure::Revoked
            | AuthFailure::Expired
            | AuthFailure::NotYetValid
            | AuthFailure::BadSignature
            | AuthFailure::AlgNotAllowed
            | AuthFailure::WrongIssuer
            | AuthFailure::WrongAudience
            | AuthFailure::LifetimeExceeded
            | AuthFailure::MethodNotAllowed
            | AuthFailure::VerifierRefused
            | AuthFailure::VerifierBadAnswer => ErrorCode::InvalidCredentials,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_maps_to_a_code() {
        use AuthFailure::*;
        for f in [
            MissingCredentials,
            Ambiguous,
            Malformed,
            UnsupportedScheme,
            UnknownSite,
            UnknownKey,
            InvalidKey,
            WrongSite,
            Revoked,
            Expired,
            SiteDisabled,
            StoreUnavailable,
            NotYetValid,
            BadSignature,
            AlgNotAllowed,
            WrongIssuer,
            WrongAudience,
            LifetimeExceeded,
            JwksUnavailable,
            MethodNotAllowed,
            RateLimited,
            VerifierUnavailable,
            VerifierRefused,
            VerifierBadAnswer,
            RoleNotAllowed,
        ] {
            let status = f.code().status();
            assert!(matches!(status, 400 | 401 | 403 | 429 | 503), "{f:?}");
            assert!(!f.reason().is_empty());
        }
        assert_eq!(UnknownSite.code(), UnknownKey.code());
        assert_eq!(Revoked.code(), InvalidKey.code());
        // A site that answers anything but a user refuses like WordPress itself would.
        assert_eq!(VerifierBadAnswer.code(), ErrorCode::InvalidCredentials);
        assert_eq!(VerifierRefused.code(), ErrorCode::InvalidCredentials);
        assert_eq!(VerifierUnavailable.code().status(), 503);
        assert_eq!(RoleNotAllowed.code().status(), 403);
    }
}
