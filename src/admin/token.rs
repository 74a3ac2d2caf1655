//! Admin API tokens: `wpgat_<id>_<secret>`. The id (12 characters, public) finds the
//! record in one lookup; the secret (43 base62 characters, > 256 bits) is stored only as
//! an argon2id hash (PHC string). argon2 is slow by design, so a successful verification
//! is remembered for a minute, keyed by the SHA-256 of the whole token; revoking a token
//! through this process forgets every remembered one at once.

use crate::auth::api_key;
use crate::fleet::Actor;
use crate::secret::Secret;
use crate::store::{AdminScope, AdminTokenRecord, Store, StoreError};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

pub const PREFIX: &str = "wpgat_";
pub const ID_LEN: usize = api_key::KEY_ID_LEN;
pub const SECRET_LEN: usize = api_key::SECRET_LEN;

/// How long a verified token is taken on trust without another argon2 run.
pub const VERIFIED_TTL: Duration = Duration::from_secs(60);
/// argon2id takes ~19 MiB per verification: bound how many run at once.
const CONCURRENT_VERIFICATIONS: usize = 2;

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
            "a label is 1-64 characters of [A-Za-z0-9._@:-]".into(),
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

/// Creates, revokes and verifies admin tokens against the store.
pub struct AdminTokens {
    verified: moka::future::Cache<[u8; 32], AdminIdentity>,
    hashing: Arc<Semaphore>,
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
                .build(),
            hashing: Arc::new(Semaphore::new(CONCURRENT_VERIFICATIONS)),
        }
    }

    /// Forgets every verified token (tokens changed in another process).
    pub fn forget_all(&self) {
        self.verified.invalidate_all();
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

    /// The identity behind a presented token, or `None` when it is not a valid, live
    /// token. A store failure is an error (503), never a silent "no".
    pub async fn authenticate(
        &self,
        store: &dyn Store,
        presented: &str,
    ) -> Result<Option<AdminIdentity>, StoreError> {
        let Some(parsed) = parse(presented) else {
            return Ok(None);
        };
        let fingerprint: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        if let Some(identity) = self.verified.get(&fingerprint).await {
            return Ok(Some(identity));
        }
        let Some(record) = store.get_admin_token(parsed.id).await? else {
            return Ok(None);
        };
        if record.revoked_at.is_some() {
            return Ok(None);
        }
        if !self
            .verify(
                parsed.secret.as_bytes().to_vec(),
                record.secret_hash.clone(),
            )
            .await
        {
            return Ok(None);
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
        Ok(Some(identity))
    }

    /// argon2 runs off the async threads, a bounded number at a time.
    async fn hash(&self, secret: Vec<u8>) -> Result<String, TokenError> {
        let secret = zeroize::Zeroizing::new(secret);
        let _permit = self.hashing.acquire().await;
        tokio::task::spawn_blocking(move || hash_secret(&secret))
            .await
            .map_err(|e| TokenError::Hash(e.to_string()))?
    }

    async fn verify(&self, secret: Vec<u8>, phc: String) -> bool {
        let secret = zeroize::Zeroizing::new(secret);
        let _permit = self.hashing.acquire().await;
        tokio::task::spawn_blocking(move || verify_secret(&secret, &phc))
            .await
            .unwrap_or(false)
    }
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
        let who = tokens.authenticate(&store, &text).await.unwrap().unwrap();
        assert_eq!(who.actor_name(), "admin:ro");
        assert!(!who.can_write());
        let stored = store.get_admin_token(&record.id).await.unwrap().unwrap();
        assert!(stored.last_used_at.is_some());
        // A wrong secret for a real id, and garbage, are refused.
        let mut wrong = text.clone();
        wrong.pop();
        wrong.push(if text.ends_with('A') { 'B' } else { 'A' });
        assert!(tokens.authenticate(&store, &wrong).await.unwrap().is_none());
        assert!(tokens.authenticate(&store, "nope").await.unwrap().is_none());
        // Revoked through this process: refused at once, cache or not.
        tokens.revoke(&store, &record.id, &actor).await.unwrap();
        assert!(tokens.authenticate(&store, &text).await.unwrap().is_none());
    }
}
