//! moka caches in front of the store for sites and API keys.
//!
//! - bounded capacity and a TTL;
//! - single-flight: a burst of lookups of one cold id makes one store query;
//! - short-lived negative entries, so unknown ids do not hammer the store;
//! - `invalidate` for every write made through wpgate's own code (and for changes other
//!   processes make, read from the store's change log);
//! - bounded stale serving: past its TTL an entry is reloaded (one caller at a time);
//!   while the store fails, the last good value keeps answering for up to `max_stale`
//!   past the TTL, retried at most once a second.
//!
//! Errors are never cached: the next lookup tries the store again.
//!
//! Hits are answered from a read-mostly mirror of moka's entries (`Front`); misses,
//! stale entries and all bookkeeping go through moka. One hit in `SAMPLE_EVERY` is also
//! read through moka so that its eviction policy sees which entries are in use.

use moka::future::Cache;
use moka::notification::RemovalCause;
use moka::ops::compute::Op;
use moka::Expiry;
use std::collections::HashMap;
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

/// After a failed reload of a stale entry, callers use the stale value without asking
/// the store again for this long.
const STALE_RETRY: Duration = Duration::from_secs(1);

#[derive(Debug)]
enum Entry<V> {
    Found(Arc<V>),
    Missing,
}

impl<V> Clone for Entry<V> {
    fn clone(&self) -> Self {
        match self {
            Entry::Found(v) => Entry::Found(Arc::clone(v)),
            Entry::Missing => Entry::Missing,
        }
    }
}

/// A cached entry and when it was read from the store.
#[derive(Debug)]
struct Slot<V> {
    entry: Entry<V>,
    loaded: Instant,
    /// A stale entry whose reload failed is not reloaded again before this.
    retry_at: Option<Instant>,
}

impl<V> Clone for Slot<V> {
    fn clone(&self) -> Self {
        Slot {
            entry: self.entry.clone(),
            loaded: self.loaded,
            retry_at: self.retry_at,
        }
    }
}

#[derive(Clone, Copy)]
struct Lifetimes {
    ttl: Duration,
    negative_ttl: Duration,
    max_stale: Duration,
}

impl Lifetimes {
    /// When moka drops the slot: found entries live on past the TTL for stale serving.
    fn deadline<V>(&self, slot: &Slot<V>) -> Instant {
        slot.loaded
            + match slot.entry {
                Entry::Found(_) => self.ttl + self.max_stale,
                Entry::Missing => self.negative_ttl,
            }
    }

    fn is_fresh<V>(&self, slot: &Slot<V>, now: Instant) -> bool {
        match slot.entry {
            Entry::Found(_) => now.saturating_duration_since(slot.loaded) <= self.ttl,
            Entry::Missing => now.saturating_duration_since(slot.loaded) < self.negative_ttl,
        }
    }
}

impl<V> Expiry<String, Slot<V>> for Lifetimes {
    fn expire_after_create(&self, _key: &String, slot: &Slot<V>, now: Instant) -> Option<Duration> {
        Some(self.deadline(slot).saturating_duration_since(now))
    }

    fn expire_after_update(
        &self,
        _key: &String,
        slot: &Slot<V>,
        now: Instant,
        _left: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.deadline(slot).saturating_duration_since(now))
    }
}

/// A cache of `id -> Option<V>` over a loader.
///
/// moka holds the entries: it bounds them, expires them and makes concurrent loads of
/// one id wait for a single load. A hit on the request path is answered by `front`, a
/// sharded map mirroring moka's entries: a hash, a read lock and a reference count,
/// where moka's own `get` also queues the read for its eviction policy and costs
/// several times that (see benches/auth_path.rs).
pub struct LookupCache<V> {
    inner: Cache<String, Slot<V>>,
    front: Arc<Front<V>>,
    lifetimes: Lifetimes,
    /// `wpgate_cache_requests_total{cache=<name>, result=hit|miss|stale}`, resolved once.
    hits: prometheus::IntCounter,
    misses: prometheus::IntCounter,
    stale: prometheus::IntCounter,
}

