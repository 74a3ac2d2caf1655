//! CORS for browser apps. The gateway is the only CORS authority in front of its sites:
//!
//! - A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is
//!   answered here, before the site id and before any credential, and never forwarded:
//!   204 with the allow headers when some site of the fleet allows the `Origin`, else 403
//!   `cors.origin_not_allowed` (no allow headers). It needs no `X-Website-ID`: browsers
//!   send none on a preflight.
//! - A request with an `Origin` must come from an origin its site allows, checked once
//!   the credential is proven valid for the site (so a client the site does not accept
//!   learns nothing of its origins, nor whether it exists), else 403
//!   `cors.origin_not_allowed`, not forwarded. Requests without `Origin` (servers,
//!   scripts) are not affected.
//! - What reaches the browser: a forwarded answer carries `Access-Control-Allow-Origin`
//!   (that origin, never `*`), `Vary: Origin` and `Access-Control-Expose-Headers`; the
//!   site's own `Access-Control-*` headers are replaced (WordPress echoes any origin and
//!   allows credentials). The gateway's own error answers carry the same headers when
//!   some site of the fleet allows the `Origin` (the same thing a preflight tells
//!   anyone), so the app can read the error; which site allows it is not revealed.
//! - Never `Access-Control-Allow-Credentials`: clients authenticate with a header, not
//!   cookies, and cookies are stripped anyway.
//!
//! A request without `Origin` costs a method comparison and two header lookups (the
//! fleet's check at the start, the site's after auth); nothing is allocated.

use super::ctx::{Rejection, RequestCtx};
use super::{reject, request_id};
use crate::error::{ErrorCode, FORWARDED_METHODS};
use crate::fleet::FleetOrigins;
use crate::site::CorsAllow;
use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;

/// The request headers a browser app may send: the site id, the credential, a body's
/// type and a request id. Not `X-WP-Nonce` or cookies (WordPress's own, cookie-bound
/// scheme, stripped before forwarding).
pub const ALLOW_HEADERS: &str =
    "X-Website-ID, X-API-Key, Authorization, Content-Type, X-Request-ID";
/// The response headers a browser app may read besides the simple ones: WordPress's
/// paging headers and the request id.
pub const EXPOSE_HEADERS: &str = "X-WP-Total, X-WP-TotalPages, Link, X-Request-ID";
/// How long a browser may cache a preflight answer, in seconds.
pub const MAX_AGE_SECONDS: u32 = 600;
const MAX_AGE: &str = "600";

/// The `Access-Control-*` response headers a site may send, replaced by the gateway's.
const SITE_CORS_HEADERS: [HeaderName; 7] = [
    ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_ALLOW_CREDENTIALS,
    ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_HEADERS,
    ACCESS_CONTROL_EXPOSE_HEADERS,
    ACCESS_CONTROL_MAX_AGE,
    HeaderName::from_static("access-control-allow-private-network"),
];

/// Whether the request is a CORS preflight. Only an `OPTIONS` request is looked at
/// further.
pub fn is_preflight(req: &RequestHeader) -> bool {
    req.method == Method::OPTIONS
        && req.headers.contains_key(ORIGIN)
        && req.headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
}

/// The request's one `Origin` header, if it has exactly one.
fn single_origin(headers: &HeaderMap) -> Option<&HeaderValue> {
    let mut all = headers.get_all(ORIGIN).iter();
    let first = all.next()?;
    all.next().is_none().then_some(first)
}

/// The request's `Origin` when some site of the fleet allows it: what the gateway's own
/// answers to this request echo. One header lookup when there is no `Origin`.
pub fn fleet_allowed(req: &RequestHeader, fleet: &FleetOrigins) -> Option<HeaderValue> {
    let origin = single_origin(&req.headers)?;
    fleet.allows(origin.as_bytes()).then(|| origin.clone())
}

/// The `Origin` check of a request for `site` (its credential already proven): no
/// `Origin`, or one the site allows (returned, to be echoed), else the refusal.
pub fn check_site(headers: &HeaderMap, site: &CorsAllow) -> Result<Option<HeaderValue>, Rejection> {
    let mut all = headers.get_all(ORIGIN).iter();
    let Some(origin) = all.next() else {
        return Ok(None);
    };
    if all.next().is_some() {
        return Err(Rejection::new(
            ErrorCode::CorsOriginNotAllowed,
            "origin_repeated",
        ));
    }
    if site.allows(origin.as_bytes()) {
        Ok(Some(origin.clone()))
    } else {
        Err(Rejection::new(
            ErrorCode::CorsOriginNotAllowed,
            "origin_not_allowed",
        ))
    }
}

