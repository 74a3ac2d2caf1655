//! Per-request state, carried through the Pingora phases.

use crate::auth::Admitted;
use crate::config::Config;
use crate::error::ErrorCode;
use crate::fleet::ResolvedSite;
use std::sync::Arc;
use std::time::Instant;

/// Why the gateway answered a request itself: the public code and the exact reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    pub code: ErrorCode,
    pub reason: &'static str,
}

impl Rejection {
    pub fn new(code: ErrorCode, reason: &'static str) -> Self {
        Self { code, reason }
    }
}

impl From<crate::auth::AuthFailure> for Rejection {
    fn from(f: crate::auth::AuthFailure) -> Self {
        Rejection::new(f.code(), f.reason())
    }
}

/// The parts of a request's state that most requests never set, boxed: the context is
/// moved several times per request, and is smaller without them (callgrind counts each
/// byte a move copies). Made on the first write.
#[derive(Default)]
struct Rare {
    rejection: Option<Rejection>,
    /// The request's `Origin`, echoed in `Access-Control-Allow-Origin`: set when some
    /// site allows it (for the gateway's own answers), and when the request's site does
    /// (for a forwarded one). See `cors.rs`.
    cors_origin: Option<http::HeaderValue>,
    /// Seconds for Retry-After on a 429.
    retry_after: Option<u64>,
}

pub struct RequestCtx {
    pub started: Instant,
    /// The configuration this request runs on, start to finish.
    pub config: Arc<Config>,
    /// X-Request-ID, kept as the header value it is sent as (see `request_id_text`).
    pub request_id: http::HeaderValue,
    /// The X-Website-ID, once it is known to be well-formed. The header value shares
    /// the request's buffer: keeping it costs no allocation.
    pub site_id: Option<http::HeaderValue>,
    /// The request named no site and legacy single-site mode chose it (`legacy.rs`):
    /// the answer is marked deprecated.
    pub legacy: bool,
    /// The site, once found (also when the request is then refused). Only an admitted
    /// request is forwarded.
    pub site: Option<Arc<ResolvedSite>>,
    /// Who the client proved to be for the site, with the identity headers to send.
    /// Kept (for the access log) when the site then turns the request away; such a
    /// request is answered in `request_filter` and never reaches the upstream phases.
    /// Boxed: this context is moved several times per request, and is smaller without
    /// it (callgrind: fewer instructions per request, the allocation included).
    pub admitted: Option<Box<Admitted>>,
    /// What most requests never set (see [`Rare`]).
    rare: Option<Box<Rare>>,
    /// The client's address (see `client.rs`) and the X-Forwarded-For to send upstream.
    pub client_ip: Option<std::net::IpAddr>,
    pub forwarded_for: Option<super::ForwardedFor>,
    /// When the upstream phase began (for the upstream latency histogram).
    pub upstream_started: Option<Instant>,
}

impl RequestCtx {
    /// The request id as text.
    pub fn request_id_text(&self) -> &str {
        super::request_id::text(&self.request_id)
    }

    /// Legacy single-site mode's settings, when it chose this request's site.
    pub fn legacy_site(&self) -> Option<&crate::config::LegacySite> {
        self.config.live.legacy.as_ref().filter(|_| self.legacy)
    }

    /// Why the gateway answered the request itself, if it did.
    pub fn rejection(&self) -> Option<Rejection> {
        self.rare.as_ref().and_then(|r| r.rejection)
    }

    pub fn set_rejection(&mut self, rejection: Rejection) {
        self.rare_mut().rejection = Some(rejection);
    }

    /// The `Origin` to echo (see [`Rare`]).
    pub fn cors_origin(&self) -> Option<&http::HeaderValue> {
        self.rare.as_ref().and_then(|r| r.cors_origin.as_ref())
    }

    /// Sets the `Origin` to echo; `None` leaves the context as it is.
    pub fn set_cors_origin(&mut self, origin: Option<http::HeaderValue>) {
        if origin.is_some() {
            self.rare_mut().cors_origin = origin;
        }
    }

    /// Seconds for Retry-After on a 429.
    pub fn retry_after(&self) -> Option<u64> {
        self.rare.as_ref().and_then(|r| r.retry_after)
    }

    pub fn set_retry_after(&mut self, seconds: u64) {
        self.rare_mut().retry_after = Some(seconds);
    }

    fn rare_mut(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    /// The well-formed X-Website-ID, if the request got that far.
    pub fn site_id(&self) -> Option<&str> {
        self.site_id.as_ref().and_then(|v| v.to_str().ok())
    }

    pub fn new(config: Arc<Config>) -> Self {
        Self {
            started: Instant::now(),
            config,
            request_id: http::HeaderValue::from_static(""),
            site_id: None,
            legacy: false,
            site: None,
            admitted: None,
            rare: None,
            client_ip: None,
            forwarded_for: None,
            upstream_started: None,
        }
    }
}
