//! What changes between the client's request and the one WordPress receives: client
//! credentials out, the site's credential in, forwarding headers set.

use crate::credential::CLIENT_CREDENTIAL_HEADERS;
use crate::site::UpstreamTarget;
use http::header::HOST;
use http::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;

/// Everything the upstream request needs besides the body.
pub struct Forwarding<'a> {
    /// Removed besides [`CLIENT_CREDENTIAL_HEADERS`] (`proxy.strip_headers`).
    pub strip: &'a [HeaderName],
    /// The header the site's own credential goes in (e.g. a plugin's `X-Plugin-Auth`):
    /// always removed from the client's request, even when something else is injected.
    pub site_credential_header: Option<&'a HeaderName>,
    /// The credential to inject, after everything above is removed.
    pub credential: Option<&'a (HeaderName, HeaderValue)>,
    pub upstream: &'a UpstreamTarget,
    pub request_id: &'a HeaderValue,
    /// The X-Forwarded-For to send (see `client.rs`).
    pub forwarded_for: Option<&'a super::ForwardedFor>,
    /// The request came over TLS (X-Forwarded-Proto: https).
    pub over_tls: bool,
    /// Headers the site fills from verified claims: always removed from the client's
    /// request, so a client cannot set them itself.
    pub claim_headers: &'a [(String, HeaderName)],
    /// The verified identity to add (a subset of `claim_headers`' names).
    pub identity: &'a [(HeaderName, HeaderValue)],
}

const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Whether the client's connection is TLS (its digest carries the handshake's).
pub fn over_tls(digest: Option<&pingora::protocols::Digest>) -> bool {
    digest.is_some_and(|d| d.ssl_digest.is_some())
}

