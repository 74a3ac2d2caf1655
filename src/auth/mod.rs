//! Client authentication: which credential a request presents, who it proves the
//! client is, and the exact reason when it proves nothing.

pub mod api_key;
pub mod jwt;
pub mod policy;
pub mod ratelimit;
pub mod wordpress;

use crate::error::ErrorCode;
use http::HeaderMap;

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
    /// Delegated verification: the site could not be asked.
    VerifierUnavailable,
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
        }
    }

    pub fn code(self) -> ErrorCode {
        match self {
            AuthFailure::MissingCredentials => ErrorCode::MissingCredentials,
            AuthFailure::Ambiguous => ErrorCode::AmbiguousCredentials,
            AuthFailure::SiteDisabled => ErrorCode::SiteDisabled,
            AuthFailure::JwksUnavailable => ErrorCode::JwksUnavailable,
            AuthFailure::RateLimited => ErrorCode::RateLimited,
            AuthFailure::VerifierUnavailable => ErrorCode::VerifierUnavailable,
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
            | AuthFailure::MethodNotAllowed => ErrorCode::InvalidCredentials,
        }
    }
}

/// Who an accepted request acts as.
#[derive(Clone, PartialEq, Eq)]
pub enum Principal {
    /// The key's cached record, shared (not copied) with the request.
    ApiKey(std::sync::Arc<crate::store::ApiKeyRecord>),
    /// A verified JWT; `subject` is its `sub` (or the WordPress user id when the site
    /// verified the token itself).
    Jwt { subject: Option<String> },
}

/// Only the public part: the key id or the token subject, never the key's hash.
impl std::fmt::Debug for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::ApiKey(key) => f.debug_tuple("ApiKey").field(&key.key_id).finish(),
            Principal::Jwt { subject } => f.debug_struct("Jwt").field("subject", subject).finish(),
        }
    }
}

impl Principal {
    /// For logs: the key id or the token subject (both public).
    pub fn log_id(&self) -> &str {
        match self {
            Principal::ApiKey(key) => &key.key_id,
            Principal::Jwt { subject } => subject.as_deref().unwrap_or("-"),
        }
    }
}

/// The credential a request presents, borrowed from its headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented<'a> {
    ApiKey(&'a str),
    Jwt(&'a str),
    Refused(AuthFailure),
}

pub const API_KEY_HEADER: &str = "x-api-key";
/// `API_KEY_HEADER` pre-parsed, for lookups on the request path.
const API_KEY: http::HeaderName = http::HeaderName::from_static(API_KEY_HEADER);

/// Finds the client's credential: `X-API-Key: wpg_...`, `Authorization: Bearer wpg_...`
/// (an API key) or `Authorization: Bearer <compact JWS>` (a JWT). Tokens over 8 KiB are
/// refused before any parsing.
pub fn presented(headers: &HeaderMap) -> Presented<'_> {
    let mut api_keys = headers.get_all(&API_KEY).iter();
    let api_key = api_keys.next();
    if api_keys.next().is_some() {
        return Presented::Refused(AuthFailure::Ambiguous);
    }
    let mut auths = headers.get_all(http::header::AUTHORIZATION).iter();
    let auth = auths.next();
    if auths.next().is_some() {
        return Presented::Refused(AuthFailure::Ambiguous);
    }
    let bearer = match auth.map(|v| v.to_str()) {
        None => None,
        Some(Err(_)) => return Presented::Refused(AuthFailure::Malformed),
        Some(Ok(v)) => match v.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => Some(token.trim()),
            // Any other scheme (e.g. Basic meant for WordPress) is not ours: it is
            // stripped before forwarding and proves nothing here.
            _ => None,
        },
    };
    match (api_key, bearer) {
        (Some(_), Some(_)) => Presented::Refused(AuthFailure::Ambiguous),
        (Some(v), None) => match v.to_str() {
            Ok(s) => Presented::ApiKey(s.trim()),
            Err(_) => Presented::Refused(AuthFailure::Malformed),
        },
        (None, Some(token)) if token.starts_with(api_key::PREFIX) => Presented::ApiKey(token),
        (None, Some(token)) if token.len() > jwt::MAX_TOKEN_BYTES => {
            Presented::Refused(AuthFailure::Malformed)
        }
        // Shaped like a JWS (three parts): the verifier judges it, so an `alg: none`
        // token with its empty signature is reported as such, not as malformed.
        (None, Some(token)) if jws_shaped(token) => Presented::Jwt(token),
        (None, Some(_)) => Presented::Refused(AuthFailure::Malformed),
        (None, None) if auth.is_some() => Presented::Refused(AuthFailure::UnsupportedScheme),
        (None, None) => Presented::Refused(AuthFailure::MissingCredentials),
    }
}