impl<V: Send + Sync + 'static> LookupCache<V> {
    pub fn new(
        name: &str,
        capacity: u64,
        ttl: Duration,
        negative_ttl: Duration,
        max_stale: Duration,
        metrics: &crate::metrics::Metrics,
    ) -> Self {
        let lifetimes = Lifetimes {
            ttl,
            negative_ttl,
            max_stale,
        };
        let front = Arc::new(Front::new(capacity, lifetimes));
        let evicted = Arc::clone(&front);
        let inner = Cache::builder()
            .name(name)
            .max_capacity(capacity)
            .expire_after(lifetimes)
            // Whatever moka drops (size, expiry, invalidation) leaves the front too; a
            // replacement is written to the front by the code that made it.
            .eviction_listener(move |id: Arc<String>, slot: Slot<V>, cause| {
                if cause != RemovalCause::Replaced {
                    evicted.remove_if_loaded_at(&id, slot.loaded);
                }
            })
            .build();
        let counter = |result: &str| metrics.cache_requests.with_label_values(&[name, result]);
        Self {
            inner,
            front,
            lifetimes,
            hits: counter("hit"),
            misses: counter("miss"),
            stale: counter("stale"),
        }
    }

    /// The value for `id`: from the cache while fresh, else from `load` (called only on
    /// a miss or a stale entry, so a hit builds no loader state).
    pub async fn get_or_load<E, L, F>(&self, id: &str, load: L) -> Result<Option<Arc<V>>, Arc<E>>
    where
        E: Send + Sync + 'static,
        L: FnOnce() -> F,
        F: Future<Output = Result<Option<V>, E>>,
    {
        self.get_or_load_at(id, Instant::now(), load).await
    }

    /// `get_or_load` judging freshness at `now` (the request path reads the clock once
    /// per request).
    pub async fn get_or_load_at<E, L, F>(
        &self,
        id: &str,
        now: Instant,
        load: L,
    ) -> Result<Option<Arc<V>>, Arc<E>>
    where
        E: Send + Sync + 'static,
        L: FnOnce() -> F,
        F: Future<Output = Result<Option<V>, E>>,
    {
        if let Some(slot) = self.front.get(id) {
            if self.lifetimes.is_fresh(&slot, now) {
                self.hits.inc();
                if sample_for_eviction_policy() {
                    // Let moka see some of the reads, so that under capacity pressure it
                    // keeps the entries that are used.
                    let _ = Box::pin(self.inner.get(id)).await;
                }
                return Ok(entry_value(slot.entry));
            }
        }
        // Boxed: the loader's state (a store query, unsealing) is large and only a miss
        // needs it; the hit path above stays a small future.
        Box::pin(self.get_or_load_slow(id, load)).await
    }

    async fn get_or_load_slow<E, L, F>(&self, id: &str, load: L) -> Result<Option<Arc<V>>, Arc<E>>
    where
        E: Send + Sync + 'static,
        L: FnOnce() -> F,
        F: Future<Output = Result<Option<V>, E>>,
    {
        if let Some(slot) = self.inner.get(id).await {
            let now = Instant::now();
            if self.lifetimes.is_fresh(&slot, now) {
                self.hits.inc();
                self.front.insert(id, &slot, now);
                return Ok(entry_value(slot.entry));
            }
            if slot.retry_at.is_some_and(|at| now < at) {
                self.stale.inc();
                return Ok(entry_value(slot.entry));
            }
            return self.reload_stale(id, load).await;
        }
        self.misses.inc();
        let slot = self
            .inner
            .try_get_with(id.to_string(), async move {
                load().await.map(|found| Slot {
                    entry: match found {
                        Some(v) => Entry::Found(Arc::new(v)),
                        None => Entry::Missing,
                    },
                    loaded: Instant::now(),
                    retry_at: None,
                })
            })
            .await?;
        self.mirror(id, &slot);
        Ok(entry_value(slot.entry))
    }

    /// Copies an entry moka holds to the front. Not when moka has already let it go (its
    /// admission policy may refuse a new entry when full): the front never holds more
    /// than moka.
    fn mirror(&self, id: &str, slot: &Slot<V>) {
        if self.inner.contains_key(id) {
            self.front.insert(id, slot, Instant::now());
        }
    }

    async fn reload_stale<E, L, F>(&self, id: &str, load: L) -> Result<Option<Arc<V>>, Arc<E>>
    where
        E: Send + Sync + 'static,
        L: FnOnce() -> F,
        F: Future<Output = Result<Option<V>, E>>,
    {
        let lifetimes = self.lifetimes;
        let mut failure: Option<E> = None;
        let failure_ref = &mut failure;
        let result = self
            .inner
            .entry_by_ref(id)
            .and_compute_with(|current| async move {
                let now = Instant::now();
                let current = current.map(|c| c.into_value());
                if let Some(slot) = &current {
                    // Someone else reloaded it, or gave up on the store a moment ago.
                    if lifetimes.is_fresh(slot, now) || slot.retry_at.is_some_and(|at| now < at) {
                        return Op::Nop;
                    }
                }
                match load().await {
                    Ok(found) => Op::Put(Slot {
                        entry: match found {
                            Some(v) => Entry::Found(Arc::new(v)),
                            None => Entry::Missing,
                        },
                        loaded: Instant::now(),
                        retry_at: None,
                    }),
                    Err(e) => {
                        *failure_ref = Some(e);
                        match current {
                            // Keep answering with the stale value for now.
                            Some(stale) => Op::Put(Slot {
                                retry_at: Some(Instant::now() + STALE_RETRY),
                                ..stale
                            }),
                            // Invalidated meanwhile (a write): never bring it back.
                            None => Op::Nop,
                        }
                    }
                }
            })
            .await;
        match (result.into_entry(), failure) {
            (Some(entry), None) => {
                self.misses.inc();
                let slot = entry.into_value();
                self.mirror(id, &slot);
                Ok(entry_value(slot.entry))
            }
            (Some(entry), Some(_)) => {
                self.stale.inc();
                let slot = entry.into_value();
                self.mirror(id, &slot);
                Ok(entry_value(slot.entry))
            }
            (None, Some(e)) => Err(Arc::new(e)),
            // Only a failed load leaves no entry behind.
            (None, None) => Ok(None),
        }
    }

    /// The cached value for `id`, if any, without loading it (not counted as a lookup).
    pub fn peek(&self, id: &str) -> Option<Arc<V>> {
        let slot = self.front.get(id)?;
        (self.lifetimes.deadline(&slot) > Instant::now())
            .then(|| entry_value(slot.entry))
            .flatten()
    }

    /// Forgets `id`: the next lookup goes to the store.
    pub async fn invalidate(&self, id: &str) {
        self.front.remove(id);
        self.inner.invalidate(id).await;
    }

    /// Forgets every entry (a change log gap: changes may have been missed).
    pub fn invalidate_all(&self) {
        self.front.clear();
        self.inner.invalidate_all();
    }

    pub fn entry_count(&self) -> u64 {
        self.inner.entry_count()
    }
}

