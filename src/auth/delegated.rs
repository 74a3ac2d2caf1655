//! Delegated verification: a site whose policy says `verify = "wordpress"` accepts the
//! tokens its own WordPress issues. wpgate asks the site
//! (`GET /wp-json/wp/v2/users/me?context=edit` with the token) and counts only a real
//! yes: 200, `application/json`, an object with a positive integer `id` (and the user's
//! `roles`, which `context=edit` shows a user about themselves). 401/403 is a no, and so
//! is every other answer a misconfigured site gives to anyone (a maintenance page, a
//! redirect to a login page, plain permalinks serving the home page, other JSON); 5xx,
//! 429, a timeout or no connection mean the site cannot be asked right now.
//!
//! Outcomes are cached by a hash of site and token: a yes (with the user's roles) until
//! the token's `exp` (at most `positive_ttl`), a no for `negative_ttl`, so a burst of
//! requests with one token makes one call to WordPress. "Cannot be asked" is not cached.

use super::AuthFailure;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use moka::future::Cache;
use moka::Expiry;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The call made for every token: the user's id and roles, nothing else.
const USERS_ME: &str = "/wp-json/wp/v2/users/me?context=edit&_fields=id,roles";
/// A `users/me` answer larger than this is not one (it is a page, or worse).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The WordPress user a token belongs to, as the site described them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WpUser {
    /// Positive, as WordPress numbers users.
    pub id: u64,
    /// Role slugs, e.g. `administrator`; empty when the site listed none.
    pub roles: Vec<String>,
}

/// What the site said of a token, as cached.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Accepted { user: Arc<WpUser>, ttl: Duration },
    Refused { failure: AuthFailure, ttl: Duration },
}

/// How one `users/me` answer is read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Yes(WpUser),
    No(AuthFailure),
    /// Not the client's fault: 5xx or 429 (the status).
    Unavailable(u16),
}

struct OutcomeExpiry;

