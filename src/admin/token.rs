//! Admin API tokens: `wpgat_<id>_<secret>`. The id (12 characters, public) finds the
//! record in one lookup; the secret (43 base62 characters, > 256 bits) is stored only as
//! an argon2id hash (PHC string).
//!
//! argon2 is slow by design (tens of ms, ~19 MiB), and at most two run at once. So:
//! - A successful verification is remembered for a minute, keyed by an HMAC of the
//!   whole token under a per-process random key: an operator's repeated calls cost no
//!   argon2, and the cache holds nothing that identifies a token outside this process.
//!   Revoking a token through this process forgets every remembered one at once.
//! - argon2 runs only for a token whose id exists and is not revoked. A malformed
//!   token, an unknown id and a revoked token are refused without it.
//! - So that this does not tell an attacker which ids exist, every refusal is answered
//!   at the same moment: a fixed delay after the check started, "the refusal floor".
//!   The floor is three times the moving average of argon2 verification time (measured
//!   at start-up, then on every verification), at least 100 ms: a wrong secret for a
//!   real id (lookup + argon2) and an unknown id (lookup only) both end at the floor,
//!   waiting on a timer, not on the CPU. Only when verifications queue behind each
//!   other for longer than the floor would a wrong secret answer later; one check at a
//!   time per client and the per-client failure limit (`super::failures`) keep a
//!   guesser from causing that queue.

use crate::auth::api_key::{self, KeyHasher};
use crate::fleet::Actor;
use crate::secret::Secret;
use crate::store::{AdminScope, AdminTokenRecord, Store, StoreError};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::rngs::OsRng;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

pub const PREFIX: &str = "wpgat_";
pub const ID_LEN: usize = api_key::KEY_ID_LEN;
pub const SECRET_LEN: usize = api_key::SECRET_LEN;

/// How long a verified token is taken on trust without another argon2 run.
pub const VERIFIED_TTL: Duration = Duration::from_secs(60);
/// argon2id takes ~19 MiB per verification: bound how many run at once.
const CONCURRENT_VERIFICATIONS: usize = 2;
/// The refusal floor is never shorter than this.
const MIN_REFUSAL: Duration = Duration::from_millis(100);
/// Nor longer than this (a machine so loaded that argon2 takes over 1.6 s).
const MAX_REFUSAL: Duration = Duration::from_secs(5);
/// The floor, as a multiple of the average verification time.
const REFUSAL_FACTOR: u32 = 3;
/// The verification time assumed before the first measurement.
const INITIAL_VERIFY_ESTIMATE: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
    #[error("cannot hash the token: {0}")]
    Hash(String),
}

/// A presented token split into its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedToken<'a> {
    pub id: &'a str,
    pub secret: &'a str,
}

/// Splits `wpgat_<id>_<secret>`; `None` if it is not shaped like a token (the shape of
/// an API key, with its own prefix).
pub fn parse(raw: &str) -> Option<ParsedToken<'_>> {
    api_key::split_prefixed(raw, PREFIX).map(|(id, secret)| ParsedToken { id, secret })
}

/// True if `s` looks like a token id (for CLI input).
pub fn is_token_id(s: &str) -> bool {
    api_key::is_key_id(s)
}

/// A label is part of the audit actor (`admin:<label>`): keep it short and plain.
pub fn check_label(label: &str) -> Result<(), TokenError> {
    let ok = (1..=64).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@' | b':'));
    if ok {
        Ok(())
    } else {
        Err(TokenError::Invalid(
            "label: 1-64 characters of [A-Za-z0-9._@:-]".into(),
        ))
    }
}

/// argon2id (the crate's defaults: 19 MiB, 2 passes, 1 lane) of `secret`, as a PHC string.
pub fn hash_secret(secret: &[u8]) -> Result<String, TokenError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(secret, &salt)
        .map(|h| h.to_string())
        .map_err(|e| TokenError::Hash(e.to_string()))
}

/// Checks `secret` against a PHC string (constant-time comparison inside argon2).
pub fn verify_secret(secret: &[u8], phc: &str) -> bool {
    PasswordHash::new(phc)
        .is_ok_and(|hash| Argon2::default().verify_password(secret, &hash).is_ok())
}

