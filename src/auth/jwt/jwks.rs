//! JWKS fetch and cache, shared by every site that verifies JWTs against a key set URL.
//!
//! Per URL the cache keeps the last good key set with its TTL (the response's
//! `Cache-Control: max-age`, clamped). Fetches are single-flight: concurrent callers wait
//! for one request. A token naming an unknown `kid` may trigger one re-fetch per
//! `refetch_interval` per URL (key rotation); beyond that it is refused, so forged `kid`s
//! cannot turn the gateway into a load generator against the identity provider. When a
//! fetch fails the last good set is served until `ttl + max_stale`, and the request path
//! does not retry a failed URL for `refetch_interval`.
//!
//! Only asymmetric keys are taken from a set (RSA, EC P-256/P-384, Ed25519): an `oct` key
//! is never used, whatever the set says. Key material and tokens are never logged.
//!
//! Key sets decide who may sign tokens, so they come over https only: a JWKS URL must
//! be `https://`, or `http://` on a loopback host (127.0.0.0/8, ::1, `localhost`)
//! ([`check_url`]; refused when a policy is set, and again before every fetch). The
//! fetch client follows a redirect only to https on the JWKS URL's own host
//! ([`redirect_policy`]); any other redirect fails the fetch.

use super::keys::{verifying_key, VerifyingKey};
use jsonwebtoken::jwk::{Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::Algorithm;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

/// The largest JWKS response accepted.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// The most redirects one fetch follows.
pub const MAX_REDIRECTS: usize = 3;

/// Whether key sets may be fetched from `url`: https, or http on a loopback host
/// (127.0.0.0/8, ::1, `localhost`). The error says why not.
pub fn check_url(url: &url::Url) -> Result<(), &'static str> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if url.host().is_some_and(is_loopback) => Ok(()),
        "http" => Err(
            "must use https (http is allowed only on a loopback host: 127.0.0.0/8, ::1, localhost)",
        ),
        _ => Err("must be an https:// URL"),
    }
}

fn is_loopback(host: url::Host<&str>) -> bool {
    match host {
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
        url::Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
    }
}

/// Whether a fetch of `from` may follow a redirect to `to`: only to https on the same
/// host. The error says why not.
fn check_redirect(from: &url::Url, to: &url::Url) -> Result<(), String> {
    if to.scheme() != "https" {
        return Err(format!(
            "redirect to a {} URL refused: a JWKS is fetched over https only",
            to.scheme()
        ));
    }
    if to.host_str() != from.host_str() {
        return Err(format!(
            "redirect from host {} to host {} refused: a JWKS is fetched from its URL's host only",
            from.host_str().unwrap_or_default(),
            to.host_str().unwrap_or_default()
        ));
    }
    Ok(())
}

/// The redirect policy of the JWKS fetch client: at most [`MAX_REDIRECTS`], each to https
/// on the JWKS URL's own host ([`check_redirect`]); any other redirect fails the fetch
/// (it is never followed).
pub fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let Some(first) = attempt.previous().first().cloned() else {
            return attempt.error("redirect without a first URL");
        };
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
        }
        match check_redirect(&first, attempt.url()) {
            Ok(()) => attempt.follow(),
            Err(why) => attempt.error(why),
        }
    })
}

/// How the cache fetches and keeps key sets.
#[derive(Debug, Clone)]
pub struct JwksSettings {
    /// The shortest TTL, whatever `max-age` says.
    pub min_ttl: Duration,
    /// The longest TTL, whatever `max-age` says.
    pub max_ttl: Duration,
    /// The TTL when the response has no `Cache-Control: max-age`.
    pub default_ttl: Duration,
    /// An unknown `kid` re-fetches a URL at most once per this; a failed fetch is not
    /// retried on the request path sooner than this either.
    pub refetch_interval: Duration,
    /// How long past its TTL the last good set is served while fetching fails.
    pub max_stale: Duration,
    /// Limit for one whole fetch (connect, headers and body).
    pub fetch_timeout: Duration,
}

