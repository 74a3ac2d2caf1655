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

use super::jwt::{KeyShape, VerifyingKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::Algorithm;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

/// The largest JWKS response accepted.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;

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

    /// Calls [`refresh_due`](Self::refresh_due) every `every` until the cache is dropped.
    pub fn spawn_refresher(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let cache = Arc::downgrade(self);
        let every = every.max(Duration::from_millis(10));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await; // the first tick is immediate
            loop {
                tick.tick().await;
                let Some(cache) = cache.upgrade() else { break };
                cache.refresh_due().await;
            }
        })
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
    let mut resp = client
        .get(url)
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

/// A JWK's public key in the form ring verifies with (RSA `n`/`e`, EC `x`/`y`, OKP `x`).
pub(crate) fn verifying_key(params: &AlgorithmParameters) -> Result<VerifyingKey, &'static str> {
    let decode = |b64: &str| {
        // base64url without padding (RFC 7515); tolerate padding some issuers add.
        URL_SAFE_NO_PAD
            .decode(b64.trim_end_matches('='))
            .map_err(|_| "its key parameters do not decode")
    };
    match params {
        AlgorithmParameters::RSA(p) => VerifyingKey::rsa(&decode(&p.n)?, &decode(&p.e)?),
        AlgorithmParameters::EllipticCurve(p) => {
            let shape = match p.curve {
                EllipticCurve::P256 => KeyShape::EcP256,
                EllipticCurve::P384 => KeyShape::EcP384,
                _ => return Err("unsupported EC curve"),
            };
            VerifyingKey::ec_coordinates(shape, &decode(&p.x)?, &decode(&p.y)?)
        }
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => VerifyingKey::ed25519(&decode(&p.x)?),
            _ => Err("unsupported OKP curve"),
        },
        AlgorithmParameters::OctetKey(_) => Err("symmetric keys are never used"),
    }
}

/// Keys, tokens and a local JWKS server for the JWT and JWKS tests.
#[cfg(test)]
pub(crate) mod testing {
    use axum::extract::State;
    use axum::http::{HeaderMap, HeaderValue, StatusCode};
    use axum::routing::get;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use serde_json::{json, Value};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// A 2048-bit RSA test key pair (generated once with `openssl genpkey`; test only).
    pub const RSA_PRIVATE_PEM: &str = include_str!("../../tests/fixtures/rsa-test-private.pem");
    pub const RSA_PUBLIC_PEM: &str = include_str!("../../tests/fixtures/rsa-test-public.pem");

    /// A signing key with its public half as PEM and as a JWK (without `kid`).
    pub struct TestKey {
        pub alg: Algorithm,
        pub encoding: EncodingKey,
        pub public_pem: String,
        pub jwk: Value,
    }

    impl TestKey {
        pub fn rsa(alg: Algorithm) -> Self {
            let encoding = EncodingKey::from_rsa_pem(RSA_PRIVATE_PEM.as_bytes()).unwrap();
            let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding, alg).unwrap();
            let mut jwk = serde_json::to_value(jwk).unwrap();
            // No `alg` on the JWK: the one RSA key serves RS* and PS* tests.
            jwk.as_object_mut().unwrap().remove("alg");
            Self {
                alg,
                encoding,
                public_pem: RSA_PUBLIC_PEM.to_string(),
                jwk,
            }
        }

        pub fn ec(alg: Algorithm) -> Self {
            let (rc_alg, crv, n) = match alg {
                Algorithm::ES256 => (&rcgen::PKCS_ECDSA_P256_SHA256, "P-256", 32),
                Algorithm::ES384 => (&rcgen::PKCS_ECDSA_P384_SHA384, "P-384", 48),
                other => panic!("not an EC alg: {other:?}"),
            };
            let pair = rcgen::KeyPair::generate_for(rc_alg).unwrap();
            let raw = pair.public_key_raw();
            assert_eq!(raw.len(), 1 + 2 * n);
            Self {
                alg,
                encoding: EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap(),
                public_pem: pair.public_key_pem(),
                jwk: json!({
                    "kty": "EC",
                    "crv": crv,
                    "x": URL_SAFE_NO_PAD.encode(&raw[1..1 + n]),
                    "y": URL_SAFE_NO_PAD.encode(&raw[1 + n..]),
                }),
            }
        }