fn jws_shaped(token: &str) -> bool {
    let mut parts = token.split('.');
    matches!(
        (parts.next(), parts.next(), parts.next(), parts.next()),
        (Some(h), Some(p), Some(_), None) if !h.is_empty() && !p.is_empty()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn finds_the_one_credential() {
        assert_eq!(
            presented(&headers(&[("X-API-Key", "wpg_a_b")])),
            Presented::ApiKey("wpg_a_b")
        );
        assert_eq!(
            presented(&headers(&[("Authorization", "Bearer wpg_a_b")])),
            Presented::ApiKey("wpg_a_b")
        );
        assert_eq!(
            presented(&headers(&[("authorization", "bearer  wpg_a_b ")])),
            Presented::ApiKey("wpg_a_b")
        );
        assert_eq!(
            presented(&headers(&[])),
            Presented::Refused(AuthFailure::MissingCredentials)
        );
        assert_eq!(
            presented(&headers(&[
                ("X-API-Key", "a"),
                ("Authorization", "Bearer wpg_x")
            ])),
            Presented::Refused(AuthFailure::Ambiguous)
        );
        assert_eq!(
            presented(&headers(&[("X-API-Key", "a"), ("X-API-Key", "b")])),
            Presented::Refused(AuthFailure::Ambiguous)
        );
        assert_eq!(
            presented(&headers(&[(
                "Authorization",
                "Bearer aGVhZA.cGF5bG9hZA.c2ln"
            )])),
            Presented::Jwt("aGVhZA.cGF5bG9hZA.c2ln")
        );
        assert_eq!(
            presented(&headers(&[
                ("X-API-Key", "wpg_k"),
                ("Authorization", "Bearer a.b.c")
            ])),
            Presented::Refused(AuthFailure::Ambiguous)
        );
        let huge = format!(
            "Bearer {}.{}.{}",
            "a".repeat(3000),
            "b".repeat(3000),
            "c".repeat(3000)
        );
        assert_eq!(
            presented(&headers(&[("Authorization", huge.as_str())])),
            Presented::Refused(AuthFailure::Malformed)
        );
        assert_eq!(
            presented(&headers(&[("Authorization", "Bearer opaque")])),
            Presented::Refused(AuthFailure::Malformed)
        );
        assert_eq!(
            presented(&headers(&[("Authorization", "Basic dTpw")])),
            Presented::Refused(AuthFailure::UnsupportedScheme)
        );
        // A Basic header beside an API key is not a second credential for wpgate.
        assert_eq!(
            presented(&headers(&[
                ("X-API-Key", "wpg_k"),
                ("Authorization", "Basic dTpw")
            ])),
            Presented::ApiKey("wpg_k")
        );
    }

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
        ] {
            let status = f.code().status();
            assert!(matches!(status, 400 | 401 | 403 | 429 | 503), "{f:?}");
            assert!(!f.reason().is_empty());
        }
        assert_eq!(UnknownSite.code(), UnknownKey.code());
        assert_eq!(Revoked.code(), InvalidKey.code());
    }
}
