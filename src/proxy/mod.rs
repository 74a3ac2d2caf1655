//! The Pingora proxy: each phase reads like a table of contents and calls the module
//! that owns the concern.

mod client;
pub mod ctx;
pub mod inject;
pub mod request_id;
mod respond;

pub use client::ForwardedFor;

use crate::auth::jwt::jwks::{JwksCache, JwksSettings};
use crate::auth::policy::JwtAuth;
use crate::auth::ratelimit::{retry_after_secs, FailureLimiter};
use crate::auth::wordpress::DelegatedVerifier;
use crate::auth::{self, api_key, AuthFailure, Presented, Principal};
use crate::config::{Config, Live};
use crate::error::ErrorCode;
use crate::fleet::{Fleet, ResolvedSite};
use crate::health::{HealthBoard, HealthState};
use async_trait::async_trait;
use ctx::{Rejection, RequestCtx};
use http::HeaderValue;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use std::net::IpAddr;
use std::sync::Arc;

pub const SITE_HEADER: &str = "x-website-id";
/// `SITE_HEADER` pre-parsed, for lookups on the request path.
const SITE: http::HeaderName = http::HeaderName::from_static(SITE_HEADER);

pub struct Gateway {
    fleet: Arc<Fleet>,
    config: Live,
    health: Arc<HealthBoard>,
    limiter: FailureLimiter,
    jwks: Arc<JwksCache>,
    delegated: DelegatedVerifier,
}

impl Gateway {
    pub fn new(fleet: Arc<Fleet>, config: Live) -> anyhow::Result<Self> {
        let c = config.load_full();
        let a = &c.auth;
        let limiter = FailureLimiter::new(a.max_failures, a.failure_window, 1_000_000);
        let jwks_client = reqwest::Client::builder()
            .timeout(a.fetch_timeout)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()?;
        let jwks = Arc::new(JwksCache::new(
            jwks_client,
            JwksSettings {
                min_ttl: a.jwks_min_ttl,
                max_ttl: a.jwks_max_ttl,
                default_ttl: a.jwks_min_ttl,
                refetch_interval: a.jwks_refetch_interval,
                max_stale: a.jwks_max_stale,
                fetch_timeout: a.fetch_timeout,
            },
        ));
        let delegated = DelegatedVerifier::new(
            upstream_client(&c)?,
            a.wordpress_cache_ttl,
            a.wordpress_negative_ttl,
            c.cache.capacity,
        );
        Ok(Self {
            fleet,
            config,
            health: Arc::new(HealthBoard::new()),
            limiter,
            jwks,
            delegated,
        })
    }

    /// The latest health report of each site (written by the prober).
    pub fn health(&self) -> &Arc<HealthBoard> {
        &self.health
    }

    /// The JWKS cache, for the background refresher.
    pub fn jwks(&self) -> &Arc<JwksCache> {
        &self.jwks
    }

    /// Steps 2-6 of the request path: site id, rate limit, credential, site, key or
    /// token, site state. Public for the benchmark of the auth path.
    pub async fn admit(
        &self,
        req: &RequestHeader,
        peer: Option<IpAddr>,
        ctx: &mut RequestCtx,
    ) -> Result<(), Rejection> {
        let (site_id, value) = site_id(req)?;
        ctx.site_id = Some(value.clone());
        let client = client::identify(peer, &req.headers, &ctx.config.proxy);
        ctx.client_ip = client.ip;
        ctx.forwarded_for = client.forwarded_for;
        // Over the failure limit: refused before any lookup or crypto.
        if let Some(retry) = client.ip.and_then(|ip| self.limiter.blocked(ip)) {
            ctx.retry_after = Some(retry_after_secs(retry));
            return Err(AuthFailure::RateLimited.into());
        }
        let result = self.authenticate(req, site_id, ctx).await;
        if let (Err(rejection), Some(ip)) = (&result, client.ip) {
            if matches!(
                rejection.code,
                ErrorCode::InvalidCredentials | ErrorCode::MissingCredentials
            ) {
                self.limiter.record_failure(ip);
            }
        }
        let site = result?;
        if !site.enabled {
            return Err(AuthFailure::SiteDisabled.into());
        }
        if site.health_fail_fast && self.health.state(&site.id) == HealthState::Unreachable {
            return Err(Rejection::new(
                ErrorCode::SiteUnavailable,
                "site_unreachable",
            ));
        }
        ctx.admitted = true;
        Ok(())
    }