/// Rewrites the client's request into the one the site receives.
///
/// The header map is edited directly (as `http::request::Parts`) rather than through
/// `RequestHeader`'s own methods: those also keep a second map with each name's original
/// spelling, and parse and copy every custom name on each call. Names reach the site in
/// lower case, as HTTP/2 sends them and HAProxy forwards them; WordPress (PHP) reads
/// headers case-insensitively. A target that is not UTF-8 is forwarded byte for byte.
pub fn prepare(req: &mut RequestHeader, f: &Forwarding<'_>) -> pingora::Result<()> {
    let raw_target = (!req.raw_path_is_utf8()).then(|| req.raw_path().to_vec());
    let blank = RequestHeader::from(http::Request::new(()).into_parts().0);
    let mut parts: http::request::Parts = std::mem::replace(req, blank).into();
    let h = &mut parts.headers;
    // Room for what is added below, made in one step (the map is sized for the
    // client's headers, and grows by doubling).
    h.reserve(f.identity.len() + 6);
    // The client's few header names are each compared with the list, instead of a
    // hashed lookup per name on the list; each one found goes, with all its values.
    let stripped = |name: &HeaderName| {
        CLIENT_CREDENTIAL_HEADERS.contains(name)
            || f.strip.contains(name)
            || f.site_credential_header == Some(name)
            || f.claim_headers.iter().any(|(_, claimed)| claimed == name)
    };
    while let Some(name) = h.keys().find(|name| stripped(name)).cloned() {
        h.remove(&name);
    }
    if let Some((name, value)) = f.credential {
        h.insert(name.clone(), value.clone());
    }
    for (name, value) in f.identity {
        h.insert(name.clone(), value.clone());
    }
    h.insert(super::request_id::NAME, f.request_id.clone());
    let original_host = h.get(HOST).cloned().or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    if let Some(host) = original_host {
        h.insert(X_FORWARDED_HOST, host);
    }
    match f.forwarded_for.and_then(super::ForwardedFor::header_value) {
        Some(value) => h.insert(X_FORWARDED_FOR, value),
        None => h.remove(X_FORWARDED_FOR),
    };
    let proto = if f.over_tls { "https" } else { "http" };
    h.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    h.insert(HOST, f.upstream.authority.clone());
    let prefix = f.upstream.path_prefix.as_str();
    if !prefix.is_empty() && raw_target.is_none() {
        let pq = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        parts.uri = format!("{prefix}{pq}").parse::<http::Uri>().map_err(|e| {
            pingora::Error::explain(pingora::ErrorType::InternalError, format!("bad uri: {e}"))
        })?;
    }
    *req = RequestHeader::from(parts);
    if let Some(raw) = raw_target {
        req.set_raw_path(&[prefix.as_bytes(), &raw].concat())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::credential_header;
    use crate::secret::Secret;
    use crate::site::CredentialKind;
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine;

    #[test]
    fn prepare_strips_injects_and_forwards() {
        let mut req = RequestHeader::build("GET", b"/wp-json/wp/v2/posts?x=1", None).unwrap();
        req.insert_header("Host", "gw.example").unwrap();
        req.insert_header("Authorization", "Bearer wpg_client")
            .unwrap();
        req.insert_header("X-API-Key", "wpg_client").unwrap();
        req.insert_header("Cookie", "wordpress_logged_in=1")
            .unwrap();
        req.insert_header("Proxy-Authorization", "Basic eDp5")
            .unwrap();
        req.insert_header("X-WP-Nonce", "abc").unwrap();
        req.insert_header("X-Debug", "1").unwrap();
        // Repeated, in another case: every value goes.
        req.append_header("x-api-key", "wpg_second").unwrap();
        req.append_header("COOKIE", "b=2").unwrap();
        req.insert_header("X-Forwarded-For", "6.6.6.6").unwrap();
        req.insert_header("X-Kept", "yes").unwrap();
        let pw = Secret::from_string("pw".into());
        let cred = credential_header(CredentialKind::AppPassword, Some("api"), &pw).unwrap();
        let upstream = UpstreamTarget::parse("http://127.0.0.1:9000/blog").unwrap();
        // The configuration names only X-Debug: the client's credentials go all the same.
        let strip = [HeaderName::from_static("x-debug")];
        prepare(
            &mut req,
            &Forwarding {
                strip: &strip,
                site_credential_header: Some(&cred.0),
                credential: Some(&cred),
                upstream: &upstream,
                request_id: &HeaderValue::from_static("rid"),
                forwarded_for: Some(&super::super::ForwardedFor::Peer([10, 1, 2, 3].into())),
                over_tls: false,
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
        for gone in [
            "x-api-key",
            "cookie",
            "proxy-authorization",
            "x-wp-nonce",
            "x-debug",
        ] {
            assert_eq!(h(gone), None, "{gone}");
        }
        assert_eq!(req.headers.get_all("x-api-key").iter().count(), 0);
        assert_eq!(req.headers.get_all("cookie").iter().count(), 0);
        assert_eq!(h("x-kept").as_deref(), Some("yes"));
        assert_eq!(h("x-forwarded-for").as_deref(), Some("10.1.2.3"));
        assert_eq!(h("x-forwarded-host").as_deref(), Some("gw.example"));
        assert_eq!(h("x-forwarded-proto").as_deref(), Some("http"));
        assert_eq!(h("host").as_deref(), Some("127.0.0.1:9000"));
        assert_eq!(h("x-request-id").as_deref(), Some("rid"));
        assert_eq!(req.uri.to_string(), "/blog/wp-json/wp/v2/posts?x=1");
        assert_eq!(req.headers.get_all("authorization").iter().count(), 1);
        // On the wire: one line per header, names in lower case (standard ones titled).
        let mut wire = Vec::new();
        req.header_to_h1_wire(&mut wire);
        let wire = String::from_utf8(wire).unwrap();
        assert!(wire.contains("x-forwarded-for: 10.1.2.3\r\n"), "{wire}");
        assert!(wire.contains("Host: 127.0.0.1:9000\r\n"), "{wire}");
        assert_eq!(wire.matches("\r\n").count(), req.headers.len());
    }

    #[test]
    fn a_target_that_is_not_utf8_is_forwarded_byte_for_byte() {
        let mut req = RequestHeader::build("GET", b"/caf\xe9?q=\xff", None).unwrap();
        assert!(!req.raw_path_is_utf8());
        let upstream = UpstreamTarget::parse("http://127.0.0.1:9000/blog").unwrap();
        prepare(
            &mut req,
            &Forwarding {
                strip: &[],
                site_credential_header: None,
                credential: None,
                upstream: &upstream,
                request_id: &HeaderValue::from_static("rid"),
                forwarded_for: None,
                over_tls: true,
                claim_headers: &[],
                identity: &[],
            },
        )
        .unwrap();
        assert_eq!(req.raw_path(), b"/blog/caf\xe9?q=\xff");
        assert_eq!(req.headers.get("x-forwarded-proto").unwrap(), "https");
        assert_eq!(req.headers.get("host").unwrap(), "127.0.0.1:9000");
    }

    /// A site whose credential goes in a plugin's header: the client's value of that
    /// header never reaches the site, also when another credential is injected (e.g. a
    /// client's own token, forwarded in its name).
    #[test]
    fn the_sites_own_credential_header_is_always_removed() {
        let mut req = RequestHeader::build("GET", b"/wp-json/", None).unwrap();
        req.insert_header("X-Plugin-Auth", "forged").unwrap();
        req.insert_header("Authorization", "Bearer client").unwrap();
        let site_header = HeaderName::from_static("x-plugin-auth");
        let other = (
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Bearer delegated"),
        );
        let upstream = UpstreamTarget::parse("http://127.0.0.1:9000").unwrap();
        prepare(
            &mut req,
            &Forwarding {
                strip: &[],
                site_credential_header: Some(&site_header),
                credential: Some(&other),
                upstream: &upstream,
                request_id: &HeaderValue::from_static("rid"),
                forwarded_for: None,
                over_tls: true,
                claim_headers: &[],
                identity: &[],
            },
        )
        .unwrap();
        assert!(req.headers.get("x-plugin-auth").is_none());
        assert_eq!(
            req.headers
                .get_all("authorization")
                .iter()
                .collect::<Vec<_>>(),
            vec!["Bearer delegated"]
        );
    }
}
