//! Lookups for the request path: a site resolved for proxying (`ResolvedSite`) and API
//! key records, each from its cache or, on a miss, from the store (single-flight).

use super::{credential_header, Fleet, FleetError};
use crate::auth::policy::{AuthPolicy, SiteAuth};
use crate::crypto::{CryptoError, Keyring, Place};
use crate::site::{CorsAllow, CredentialKind, RouteAllow, UpstreamTarget};
use crate::store::{
    self, upstream_credential_place, ApiKeyRecord, SiteRecord, StoreError, JWT_SECRET_FIELD,
};
use http::{HeaderName, HeaderValue};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// A site ready for the request path: upstream parsed and resolved, credential opened
/// and rendered as the header to inject.
pub struct ResolvedSite {
    pub id: String,
    pub enabled: bool,
    /// The upstream base URL as configured (for calls wpgate makes itself).
    pub upstream_url: String,
    pub upstream: UpstreamTarget,
    /// `None` when the host name did not resolve at load time.
    pub addr: Option<SocketAddr>,
    pub inject: Option<(HeaderName, HeaderValue)>,
    pub auth: SiteAuth,
    /// For the health check: the credential kind and its user or header name.
    pub credential_kind: CredentialKind,
    pub credential_username: Option<String>,
    pub required_namespaces: Vec<String>,
    pub health_fail_fast: bool,
    /// The paths its requests may take (see `proxy::route`).
    pub routes: RouteAllow,
    /// The browser origins allowed to call it (see `proxy::cors`).
    pub cors: CorsAllow,
    /// This site's request counters, resolved once (see `metrics::SiteCounters`).
    pub counters: crate::metrics::SiteCounters,
}

impl std::fmt::Debug for ResolvedSite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvedSite")
            .field("id", &self.id)
            .field("enabled", &self.enabled)
            .field("upstream", &self.upstream)
            .field("addr", &self.addr)
            .field("inject", &self.inject.as_ref().map(|(n, _)| n))
            .finish()
    }
}

impl Fleet {
    /// The site for `id`, from the cache or the store (single-flight). `id` is the
    /// request's validated X-Website-ID, borrowed so the hot path does not allocate.
    pub async fn resolve_site(
        &self,
        id: &str,
    ) -> Result<Option<Arc<ResolvedSite>>, Arc<FleetError>> {
        self.resolve_site_at(id, Instant::now()).await
    }

    /// `resolve_site` with cache freshness judged at `now` (the request's start).
    pub async fn resolve_site_at(
        &self,
        id: &str,
        now: Instant,
    ) -> Result<Option<Arc<ResolvedSite>>, Arc<FleetError>> {
        self.sites
            .get_or_load_at(id, now, || {
                // Owned: a stale entry may be reloaded in the background.
                let (store, metrics) = (Arc::clone(&self.store), Arc::clone(&self.metrics));
                let keyring = self.keyring.load_full();
                let id = id.to_string();
                async move {
                    let found = store
                        .get_site(&id)
                        .await
                        .inspect_err(|_| store_error(&metrics, "get_site"))?;
                    match found {
                        None => Ok(None),
                        Some(record) => resolve(&record, &keyring).await.map(Some),
                    }
                }
            })
            .await
    }

    /// `record` resolved as the request path would (credential opened, upstream
    /// parsed), without the cache: for a check that must see the site as stored now.
    pub async fn resolve_record(&self, record: &SiteRecord) -> Result<ResolvedSite, FleetError> {
        resolve(record, &self.keyring.load_full()).await
    }

    /// Forgets what a change made by another process touched.
    pub async fn apply_change(&self, change: &store::Change) {
        match change.kind {
            store::ChangeKind::Site => self.sites.invalidate(&change.id).await,
            store::ChangeKind::ApiKey => self.keys.invalidate(&change.id).await,
            store::ChangeKind::AdminToken | store::ChangeKind::Setting => {}
        }
    }

    /// Forgets every cached site and key.
    pub fn forget_all(&self) {
        self.sites.invalidate_all();
        self.keys.invalidate_all();
    }

    /// The site for `id` if it is cached; never reads the store.
    pub fn cached_site(&self, id: &str) -> Option<Arc<ResolvedSite>> {
        self.sites.peek(id)
    }

