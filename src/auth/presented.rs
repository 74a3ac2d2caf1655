//! Which credential a request presents: an API key or a JWT, found in its headers
//! without allocating, or the exact reason it presents none that can be used.

use super::{api_key, jwt, AuthFailure};
use http::HeaderMap;

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
}
