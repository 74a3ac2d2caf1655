//! A site's upstream credential as the header WordPress receives, and the headers the
//! gateway owns on the way to a site (which neither a credential nor a claim may use).

use crate::secret::Secret;
use crate::site::CredentialKind;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use http::header::{AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION};
use http::{HeaderName, HeaderValue};

/// Client credentials: removed from every request before it is forwarded, whatever the
/// configuration says (`proxy.strip_headers` only adds names to these).
pub const CLIENT_CREDENTIAL_HEADERS: [HeaderName; 5] = [
    AUTHORIZATION,
    PROXY_AUTHORIZATION,
    HeaderName::from_static("x-api-key"),
    COOKIE,
    HeaderName::from_static("x-wp-nonce"),
];

/// Headers the gateway sets or rewrites on every forwarded request (or HTTP framing):
/// nothing else may write them, not even a site's `header` credential.
pub const GATEWAY_HEADERS: [&str; 8] = [
    "host",
    "x-request-id",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "content-length",
    "transfer-encoding",
    "connection",
];

/// A header the gateway owns on the way to a site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservedHeader {
    /// Set or rewritten on every forwarded request (or HTTP framing): nothing else may
    /// write it.
    Gateway,
    /// Carries the client's credential or site choice: only the site's own upstream
    /// credential may be sent in it, never a copied claim.
    Client,
}

impl ReservedHeader {
    /// Whether (and why) the gateway owns `name`: the one list of reserved names.
    pub fn of(name: &HeaderName) -> Option<ReservedHeader> {
        match name.as_str() {
            "authorization"
            | "proxy-authorization"
            | "cookie"
            | "x-api-key"
            | "x-wp-nonce"
            | "x-website-id" => Some(ReservedHeader::Client),
            other if GATEWAY_HEADERS.contains(&other) => Some(ReservedHeader::Gateway),
            _ => None,
        }
    }

    /// A `header` credential may not use it.
    pub fn refuses_credentials(self) -> bool {
        self == ReservedHeader::Gateway
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidCredential {
    #[error("an app-password credential needs a user name (--username) without ':'")]
    Username,
    #[error("a header credential needs a valid header name (--header-name)")]
    HeaderName,
    #[error("the header {0} cannot carry a credential: it is removed or rewritten by the gateway")]
    ReservedHeader(String),
    #[error("the secret must be non-empty text without control characters")]
    Secret,
}

fn header_text(secret: &Secret) -> Result<&str, InvalidCredential> {
    match secret.expose_str() {
        Some(s) if !s.is_empty() && !s.chars().any(char::is_control) => Ok(s),
        _ => Err(InvalidCredential::Secret),
    }
}

fn sensitive(mut v: HeaderValue) -> HeaderValue {
    v.set_sensitive(true);
    v
}

/// The header that carries a site's credential to WordPress.
pub fn credential_header(
    kind: CredentialKind,
    username: Option<&str>,
    secret: &Secret,
) -> Result<(HeaderName, HeaderValue), InvalidCredential> {
    let text = header_text(secret)?;
    let (name, value) = match kind {
        CredentialKind::AppPassword => {
            let user = username
                .filter(|u| !u.is_empty() && !u.contains(':') && !u.chars().any(char::is_control))
                .ok_or(InvalidCredential::Username)?;
            let plain = zeroize::Zeroizing::new(format!("{user}:{text}"));
            let value = zeroize::Zeroizing::new(format!("Basic {}", B64.encode(plain.as_bytes())));
            (AUTHORIZATION, HeaderValue::from_str(&value))
        }
        CredentialKind::Bearer => {
            let value = zeroize::Zeroizing::new(format!("Bearer {text}"));
            (AUTHORIZATION, HeaderValue::from_str(&value))
        }
        CredentialKind::Header => {
            let name = username
                .and_then(|n| HeaderName::from_bytes(n.as_bytes()).ok())
                .ok_or(InvalidCredential::HeaderName)?;
            if ReservedHeader::of(&name).is_some_and(ReservedHeader::refuses_credentials) {
                return Err(InvalidCredential::ReservedHeader(name.to_string()));
            }
            (name, HeaderValue::from_str(text))
        }
        CredentialKind::None => return Err(InvalidCredential::Secret),
    };
    value
        .map(|v| (name, sensitive(v)))
        .map_err(|_| InvalidCredential::Secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> Secret {
        Secret::from_string(s.into())
    }

    #[test]
    fn app_password_is_basic() {
        let (n, v) =
            credential_header(CredentialKind::AppPassword, Some("api"), &secret("ab cd")).unwrap();
        assert_eq!(n, AUTHORIZATION);
        assert_eq!(
            v.to_str().unwrap(),
            format!("Basic {}", B64.encode("api:ab cd"))
        );
        assert!(v.is_sensitive());
        assert_eq!(
            credential_header(CredentialKind::AppPassword, None, &secret("x")),
            Err(InvalidCredential::Username)
        );
        assert_eq!(
            credential_header(CredentialKind::AppPassword, Some("a:b"), &secret("x")),
            Err(InvalidCredential::Username)
        );
    }

    #[test]
    fn bearer_and_header() {
        let (n, v) = credential_header(CredentialKind::Bearer, None, &secret("tok")).unwrap();
        assert_eq!(
            (n.as_str(), v.to_str().unwrap()),
            ("authorization", "Bearer tok")
        );
        let (n, v) =
            credential_header(CredentialKind::Header, Some("X-Plugin-Auth"), &secret("t")).unwrap();
        assert_eq!((n.as_str(), v.to_str().unwrap()), ("x-plugin-auth", "t"));
        assert!(
            credential_header(CredentialKind::Header, Some("bad header"), &secret("t")).is_err()
        );
        assert!(matches!(
            credential_header(CredentialKind::Header, Some("Host"), &secret("t")),
            Err(InvalidCredential::ReservedHeader(_))
        ));
        assert_eq!(
            credential_header(CredentialKind::Bearer, None, &secret("a\r\nb")),
            Err(InvalidCredential::Secret)
        );
        assert_eq!(
            credential_header(CredentialKind::Bearer, None, &secret("")),
            Err(InvalidCredential::Secret)
        );
    }

    #[test]
    fn one_list_two_kinds_of_reserved_header() {
        let of = |n: &str| ReservedHeader::of(&HeaderName::from_bytes(n.as_bytes()).unwrap());
        assert_eq!(of("X-Forwarded-For"), Some(ReservedHeader::Gateway));
        assert_eq!(of("cookie"), Some(ReservedHeader::Client));
        assert_eq!(of("x-plugin-auth"), None);
        for name in &CLIENT_CREDENTIAL_HEADERS {
            assert_eq!(
                ReservedHeader::of(name),
                Some(ReservedHeader::Client),
                "{name}"
            );
        }
        // The site's own credential may travel in a header the client's credential uses.
        assert!(credential_header(CredentialKind::Header, Some("X-API-Key"), &secret("t")).is_ok());
    }
}
