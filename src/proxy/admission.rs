//! Whether a request may pass: a method the gateway forwards, a well-formed site id (or,
//! without one, legacy single-site mode's site: see `legacy`),
//! the client under the failure limit, a credential the site accepts (judged by the
//! [`Authenticator`]), a request target the site allows (see `route`), and a site that
//! is enabled and reachable.

use super::ctx::{Rejection, RequestCtx};
use super::{client, cors, route, Gateway};
use crate::auth::{self, AuthFailure, Presented, SiteRef};
use crate::config::Config;
use crate::error::ErrorCode;
use crate::fleet::{FleetError, ResolvedSite};
use crate::health::HealthState;
use http::HeaderValue;
use pingora::http::RequestHeader;
use std::net::IpAddr;
use std::sync::Arc;

pub const SITE_HEADER: &str = "x-website-id";
/// `SITE_HEADER` pre-parsed, for lookups on the request path.
const SITE: http::HeaderName = http::HeaderName::from_static(SITE_HEADER);

impl Gateway {
    /// Admission, in order: method, site id, rate limit, credential, site, key or token,
    /// browser origin, request target, site state (README, "What happens to a request",
    /// steps 1-5).
    /// Public for the benchmark of the auth path.
    pub async fn admit(
        &self,
        req: &RequestHeader,
        peer: Option<IpAddr>,
        ctx: &mut RequestCtx,
    ) -> Result<(), Rejection> {
        // Before anything is looked up or counted.
        if route::method_refused(req.method.as_str().as_bytes()) {
            return Err(Rejection::new(
                ErrorCode::MethodNotAllowed,
                "method_never_forwarded",
            ));
        }
        let client = client::identify(peer, &req.headers, &ctx.config.live.proxy);
        ctx.client_ip = client.ip;
        ctx.forwarded_for = client.forwarded_for;
        // Without X-Website-ID, legacy single-site mode (if on) names the site: from
        // here on the request is handled exactly as if the client had sent it.
        let legacy_config: Arc<Config>;
        let (site_id, value) = match site_id(req)? {
            Some(found) => found,
            None => {
                // Held for the site id it lends (the request's own snapshot).
                legacy_config = Arc::clone(&ctx.config);
                let Some(legacy) = &legacy_config.live.legacy else {
                    return Err(Rejection::new(ErrorCode::MissingSiteId, "missing_site_id"));
                };
                self.legacy.routed(legacy, client.ip, self.fleet.metrics());
                ctx.legacy = true;
                (legacy.default_site.as_str(), &legacy.site_header)
            }
        };
        ctx.site_id = Some(value.clone());
        // Over the failure limit: refused before any lookup or crypto.
        if let Some(retry) = client.ip.and_then(|ip| self.auth.retry_after(ip)) {
            ctx.set_retry_after(retry);
            return Err(AuthFailure::RateLimited.into());
        }
        let result = self.authenticate(req, site_id, ctx).await;
        if let (Err(rejection), Some(ip)) = (&result, client.ip) {
            if matches!(
                rejection.code,
                ErrorCode::InvalidCredentials | ErrorCode::MissingCredentials
            ) {
                self.auth.record_failure(ip);
            }
        }
        let site = result?;
        // Only for a client the site accepts: nothing about its origins or routes leaks
        // to others.
        if let Some(origin) = cors::check_site(&req.headers, &site.cors)? {
            ctx.set_cors_origin(Some(origin));
        }
        route::check_target(req.raw_path(), &site.routes)?;
        if !site.enabled {
            return Err(AuthFailure::SiteDisabled.into());
        }
        if site.health_fail_fast && self.health.state(&site.id) == HealthState::Unreachable {
            return Err(Rejection::new(
                ErrorCode::SiteUnavailable,
                "site_unreachable",
            ));
        }
        Ok(())
    }

    /// Finds the site and has the authenticator judge the credential. The principal is
    /// kept (for the access log) even when the site then turns the request away.
    async fn authenticate(
        &self,
        req: &RequestHeader,
        site_id: &str,
        ctx: &mut RequestCtx,
    ) -> Result<Arc<ResolvedSite>, Rejection> {
        // A request without a usable credential is refused before any lookup.
        let presented = auth::presented(&req.headers);
        if let Presented::Refused(f) = presented {
            // Label metrics with the site when it is already known; no store read.
            ctx.site = self.fleet.cached_site(site_id);
            return Err(f.into());
        }
        let site = self
            .fleet
            .resolve_site_at(site_id, ctx.started)
            .await
            .map_err(|e| lookup_failed(&e, site_id))?
            .ok_or(AuthFailure::UnknownSite)?;
        ctx.site = Some(Arc::clone(&site));
        let site_ref = SiteRef {
            id: site_id,
            upstream_url: &site.upstream_url,
            auth: &site.auth,
        };
        ctx.admitted = Some(Box::new(
            self.auth.admit(presented, site_ref, ctx.started).await?,
        ));
        Ok(site)
    }
}

/// The X-Website-ID, as text and as the header value: exactly one well-formed value,
/// or none (`None`).
fn site_id(req: &RequestHeader) -> Result<Option<(&str, &HeaderValue)>, Rejection> {
    let mut values = req.headers.get_all(&SITE).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() || !crate::site::is_valid_site_id(first.as_bytes()) {
        return Err(Rejection::new(ErrorCode::InvalidSiteId, "invalid_site_id"));
    }
    first
        .to_str()
        .map(|text| Some((text, first)))
        .map_err(|_| Rejection::new(ErrorCode::InvalidSiteId, "invalid_site_id"))
}

fn lookup_failed(e: &FleetError, site_id: &str) -> Rejection {
    match e {
        FleetError::Store(_) => {
            tracing::error!(site = site_id, error = %e, "store lookup of a site failed");
            Rejection::new(ErrorCode::StoreUnavailable, "store_unavailable")
        }
        _ => {
            tracing::error!(site = site_id, error = %e, "site record cannot be used");
            Rejection::new(ErrorCode::Internal, "site_unusable")
        }
    }
}