impl Default for JwksSettings {
    fn default() -> Self {
        Self {
            min_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(24 * 3600),
            default_ttl: Duration::from_secs(300),
            refetch_interval: Duration::from_secs(30),
            max_stale: Duration::from_secs(3600),
            fetch_timeout: Duration::from_secs(5),
        }
    }
}

/// Why no key came out of the cache.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwksError {
    /// The set could not be fetched and no usable copy is cached.
    #[error("JWKS unavailable: {0}")]
    Unavailable(String),
    /// No single key in the set fits the token's `kid` and `alg`, even after the
    /// bounded re-fetch (also when several keys fit a token without `kid`).
    #[error("no key in the JWKS fits the token's kid and alg")]
    UnknownKid,
}

/// JWKS key sets by URL. Share it behind an `Arc`.
pub struct JwksCache {
    client: reqwest::Client,
    settings: JwksSettings,
    sets: RwLock<HashMap<String, Arc<Entry>>>,
    clock: Clock,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache")
            .field("settings", &self.settings)
            .field("urls", &read(&self.sets).len())
            .finish()
    }
}

/// `Instant::now()`, which tests can move forward.
#[derive(Clone, Default)]
struct Clock(Arc<AtomicU64>);

impl Clock {
    fn now(&self) -> Instant {
        Instant::now() + Duration::from_millis(self.0.load(Ordering::Relaxed))
    }
}

struct Entry {
    url: String,
    state: Mutex<State>,
    /// Held for the whole of a fetch: the single-flight gate.
    fetch_lock: tokio::sync::Mutex<()>,
    fetches: AtomicU64,
    /// Last `key()` call, in milliseconds since `created`, to drop unused URLs.
    last_used_ms: AtomicU64,
    created: Instant,
}

#[derive(Default)]
struct State {
    set: Option<Arc<KeySet>>,
    /// Bumped after every fetch attempt: a caller that waited for the fetch lock sees
    /// that someone else fetched while it waited and uses that result.
    attempts: u64,
    last_failure: Option<Instant>,
    last_error: Option<String>,
    last_kid_refetch: Option<Instant>,
}

struct KeySet {
    keys: Vec<SetKey>,
    fetched_at: Instant,
    ttl: Duration,
}

struct SetKey {
    kid: Option<String>,
    alg: Option<Algorithm>,
    /// Converted for ring when the set is fetched.
    key: Arc<VerifyingKey>,
}

enum Selection {
    Found(Arc<VerifyingKey>),
    Missing,
    Ambiguous,
}

impl KeySet {
    fn select(&self, kid: Option<&str>, alg: Algorithm) -> Selection {
        let mut fitting = self.keys.iter().filter(|k| {
            k.key.shape().fits(alg)
                && k.alg.is_none_or(|a| a == alg)
                && kid.is_none_or(|kid| k.kid.as_deref() == Some(kid))
        });
        match (fitting.next(), fitting.next()) {
            (Some(k), None) => Selection::Found(k.key.clone()),
            (None, _) => Selection::Missing,
            (Some(_), Some(_)) => Selection::Ambiguous,
        }
    }

    fn is_fresh(&self, now: Instant) -> bool {
        now < self.fetched_at + self.ttl
    }

    fn is_usable(&self, now: Instant, max_stale: Duration) -> bool {
        now < self.fetched_at + self.ttl + max_stale
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}

impl Entry {
    fn new(url: &str, now: Instant) -> Self {
        Self {
            url: url.to_string(),
            state: Mutex::new(State::default()),
            fetch_lock: tokio::sync::Mutex::new(()),
            fetches: AtomicU64::new(0),
            last_used_ms: AtomicU64::new(0),
            created: now,
        }
    }

    fn snapshot(&self) -> (Option<Arc<KeySet>>, u64) {
        let st = lock(&self.state);
        (st.set.clone(), st.attempts)
    }

