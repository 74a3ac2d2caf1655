//! The Pingora proxy: each phase reads like a table of contents and calls the module
//! that owns the concern.

pub mod ctx;
pub mod inject;
pub mod request_id;
mod respond;

use crate::auth::{self, api_key, AuthFailure, Presented, Principal};
use crate::config::Live;
use crate::error::ErrorCode;
use crate::fleet::Fleet;
use async_trait::async_trait;
use ctx::{Rejection, RequestCtx};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use std::sync::Arc;

pub const SITE_HEADER: &str = "x-website-id";

pub struct Gateway {
    fleet: Arc<Fleet>,
    config: Live,
}

impl Gateway {
    pub fn new(fleet: Arc<Fleet>, config: Live) -> Self {
        Self { fleet, config }
    }

    /// Steps 2-6 of the request path: site id, credential, site, key, site state.
    /// Public for the benchmark of the auth path.
    pub async fn admit(&self, req: &RequestHeader, ctx: &mut RequestCtx) -> Result<(), Rejection> {
        let site_id = site_id(req)?;
        ctx.site_id = Some(site_id.to_string());
        // A request without a credential is refused before any lookup.
        let key_text = match auth::presented(&req.headers) {
            Presented::ApiKey(k) => k,
            Presented::Refused(f) => return Err(f.into()),
        };
        let site = self
            .fleet
            .resolve_site(site_id)
            .await
            .map_err(|e| lookup_failed(&e, site_id))?
            .ok_or(AuthFailure::UnknownSite)?;
        let parsed = api_key::parse(key_text).ok_or(AuthFailure::Malformed)?;
        let key = self
            .fleet
            .find_key(parsed.key_id)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "store lookup of an API key failed");
                Rejection::new(ErrorCode::StoreUnavailable, "store_unavailable")
            })?
            .ok_or(AuthFailure::UnknownKey)?;
        api_key::check(
            self.fleet.hasher(),
            parsed,
            &key,
            site_id,
            crate::time::now_unix(),
        )?;
        ctx.principal = Some(Principal {
            key_id: key.key_id.clone(),
        });
        if !site.enabled {
            return Err(AuthFailure::SiteDisabled.into());
        }
        ctx.site = Some(site);
        Ok(())
    }
}

/// Exactly one well-formed X-Website-ID.
fn site_id(req: &RequestHeader) -> Result<&str, Rejection> {
    let mut values = req.headers.get_all(SITE_HEADER).iter();
    let Some(first) = values.next() else {
        return Err(Rejection::new(ErrorCode::MissingSiteId, "missing_site_id"));
    };
    if values.next().is_some() || !crate::site::is_valid_site_id(first.as_bytes()) {
        return Err(Rejection::new(ErrorCode::InvalidSiteId, "invalid_site_id"));
    }
    first
        .to_str()
        .map_err(|_| Rejection::new(ErrorCode::InvalidSiteId, "invalid_site_id"))
}

fn lookup_failed(e: &crate::fleet::FleetError, site_id: &str) -> Rejection {
    match e {
        crate::fleet::FleetError::Store(_) => {
            tracing::error!(site = site_id, error = %e, "store lookup of a site failed");
            Rejection::new(ErrorCode::StoreUnavailable, "store_unavailable")
        }
        _ => {
            tracing::error!(site = site_id, error = %e, "site record cannot be used");
            Rejection::new(ErrorCode::Internal, "site_unusable")
        }
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new(self.config.load_full())
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        ctx.request_id = request_id::take_or_mint(&session.req_header().headers);
        match self.admit(session.req_header(), ctx).await {
            Ok(()) => Ok(false),
            Err(rejection) => {
                ctx.rejection = Some(rejection);
                respond::reject(session, rejection.code, &ctx.request_id).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<Box<HttpPeer>> {
        respond::peer(ctx)
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        let Some(site) = ctx.site.as_ref() else {
            return Err(pingora::Error::explain(
                pingora::ErrorType::InternalError,
                "no site admitted",
            ));
        };
        let client_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        inject::prepare(
            upstream_request,
            &inject::Forwarding {
                strip: &ctx.config.proxy.strip_headers,
                credential: site.inject.as_ref(),
                upstream: &site.upstream,
                request_id: &ctx.request_id,
                client_ip,
            },
        )
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        upstream_response.insert_header(request_id::HEADER, ctx.request_id.as_str())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &pingora::Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        respond::failure(session, e, ctx).await
    }

    async fn logging(
        &self,
        session: &mut Session,
        e: Option<&pingora::Error>,
        ctx: &mut RequestCtx,
    ) {
        respond::access_log(session, e, ctx);
    }

    /// Used in Pingora's own error lines: no query string (it may carry secrets).
    fn request_summary(&self, session: &Session, ctx: &RequestCtx) -> String {
        let req = session.req_header();
        format!(
            "{} {} request_id={}",
            req.method,
            req.uri.path(),
            ctx.request_id
        )
    }
}