/// Answers a preflight: 204 with the allow headers for an origin some site allows
/// (`ctx.cors_origin()`), else 403 `cors.origin_not_allowed`.
pub async fn answer_preflight(session: &mut Session, ctx: &mut RequestCtx) -> pingora::Result<()> {
    let Some(origin) = ctx.cors_origin().cloned() else {
        let rejection = Rejection::new(
            ErrorCode::CorsOriginNotAllowed,
            "preflight_origin_not_allowed",
        );
        ctx.set_rejection(rejection);
        return reject::reject(session, rejection.code, &ctx.request_id, None, None, None).await;
    };
    let resp = preflight_response(origin, ctx.request_id.clone())?;
    // A preflight has no body; if one is announced, do not wait to read it.
    if !session.is_body_empty() {
        session.set_keepalive(None);
    }
    session.write_response_header(Box::new(resp), true).await
}

fn preflight_response(
    origin: HeaderValue,
    request_id: HeaderValue,
) -> pingora::Result<ResponseHeader> {
    let mut resp = ResponseHeader::build(204, Some(7))?;
    resp.insert_header("Access-Control-Allow-Origin", origin)?;
    resp.insert_header(
        "Access-Control-Allow-Methods",
        HeaderValue::from_static(FORWARDED_METHODS),
    )?;
    resp.insert_header(
        "Access-Control-Allow-Headers",
        HeaderValue::from_static(ALLOW_HEADERS),
    )?;
    resp.insert_header("Access-Control-Max-Age", HeaderValue::from_static(MAX_AGE))?;
    resp.insert_header("Vary", HeaderValue::from_static("Origin"))?;
    resp.insert_header(request_id::HEADER, request_id)?;
    Ok(resp)
}

/// The CORS headers of an answer to a request from `origin` (allowed): the origin, what
/// the app may read, and `Vary: Origin`. The site's own `Access-Control-*` headers go.
pub fn allow_response(resp: &mut ResponseHeader, origin: &HeaderValue) -> pingora::Result<()> {
    for name in &SITE_CORS_HEADERS {
        resp.remove_header(name);
    }
    resp.insert_header("Access-Control-Allow-Origin", origin.clone())?;
    resp.insert_header(
        "Access-Control-Expose-Headers",
        HeaderValue::from_static(EXPOSE_HEADERS),
    )?;
    vary_on_origin(resp)
}

/// A forwarded answer: the CORS headers for an allowed `origin`; for a site that allows
/// some origin, `Vary: Origin` also without one (a cache in between must not give a
/// browser the answer to a request without `Origin`). Nothing for other sites.
pub fn forwarded(
    resp: &mut ResponseHeader,
    origin: Option<&HeaderValue>,
    site: &CorsAllow,
) -> pingora::Result<()> {
    match origin {
        Some(origin) => allow_response(resp, origin),
        None if !site.is_empty() => vary_on_origin(resp),
        None => Ok(()),
    }
}

