//! Client authentication: which credential a request presents, who it proves the
//! client is, and the exact reason when it proves nothing.

pub mod api_key;

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
        }
    }

    pub fn code(self) -> ErrorCode {
        match self {
            AuthFailure::MissingCredentials => ErrorCode::MissingCredentials,
            AuthFailure::Ambiguous => ErrorCode::AmbiguousCredentials,
            AuthFailure::SiteDisabled => ErrorCode::SiteDisabled,
            // One public answer for every bad credential, so none can be told apart.
            AuthFailure::Malformed
            | AuthFailure::UnsupportedScheme
            | AuthFailure::UnknownSite
            | AuthFailure::UnknownKey
            | AuthFailure::InvalidKey
            | AuthFailure::WrongSite
            | AuthFailure::Revoked
            | AuthFailure::Expired => ErrorCode::InvalidCredentials,
        }
    }
}

/// Who an accepted request acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub key_id: String,
}

/// The credential a request presents, borrowed from its headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented<'a> {
    ApiKey(&'a str),
    Refused(AuthFailure),
}

pub const API_KEY_HEADER: &str = "x-api-key";

/// Finds the client's credential: `X-API-Key: wpg_...` or `Authorization: Bearer wpg_...`.
pub fn presented(headers: &HeaderMap) -> Presented<'_> {
    let mut api_keys = headers.get_all(API_KEY_HEADER).iter();
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
        (None, Some(_)) => Presented::Refused(AuthFailure::UnsupportedScheme),
        (None, None) if auth.is_some() => Presented::Refused(AuthFailure::UnsupportedScheme),
        (None, None) => Presented::Refused(AuthFailure::MissingCredentials),
    }
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
        ] {
            let status = f.code().status();
            assert!(matches!(status, 400 | 401 | 403), "{f:?}");
            assert!(!f.reason().is_empty());
        }
        assert_eq!(UnknownSite.code(), UnknownKey.code());
        assert_eq!(Revoked.code(), InvalidKey.code());
    }
}
