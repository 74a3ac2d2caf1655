//! When API keys were last used, kept off the request path: an accepted request only
//! marks its key id in a sharded in-memory set (no store write, no clock read, no
//! allocation once the key was seen); a background task (`fleet::upkeep`) takes the
//! marked ids about once a minute and writes them in one batched statement, as
//! `last_used_at = max(stored, now)`, so replicas never move the time back. The time is
//! thus the flush's, to the minute.

use crate::auth::api_key::KEY_ID_LEN;
use crate::store::{Store, StoreError};
use std::collections::HashSet;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

const SHARDS: usize = 16;

/// A key id as stored in the set: its 12 bytes, no allocation per mark.
type KeyId = [u8; KEY_ID_LEN];

/// The ids of the keys used since the last flush.
pub struct KeyUse {
    shards: Box<[Mutex<HashSet<KeyId, foldhash::fast::RandomState>>]>,
    shard_of: foldhash::fast::RandomState,
    /// Counts the rounds: each `take` begins a new one (from 1; a record's
    /// [`MarkedIn`] starts at 0, no round).
    round: AtomicU64,
}

/// The round of [`KeyUse`] in which a cached key record was last marked used. A key is
/// marked once a round: its other requests of the round cost an atomic swap instead of
/// a lock and two hashes. Kept with the cached record only; a copy starts unmarked.
#[derive(Debug, Default)]
pub struct MarkedIn(AtomicU64);

impl Clone for MarkedIn {
    fn clone(&self) -> Self {
        Self::default()
    }
}

/// Bookkeeping, not part of what a record is.
impl PartialEq for MarkedIn {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for MarkedIn {}

impl Default for KeyUse {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyUse {
    pub fn new() -> Self {
        KeyUse {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            shard_of: foldhash::fast::RandomState::default(),
            round: AtomicU64::new(1),
        }
    }

    fn shard(&self, id: &KeyId) -> &Mutex<HashSet<KeyId, foldhash::fast::RandomState>> {
        let h = self.shard_of.hash_one(id);
        // The top bits: the set inside uses the low ones of its own hash.
        &self.shards[(h >> 60) as usize % SHARDS]
    }

    /// Marks `key_id` as used (the request path: one uncontended lock, one set insert).
    /// Anything that is not a key id is ignored.
    pub fn mark(&self, key_id: &str) {
        let Ok(id) = KeyId::try_from(key_id.as_bytes()) else {
            return;
        };
        self.shard(&id)
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id);
    }

    /// Marks the key of a cached `record` as used, unless it was already this round.
    /// A request racing a `take` marks its key in this round or the next: its use is
    /// written by this flush or the next one.
    pub fn mark_once(&self, key_id: &str, marked: &MarkedIn) {
        let round = self.round.load(Ordering::Acquire);
        if marked.0.swap(round, Ordering::AcqRel) != round {
            self.mark(key_id);
        }
    }

    /// Takes every marked id (each shard keeps its capacity for the next round), and
    /// begins a new round: keys used from now on are marked again.
    pub fn take(&self) -> Vec<String> {
        self.round.fetch_add(1, Ordering::AcqRel);
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let mut set = shard.lock().unwrap_or_else(PoisonError::into_inner);
            out.extend(
                set.drain()
                    .map(|id| String::from_utf8_lossy(&id).into_owned()),
            );
        }
        out
    }

    /// Marks `ids` again (a flush that failed: they go with the next one).
    fn restore(&self, ids: &[String]) {
        for id in ids {
            self.mark(id);
        }
    }

    /// Writes the marked ids as used at `at` (unix seconds) in one batch; on failure they
    /// stay marked for the next flush. Returns how many ids were written.
    pub async fn flush(&self, store: &dyn Store, at: i64) -> Result<usize, StoreError> {
        let ids = self.take();
        if ids.is_empty() {
            return Ok(0);
        }
        match store.record_key_use(&ids, at).await {
            Ok(_) => Ok(ids.len()),
            Err(e) => {
                self.restore(&ids);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_are_taken_once_and_only_key_ids_count() {
        let u = KeyUse::new();
        for _ in 0..3 {
            u.mark("abcdefghijkl");
        }
        u.mark("mnopqrstuvwx");
        u.mark("short");
        u.mark("abcdefghijklm");
        let mut got = u.take();
        got.sort();
        assert_eq!(got, ["abcdefghijkl", "mnopqrstuvwx"]);
        assert!(u.take().is_empty());
        u.restore(&got);
        assert_eq!(u.take().len(), 2);
    }

    #[test]
    fn a_cached_record_is_marked_once_a_round() {
        let u = KeyUse::new();
        let marked = MarkedIn::default();
        u.mark_once("abcdefghijkl", &marked);
        assert_eq!(u.take(), ["abcdefghijkl"]);
        // A new round: the same record is marked again, once.
        u.mark_once("abcdefghijkl", &marked);
        u.mark_once("abcdefghijkl", &marked);
        assert_eq!(u.take(), ["abcdefghijkl"]);
        assert!(u.take().is_empty());
        // A copy of the record (another cache load) starts unmarked.
        u.mark_once("abcdefghijkl", &marked.clone());
        assert_eq!(u.take(), ["abcdefghijkl"]);
    }

    #[tokio::test]
    async fn a_flush_writes_the_marked_keys_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::sqlite::SqliteStore::open(&dir.path().join("s.db"))
            .await
            .unwrap();
        let u = KeyUse::new();
        assert_eq!(u.flush(&store, 100).await.unwrap(), 0);
        u.mark("abcdefghijkl");
        u.mark("abcdefghijkl");
        // Unknown in the store: written as a no-op, and not kept.
        assert_eq!(u.flush(&store, 100).await.unwrap(), 1);
        assert!(u.take().is_empty());
    }
}
