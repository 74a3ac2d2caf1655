//! What changes between the client's request and the one WordPress receives: client
//! credentials out, the site's credential in, forwarding headers set.

use crate::secret::Secret;
use crate::site::{CredentialKind, UpstreamTarget};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use http::header::{AUTHORIZATION, HOST};
use http::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;

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

/// Headers a `header` credential must not use: the gateway owns them.
const RESERVED: &[&str] = &[
    "host",
    "x-request-id",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "content-length",
    "transfer-encoding",
    "connection",
];

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
            if RESERVED.contains(&name.as_str()) {
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

/// Everything the upstream request needs besides the body.
pub struct Forwarding<'a> {
    pub strip: &'a [HeaderName],
    pub credential: Option<&'a (HeaderName, HeaderValue)>,
    pub upstream: &'a UpstreamTarget,
    pub request_id: &'a str,
    /// The X-Forwarded-For to send (see `client.rs`).
    pub forwarded_for: Option<&'a super::ForwardedFor>,
    /// Headers the site fills from verified claims: always removed from the client's
    /// request, so a client cannot set them itself.
    pub claim_headers: &'a [(String, HeaderName)],
    /// The verified identity to add (a subset of `claim_headers`' names).
    pub identity: &'a [(HeaderName, HeaderValue)],
}

/// Rewrites the client's request into the one the site receives.
pub fn prepare(req: &mut RequestHeader, f: &Forwarding<'_>) -> pingora::Result<()> {
    for name in f.strip {
        req.remove_header(name);
    }
    for (_, name) in f.claim_headers {
        req.remove_header(name);
    }
    if let Some((name, value)) = f.credential {
        req.insert_header(name, value.clone())?;
    }
    for (name, value) in f.identity {
        req.insert_header(name, value.clone())?;
    }
    req.insert_header("x-request-id", f.request_id)?;
    let original_host = req.headers.get(HOST).cloned().or_else(|| {
        req.uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    if let Some(host) = original_host {
        req.insert_header("x-forwarded-host", host)?;
    }
    match f.forwarded_for.and_then(super::ForwardedFor::header_value) {
        Some(value) => req.insert_header("x-forwarded-for", value)?,
        None => {
            req.remove_header("x-forwarded-for");
        }
    }
    req.insert_header("x-forwarded-proto", "http")?;
    req.insert_header(HOST, f.upstream.authority.as_str())?;
    if !f.upstream.path_prefix.is_empty() {
        let pq = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let uri = format!("{}{}", f.upstream.path_prefix, pq)
            .parse::<http::Uri>()
            .map_err(|e| {
                pingora::Error::explain(pingora::ErrorType::InternalError, format!("bad uri: {e}"))
            })?;
        req.set_uri(uri);
    }
    Ok(())
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
    fn prepare_strips_injects_and_forwards() {
        let mut req = RequestHeader::build("GET", b"/wp-json/wp/v2/posts?x=1", None).unwrap();
        req.insert_header("Host", "gw.example").unwrap();
        req.insert_header("Authorization", "Bearer wpg_client")
            .unwrap();
        req.insert_header("X-API-Key", "wpg_client").unwrap();
        req.insert_header("Cookie", "wordpress_logged_in=1")
            .unwrap();
        req.insert_header("X-Forwarded-For", "6.6.6.6").unwrap();
        let cred =
            credential_header(CredentialKind::AppPassword, Some("api"), &secret("pw")).unwrap();
        let upstream = UpstreamTarget::parse("http://127.0.0.1:9000/blog").unwrap();
        let strip: Vec<HeaderName> = ["authorization", "x-api-key", "cookie"]
            .iter()
            .map(|h| HeaderName::from_static(h))
            .collect();
        prepare(
            &mut req,
            &Forwarding {
                strip: &strip,
                credential: Some(&cred),
                upstream: &upstream,
                request_id: "rid",
                forwarded_for: Some(&super::super::ForwardedFor::Peer([10, 1, 2, 3].into())),
                claim_headers: &[],
                identity: &[],
            },
        )
        .unwrap();
        let h = |n: &str| req.headers.get(n).map(|v| v.to_str().unwrap().to_string());
        assert_eq!(
            h("authorization"),
            Some(format!("Basic {}", B64.encode("api:pw")))
        );
        assert_eq!(h("x-api-key"), None);
        assert_eq!(h("cookie"), None);
        assert_eq!(h("x-forwarded-for").as_deref(), Some("10.1.2.3"));
        assert_eq!(h("x-forwarded-host").as_deref(), Some("gw.example"));
        assert_eq!(h("x-forwarded-proto").as_deref(), Some("http"));
        assert_eq!(h("host").as_deref(), Some("127.0.0.1:9000"));
        assert_eq!(h("x-request-id").as_deref(), Some("rid"));
        assert_eq!(req.uri.to_string(), "/blog/wp-json/wp/v2/posts?x=1");
        assert_eq!(req.headers.get_all("authorization").iter().count(), 1);
    }
}