        pub fn ed() -> Self {
            let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
            Self {
                alg: Algorithm::EdDSA,
                encoding: EncodingKey::from_ed_pem(pair.serialize_pem().as_bytes()).unwrap(),
                public_pem: pair.public_key_pem(),
                jwk: json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": URL_SAFE_NO_PAD.encode(pair.public_key_raw()),
                }),
            }
        }

        pub fn jwk_with_kid(&self, kid: &str) -> Value {
            let mut jwk = self.jwk.clone();
            jwk["kid"] = json!(kid);
            jwk
        }

        pub fn sign(&self, claims: &Value, kid: Option<&str>) -> String {
            sign_with(self.alg, &self.encoding, claims, kid)
        }
    }

    pub fn sign_with(
        alg: Algorithm,
        key: &EncodingKey,
        claims: &Value,
        kid: Option<&str>,
    ) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&header, claims, key).unwrap()
    }

    /// A client that never goes through a proxy: tests talk to loopback only.
    pub fn client() -> reqwest::Client {
        reqwest::Client::builder().no_proxy().build().unwrap()
    }

    struct Served {
        keys: Vec<Value>,
        status: u16,
        cache_control: Option<String>,
        delay: Duration,
        body_override: Option<String>,
    }

    /// A JWKS endpoint on 127.0.0.1 that counts requests and can fail or rotate keys.
    #[derive(Clone)]
    pub struct JwksServer {
        pub url: String,
        served: Arc<Mutex<Served>>,
        hits: Arc<AtomicU64>,
    }

    type ServerState = (Arc<Mutex<Served>>, Arc<AtomicU64>);

    async fn serve_jwks(
        State((served, hits)): State<ServerState>,
    ) -> (StatusCode, HeaderMap, String) {
        hits.fetch_add(1, Ordering::SeqCst);
        let (status, cache_control, delay, body) = {
            let s = served.lock().unwrap();
            let body = s
                .body_override
                .clone()
                .unwrap_or_else(|| json!({ "keys": s.keys }).to_string());
            (s.status, s.cache_control.clone(), s.delay, body)
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        if let Some(cc) = cache_control {
            headers.insert("cache-control", HeaderValue::from_str(&cc).unwrap());
        }
        (StatusCode::from_u16(status).unwrap(), headers, body)
    }

    impl JwksServer {
        pub async fn start(keys: Vec<Value>) -> Self {
            let served = Arc::new(Mutex::new(Served {
                keys,
                status: 200,
                cache_control: None,
                delay: Duration::ZERO,
                body_override: None,
            }));
            let hits = Arc::new(AtomicU64::new(0));
            let app = axum::Router::new()
                .route("/jwks.json", get(serve_jwks))
                .with_state((served.clone(), hits.clone()));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move {
                axum::serve(listener, app).await.unwrap();
            });
            Self {
                url: format!("http://{addr}/jwks.json"),
                served,
                hits,
            }
        }

        pub fn set_keys(&self, keys: Vec<Value>) {
            self.served.lock().unwrap().keys = keys;
        }
        pub fn set_status(&self, status: u16) {
            self.served.lock().unwrap().status = status;
        }
        pub fn set_cache_control(&self, value: Option<&str>) {
            self.served.lock().unwrap().cache_control = value.map(str::to_string);
        }
        pub fn set_delay(&self, delay: Duration) {
            self.served.lock().unwrap().delay = delay;
        }
        pub fn set_body(&self, body: Option<String>) {
            self.served.lock().unwrap().body_override = body;
        }
        pub fn hits(&self) -> u64 {
            self.hits.load(Ordering::SeqCst)
        }
    }

    /// A loopback URL where nothing listens.
    pub async fn closed_url() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        format!("http://{addr}/jwks.json")
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use serde_json::json;

    fn settings() -> JwksSettings {
        JwksSettings {
            fetch_timeout: Duration::from_secs(2),
            ..JwksSettings::default()
        }
    }

    fn cache() -> JwksCache {
        JwksCache::new(client(), settings())
    }

    fn found(r: Result<Arc<VerifyingKey>, JwksError>) -> Arc<VerifyingKey> {
        match r {
            Ok(k) => k,
            Err(e) => panic!("expected a key, got {e:?}"),
        }
    }

    #[tokio::test]
    async fn finds_keys_by_kid_and_the_single_fitting_key_without_kid() {
        let rsa = TestKey::rsa(Algorithm::RS256);
        let ec = TestKey::ec(Algorithm::ES256);
        let ed = TestKey::ed();
        let server = JwksServer::start(vec![
            rsa.jwk_with_kid("r1"),
            ec.jwk_with_kid("e1"),
            ed.jwk_with_kid("d1"),
        ])
        .await;
        let cache = cache();
        let url = &server.url;
        found(cache.key(url, Some("r1"), Algorithm::RS256).await);
        found(cache.key(url, Some("r1"), Algorithm::PS256).await);
        found(cache.key(url, Some("e1"), Algorithm::ES256).await);
        found(cache.key(url, Some("d1"), Algorithm::EdDSA).await);
        // Without kid: the only key of the right type.
        found(cache.key(url, None, Algorithm::ES256).await);
        found(cache.key(url, None, Algorithm::EdDSA).await);
        assert_eq!(cache.fetch_count(url), 1);
        assert_eq!(server.hits(), 1);
        // A kid that names a key of another type is not that key.
        assert_eq!(
            cache
                .key(url, Some("r1"), Algorithm::ES256)
                .await
                .unwrap_err(),
            JwksError::UnknownKid
        );
    }

    #[tokio::test]
    async fn several_fitting_keys_without_kid_is_ambiguous() {
        let a = TestKey::ec(Algorithm::ES256);
        let b = TestKey::ec(Algorithm::ES256);
        let server = JwksServer::start(vec![a.jwk_with_kid("a"), b.jwk_with_kid("b")]).await;
        let cache = cache();
        assert_eq!(
            cache
                .key(&server.url, None, Algorithm::ES256)
                .await
                .unwrap_err(),
            JwksError::UnknownKid
        );
        found(cache.key(&server.url, Some("b"), Algorithm::ES256).await);
        assert_eq!(cache.fetch_count(&server.url), 1);
    }

    #[tokio::test]
    async fn unknown_kid_refetches_once_per_interval_then_refuses() {
        let ec = TestKey::ec(Algorithm::ES256);
        let server = JwksServer::start(vec![ec.jwk_with_kid("k1")]).await;
        let cache = cache();
        let url = &server.url;
        found(cache.key(url, Some("k1"), Algorithm::ES256).await);
        assert_eq!(cache.fetch_count(url), 1);

        // Unknown kid: exactly one refetch, then refused.
        assert_eq!(
            cache
                .key(url, Some("nope"), Algorithm::ES256)
                .await
                .unwrap_err(),
            JwksError::UnknownKid
        );
        assert_eq!(cache.fetch_count(url), 2);
        // Another unknown kid within the interval: no fetch at all.
        assert_eq!(
            cache
                .key(url, Some("other"), Algorithm::ES256)
                .await
                .unwrap_err(),
            JwksError::UnknownKid
        );
        assert_eq!(cache.fetch_count(url), 2);
        assert_eq!(server.hits(), 2);
        // Known keys are unaffected.
        found(cache.key(url, Some("k1"), Algorithm::ES256).await);

        // After the interval, one more refetch is allowed.
        cache.advance_clock(settings().refetch_interval + Duration::from_secs(1));
        assert!(cache
            .key(url, Some("nope"), Algorithm::ES256)
            .await
            .is_err());
        assert_eq!(cache.fetch_count(url), 3);
    }

    #[tokio::test]
    async fn a_rotated_key_is_found_by_the_unknown_kid_refetch() {
        let old = TestKey::ec(Algorithm::ES256);
        let new = TestKey::ec(Algorithm::ES256);
        let server = JwksServer::start(vec![old.jwk_with_kid("old")]).await;
        let cache = cache();
        found(cache.key(&server.url, Some("old"), Algorithm::ES256).await);
        server.set_keys(vec![old.jwk_with_kid("old"), new.jwk_with_kid("new")]);
        found(cache.key(&server.url, Some("new"), Algorithm::ES256).await);
        assert_eq!(cache.fetch_count(&server.url), 2);
    }

    #[tokio::test]
    async fn cached_keys_keep_working_while_the_jwks_is_down() {
        let ec = TestKey::ec(Algorithm::ES256);
        let server = JwksServer::start(vec![ec.jwk_with_kid("k1")]).await;
        let s = settings();
        let cache = JwksCache::new(client(), s.clone());
        let url = &server.url;
        found(cache.key(url, Some("k1"), Algorithm::ES256).await);
        server.set_status(500);

        // Fresh: served from cache without a fetch.
        found(cache.key(url, Some("k1"), Algorithm::ES256).await);
        assert_eq!(cache.fetch_count(url), 1);

        // Expired: the fetch fails, the last good set is served (stale).
        cache.advance_clock(s.default_ttl + Duration::from_secs(1));
        found(cache.key(url, Some("k1"), Algorithm::ES256).await);
        assert_eq!(cache.fetch_count(url), 2);
        // Within the back-off, no new fetch on the request path.
        found(cache.key(url, Some("k1"), Algorithm::ES256).await);
        assert_eq!(cache.fetch_count(url), 2);

        // Past ttl + max_stale: unavailable.
        cache.advance_clock(s.max_stale);
        assert!(matches!(
            cache.key(url, Some("k1"), Algorithm::ES256).await,
            Err(JwksError::Unavailable(_))
        ));

        // The server recovers: after the back-off the next request fetches again.
        server.set_status(200);
        cache.advance_clock(s.refetch_interval);
        found(cache.key(url, Some("k1"), Algorithm::ES256).await);
    }

    #[tokio::test]
    async fn a_cold_url_that_cannot_be_fetched_is_unavailable() {
        let cache = cache();
        let closed = closed_url().await;
        let err = cache
            .key(&closed, Some("k"), Algorithm::RS256)
            .await
            .unwrap_err();
        assert!(matches!(err, JwksError::Unavailable(_)), "{err:?}");
        assert_eq!(cache.fetch_count(&closed), 1);
        // Backing off: the next request does not hammer the URL.
        assert!(cache
            .key(&closed, Some("k"), Algorithm::RS256)
            .await
            .is_err());
        assert_eq!(cache.fetch_count(&closed), 1);

        let server = JwksServer::start(vec![]).await;
        server.set_status(500);
        let err = cache
            .key(&server.url, None, Algorithm::RS256)
            .await
            .unwrap_err();
        assert_eq!(
            err,
            JwksError::Unavailable("HTTP 500 Internal Server Error".into())
        );
        // A set with no usable key counts as a failed fetch too.
        server.set_status(200);
        cache.advance_clock(settings().refetch_interval);
        assert!(matches!(
            cache.key(&server.url, None, Algorithm::RS256).await,
            Err(JwksError::Unavailable(_))
        ));
    }

    #[tokio::test]
    async fn concurrent_cold_lookups_share_one_fetch() {
        let ec = TestKey::ec(Algorithm::ES256);
        let server = JwksServer::start(vec![ec.jwk_with_kid("k1")]).await;
        server.set_delay(Duration::from_millis(100));
        let cache = Arc::new(cache());
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..16 {
            let cache = cache.clone();
            let url = server.url.clone();
            tasks.spawn(async move { cache.key(&url, Some("k1"), Algorithm::ES256).await });
        }
        while let Some(r) = tasks.join_next().await {
            found(r.unwrap());
        }
        assert_eq!(cache.fetch_count(&server.url), 1);
        assert_eq!(server.hits(), 1);
    }

    #[tokio::test]
    async fn concurrent_unknown_kids_share_one_refetch() {
        let ec = TestKey::ec(Algorithm::ES256);
        let server = JwksServer::start(vec![ec.jwk_with_kid("k1")]).await;
        let cache = Arc::new(cache());
        found(cache.key(&server.url, Some("k1"), Algorithm::ES256).await);
        server.set_delay(Duration::from_millis(100));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..8 {
            let cache = cache.clone();
            let url = server.url.clone();
            tasks.spawn(async move {
                cache
                    .key(&url, Some(&format!("x{i}")), Algorithm::ES256)
                    .await
            });
        }
        while let Some(r) = tasks.join_next().await {
            assert_eq!(r.unwrap().unwrap_err(), JwksError::UnknownKid);
        }
        assert_eq!(cache.fetch_count(&server.url), 2);
    }

    #[tokio::test]
    async fn max_age_is_respected_and_clamped() {
        let ec = TestKey::ec(Algorithm::ES256);
        let server = JwksServer::start(vec![ec.jwk_with_kid("k1")]).await;
        let s = settings();
        for (cache_control, want) in [
            (Some("public, max-age=120"), Duration::from_secs(120)),
            (Some("max-age=5"), s.min_ttl),
            (Some("max-age=99999999"), s.max_ttl),
            (Some("no-store"), s.min_ttl),
            (Some("public"), s.default_ttl),
            (None, s.default_ttl),
        ] {
            server.set_cache_control(cache_control);
            let cache = cache();
            found(cache.key(&server.url, Some("k1"), Algorithm::ES256).await);
            assert_eq!(cache.ttl(&server.url), Some(want), "{cache_control:?}");
        }

        // A set is refetched once its (max-age) TTL is over.
        server.set_cache_control(Some("max-age=120"));
        let cache = cache();
        found(cache.key(&server.url, Some("k1"), Algorithm::ES256).await);
        cache.advance_clock(Duration::from_secs(119));
        found(cache.key(&server.url, Some("k1"), Algorithm::ES256).await);
        assert_eq!(cache.fetch_count(&server.url), 1);
        cache.advance_clock(Duration::from_secs(2));
        found(cache.key(&server.url, Some("k1"), Algorithm::ES256).await);
        assert_eq!(cache.fetch_count(&server.url), 2);
    }

    #[tokio::test]
    async fn unusable_keys_are_skipped_and_symmetric_keys_never_used() {
        let ec = TestKey::ec(Algorithm::ES256);
        let server = JwksServer::start(vec![
            json!({"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0", "kid": "hmac"}),
            json!({"kty": "weird", "kid": "weird"}),
            json!({"kty": "EC", "crv": "P-256", "x": "!!", "kid": "broken"}),
            {
                let mut enc = ec.jwk_with_kid("enc");
                enc["use"] = json!("enc");
                enc
            },
            {
                let mut wrong = ec.jwk_with_kid("wrong-alg");
                wrong["alg"] = json!("RS256");
                wrong
            },
            ec.jwk_with_kid("good"),
        ])
        .await;
        let cache = cache();
        let url = &server.url;
        // Only "good" survives, so it is also the single fitting key without kid.
        found(cache.key(url, None, Algorithm::ES256).await);
        found(cache.key(url, Some("good"), Algorithm::ES256).await);
        for kid in ["hmac", "weird", "broken", "enc", "wrong-alg"] {
            assert_eq!(
                cache
                    .key(url, Some(kid), Algorithm::ES256)
                    .await
                    .unwrap_err(),
                JwksError::UnknownKid,
                "{kid}"
            );
        }
        assert_eq!(
            cache
                .key(url, Some("hmac"), Algorithm::HS256)
                .await
                .unwrap_err(),
            JwksError::UnknownKid
        );
    }

    #[tokio::test]
    async fn oversized_and_non_json_responses_fail() {
        let server = JwksServer::start(vec![]).await;
        let cache = JwksCache::new(
            client(),
            JwksSettings {
                refetch_interval: Duration::ZERO,
                ..settings()
            },
        );
        server.set_body(Some("x".repeat(MAX_JWKS_BYTES + 1)));
        let err = cache
            .key(&server.url, None, Algorithm::ES256)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, JwksError::Unavailable(m) if m.contains("larger")),
            "{err:?}"
        );
        server.set_body(Some("<html>".into()));
        let err = cache
            .key(&server.url, None, Algorithm::ES256)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, JwksError::Unavailable(m) if m.contains("not a JWKS")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn refresh_due_refreshes_near_expiry_sets_and_a_failing_url_blocks_none() {
        let ec = TestKey::ec(Algorithm::ES256);
        let good = JwksServer::start(vec![ec.jwk_with_kid("k1")]).await;
        let slow = JwksServer::start(vec![ec.jwk_with_kid("k1")]).await;
        let s = JwksSettings {
            fetch_timeout: Duration::from_millis(500),
            ..settings()
        };
        let cache = JwksCache::new(client(), s.clone());
        found(cache.key(&good.url, Some("k1"), Algorithm::ES256).await);
        found(cache.key(&slow.url, Some("k1"), Algorithm::ES256).await);

        // Nothing is due right after fetching.
        cache.refresh_due().await;
        assert_eq!(cache.fetch_count(&good.url), 1);

        // Near expiry (within min_ttl of the 5 min default TTL): both are refreshed,
        // concurrently, and the slow one times out without holding up the good one.
        slow.set_delay(Duration::from_secs(5));
        cache.advance_clock(s.default_ttl - s.min_ttl + Duration::from_secs(1));
        let started = std::time::Instant::now();
        cache.refresh_due().await;
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!(cache.fetch_count(&good.url), 2);
        assert_eq!(cache.fetch_count(&slow.url), 2);
        assert_eq!(cache.ttl(&good.url), Some(s.default_ttl));
        // The failed URL keeps its last good set (still within ttl + max_stale).
        slow.set_delay(Duration::ZERO);
        found(cache.key(&slow.url, Some("k1"), Algorithm::ES256).await);
    }

    #[tokio::test]
    async fn the_refresher_runs_in_the_background_and_stops_with_the_cache() {
        let ec = TestKey::ec(Algorithm::ES256);
        let server = JwksServer::start(vec![ec.jwk_with_kid("k1")]).await;
        let cache = Arc::new(cache());
        found(cache.key(&server.url, Some("k1"), Algorithm::ES256).await);
        cache.advance_clock(settings().default_ttl);
        let handle = cache.spawn_refresher(Duration::from_millis(20));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while cache.fetch_count(&server.url) < 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "refresher never fetched"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(cache);
        tokio::time::timeout(Duration::from_secs(5), handle)
            .await
            .unwrap()
            .unwrap();
    }
}