/// One read of `SAMPLE_EVERY` front hits (per thread) is also shown to moka.
const SAMPLE_EVERY: u32 = 16;

fn sample_for_eviction_policy() -> bool {
    thread_local! {
        static HITS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }
    HITS.with(|n| {
        let next = n.get().wrapping_add(1);
        n.set(next);
        next % SAMPLE_EVERY == 0
    })
}

const FRONT_SHARDS: usize = 16;

type Shard<V> = RwLock<HashMap<Box<str>, Slot<V>, foldhash::fast::RandomState>>;

/// The read side of a `LookupCache`: moka's entries, in shards behind read-write locks.
/// Entries arrive after moka holds them and leave when moka drops them (its eviction
/// listener) or when wpgate invalidates them. If a race ever left an entry here that
/// moka no longer holds, it is still checked for freshness on every hit, and a shard
/// past its share of the capacity is swept.
struct Front<V> {
    shards: Box<[Shard<V>]>,
    /// Picks the shard; each shard's map hashes with its own seed.
    shard_of: foldhash::fast::RandomState,
    shard_cap: usize,
    lifetimes: Lifetimes,
}

impl<V> Front<V> {
    fn new(capacity: u64, lifetimes: Lifetimes) -> Self {
        let per_shard = usize::try_from(capacity).unwrap_or(usize::MAX) / FRONT_SHARDS;
        Self {
            shards: (0..FRONT_SHARDS)
                .map(|_| RwLock::new(HashMap::default()))
                .collect(),
            shard_of: foldhash::fast::RandomState::default(),
            // moka spreads entries over shards unevenly: allow twice the mean.
            shard_cap: per_shard.saturating_mul(2).saturating_add(64),
            lifetimes,
        }
    }