/// The caller of an admin API request: the token that authenticated it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminIdentity {
    pub token_id: String,
    pub label: Option<String>,
    pub scope: AdminScope,
}

impl AdminIdentity {
    /// `admin:<label>`, or `admin:<token id>` for a token without a label.
    pub fn actor_name(&self) -> String {
        format!("admin:{}", self.label.as_deref().unwrap_or(&self.token_id))
    }

    pub fn can_write(&self) -> bool {
        self.scope == AdminScope::Write
    }
}

/// Why a presented token was refused. The audit log records it; a client sees one
/// 401 and the metrics one `refused` (the first is `malformed`) whatever the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not shaped like `wpgat_<id>_<secret>`.
    Malformed,
    UnknownId,
    Revoked,
    WrongSecret,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::UnknownId => "unknown_token",
            Refusal::Revoked => "revoked",
            Refusal::WrongSecret => "wrong_secret",
        }
    }
}

/// The outcome of a token check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    Accepted(AdminIdentity),
    /// `token_id`: the id the token named, when it was well-formed (never the secret).
    Refused {
        reason: Refusal,
        token_id: Option<String>,
    },
}

/// Creates, revokes and verifies admin tokens against the store.
pub struct AdminTokens {
    verified: moka::future::Cache<[u8; 32], AdminIdentity>,
    /// Keys `verified` (a random key per process).
    fingerprints: KeyHasher,
    hashing: Arc<Semaphore>,
    /// Moving average of one argon2 verification, in nanoseconds.
    verify_ns: AtomicU64,
    /// argon2 verifications run (for tests: unknown ids must not add to it).
    verifications: AtomicU64,
}

impl Default for AdminTokens {
    fn default() -> Self {
        Self::new()
    }
}

impl AdminTokens {
    pub fn new() -> Self {
        AdminTokens {
            verified: moka::future::Cache::builder()
                .max_capacity(1024)
                .time_to_live(VERIFIED_TTL)
                .support_invalidation_closures()
                .build(),
            fingerprints: KeyHasher::new(&api_key::new_pepper()),
            hashing: Arc::new(Semaphore::new(CONCURRENT_VERIFICATIONS)),
            verify_ns: AtomicU64::new(nanos(INITIAL_VERIFY_ESTIMATE)),
            verifications: AtomicU64::new(0),
        }
    }

    /// Measures one argon2 verification (of a throwaway secret) to set the refusal
    /// floor before the first real one. Run once at start-up, off the request path.
    pub async fn calibrate(&self) {
        let secret = api_key::new_pepper();
        let Ok(phc) = self.hash(secret.expose().to_vec()).await else {
            return;
        };
        let (_, took) = self.verify_timed(secret.expose().to_vec(), phc).await;
        if !took.is_zero() {
            self.verify_ns.store(nanos(took), Ordering::Relaxed);
        }
        tracing::debug!(
            floor_ms = self.refusal_floor().as_millis(),
            "admin token refusal floor set"
        );
    }

    /// How long after its start a refused check is answered.
    pub fn refusal_floor(&self) -> Duration {
        let average = Duration::from_nanos(self.verify_ns.load(Ordering::Relaxed));
        average
            .checked_mul(REFUSAL_FACTOR)
            .unwrap_or(MAX_REFUSAL)
            .clamp(MIN_REFUSAL, MAX_REFUSAL)
    }

    /// Forgets every verified token (tokens changed in another process).
    pub fn forget_all(&self) {
        self.verified.invalidate_all();
    }

    /// Forgets what was verified of token `id` (it changed in another process: revoked,
    /// or just created), or of every token (`None`). Other tokens stay verified: a
    /// token created elsewhere does not make every client pay a check again.
    pub fn forget(&self, id: Option<&str>) {
        let Some(id) = id else {
            return self.forget_all();
        };
        let id = id.to_string();
        if self
            .verified
            .invalidate_entries_if(move |_, identity| identity.token_id == id)
            .is_err()
        {
            self.forget_all();
        }
    }