    fn touch(&self, now: Instant) {
        let ms = now.saturating_duration_since(self.created).as_millis();
        self.last_used_ms
            .store(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn idle_for(&self, now: Instant) -> Duration {
        let last = self.created + Duration::from_millis(self.last_used_ms.load(Ordering::Relaxed));
        now.saturating_duration_since(last)
    }

    /// The cached set if it may still be served, else why not.
    fn usable(
        &self,
        st: &State,
        now: Instant,
        max_stale: Duration,
    ) -> Result<Arc<KeySet>, JwksError> {
        match &st.set {
            Some(set) if set.is_usable(now, max_stale) => Ok(set.clone()),
            _ => Err(JwksError::Unavailable(
                st.last_error
                    .clone()
                    .unwrap_or_else(|| "no key set fetched yet".to_string()),
            )),
        }
    }

    /// Fetches the set now and records the outcome. Call with `fetch_lock` held.
    async fn fetch_and_store(
        &self,
        client: &reqwest::Client,
        settings: &JwksSettings,
        clock: &Clock,
    ) -> Result<(), String> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let result = fetch(client, settings, &self.url, clock).await;
        let mut st = lock(&self.state);
        st.attempts += 1;
        match result {
            Ok(set) => {
                tracing::debug!(url = %self.url, keys = set.keys.len(), ttl_s = set.ttl.as_secs(), "JWKS fetched");
                st.set = Some(Arc::new(set));
                st.last_failure = None;
                st.last_error = None;
                Ok(())
            }
            Err(e) => {
                tracing::warn!(url = %self.url, error = %e, "JWKS fetch failed");
                st.last_failure = Some(clock.now());
                st.last_error = Some(e.clone());
                Err(e)
            }
        }
    }
}

impl JwksCache {
    pub fn new(client: reqwest::Client, settings: JwksSettings) -> Self {
        Self {
            client,
            settings,
            sets: RwLock::new(HashMap::new()),
            clock: Clock::default(),
        }
    }

    fn entry(&self, url: &str) -> Arc<Entry> {
        if let Some(e) = read(&self.sets).get(url) {
            return e.clone();
        }
        let mut sets = self.sets.write().unwrap_or_else(|e| e.into_inner());
        sets.entry(url.to_string())
            .or_insert_with(|| Arc::new(Entry::new(url, self.clock.now())))
            .clone()
    }