/// Adds `Origin` to `Vary` unless it is there (or `Vary: *`).
fn vary_on_origin(resp: &mut ResponseHeader) -> pingora::Result<()> {
    let covered = resp.headers.get_all(VARY).iter().any(|v| {
        v.as_bytes().split(|b| *b == b',').any(|token| {
            let token = token.trim_ascii();
            token == b"*" || token.eq_ignore_ascii_case(b"origin")
        })
    });
    if covered {
        return Ok(());
    }
    resp.append_header("Vary", HeaderValue::from_static("Origin"))
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build(method, b"/wp-json/", None).unwrap();
        for (name, value) in headers {
            req.append_header(name.to_string(), *value).unwrap();
        }
        req
    }

    fn origins(list: &[&str]) -> CorsAllow {
        CorsAllow::parse(list).unwrap()
    }

    fn header<'a>(resp: &'a ResponseHeader, name: &str) -> Vec<&'a str> {
        resp.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    #[test]
    fn a_preflight_is_options_with_origin_and_a_requested_method() {
        let o = ("Origin", "https://app.example.com");
        let m = ("Access-Control-Request-Method", "POST");
        assert!(is_preflight(&request("OPTIONS", &[o, m])));
        assert!(!is_preflight(&request("OPTIONS", &[o])));
        assert!(!is_preflight(&request("OPTIONS", &[m])));
        assert!(!is_preflight(&request("OPTIONS", &[])));
        assert!(!is_preflight(&request("GET", &[o, m])));
        assert!(!is_preflight(&request("POST", &[o, m])));
    }

    #[test]
    fn the_fleet_decides_what_the_gateway_s_own_answers_echo() {
        let fleet = FleetOrigins::default();
        let req = request("GET", &[("Origin", "https://app.example.com")]);
        assert_eq!(fleet_allowed(&req, &fleet), None);
        fleet.set_site("shop", origins(&["https://app.example.com"]));
        assert_eq!(
            fleet_allowed(&req, &fleet).unwrap(),
            "https://app.example.com"
        );
        assert_eq!(fleet_allowed(&request("GET", &[]), &fleet), None);
        for other in ["https://APP.example.com", "https://evil.example", "null"] {
            assert_eq!(
                fleet_allowed(&request("GET", &[("Origin", other)]), &fleet),
                None,
                "{other}"
            );
        }
        let twice = request(
            "GET",
            &[
                ("Origin", "https://app.example.com"),
                ("Origin", "https://app.example.com"),
            ],
        );
        assert_eq!(fleet_allowed(&twice, &fleet), None);
    }

    #[test]
    fn a_site_accepts_only_its_own_origins() {
        let site = origins(&["https://app.example.com"]);
        let check = |headers: &[(&str, &str)], site: &CorsAllow| {
            check_site(&request("GET", headers).headers, site)
        };
        assert_eq!(check(&[], &site), Ok(None));
        assert_eq!(check(&[], &CorsAllow::none()), Ok(None));
        assert_eq!(
            check(&[("Origin", "https://app.example.com")], &site)
                .unwrap()
                .unwrap(),
            "https://app.example.com"
        );
        for (headers, reason) in [
            (
                &[("Origin", "https://other.example.com")][..],
                "origin_not_allowed",
            ),
            (
                &[("Origin", "https://app.example.com:443")],
                "origin_not_allowed",
            ),
            (&[("Origin", "null")], "origin_not_allowed"),
            (
                &[
                    ("Origin", "https://app.example.com"),
                    ("Origin", "https://app.example.com"),
                ],
                "origin_repeated",
            ),
        ] {
            let r = check(headers, &site).unwrap_err();
            assert_eq!(r.code, ErrorCode::CorsOriginNotAllowed);
            assert_eq!(r.reason, reason);
        }
        // A site without origins refuses every browser request.
        assert!(check(&[("Origin", "https://app.example.com")], &CorsAllow::none()).is_err());
    }

    #[test]
    fn the_preflight_answer_allows_exactly_what_the_gateway_forwards() {
        let resp = preflight_response(
            HeaderValue::from_static("https://app.example.com"),
            HeaderValue::from_static("req-1"),
        )
        .unwrap();
        assert_eq!(resp.status, 204);
        assert_eq!(
            header(&resp, "access-control-allow-origin"),
            ["https://app.example.com"]
        );
        assert_eq!(
            header(&resp, "access-control-allow-methods"),
            ["GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"]
        );
        assert_eq!(
            header(&resp, "access-control-allow-headers"),
            ["X-Website-ID, X-API-Key, Authorization, Content-Type, X-Request-ID"]
        );
        assert_eq!(header(&resp, "access-control-max-age"), ["600"]);
        assert_eq!(MAX_AGE, MAX_AGE_SECONDS.to_string());
        assert_eq!(header(&resp, "vary"), ["Origin"]);
        assert_eq!(header(&resp, "x-request-id"), ["req-1"]);
        assert!(header(&resp, "access-control-allow-credentials").is_empty());
    }

    #[test]
    fn the_site_s_cors_headers_are_replaced() {
        let mut resp = ResponseHeader::build(200, None).unwrap();
        for (name, value) in [
            ("Access-Control-Allow-Origin", "*"),
            ("Access-Control-Allow-Credentials", "true"),
            ("Access-Control-Expose-Headers", "X-WP-Total"),
            ("Access-Control-Allow-Headers", "X-WP-Nonce"),
            ("Vary", "Accept-Encoding"),
            ("X-WP-Total", "3"),
        ] {
            resp.append_header(name, value).unwrap();
        }
        let origin = HeaderValue::from_static("https://app.example.com");
        allow_response(&mut resp, &origin).unwrap();
        assert_eq!(
            header(&resp, "access-control-allow-origin"),
            ["https://app.example.com"]
        );
        assert!(header(&resp, "access-control-allow-credentials").is_empty());
        assert!(header(&resp, "access-control-allow-headers").is_empty());
        assert_eq!(
            header(&resp, "access-control-expose-headers"),
            ["X-WP-Total, X-WP-TotalPages, Link, X-Request-ID"]
        );
        assert_eq!(header(&resp, "vary"), ["Accept-Encoding", "Origin"]);
        assert_eq!(header(&resp, "x-wp-total"), ["3"]);
        // Once is enough, and an upstream's `Vary: origin` or `*` already covers it.
        allow_response(&mut resp, &origin).unwrap();
        assert_eq!(header(&resp, "vary"), ["Accept-Encoding", "Origin"]);
        for vary in ["accept, ORIGIN", "*"] {
            let mut r = ResponseHeader::build(200, None).unwrap();
            r.append_header("Vary", vary).unwrap();
            allow_response(&mut r, &origin).unwrap();
            assert_eq!(header(&r, "vary"), [vary]);
        }
    }

    #[test]
    fn forwarded_answers_without_origin() {
        let site = origins(&["https://app.example.com"]);
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.append_header("Access-Control-Allow-Origin", "*")
            .unwrap();
        // A site with origins: Vary only; the rest is left as the site sent it.
        forwarded(&mut resp, None, &site).unwrap();
        assert_eq!(header(&resp, "vary"), ["Origin"]);
        assert_eq!(header(&resp, "access-control-allow-origin"), ["*"]);
        // A site without: nothing is touched.
        let mut resp = ResponseHeader::build(200, None).unwrap();
        forwarded(&mut resp, None, &CorsAllow::none()).unwrap();
        assert!(resp.headers.is_empty());
    }
}