    async fn authenticate(
        &self,
        req: &RequestHeader,
        site_id: &str,
        ctx: &mut RequestCtx,
    ) -> Result<Arc<ResolvedSite>, Rejection> {
        // A request without a usable credential is refused before any lookup.
        let presented = match auth::presented(&req.headers) {
            Presented::Refused(f) => {
                // Label metrics with the site when it is already known; no store read.
                ctx.site = self.fleet.cached_site(site_id);
                return Err(f.into());
            }
            p => p,
        };
        let site = self
            .fleet
            .resolve_site_at(site_id, ctx.started)
            .await
            .map_err(|e| lookup_failed(&e, site_id))?
            .ok_or(AuthFailure::UnknownSite)?;
        ctx.site = Some(Arc::clone(&site));
        match presented {
            Presented::ApiKey(text) => {
                if !site.auth.api_key {
                    return Err(AuthFailure::MethodNotAllowed.into());
                }
                let parsed = api_key::parse(text).ok_or(AuthFailure::Malformed)?;
                let key = self
                    .fleet
                    .find_key_at(parsed.key_id, ctx.started)
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
                    crate::time::now_unix,
                )?;
                ctx.principal = Some(Principal::ApiKey(key));
            }
            Presented::Jwt(token) => {
                let now = u64::try_from(crate::time::now_unix()).unwrap_or(0);
                match &site.auth.jwt {
                    None => return Err(AuthFailure::MethodNotAllowed.into()),
                    Some(JwtAuth::Local(verifier)) => {
                        // Boxed, as below: a token check may fetch keys, and that state
                        // would otherwise weigh on every request's future.
                        let verified = Box::pin(verifier.verify(token, &self.jwks, now)).await?;
                        for (claim, header) in &site.auth.claim_headers {
                            if let Some(value) = verified.claims.get(claim).and_then(claim_value) {
                                ctx.identity_headers.push((header.clone(), value));
                            }
                        }
                        ctx.principal = Some(Principal::Jwt {
                            subject: verified.sub,
                        });
                    }
                    Some(JwtAuth::Wordpress) => {
                        let subject = Box::pin(self.delegated.verify(
                            &site.id,
                            &site.upstream_url,
                            token,
                            now,
                        ))
                        .await?;
                        for (claim, header) in &site.auth.claim_headers {
                            if claim == "sub" {
                                if let Ok(v) = HeaderValue::from_str(&subject) {
                                    ctx.identity_headers.push((header.clone(), v));
                                }
                            }
                        }
                        ctx.principal = Some(Principal::Jwt {
                            subject: Some(subject),
                        });
                    }
                }
            }
            Presented::Refused(f) => return Err(f.into()),
        }
        Ok(site)
    }
}

/// A claim as a header value: strings as they are, numbers and booleans as text.
fn claim_value(v: &serde_json::Value) -> Option<HeaderValue> {
    let text = match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    HeaderValue::from_str(&text).ok()
}

/// The client wpgate uses for its own calls to sites (delegated token checks): the same
/// trust roots as the proxy (`upstream.ca_file`, else the system's).
fn upstream_client(c: &Config) -> anyhow::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .timeout(c.auth.fetch_timeout)
        .connect_timeout(c.upstream.connect_timeout)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(ca) = &c.upstream.ca_file {
        let pem = std::fs::read(ca)?;
        b = b.tls_built_in_root_certs(false);
        for cert in reqwest::Certificate::from_pem_bundle(&pem)? {
            b = b.add_root_certificate(cert);
        }
    }
    Ok(b.build()?)
}

/// Exactly one well-formed X-Website-ID, as text and as the header value.
fn site_id(req: &RequestHeader) -> Result<(&str, &HeaderValue), Rejection> {
    let mut values = req.headers.get_all(&SITE).iter();
    let Some(first) = values.next() else {
        return Err(Rejection::new(ErrorCode::MissingSiteId, "missing_site_id"));
    };
    if values.next().is_some() || !crate::site::is_valid_site_id(first.as_bytes()) {
        return Err(Rejection::new(ErrorCode::InvalidSiteId, "invalid_site_id"));
    }
    first
        .to_str()
        .map(|text| (text, first))
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
        ctx.request_id = request_id::take_or_mint_value(&session.req_header().headers);
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        match self.admit(session.req_header(), peer, ctx).await {
            Ok(()) => Ok(false),
            Err(rejection) => {
                ctx.rejection = Some(rejection);
                respond::reject(session, rejection.code, &ctx.request_id, ctx.retry_after).await?;
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
        respond::peer(ctx)
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        let Some(site) = ctx.site.as_ref().filter(|_| ctx.admitted) else {
            return Err(pingora::Error::explain(
                pingora::ErrorType::InternalError,
                "no site admitted",
            ));
        };
        inject::prepare(
            upstream_request,
            &inject::Forwarding {
                strip: &ctx.config.proxy.strip_headers,
                credential: site.inject.as_ref(),
                upstream: &site.upstream,
                request_id: &ctx.request_id,
                forwarded_for: ctx.forwarded_for.as_ref(),
                claim_headers: &site.auth.claim_headers,
                identity: &ctx.identity_headers,
            },
        )
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        upstream_response.insert_header(request_id::HEADER, ctx.request_id.clone())
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
            ctx.request_id_text()
        )
    }
}