    /// Issues a token. The returned secret is the whole token: show it once.
    pub async fn create(
        &self,
        store: &dyn Store,
        scope: AdminScope,
        label: Option<String>,
        actor: &Actor,
    ) -> Result<(AdminTokenRecord, Secret), TokenError> {
        if let Some(l) = &label {
            check_label(l)?;
        }
        let (id, secret) = api_key::random_id_and_secret();
        let secret_hash = self.hash(secret.as_bytes().to_vec()).await?;
        let record = AdminTokenRecord {
            id: id.clone(),
            label,
            scope,
            secret_hash,
            created_at: crate::time::now_unix(),
            revoked_at: None,
            last_used_at: None,
        };
        let audit = actor.audit(
            "admin_token.create",
            format!("admin_token:{id}"),
            None,
            Some(format!("scope={}", scope.as_str())),
        );
        store.create_admin_token(&record, &audit).await?;
        let full = Secret::from_string(format!("{PREFIX}{id}_{}", secret.as_str()));
        Ok((record, full))
    }

    /// Revokes a token; this process stops accepting it at once.
    pub async fn revoke(
        &self,
        store: &dyn Store,
        id: &str,
        actor: &Actor,
    ) -> Result<AdminTokenRecord, TokenError> {
        let audit = actor.audit(
            "admin_token.revoke",
            format!("admin_token:{id}"),
            None,
            None,
        );
        let record = store
            .revoke_admin_token(id, crate::time::now_unix(), &audit)
            .await?;
        // Entries are keyed by the token's hash, not its id: forget them all (rare).
        self.verified.invalidate_all();
        Ok(record)
    }

    /// The identity behind `presented` if it was verified within the last minute: no
    /// store read, no argon2.
    pub async fn remembered(&self, presented: &str) -> Option<AdminIdentity> {
        self.verified.get(&self.fingerprint(presented)).await
    }

    /// Checks a presented token. A refusal is answered no sooner than the refusal floor
    /// after the call (see the module comment). A store failure is an error (503),
    /// never a silent "no".
    pub async fn authenticate(
        &self,
        store: &dyn Store,
        presented: &str,
    ) -> Result<Checked, StoreError> {
        let started = Instant::now();
        let checked = self.check(store, presented).await?;
        if matches!(checked, Checked::Refused { .. }) {
            tokio::time::sleep_until((started + self.refusal_floor()).into()).await;
        }
        Ok(checked)
    }

    async fn check(&self, store: &dyn Store, presented: &str) -> Result<Checked, StoreError> {
        let Some(parsed) = parse(presented) else {
            return Ok(Checked::Refused {
                reason: Refusal::Malformed,
                token_id: None,
            });
        };
        let refused = |reason| Checked::Refused {
            reason,
            token_id: Some(parsed.id.to_string()),
        };
        let fingerprint = self.fingerprint(presented);
        if let Some(identity) = self.verified.get(&fingerprint).await {
            return Ok(Checked::Accepted(identity));
        }
        let Some(record) = store.get_admin_token(parsed.id).await? else {
            return Ok(refused(Refusal::UnknownId));
        };
        if record.revoked_at.is_some() {
            return Ok(refused(Refusal::Revoked));
        }
        if !self
            .verify(
                parsed.secret.as_bytes().to_vec(),
                record.secret_hash.clone(),
            )
            .await
        {
            return Ok(refused(Refusal::WrongSecret));
        }
        let now = crate::time::now_unix();
        if let Err(e) = store.touch_admin_token(&record.id, now).await {
            tracing::warn!(token = %record.id, error = %e, "cannot record admin token use");
        }
        let identity = AdminIdentity {
            token_id: record.id,
            label: record.label,
            scope: record.scope,
        };
        self.verified.insert(fingerprint, identity.clone()).await;
        Ok(Checked::Accepted(identity))
    }

    fn fingerprint(&self, presented: &str) -> [u8; 32] {
        self.fingerprints.hash(presented.as_bytes())
    }

    /// argon2 runs off the async threads, a bounded number at a time.
    async fn hash(&self, secret: Vec<u8>) -> Result<String, TokenError> {
        let secret = zeroize::Zeroizing::new(secret);
        let _permit = self.hashing.acquire().await;
        tokio::task::spawn_blocking(move || hash_secret(&secret))
            .await
            .map_err(|e| TokenError::Hash(e.to_string()))?
    }

