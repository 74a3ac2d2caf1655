//! Per-request state, carried through the Pingora phases.

use crate::auth::Principal;
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

pub struct RequestCtx {
    pub started: Instant,
    /// The configuration this request runs on, start to finish.
    pub config: Arc<Config>,
    pub request_id: String,
    /// The X-Website-ID, once it is known to be well-formed.
    pub site_id: Option<String>,
    pub site: Option<Arc<ResolvedSite>>,
    pub principal: Option<Principal>,
    pub rejection: Option<Rejection>,
}

impl RequestCtx {
    pub fn new(config: Arc<Config>) -> Self {
        Self {
            started: Instant::now(),
            config,
            request_id: String::new(),
            site_id: None,
            site: None,
            principal: None,
            rejection: None,
        }
    }
}
