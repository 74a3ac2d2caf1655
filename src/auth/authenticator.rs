//! The one place a request's credential is judged: an API key, a JWT checked with the
//! site's keys, or a WordPress token the site checks itself. The result is who the
//! client is, with the identity headers the site asked for, or the exact failure.

use super::api_key::{self, KeyHasher};
use super::delegated::DelegatedVerifier;
use super::jwt::jwks::{JwksCache, JwksSettings};
use super::policy::{ActAs, JwtAuth, SiteAuth};
use super::ratelimit::{retry_after_secs, FailureLimiter};
use super::{AuthFailure, Presented};
use crate::config::Config;
use crate::store::{ApiKeyRecord, StoreError};
use http::{HeaderName, HeaderValue};
use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// Where API keys are found (the fleet's key cache). A trait, so that auth does not
/// depend on the fleet that builds its policies.
pub trait KeyLookup: Send + Sync {
    fn key_hasher(&self) -> &KeyHasher;

    /// The key record for `key_id`, its cache freshness judged at `at`.
    fn key_at(
        &self,
        key_id: &str,
        at: Instant,
    ) -> impl Future<Output = Result<Option<Arc<ApiKeyRecord>>, Arc<StoreError>>> + Send;

    /// The key of `record` was just accepted (for its `last_used_at`). Runs on every
    /// request with a key: it must not wait, write or allocate.
    fn key_used(&self, record: &ApiKeyRecord);
}

/// What the authenticator needs to know of the site a request names.
#[derive(Clone, Copy)]
pub struct SiteRef<'a> {
    pub id: &'a str,
    /// The upstream base URL, for a delegated token check.
    pub upstream_url: &'a str,
    pub auth: &'a SiteAuth,
}

/// Who an accepted request acts as.
#[derive(Clone, PartialEq, Eq)]
pub enum Principal {
    /// The key's cached record, shared (not copied) with the request.
    ApiKey(Arc<ApiKeyRecord>),
    /// A verified JWT; `subject` is its `sub` (or the WordPress user id when the site
    /// verified the token itself).
    Jwt { subject: Option<String> },
}

/// Only the public part: the key id or the token subject, never the key's hash.
impl std::fmt::Debug for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::ApiKey(key) => f.debug_tuple("ApiKey").field(&key.key_id).finish(),
            Principal::Jwt { subject } => f.debug_struct("Jwt").field("subject", subject).finish(),
        }
    }
}

impl Principal {
    /// For logs: the key id or the token subject (both public).
    pub fn log_id(&self) -> &str {
        match self {
            Principal::ApiKey(key) => &key.key_id,
            Principal::Jwt { subject } => subject.as_deref().unwrap_or("-"),
        }
    }
}

/// A credential the site accepts: who the client is, the headers that tell the site
/// (its claim -> header mapping, filled from verified values only), and which
/// credential goes upstream.
#[derive(Debug)]
pub struct Admitted {
    pub principal: Principal,
    pub identity_headers: Vec<(HeaderName, HeaderValue)>,
    pub upstream_credential: UpstreamCredential,
}

/// Which credential the site receives with an admitted request (added after every
/// client credential header is stripped).
#[derive(Debug, PartialEq, Eq)]
pub enum UpstreamCredential {
    /// The site's own credential, if it has one.
    Site,
    /// The client's own token, as the site verified it (a delegated site acting as the
    /// user): WordPress applies that user's capabilities. Marked sensitive.
    Client((HeaderName, HeaderValue)),
}

impl Admitted {
    /// The header to add upstream: the client's own, or `site_credential`.
    pub fn credential<'a>(
        &'a self,
        site_credential: Option<&'a (HeaderName, HeaderValue)>,
    ) -> Option<&'a (HeaderName, HeaderValue)> {
        match &self.upstream_credential {
            UpstreamCredential::Site => site_credential,
            UpstreamCredential::Client(header) => Some(header),
        }
    }
}

