//! Delegated verification: a site whose policy says `verify = "wordpress"` accepts the
//! tokens its own WordPress issues. wpgate asks the site (`GET /wp-json/wp/v2/users/me`
//! with the token); 200 accepts, 401/403 refuses. Outcomes are cached by a hash of site
//! and token: a success until the token's `exp` (at most `positive_ttl`), a refusal
//! briefly, so a burst of requests with one token makes one call to WordPress.

use super::AuthFailure;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use moka::future::Cache;
use moka::Expiry;
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

/// What WordPress said of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted; the WordPress user id (as text) is the subject.
    Accepted {
        subject: String,
        ttl: Duration,
    },
    Refused {
        ttl: Duration,
    },
}

struct OutcomeExpiry;

impl Expiry<[u8; 32], Outcome> for OutcomeExpiry {
    fn expire_after_create(&self, _k: &[u8; 32], v: &Outcome, _at: Instant) -> Option<Duration> {
        Some(match v {
            Outcome::Accepted { ttl, .. } | Outcome::Refused { ttl } => *ttl,
        })
    }
}

pub struct DelegatedVerifier {
    client: reqwest::Client,
    cache: Cache<[u8; 32], Outcome>,
    positive_ttl: Duration,
    negative_ttl: Duration,
}

impl DelegatedVerifier {
    pub fn new(
        client: reqwest::Client,
        positive_ttl: Duration,
        negative_ttl: Duration,
        capacity: u64,
    ) -> Self {
        Self {
            client,
            cache: Cache::builder()
                .max_capacity(capacity)
                .expire_after(OutcomeExpiry)
                .build(),
            positive_ttl,
            negative_ttl,
        }
    }

    /// Checks `token` against the site at `base_url` (its upstream URL, prefix included).
    /// Returns the WordPress user id on success.
    pub async fn verify(
        &self,
        site_id: &str,
        base_url: &str,
        token: &str,
        now: u64,
    ) -> Result<String, AuthFailure> {
        let mut h = Sha256::new();
        h.update(site_id.as_bytes());
        h.update([0u8]);
        h.update(token.as_bytes());
        let key: [u8; 32] = h.finalize().into();
        let outcome = self
            .cache
            .try_get_with(key, self.ask(base_url, token, now))
            .await
            .map_err(|e| *e)?;
        match outcome {
            Outcome::Accepted { subject, .. } => Ok(subject),
            Outcome::Refused { .. } => Err(AuthFailure::InvalidKey),
        }
    }

    async fn ask(&self, base_url: &str, token: &str, now: u64) -> Result<Outcome, AuthFailure> {
        // The token's own exp bounds how long a success is remembered; an expired token is
        // refused without asking.
        let exp = unverified_exp(token);
        if exp.is_some_and(|e| e <= now) {
            return Ok(Outcome::Refused {
                ttl: self.negative_ttl,
            });
        }
        let url = format!("{}/wp-json/wp/v2/users/me", base_url.trim_end_matches('/'));
        let resp = self
            .client
            .get(&url)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| {
                tracing::warn!(error = %without_url(&e), "delegated token check: the site did not answer");
                AuthFailure::VerifierUnavailable
            })?;
        match resp.status().as_u16() {
            200 => {
                let subject = resp
                    .json::<serde_json::Value>()
                    .await
                    .ok()
                    .and_then(|v| {
                        v.get("id")
                            .map(|id| id.to_string().trim_matches('"').to_string())
                    })
                    .unwrap_or_default();
                let until_exp = exp.map_or(self.positive_ttl, |e| Duration::from_secs(e - now));
                Ok(Outcome::Accepted {
                    subject,
                    ttl: until_exp.min(self.positive_ttl),
                })
            }
            401 | 403 => Ok(Outcome::Refused {
                ttl: self.negative_ttl,
            }),
            other => {
                tracing::warn!(
                    status = other,
                    "delegated token check: unexpected answer from the site"
                );
                Err(AuthFailure::VerifierUnavailable)
            }
        }
    }
}

/// reqwest errors print the URL; ours holds no secret, but keep the message short.
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(url) = e.url() {
        s = s.replace(url.as_str(), "<site>");
    }
    s
}

/// `exp` from a JWT's payload without checking the signature: only used to bound a cache.
fn unverified_exp(token: &str) -> Option<u64> {
    let payload = token.split('.').nth(1)?;
    let bytes = B64URL.decode(payload).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get("exp")?.as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_exp_without_trusting_it() {
        let payload = B64URL.encode(br#"{"exp":1234,"sub":"x"}"#);
        assert_eq!(unverified_exp(&format!("a.{payload}.c")), Some(1234));
        assert_eq!(unverified_exp("opaque-token"), None);
        assert_eq!(unverified_exp("a.!!.c"), None);
    }
}
