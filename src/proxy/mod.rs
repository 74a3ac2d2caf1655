//! The Pingora proxy: each phase reads like a table of contents and calls the module
//! that owns the concern.

mod access_log;
mod admission;
mod answer;
mod client;
pub mod cors;
pub mod ctx;
pub mod inject;
mod legacy;
mod peer;
mod reject;
pub mod request_id;
pub mod route;

pub use admission::SITE_HEADER;
pub use client::ForwardedFor;

use crate::auth::Authenticator;
use crate::config::Current;
use crate::fleet::Fleet;
use crate::health::HealthBoard;
use async_trait::async_trait;
use ctx::RequestCtx;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use std::sync::Arc;

pub struct Gateway {
    fleet: Arc<Fleet>,
    config: Current,
    health: Arc<HealthBoard>,
    auth: Authenticator<Fleet>,
    /// Legacy single-site mode's clients already warned about.
    legacy: legacy::LegacyClients,
}

impl Gateway {
    pub fn new(
        fleet: Arc<Fleet>,
        config: Current,
        auth: Authenticator<Fleet>,
        health: Arc<HealthBoard>,
    ) -> Self {
        Self {
            fleet,
            config,
            health,
            auth,
            legacy: legacy::LegacyClients::default(),
        }
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    /// None of Pingora's default modules: it adds a response compression module, off,
    /// that still runs its filters on every request; wpgate never compresses answers.
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new(self.config.load_full())
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        ctx.request_id = request_id::take_or_mint_value(&session.req_header().headers);
        ctx.set_cors_origin(cors::fleet_allowed(
            session.req_header(),
            self.fleet.origins(),
        ));
        if cors::is_preflight(session.req_header()) {
            cors::answer_preflight(session, ctx).await?;
            return Ok(true);
        }
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        match self.admit(session.req_header(), peer, ctx).await {
            Ok(()) => Ok(false),
            Err(rejection) => {
                ctx.set_rejection(rejection);
                let cors = ctx.cors_origin();
                reject::reject(
                    session,
                    rejection.code,
                    &ctx.request_id,
                    ctx.retry_after(),
                    cors,
                    ctx.legacy_site(),
                )
                .await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<Box<HttpPeer>> {
        ctx.upstream_started = Some(std::time::Instant::now());
        peer::peer(ctx)
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        let (Some(site), Some(admitted)) = (ctx.site.as_ref(), ctx.admitted.as_ref()) else {
            return Err(pingora::Error::explain(
                pingora::ErrorType::InternalError,
                "no site admitted",
            ));
        };
        inject::prepare(
            upstream_request,
            &inject::Forwarding {
                strip: &ctx.config.live.proxy.strip_headers,
                site_credential_header: site.inject.as_ref().map(|(name, _)| name),
                credential: admitted.credential(site.inject.as_ref()),
                upstream: &site.upstream,
                request_id: &ctx.request_id,
                forwarded_for: ctx.forwarded_for.as_ref(),
                over_tls: inject::over_tls(session.digest()),
                claim_headers: &site.auth.claim_headers,
                identity: &admitted.identity_headers,
            },
        )
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        answer::prepare(upstream_response, &ctx.request_id)?;
        if let Some(site) = &ctx.site {
            cors::forwarded(upstream_response, ctx.cors_origin(), &site.cors)?;
        }
        if let Some(legacy) = ctx.legacy_site() {
            legacy::mark_deprecated(upstream_response, legacy)?;
        }
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &pingora::Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        reject::failure(session, e, ctx).await
    }

    fn suppress_error_log(&self, _session: &Session, ctx: &RequestCtx, e: &pingora::Error) -> bool {
        reject::quiet_error_log(e, ctx)
    }

    async fn logging(
        &self,
        session: &mut Session,
        e: Option<&pingora::Error>,
        ctx: &mut RequestCtx,
    ) {
        access_log::access_log(self.fleet.metrics(), session, e, ctx);
    }

    /// Used in Pingora's own error lines: no query string (it may carry secrets).
    fn request_summary(&self, session: &Session, ctx: &RequestCtx) -> String {
        let req = session.req_header();
        format!(
            "{} {} request_id={}",
            req.method,
            req.uri.path(),
            ctx.request_id_text()
        )
    }
}