/// Why the authenticator could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("cannot read upstream.ca_file {}", path.display())]
    CaFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build the HTTP client for {what}")]
    Client {
        what: &'static str,
        #[source]
        source: reqwest::Error,
    },
}

pub struct Authenticator<K> {
    keys: Arc<K>,
    limiter: FailureLimiter,
    jwks: Arc<JwksCache>,
    delegated: DelegatedVerifier,
}

impl<K: KeyLookup> Authenticator<K> {
    /// Builds the failure limiter, the JWKS cache and the delegated verifier (with the
    /// HTTP clients they fetch with) from the configuration.
    pub fn new(keys: Arc<K>, c: &Config) -> Result<Self, AuthSetupError> {
        let a = &c.boot.auth;
        let limiter = FailureLimiter::new(a.max_failures, a.failure_window, 1_000_000);
        let jwks_client = reqwest::Client::builder()
            .timeout(a.fetch_timeout)
            .redirect(super::jwt::jwks::redirect_policy())
            .build()
            .map_err(|source| AuthSetupError::Client {
                what: "JWKS fetches",
                source,
            })?;
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
            site_client(c)?,
            a.wordpress_cache_ttl,
            a.wordpress_negative_ttl,
            c.boot.cache.capacity,
        );
        Ok(Self {
            keys,
            limiter,
            jwks,
            delegated,
        })
    }

    /// The JWKS cache, for the background refresher.
    pub fn jwks(&self) -> &Arc<JwksCache> {
        &self.jwks
    }

    /// Seconds until `client` may try again, when it is over the failure limit.
    pub fn retry_after(&self, client: IpAddr) -> Option<u64> {
        self.limiter.blocked(client).map(retry_after_secs)
    }

    /// Counts a failed authentication against `client`.
    pub fn record_failure(&self, client: IpAddr) {
        self.limiter.record_failure(client);
    }

    /// Judges `presented` for `site`; `at` is when the request started (cache freshness).
    pub async fn admit(
        &self,
        presented: Presented<'_>,
        site: SiteRef<'_>,
        at: Instant,
    ) -> Result<Admitted, AuthFailure> {
        match presented {
            Presented::ApiKey(text) => self.api_key(text, site, at).await,
            Presented::Jwt(token) => {
                let now = u64::try_from(crate::time::now_unix()).unwrap_or(0);
                match &site.auth.jwt {
                    None => Err(AuthFailure::MethodNotAllowed),
                    Some(JwtAuth::Local(verifier)) => {
                        // Boxed, as below: a token check may fetch keys, and that state
                        // would otherwise weigh on every request's future.
                        let verified = Box::pin(verifier.verify(token, &self.jwks, now)).await?;
                        let identity_headers = identity_headers(site.auth, |claim| {
                            verified.claims.get(claim).and_then(claim_value)
                        });
                        Ok(Admitted {
                            principal: Principal::Jwt {
                                subject: verified.sub,
                            },
                            identity_headers,
                            upstream_credential: UpstreamCredential::Site,
                        })
                    }
                    Some(JwtAuth::Wordpress(delegation)) => {
                        let user =
                            Box::pin(
                                self.delegated
                                    .verify(site.id, site.upstream_url, token, now),
                            )
                            .await?;
                        if !delegation.allows(&user.roles) {
                            return Err(AuthFailure::RoleNotAllowed);
                        }
                        let subject = user.id.to_string();
                        // The WordPress user id is the one claim a delegated check yields.
                        let identity_headers = identity_headers(site.auth, |claim| {
                            (claim == "sub")
                                .then(|| HeaderValue::from_str(&subject).ok())
                                .flatten()
                        });
                        let upstream_credential = match delegation.act_as {
                            ActAs::Site => UpstreamCredential::Site,
                            ActAs::User => UpstreamCredential::Client(client_bearer(token)?),
                        };
                        Ok(Admitted {
                            principal: Principal::Jwt {
                                subject: Some(subject),
                            },
                            identity_headers,
                            upstream_credential,
                        })
                    }
                }
            }
            Presented::Refused(f) => Err(f),
        }
    }

    async fn api_key(
        &self,
        text: &str,
        site: SiteRef<'_>,
        at: Instant,
    ) -> Result<Admitted, AuthFailure> {
        if !site.auth.api_key {
            return Err(AuthFailure::MethodNotAllowed);
        }
        let parsed = api_key::parse(text).ok_or(AuthFailure::Malformed)?;
        let key = self
            .keys
            .key_at(parsed.key_id, at)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "store lookup of an API key failed");
                AuthFailure::StoreUnavailable
            })?
            .ok_or(AuthFailure::UnknownKey)?;
        api_key::check(
            self.keys.key_hasher(),
            parsed,
            &key,
            site.id,
            crate::time::now_unix,
        )?;
        self.keys.key_used(&key);
        Ok(Admitted {
            principal: Principal::ApiKey(key),
            identity_headers: Vec::new(),
            upstream_credential: UpstreamCredential::Site,
        })
    }
}