    /// The key for `kid` (or the single fitting key when `kid` is `None`) from the set
    /// at `url`, fetching the set when it is cold or expired.
    pub async fn key(
        &self,
        url: &str,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<VerifyingKey>, JwksError> {
        let entry = self.entry(url);
        let now = self.clock.now();
        entry.touch(now);
        let (set, seen) = entry.snapshot();
        if let Some(set) = set.filter(|s| s.is_fresh(now)) {
            return match set.select(kid, alg) {
                Selection::Found(key) => Ok(key),
                Selection::Ambiguous => Err(JwksError::UnknownKid),
                Selection::Missing => self.refetch_for_kid(&entry, seen, kid, alg).await,
            };
        }
        // Cold or expired: this call fetches (or shares a fetch), so the set it gets is
        // as new as any: a kid missing from it is not worth a second fetch.
        let set = self.refresh_expired(&entry, seen).await?;
        match set.select(kid, alg) {
            Selection::Found(key) => Ok(key),
            Selection::Missing | Selection::Ambiguous => Err(JwksError::UnknownKid),
        }
    }

    async fn refresh_expired(&self, entry: &Entry, seen: u64) -> Result<Arc<KeySet>, JwksError> {
        let _flight = entry.fetch_lock.lock().await;
        let now = self.clock.now();
        {
            let st = lock(&entry.state);
            let someone_fetched = st.attempts != seen;
            let backing_off = st
                .last_failure
                .is_some_and(|t| now.saturating_duration_since(t) < self.settings.refetch_interval);
            let fresh = st.set.as_ref().is_some_and(|s| s.is_fresh(now));
            if someone_fetched || backing_off || fresh {
                return entry.usable(&st, now, self.settings.max_stale);
            }
        }
        // A failure is logged and recorded inside; what counts is what is usable now.
        let _ = entry
            .fetch_and_store(&self.client, &self.settings, &self.clock)
            .await;
        let st = lock(&entry.state);
        entry.usable(&st, self.clock.now(), self.settings.max_stale)
    }

    async fn refetch_for_kid(
        &self,
        entry: &Entry,
        seen: u64,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<VerifyingKey>, JwksError> {
        let _flight = entry.fetch_lock.lock().await;
        let now = self.clock.now();
        let fetch_now = {
            let mut st = lock(&entry.state);
            if st.attempts != seen {
                false // someone fetched while we waited: look in that set
            } else if st
                .last_kid_refetch
                .is_some_and(|t| now.saturating_duration_since(t) < self.settings.refetch_interval)
            {
                return Err(JwksError::UnknownKid);
            } else {
                st.last_kid_refetch = Some(now);
                true
            }
        };
        if fetch_now {
            tracing::debug!(url = %entry.url, "unknown kid: re-fetching JWKS");
            let _ = entry
                .fetch_and_store(&self.client, &self.settings, &self.clock)
                .await;
        }
        let set = {
            let st = lock(&entry.state);
            entry.usable(&st, self.clock.now(), self.settings.max_stale)
        };
        match set.map(|s| s.select(kid, alg)) {
            Ok(Selection::Found(key)) => Ok(key),
            _ => Err(JwksError::UnknownKid),
        }
    }

    /// Refreshes every set that is near expiry (or that failed and is out of its back
    /// off), concurrently: one failing or slow URL never holds up the others. URLs no
    /// one asked about for `max_ttl + max_stale` are dropped.
    pub async fn refresh_due(&self) {
        let now = self.clock.now();
        let idle_limit = self.settings.max_ttl + self.settings.max_stale;
        let entries: Vec<Arc<Entry>> = {
            let mut sets = self.sets.write().unwrap_or_else(|e| e.into_inner());
            sets.retain(|_, e| e.idle_for(now) < idle_limit);
            sets.values().cloned().collect()
        };
        let mut tasks = tokio::task::JoinSet::new();
        for entry in entries {
            if !self.is_due(&entry, now) {
                continue;
            }
            let client = self.client.clone();
            let settings = self.settings.clone();
            let clock = self.clock.clone();
            tasks.spawn(async move {
                // A request is fetching this URL right now: nothing to add.
                let Ok(_flight) = entry.fetch_lock.try_lock() else {
                    return;
                };
                let _ = entry.fetch_and_store(&client, &settings, &clock).await;
            });
        }
        while tasks.join_next().await.is_some() {}
    }

    fn is_due(&self, entry: &Entry, now: Instant) -> bool {
        let st = lock(&entry.state);
        if st
            .last_failure
            .is_some_and(|t| now.saturating_duration_since(t) < self.settings.refetch_interval)
        {
            return false;
        }
        match &st.set {
            // Never fetched successfully (and not backing off): try again.
            None => true,
            Some(set) => {
                let expires = set.fetched_at + set.ttl;
                let ahead = (set.ttl / 2).min(self.settings.min_ttl);
                expires.saturating_duration_since(now) <= ahead
            }
        }
    }

    /// Calls [`refresh_due`](Self::refresh_due) every `every` until the cache is dropped
    /// (or the future is, at shutdown). Holds no strong reference to the cache.
    pub fn refresher(
        self: &Arc<Self>,
        every: Duration,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let cache = Arc::downgrade(self);
        let every = every.max(Duration::from_millis(10));
        async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await; // the first tick is immediate
            loop {
                tick.tick().await;
                let Some(cache) = cache.upgrade() else { break };
                cache.refresh_due().await;
            }
        }
    }

    /// How many HTTP fetches were made for `url` (for tests and metrics).
    pub fn fetch_count(&self, url: &str) -> u64 {
        read(&self.sets)
            .get(url)
            .map_or(0, |e| e.fetches.load(Ordering::Relaxed))
    }

    #[cfg(test)]
    fn advance_clock(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.clock.0.fetch_add(ms, Ordering::Relaxed);
    }

    #[cfg(test)]
    fn ttl(&self, url: &str) -> Option<Duration> {
        let entry = read(&self.sets).get(url)?.clone();
        let st = lock(&entry.state);
        st.set.as_ref().map(|s| s.ttl)
    }
}

async fn fetch(
    client: &reqwest::Client,
    settings: &JwksSettings,
    url: &str,
    clock: &Clock,
) -> Result<KeySet, String> {
    // Checked when the policy was set; again here, for policies stored before the rule.
    let parsed = url::Url::parse(url).map_err(|_| "the JWKS URL is not a valid URL".to_string())?;
    check_url(&parsed).map_err(|why| format!("JWKS URL refused: {why}"))?;
    let mut resp = client
        .get(parsed)
        .header(http::header::ACCEPT, "application/json")
        .timeout(settings.fetch_timeout)
        .send()
        .await
        .map_err(|e| format!("request failed: {}", with_causes(e.without_url())))?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status()));
    }
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
    {
        return Err(format!("response larger than {MAX_JWKS_BYTES} bytes"));
    }
    let ttl = ttl_from_headers(resp.headers(), settings);
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("reading the body failed: {}", with_causes(e.without_url())))?
    {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(format!("response larger than {MAX_JWKS_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    let keys = parse_jwks(&body, url)?;
    Ok(KeySet {
        keys,
        fetched_at: clock.now(),
        ttl,
    })
}

/// An error with its causes (reqwest's own message alone says little, e.g. "error
/// sending request"), so the log says "connection refused" or "timed out".
fn with_causes(e: reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `Cache-Control: max-age` clamped to `[min_ttl, max_ttl]`; `no-store`/`no-cache` mean
/// the shortest TTL; no directive means `default_ttl`.
fn ttl_from_headers(headers: &http::HeaderMap, settings: &JwksSettings) -> Duration {
    let mut ttl = settings.default_ttl;
    for value in headers.get_all(http::header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',').map(str::trim) {
            let lower = directive.to_ascii_lowercase();
            if lower == "no-store" || lower == "no-cache" {
                ttl = settings.min_ttl;
            } else if let Some(secs) = lower.strip_prefix("max-age=") {
                if let Ok(secs) = secs.trim_matches('"').parse::<u64>() {
                    ttl = Duration::from_secs(secs);
                }
            }
        }
    }
    ttl.clamp(settings.min_ttl, settings.min_ttl.max(settings.max_ttl))
}

/// The usable verification keys of a JWKS document. Keys that do not parse, are not for
/// signatures, or are symmetric are skipped (and logged without their material).
fn parse_jwks(body: &[u8], url: &str) -> Result<Vec<SetKey>, String> {
    #[derive(serde::Deserialize)]
    struct RawSet {
        keys: Vec<serde_json::Value>,
    }
    let raw: RawSet =
        serde_json::from_slice(body).map_err(|e| format!("not a JWKS document: {e}"))?;
    let mut keys = Vec::with_capacity(raw.keys.len());
    for (index, value) in raw.keys.into_iter().enumerate() {
        let kid = value
            .get("kid")
            .and_then(|k| k.as_str())
            .map(str::to_string);
        match set_key(value) {
            Ok(key) => keys.push(key),
            Err(reason) => {
                tracing::warn!(
                    url,
                    index,
                    kid = kid.as_deref(),
                    reason,
                    "skipping JWKS key"
                );
            }
        }
    }
    if keys.is_empty() {
        return Err("no usable signature verification key in the set".to_string());
    }
    Ok(keys)
}

fn set_key(value: serde_json::Value) -> Result<SetKey, &'static str> {
    let jwk: Jwk = serde_json::from_value(value).map_err(|_| "does not parse as a JWK")?;
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return Err("its use is not \"sig\"");
    }
    if jwk
        .common
        .key_operations
        .as_ref()
        .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
    {
        return Err("its key_ops do not include \"verify\"");
    }
    let alg = match &jwk.common.key_algorithm {
        None => None,
        Some(a) => Some(
            Algorithm::from_str(&a.to_string())
                .map_err(|_| "its alg is not a signature algorithm")?,
        ),
    };
    let key = verifying_key(&jwk.algorithm)?;
    if alg.is_some_and(|a| !key.shape().fits(a)) {
        return Err("its alg does not fit its key type");
    }
    Ok(SetKey {
        kid: jwk.common.key_id,
        alg,
        key: Arc::new(key),
    })
}

#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod fuzz;
#[cfg(test)]
mod tests;