    fn shard(&self, id: &str) -> &Shard<V> {
        let h = self.shard_of.hash_one(id);
        // The top bits: the map inside uses the low ones of its own hash.
        &self.shards[(h >> 60) as usize % FRONT_SHARDS]
    }

    fn get(&self, id: &str) -> Option<Slot<V>> {
        let shard = self
            .shard(id)
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        shard.get(id).cloned()
    }

    fn insert(&self, id: &str, slot: &Slot<V>, now: Instant) {
        let mut shard = self
            .shard(id)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if shard.len() >= self.shard_cap && !shard.contains_key(id) {
            let lifetimes = self.lifetimes;
            shard.retain(|_, s| lifetimes.deadline(s) > now);
            if shard.len() >= self.shard_cap {
                shard.clear();
            }
        }
        shard.insert(id.into(), slot.clone());
    }

    fn remove(&self, id: &str) {
        let mut shard = self
            .shard(id)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        shard.remove(id);
    }

    /// Removes `id` if it is still the entry loaded at `loaded` (not a newer load).
    fn remove_if_loaded_at(&self, id: &str, loaded: Instant) {
        let mut shard = self
            .shard(id)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if shard.get(id).is_some_and(|s| s.loaded == loaded) {
            shard.remove(id);
        }
    }

    fn clear(&self) {
        for shard in self.shards.iter() {
            shard
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        }
    }
}