    /// The API key record for `key_id`, from the cache or the store.
    pub async fn find_key(
        &self,
        key_id: &str,
    ) -> Result<Option<Arc<ApiKeyRecord>>, Arc<StoreError>> {
        self.find_key_at(key_id, Instant::now()).await
    }

    /// `find_key` with cache freshness judged at `now` (the request's start).
    pub async fn find_key_at(
        &self,
        key_id: &str,
        now: Instant,
    ) -> Result<Option<Arc<ApiKeyRecord>>, Arc<StoreError>> {
        self.keys
            .get_or_load_at(key_id, now, || {
                let (store, metrics) = (Arc::clone(&self.store), Arc::clone(&self.metrics));
                let key_id = key_id.to_string();
                async move {
                    store
                        .get_api_key(&key_id)
                        .await
                        .inspect_err(|_| store_error(&metrics, "get_api_key"))
                }
            })
            .await
    }
}

fn store_error(metrics: &crate::metrics::Metrics, op: &str) {
    metrics.store_errors.with_label_values(&[op]).inc();
}

/// Why a stored credential does not open, for the operator (never the secret).
fn unusable_reason(e: &CryptoError) -> String {
    match e {
        CryptoError::WrongFormat { found: "v1", .. } => "it was sealed before credentials \
             were bound to their origin, and start-up could not re-seal it (see the log)"
            .to_string(),
        CryptoError::OpenFailed => {
            "it was sealed for another site or another origin, or was altered".to_string()
        }
        other => other.to_string(),
    }
}

/// Builds the request-path view of a site record: its upstream credential opened with
/// `keyring` for the origin it is bound to and rendered as the header the proxy injects.
pub async fn resolve(record: &SiteRecord, keyring: &Keyring) -> Result<ResolvedSite, FleetError> {
    let upstream = UpstreamTarget::parse(&record.upstream_url)?;
    let inject = match (&record.credential.kind, &record.credential.sealed_secret) {
        (CredentialKind::None, _) => None,
        (kind, Some(sealed)) => {
            // Opens only for this site and the origin it was sealed for: a value moved to
            // another site, or a site whose upstream was moved to another origin behind
            // wpgate's back, never has its credential sent anywhere.
            let secret = keyring
                .open(&upstream_credential_place(&record.id, &upstream), sealed)
                .map_err(|e| FleetError::CredentialUnusable {
                    site: record.id.clone(),
                    origin: upstream.origin.clone(),
                    reason: unusable_reason(&e),
                })?;
            Some(credential_header(
                *kind,
                record.credential.username.as_deref(),
                &secret,
            )?)
        }
        (kind, None) => {
            return Err(FleetError::Invalid(format!(
                "site {} has credential kind {} but no secret",
                record.id,
                kind.as_str()
            )))
        }
    };
    let policy = AuthPolicy::from_json(record.auth_policy.as_deref())?;
    let routes = RouteAllow::parse(&record.allowed_paths)?;
    let cors = CorsAllow::parse(&record.allowed_origins)?;
    let jwt_secret = match &record.jwt_secret_sealed {
        Some(sealed) => Some(keyring.open(&Place::site(&record.id, JWT_SECRET_FIELD), sealed)?),
        None => None,
    };
    let auth = policy.build(jwt_secret)?;
    let addr = match tokio::net::lookup_host((upstream.host.as_str(), upstream.port)).await {
        Ok(mut addrs) => addrs.next(),
        Err(e) => {
            tracing::warn!(site = %record.id, host = %upstream.host, error = %e, "upstream host does not resolve");
            None
        }
    };
    Ok(ResolvedSite {
        id: record.id.clone(),
        enabled: record.enabled,
        upstream_url: record.upstream_url.trim_end_matches('/').to_string(),
        upstream,
        addr,
        inject,
        auth,
        credential_kind: record.credential.kind,
        credential_username: record.credential.username.clone(),
        required_namespaces: record.required_namespaces.clone(),
        health_fail_fast: record.health_fail_fast,
        routes,
        cors,
        counters: crate::metrics::SiteCounters::default(),
    })
}