impl Expiry<[u8; 32], Outcome> for OutcomeExpiry {
    fn expire_after_create(&self, _k: &[u8; 32], v: &Outcome, _at: Instant) -> Option<Duration> {
        Some(match v {
            Outcome::Accepted { ttl, .. } | Outcome::Refused { ttl, .. } => *ttl,
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
    /// `client` must not follow redirects: a redirect is a refusal.
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
    /// Returns the WordPress user the site says it belongs to.
    pub async fn verify(
        &self,
        site_id: &str,
        base_url: &str,
        token: &str,
        now: u64,
    ) -> Result<Arc<WpUser>, AuthFailure> {
        let mut h = Sha256::new();
        h.update(site_id.as_bytes());
        h.update([0u8]);
        h.update(token.as_bytes());
        let key: [u8; 32] = h.finalize().into();
        // An error (the site cannot be asked) is shared by the requests waiting on this
        // call but not cached.
        let outcome = self
            .cache
            .try_get_with(key, self.ask(base_url, token, now))
            .await
            .map_err(|e| *e)?;
        match outcome {
            Outcome::Accepted { user, .. } => Ok(user),
            Outcome::Refused { failure, .. } => Err(failure),
        }
    }

    async fn ask(&self, base_url: &str, token: &str, now: u64) -> Result<Outcome, AuthFailure> {
        // The token's own exp bounds how long a success is remembered; an expired token is
        // refused without asking.
        let exp = unverified_exp(token);
        if exp.is_some_and(|e| e <= now) {
            return Ok(Outcome::Refused {
                failure: AuthFailure::Expired,
                ttl: self.negative_ttl,
            });
        }
        let url = format!("{}{USERS_ME}", base_url.trim_end_matches('/'));
        let unavailable = |e: reqwest::Error| {
            tracing::warn!(error = %without_url(&e), "delegated token check: the site did not answer");
            AuthFailure::VerifierUnavailable
        };
        let mut resp = self
            .client
            .get(&url)
            .bearer_auth(token)
            .header(http::header::ACCEPT, "application/json")
            // A cache in front of the site must not answer for another user.
            .header(http::header::CACHE_CONTROL, "no-cache")
            .send()
            .await
            .map_err(unavailable)?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // Only a 200 JSON answer can be a yes: nothing else is read.
        let mut body = Vec::new();
        if status == 200 && is_json(content_type.as_deref()) {
            while let Some(chunk) = resp.chunk().await.map_err(unavailable)? {
                if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                    body.clear();
                    break;
                }
                body.extend_from_slice(&chunk);
            }
        }
        match judge(status, content_type.as_deref(), &body) {
            Verdict::Yes(user) => {
                let until_exp = exp.map_or(self.positive_ttl, |e| Duration::from_secs(e - now));
                Ok(Outcome::Accepted {
                    user: Arc::new(user),
                    ttl: until_exp.min(self.positive_ttl),
                })
            }
            Verdict::No(failure) => {
                if failure == AuthFailure::VerifierBadAnswer {
                    tracing::warn!(
                        status,
                        content_type = content_type.as_deref().unwrap_or("-"),
                        "delegated token check: the site's users/me answer is not a WordPress \
                         user (maintenance page, redirect, plain permalinks, a cache?): refused"
                    );
                }
                Ok(Outcome::Refused {
                    failure,
                    ttl: self.negative_ttl,
                })
            }
            Verdict::Unavailable(status) => {
                tracing::warn!(status, "delegated token check: the site answered an error");
                Err(AuthFailure::VerifierUnavailable)
            }
        }
    }
}

/// Reads one `users/me` answer. Only 200 `application/json` with an object whose `id`
/// is a positive integer is a yes; `roles` is taken when it is a list of strings.
fn judge(status: u16, content_type: Option<&str>, body: &[u8]) -> Verdict {
    match status {
        200 => {}
        401 | 403 => return Verdict::No(AuthFailure::VerifierRefused),
        429 | 500..=599 => return Verdict::Unavailable(status),
        // Redirects (to a login page, to https), other 2xx and 4xx: not a yes.
        _ => return Verdict::No(AuthFailure::VerifierBadAnswer),
    }
    if !is_json(content_type) {
        return Verdict::No(AuthFailure::VerifierBadAnswer);
    }
    let Ok(serde_json::Value::Object(user)) = serde_json::from_slice(body) else {
        return Verdict::No(AuthFailure::VerifierBadAnswer);
    };
    let Some(id) = user
        .get("id")
        .and_then(serde_json::Value::as_u64)
        .filter(|&id| id > 0)
    else {
        return Verdict::No(AuthFailure::VerifierBadAnswer);
    };
    let roles = user
        .get("roles")
        .and_then(serde_json::Value::as_array)
        .map(|roles| {
            roles
                .iter()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Verdict::Yes(WpUser { id, roles })
}

/// `application/json`, parameters (charset) allowed.
fn is_json(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
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

    const JSON: Option<&str> = Some("application/json; charset=UTF-8");

    fn yes(id: u64, roles: &[&str]) -> Verdict {
        Verdict::Yes(WpUser {
            id,
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        })
    }

    #[test]
    fn reads_exp_without_trusting_it() {
        let payload = B64URL.encode(br#"{"exp":1234,"sub":"x"}"#);
        assert_eq!(unverified_exp(&format!("a.{payload}.c")), Some(1234));
        assert_eq!(unverified_exp("opaque-token"), None);
        assert_eq!(unverified_exp("a.!!.c"), None);
    }

    #[test]
    fn a_wordpress_user_is_a_yes() {
        assert_eq!(
            judge(200, JSON, br#"{"id":7,"roles":["editor"]}"#),
            yes(7, &["editor"])
        );
        assert_eq!(
            judge(200, Some("Application/JSON"), br#"{"id":1,"name":"a"}"#),
            yes(1, &[])
        );
        // Roles that are not strings are not roles.
        assert_eq!(
            judge(200, JSON, br#"{"id":3,"roles":["author",5,null]}"#),
            yes(3, &["author"])
        );
        assert_eq!(
            judge(200, JSON, br#"{"id":3,"roles":"administrator"}"#),
            yes(3, &[])
        );
    }

    #[test]
    fn a_page_served_to_everyone_is_no_yes() {
        let bad = Verdict::No(AuthFailure::VerifierBadAnswer);
        let html = b"<!doctype html><title>Briefly unavailable for scheduled maintenance</title>";
        assert_eq!(judge(200, Some("text/html; charset=UTF-8"), html), bad);
        // Claiming JSON does not make a page a user.
        assert_eq!(judge(200, JSON, html), bad);
        assert_eq!(judge(200, None, br#"{"id":7}"#), bad);
        assert_eq!(judge(200, Some("text/plain"), br#"{"id":7}"#), bad);
        assert_eq!(judge(200, JSON, b""), bad);
        // JSON that is not a user: no id, id 0, negative, fractional, a string, not an
        // object (WordPress's index, a list of posts, a bare number).
        for body in [
            &br#"{"name":"shop","namespaces":["wp/v2"]}"#[..],
            br#"{"id":0}"#,
            br#"{"id":-1}"#,
            br#"{"id":1.5}"#,
            br#"{"id":"7"}"#,
            br#"{"id":null}"#,
            br#"[{"id":7}]"#,
            b"7",
            b"null",
        ] {
            assert_eq!(
                judge(200, JSON, body),
                bad,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn redirects_and_other_statuses_are_refusals() {
        let bad = Verdict::No(AuthFailure::VerifierBadAnswer);
        for status in [201, 204, 301, 302, 303, 307, 308, 400, 404, 405, 410] {
            assert_eq!(judge(status, JSON, br#"{"id":7}"#), bad, "{status}");
        }
        for status in [401, 403] {
            assert_eq!(
                judge(status, JSON, br#"{"code":"rest_not_logged_in"}"#),
                Verdict::No(AuthFailure::VerifierRefused),
                "{status}"
            );
        }
    }

    #[test]
    fn server_errors_mean_the_site_cannot_be_asked() {
        for status in [429, 500, 502, 503, 504] {
            assert_eq!(
                judge(status, JSON, br#"{"id":7}"#),
                Verdict::Unavailable(status)
            );
        }
    }

    /// A loopback HTTP server answering every request with `answer` (raw HTTP/1.1),
    /// after `delay`; returns its base URL and how many requests it got.
    async fn site(
        answer: &'static str,
        delay: Duration,
    ) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = Arc::clone(&calls);
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    tokio::time::sleep(delay).await;
                    let _ = s.write_all(answer.as_bytes()).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        (url, calls)
    }

    fn verifier() -> DelegatedVerifier {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_millis(500))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        DelegatedVerifier::new(
            client,
            Duration::from_secs(300),
            Duration::from_secs(30),
            100,
        )
    }

    const TOKEN: &str = "aGVhZA.e30.c2ln";

    #[tokio::test]
    async fn only_a_real_yes_admits_and_is_cached() {
        let (url, calls) = site(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json; charset=UTF-8\r\n\
             connection: close\r\n\r\n{\"id\":5,\"roles\":[\"subscriber\"]}",
            Duration::ZERO,
        )
        .await;
        let v = verifier();
        let user = v.verify("s", &url, TOKEN, 1).await.unwrap();
        assert_eq!(
            *user,
            WpUser {
                id: 5,
                roles: vec!["subscriber".into()]
            }
        );
        v.verify("s", &url, TOKEN, 1).await.unwrap();
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_maintenance_page_is_refused_and_the_refusal_cached() {
        let (url, calls) = site(
            "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\nconnection: close\r\n\r\n\
             <html>Briefly unavailable for scheduled maintenance.</html>",
            Duration::ZERO,
        )
        .await;
        let v = verifier();
        for _ in 0..2 {
            assert_eq!(
                v.verify("s", &url, TOKEN, 1).await,
                Err(AuthFailure::VerifierBadAnswer)
            );
        }
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_redirect_is_refused_not_followed() {
        let (target, followed) = site(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{\"id\":1}",
            Duration::ZERO,
        )
        .await;
        let answer: &'static str = Box::leak(
            format!(
                "HTTP/1.1 302 Found\r\nlocation: {target}/wp-login.php\r\ncontent-length: 0\r\n\
                 connection: close\r\n\r\n"
            )
            .into_boxed_str(),
        );
        let (url, _) = site(answer, Duration::ZERO).await;
        assert_eq!(
            verifier().verify("s", &url, TOKEN, 1).await,
            Err(AuthFailure::VerifierBadAnswer)
        );
        assert_eq!(followed.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn an_unavailable_site_is_not_cached() {
        let (url, calls) = site(
            "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            Duration::ZERO,
        )
        .await;
        let v = verifier();
        for _ in 0..2 {
            assert_eq!(
                v.verify("s", &url, TOKEN, 1).await,
                Err(AuthFailure::VerifierUnavailable)
            );
        }
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
        // A site that does not answer in time.
        let (slow, _) = site(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{\"id\":1}",
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(
            v.verify("s", &slow, TOKEN, 1).await,
            Err(AuthFailure::VerifierUnavailable)
        );
    }
}