/// `Authorization: Bearer <token>`: the client's token as the site verified it.
fn client_bearer(token: &str) -> Result<(HeaderName, HeaderValue), AuthFailure> {
    let mut value =
        HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| AuthFailure::Malformed)?;
    value.set_sensitive(true);
    Ok((http::header::AUTHORIZATION, value))
}

/// The site's claim -> header mapping, filled with the verified values `claim` yields.
fn identity_headers(
    site: &SiteAuth,
    claim: impl Fn(&str) -> Option<HeaderValue>,
) -> Vec<(HeaderName, HeaderValue)> {
    site.claim_headers
        .iter()
        .filter_map(|(name, header)| claim(name).map(|v| (header.clone(), v)))
        .collect()
}

/// A claim as a header value: strings as they are, numbers and booleans as text.
fn claim_value(v: &serde_json::Value) -> Option<HeaderValue> {
    match v {
        serde_json::Value::String(s) => HeaderValue::from_str(s).ok(),
        serde_json::Value::Number(n) => HeaderValue::from_str(&n.to_string()).ok(),
        serde_json::Value::Bool(b) => {
            Some(HeaderValue::from_static(if *b { "true" } else { "false" }))
        }
        _ => None,
    }
}

/// The client wpgate uses for its own calls to sites (delegated token checks): the same
/// trust roots as the proxy (`upstream.ca_file`, else the system's).
fn site_client(c: &Config) -> Result<reqwest::Client, AuthSetupError> {
    let client_error = |source| AuthSetupError::Client {
        what: "delegated token checks",
        source,
    };
    let mut b = reqwest::Client::builder()
        .timeout(c.boot.auth.fetch_timeout)
        .connect_timeout(c.live.upstream.connect_timeout)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(ca) = &c.boot.upstream_ca_file {
        let pem = std::fs::read(ca).map_err(|source| AuthSetupError::CaFile {
            path: ca.clone(),
            source,
        })?;
        b = b.tls_built_in_root_certs(false);
        for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(client_error)? {
            b = b.add_root_certificate(cert);
        }
    }
    b.build().map_err(client_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_token_replaces_the_site_credential_when_acting_as_the_user() {
        let site = (
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Basic c2l0ZTpjcmVk"),
        );
        let admitted = |upstream_credential| Admitted {
            principal: Principal::Jwt { subject: None },
            identity_headers: Vec::new(),
            upstream_credential,
        };
        let as_site = admitted(UpstreamCredential::Site);
        assert_eq!(as_site.credential(Some(&site)), Some(&site));
        assert_eq!(as_site.credential(None), None);
        let own = client_bearer("aGVhZA.e30.c2ln").unwrap();
        assert_eq!(own.1, "Bearer aGVhZA.e30.c2ln");
        assert!(own.1.is_sensitive(), "never printed");
        let as_user = admitted(UpstreamCredential::Client(own.clone()));
        assert_eq!(as_user.credential(Some(&site)), Some(&own));
        assert_eq!(as_user.credential(None), Some(&own));
        assert!(!format!("{as_user:?}").contains("c2ln"), "{as_user:?}");
    }
}