fn entry_value<V>(entry: Entry<V>) -> Option<Arc<V>> {
    match entry {
        Entry::Found(v) => Some(v),
        Entry::Missing => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn test_cache<V: Send + Sync + 'static>(
        capacity: u64,
        ttl: Duration,
        negative_ttl: Duration,
        max_stale: Duration,
    ) -> LookupCache<V> {
        let metrics = crate::metrics::Metrics::new().expect("metrics");
        LookupCache::new("t", capacity, ttl, negative_ttl, max_stale, &metrics)
    }

    #[tokio::test]
    async fn a_burst_of_cold_lookups_loads_once() {
        let cache = test_cache::<String>(
            100,
            Duration::from_secs(60),
            Duration::from_secs(1),
            Duration::ZERO,
        );
        let loads = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        let cache = Arc::new(cache);
        for _ in 0..50 {
            let cache = Arc::clone(&cache);
            let loads = Arc::clone(&loads);
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_load("cold", || async {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok::<_, ()>(Some("v".to_string()))
                    })
                    .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().as_deref(), Some(&"v".to_string()));
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn negative_entries_expire_sooner_and_errors_are_not_cached() {
        let cache = test_cache::<u32>(
            100,
            Duration::from_secs(60),
            Duration::from_millis(100),
            Duration::ZERO,
        );
        let loads = AtomicUsize::new(0);
        let load = || async {
            loads.fetch_add(1, Ordering::SeqCst);
            Ok::<Option<u32>, ()>(None)
        };
        assert_eq!(cache.get_or_load("x", &load).await.unwrap(), None);
        assert_eq!(cache.get_or_load("x", &load).await.unwrap(), None);
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(cache.get_or_load("x", &load).await.unwrap(), None);
        assert_eq!(loads.load(Ordering::SeqCst), 2);

        assert!(cache
            .get_or_load("e", || async { Err::<Option<u32>, _>("down") })
            .await
            .is_err());
        let v = cache
            .get_or_load("e", || async { Ok::<_, &str>(Some(7)) })
            .await
            .unwrap();
        assert_eq!(v.as_deref(), Some(&7));
    }

    #[tokio::test]
    async fn stale_values_answer_while_the_store_fails_then_expire() {
        let cache = test_cache::<u32>(
            100,
            Duration::from_millis(100),
            Duration::from_millis(50),
            Duration::from_millis(800),
        );
        let ok = |v| async move { Ok::<_, &str>(Some(v)) };
        let loads = AtomicUsize::new(0);
        let down = || async {
            loads.fetch_add(1, Ordering::SeqCst);
            Err::<Option<u32>, _>("store down")
        };
        assert_eq!(
            cache.get_or_load("k", || ok(1)).await.unwrap().as_deref(),
            Some(&1)
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
        // Past its TTL with the store down: the last good value answers.
        assert_eq!(
            cache.get_or_load("k", &down).await.unwrap().as_deref(),
            Some(&1)
        );
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        // ...and the store is not asked again for a while.
        assert_eq!(
            cache.get_or_load("k", &down).await.unwrap().as_deref(),
            Some(&1)
        );
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        // A write (invalidation) is never undone by stale serving.
        cache.get_or_load("r", || ok(5)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        cache.invalidate("r").await;
        assert!(cache.get_or_load("r", &down).await.is_err());
        // Beyond max_stale the entry is gone: the error shows.
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert!(cache.get_or_load("k", &down).await.is_err());
        // The store is back: fresh values again.
        assert_eq!(
            cache.get_or_load("k", || ok(2)).await.unwrap().as_deref(),
            Some(&2)
        );
    }

    #[tokio::test]
    async fn a_stale_entry_is_reloaded_when_the_store_answers() {
        let cache = test_cache::<u32>(
            100,
            Duration::from_millis(50),
            Duration::from_millis(50),
            Duration::from_secs(60),
        );
        cache
            .get_or_load("k", || async { Ok::<_, ()>(Some(1)) })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(80)).await;
        let v = cache
            .get_or_load("k", || async { Ok::<_, ()>(Some(2)) })
            .await
            .unwrap();
        assert_eq!(v.as_deref(), Some(&2));
        // A revoked/removed record: the reload finds nothing, and says so.
        tokio::time::sleep(Duration::from_millis(80)).await;
        let v = cache
            .get_or_load("k", || async { Ok::<_, ()>(None) })
            .await
            .unwrap();
        assert_eq!(v, None);
    }

    #[tokio::test]
    async fn the_front_holds_only_what_moka_holds() {
        let cache = test_cache::<u32>(
            4,
            Duration::from_secs(60),
            Duration::from_secs(60),
            Duration::ZERO,
        );
        for i in 0..50u32 {
            let id = format!("k{i}");
            cache
                .get_or_load(&id, || async move { Ok::<_, ()>(Some(i)) })
                .await
                .unwrap();
            cache.inner.run_pending_tasks().await;
        }
        cache.inner.run_pending_tasks().await;
        let front: Vec<String> = cache
            .front
            .shards
            .iter()
            .flat_map(|s| {
                s.read()
                    .unwrap()
                    .keys()
                    .map(|k| k.to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert!(front.len() <= 4, "front kept {} entries", front.len());
        for id in &front {
            assert!(
                cache.inner.contains_key(id.as_str()),
                "{id} is only in the front"
            );
        }
        // A hit from the front is the value moka holds.
        if let Some(id) = front.first() {
            let v = cache
                .get_or_load(id, || async { Ok::<_, ()>(Some(999)) })
                .await
                .unwrap();
            assert_ne!(v.as_deref(), Some(&999));
        }
        cache.invalidate_all();
        assert!(cache.front.get("k49").is_none());
        assert_eq!(cache.peek("k49"), None);
    }

    #[tokio::test]
    async fn invalidate_forces_a_reload() {
        let cache = test_cache::<u32>(
            100,
            Duration::from_secs(60),
            Duration::from_secs(1),
            Duration::ZERO,
        );
        let v = cache
            .get_or_load("k", || async { Ok::<_, ()>(Some(1)) })
            .await
            .unwrap();
        assert_eq!(v.as_deref(), Some(&1));
        let v = cache
            .get_or_load("k", || async { Ok::<_, ()>(Some(2)) })
            .await
            .unwrap();
        assert_eq!(v.as_deref(), Some(&1));
        cache.invalidate("k").await;
        let v = cache
            .get_or_load("k", || async { Ok::<_, ()>(Some(2)) })
            .await
            .unwrap();
        assert_eq!(v.as_deref(), Some(&2));
    }
}