    /// Verifies, and folds the time it took into the average the refusal floor follows.
    async fn verify(&self, secret: Vec<u8>, phc: String) -> bool {
        let (ok, took) = self.verify_timed(secret, phc).await;
        if !took.is_zero() {
            // Exponential moving average, 1/8 weight to the newest sample.
            let sample = nanos(took);
            let _ = self
                .verify_ns
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |avg| {
                    Some(avg - avg / 8 + sample / 8)
                });
        }
        ok
    }

    /// Verifies off the async threads, a bounded number at a time; also returns the
    /// time the verification took (not the wait for a slot; zero if it did not run).
    async fn verify_timed(&self, secret: Vec<u8>, phc: String) -> (bool, Duration) {
        let secret = zeroize::Zeroizing::new(secret);
        let _permit = self.hashing.acquire().await;
        self.verifications.fetch_add(1, Ordering::Relaxed);
        tracing::debug!("argon2 verification of an admin token");
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let ok = verify_secret(&secret, &phc);
            (ok, started.elapsed())
        })
        .await
        .unwrap_or((false, Duration::ZERO))
    }

    /// How many argon2 verifications have run.
    #[cfg(test)]
    fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_and_hash() {
        let raw = format!("{PREFIX}abcdefghij12_{}", "A".repeat(SECRET_LEN));
        let p = parse(&raw).unwrap();
        assert_eq!(p.id, "abcdefghij12");
        assert!(parse("wpg_abcdefghij12_x").is_none());
        assert!(parse(&raw.replace("wpgat_", "wpgaT_")).is_none());
        assert!(parse(&format!("{raw}x")).is_none());
        let phc = hash_secret(b"s3cret").unwrap();
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(verify_secret(b"s3cret", &phc));
        assert!(!verify_secret(b"s3creT", &phc));
        assert!(!verify_secret(b"s3cret", "not a phc string"));
        assert!(check_label("ops-bot@ci").is_ok());
        assert!(check_label("has space").is_err());
        assert!(check_label("").is_err());
    }

    fn accepted(c: Checked) -> AdminIdentity {
        match c {
            Checked::Accepted(who) => who,
            other => panic!("refused: {other:?}"),
        }
    }

    fn refusal(c: Checked) -> (Refusal, Option<String>) {
        match c {
            Checked::Refused { reason, token_id } => (reason, token_id),
            other => panic!("accepted: {other:?}"),
        }
    }

    #[tokio::test]
    async fn create_authenticate_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::sqlite::SqliteStore::open(&dir.path().join("t.db"))
            .await
            .unwrap();
        let tokens = AdminTokens::new();
        let actor = Actor::new("test");
        let (record, full) = tokens
            .create(&store, AdminScope::Read, Some("ro".into()), &actor)
            .await
            .unwrap();
        let text = full.expose_str().unwrap().to_string();
        assert!(!record
            .secret_hash
            .contains(&text[PREFIX.len() + ID_LEN + 1..]));
        assert!(tokens.remembered(&text).await.is_none());
        let who = accepted(tokens.authenticate(&store, &text).await.unwrap());
        assert_eq!(who.actor_name(), "admin:ro");
        assert!(!who.can_write());
        assert_eq!(tokens.remembered(&text).await, Some(who));
        let stored = store.get_admin_token(&record.id).await.unwrap().unwrap();
        assert!(stored.last_used_at.is_some());
        // A wrong secret for a real id, and garbage, are refused.
        let mut wrong = text.clone();
        wrong.pop();
        wrong.push(if text.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(
            refusal(tokens.authenticate(&store, &wrong).await.unwrap()),
            (Refusal::WrongSecret, Some(record.id.clone()))
        );
        assert!(tokens.remembered(&wrong).await.is_none());
        assert_eq!(
            refusal(tokens.authenticate(&store, "nope").await.unwrap()),
            (Refusal::Malformed, None)
        );
        // Revoked through this process: refused at once, cache or not.
        tokens.revoke(&store, &record.id, &actor).await.unwrap();
        assert!(tokens.remembered(&text).await.is_none());
        assert_eq!(
            refusal(tokens.authenticate(&store, &text).await.unwrap()),
            (Refusal::Revoked, Some(record.id.clone()))
        );
    }

    #[tokio::test]
    async fn a_change_elsewhere_forgets_only_that_token() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::sqlite::SqliteStore::open(&dir.path().join("t.db"))
            .await
            .unwrap();
        let tokens = AdminTokens::new();
        let actor = Actor::new("test");
        let (a, a_full) = tokens
            .create(&store, AdminScope::Read, None, &actor)
            .await
            .unwrap();
        let (_, b_full) = tokens
            .create(&store, AdminScope::Write, None, &actor)
            .await
            .unwrap();
        let (a_text, b_text) = (a_full.expose_str().unwrap(), b_full.expose_str().unwrap());
        accepted(tokens.authenticate(&store, a_text).await.unwrap());
        accepted(tokens.authenticate(&store, b_text).await.unwrap());
        tokens.forget(Some(&a.id));
        tokens.verified.run_pending_tasks().await;
        assert!(tokens.remembered(a_text).await.is_none());
        assert!(tokens.remembered(b_text).await.is_some());
        tokens.forget(None);
        tokens.verified.run_pending_tasks().await;
        assert!(tokens.remembered(b_text).await.is_none());
    }

    #[tokio::test]
    async fn unknown_ids_and_malformed_tokens_run_no_argon2_and_wait_the_floor() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::sqlite::SqliteStore::open(&dir.path().join("t.db"))
            .await
            .unwrap();
        let tokens = AdminTokens::new();
        let actor = Actor::new("test");
        let (record, full) = tokens
            .create(&store, AdminScope::Write, None, &actor)
            .await
            .unwrap();
        let text = full.expose_str().unwrap().to_string();
        let secret = &text[PREFIX.len() + ID_LEN + 1..];
        let unknown = format!("{PREFIX}zzzzzzzzzzzz_{secret}");
        let floor = tokens.refusal_floor();
        assert!(floor >= MIN_REFUSAL);
        for presented in [unknown.as_str(), "wpgat_short_x", "Bearer"] {
            let started = Instant::now();
            let (reason, _) = refusal(tokens.authenticate(&store, presented).await.unwrap());
            assert!(matches!(reason, Refusal::UnknownId | Refusal::Malformed));
            assert!(
                started.elapsed() >= floor,
                "{presented}: answered before the floor"
            );
        }
        assert_eq!(tokens.verifications(), 0, "argon2 ran for an unknown id");
        // A wrong secret for the real id runs argon2 once, and is refused too.
        let wrong = format!("{PREFIX}{}_{}", record.id, "B".repeat(SECRET_LEN));
        let (reason, id) = refusal(tokens.authenticate(&store, &wrong).await.unwrap());
        assert_eq!(
            (reason, id.as_deref()),
            (Refusal::WrongSecret, Some(record.id.as_str()))
        );
        assert_eq!(tokens.verifications(), 1);
        // A remembered success runs none.
        accepted(tokens.authenticate(&store, &text).await.unwrap());
        accepted(tokens.authenticate(&store, &text).await.unwrap());
        assert_eq!(tokens.verifications(), 2);
    }

    #[tokio::test]
    async fn calibration_sets_the_floor_from_a_measurement() {
        let tokens = AdminTokens::new();
        tokens.calibrate().await;
        let floor = tokens.refusal_floor();
        assert!((MIN_REFUSAL..=MAX_REFUSAL).contains(&floor), "{floor:?}");
        assert_eq!(tokens.verifications(), 1);
        // The floor follows the average: a flood of slow samples cannot push it past
        // the cap, and it never drops under the minimum.
        tokens.verify_ns.store(u64::MAX / 2, Ordering::Relaxed);
        assert_eq!(tokens.refusal_floor(), MAX_REFUSAL);
        tokens.verify_ns.store(1, Ordering::Relaxed);
        assert_eq!(tokens.refusal_floor(), MIN_REFUSAL);
    }
}
