//! Tokens a verifier accepted, so that the same token presented again (a client reuses
//! its token for every request until it expires) costs a hash, a lookup and a
//! comparison instead of a signature check and a JSON read.
//!
//! An entry holds the whole token (compared in constant time: a hash collision or a
//! token differing in any byte is not a hit), what verifying it gave, and the times at
//! which its claims pass; a hit outside them is no hit, and the full check answers. The
//! memo is bounded (`SHARDS` × `PER_SHARD` tokens): a full shard first drops its
//! expired tokens, then everything. Tokens are bearer credentials: they are wiped
//! from memory when dropped and never printed.

use super::VerifiedToken;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::ops::Range;
use std::sync::{Mutex, PoisonError};
use zeroize::Zeroizing;

const SHARDS: usize = 8;
const PER_SHARD: usize = 512;

struct Entry {
    token: Zeroizing<Box<[u8]>>,
    verified: VerifiedToken,
    /// `now` values (Unix seconds) at which the claims pass.
    valid: Range<u64>,
}

/// Keyed by a seeded hash of the token (the seed is random per process, so which
/// tokens share a shard or a slot cannot be chosen from outside).
type Shard = HashMap<u64, Entry, foldhash::fast::RandomState>;

pub(super) struct TokenMemo {
    shards: Box<[Mutex<Shard>]>,
    hasher: foldhash::fast::RandomState,
}

impl TokenMemo {
    pub(super) fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    fn slot(&self, token: &str) -> (u64, &Mutex<Shard>) {
        let h = self.hasher.hash_one(token.as_bytes());
        // The top bits pick the shard; the map hashes the whole key again.
        (h, &self.shards[(h >> 61) as usize % SHARDS])
    }

    /// What verifying `token` gave, if it was accepted and its claims pass at `now`.
    pub(super) fn get(&self, token: &str, now: u64) -> Option<VerifiedToken> {
        let (h, shard) = self.slot(token);
        let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = shard.get(&h)?;
        (crate::secret::eq_words(&entry.token, token.as_bytes()) && entry.valid.contains(&now))
            .then(|| entry.verified.clone())
    }

    /// Remembers an accepted token (replacing whatever had its slot).
    pub(super) fn remember(
        &self,
        token: &str,
        verified: &VerifiedToken,
        valid: Range<u64>,
        now: u64,
    ) {
        let (h, shard) = self.slot(token);
        let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
        if shard.len() >= PER_SHARD && !shard.contains_key(&h) {
            shard.retain(|_, e| e.valid.end > now);
            if shard.len() >= PER_SHARD {
                shard.clear();
            }
        }
        shard.insert(
            h,
            Entry {
                token: Zeroizing::new(token.as_bytes().into()),
                verified: verified.clone(),
                valid,
            },
        );
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(n: u64) -> VerifiedToken {
        VerifiedToken {
            claims: serde_json::Map::new(),
            exp: 1000 + n,
            sub: Some(format!("user-{n}")),
        }
    }

    #[test]
    fn a_hit_is_the_same_token_within_its_times() {
        let memo = TokenMemo::new();
        memo.remember("a.b.c", &token(1), 100..200, 150);
        assert_eq!(memo.get("a.b.c", 100), Some(token(1)));
        assert_eq!(memo.get("a.b.c", 199), Some(token(1)));
        assert_eq!(memo.get("a.b.c", 99), None);
        assert_eq!(memo.get("a.b.c", 200), None);
        assert_eq!(memo.get("a.b.d", 150), None);
        assert_eq!(memo.get("a.b.c ", 150), None);
        assert_eq!(memo.get("", 150), None);
    }

    #[test]
    fn it_stays_bounded_dropping_expired_tokens_first() {
        let memo = TokenMemo::new();
        for n in 0..(SHARDS * PER_SHARD * 3) as u64 {
            let valid = if n % 2 == 0 { 0..10 } else { 0..1_000 };
            memo.remember(&format!("t.{n}.s"), &token(n), valid, 5);
            assert!(memo.len() <= SHARDS * PER_SHARD);
        }
        // Later: the short-lived half goes first, the recent long-lived ones stay.
        let last = (SHARDS * PER_SHARD * 3 - 1) as u64;
        memo.remember("late.x.y", &token(0), 0..1_000, 500);
        assert_eq!(memo.get("late.x.y", 600), Some(token(0)));
        assert_eq!(memo.get(&format!("t.{last}.s"), 600), Some(token(last)));
    }
}
