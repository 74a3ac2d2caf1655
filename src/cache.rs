//! moka caches in front of the store for sites and API keys.
//!
//! - bounded capacity and a TTL;
//! - single-flight: a burst of lookups of one cold id makes one store query;
//! - short-lived negative entries, so unknown ids do not hammer the store;
//! - `invalidate` for every write made through wpgate's own code (and for changes other
//!   processes make, read from the store's change log);
//! - bounded stale serving: past its TTL an entry is reloaded (one caller at a time);
//!   while the store fails, the last good value keeps answering for up to `max_stale`
//!   past the TTL. After one failed reload the entry is retried in the background, at
//!   most once a second, so no request waits on a store that is known to be failing;
//! - an invalidation is never undone: a load that was in flight when `invalidate` ran
//!   may answer the request that started it, but is never served to a later lookup
//!   (each front shard counts invalidations and remembers, per id, the count of its
//!   last one; a slot remembers the count its load began under, and one loaded before
//!   its own id's last invalidation is dropped instead of served). Invalidating one id
//!   never costs another id its entry: while the store is down, a key revoked meanwhile
//!   does not make the site's other keys unavailable.
//!
//! Errors are never cached: the next lookup tries the store again.
//!
//! Hits are answered from a read-mostly mirror of moka's entries (`Front`); misses,
//! stale entries and all bookkeeping go through moka. One hit in `SAMPLE_EVERY` is also
//! read through moka so that its eviction policy sees which entries are in use.

use moka::future::Cache;
use moka::notification::RemovalCause;
use moka::ops::compute::{CompResult, Op};
use moka::Expiry;
use std::collections::HashMap;
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// The invalidation count of the id's front shard when the load began.
    generation: u64,
    /// Set when a reload of this stale entry failed (`None` on every healthy entry,
    /// so copying a slot on a hit stays cheap).
    retry: Option<Arc<Retry>>,
}

/// After a failed reload: when to try again, and whether a caller already has.
#[derive(Debug)]
struct Retry {
    at: Instant,
    claimed: AtomicBool,
}

impl Retry {
    fn after_failure() -> Option<Arc<Retry>> {
        Some(Arc::new(Retry {
            at: Instant::now() + STALE_RETRY,
            claimed: AtomicBool::new(false),
        }))
    }

    /// True for exactly one caller once the retry is due.
    fn claim(&self, now: Instant) -> bool {
        now >= self.at && !self.claimed.swap(true, Ordering::AcqRel)
    }
}

impl<V> Slot<V> {
    fn loaded(found: Option<V>, generation: u64) -> Self {
        Slot {
            entry: match found {
                Some(v) => Entry::Found(Arc::new(v)),
                None => Entry::Missing,
            },
            loaded: Instant::now(),
            generation,
            retry: None,
        }
    }

    /// Whether this is the same load as `other` (not a newer one).
    fn same_load(&self, other: &Slot<V>) -> bool {
        self.loaded == other.loaded && self.generation == other.generation
    }
}

impl<V> Clone for Slot<V> {
    fn clone(&self) -> Self {
        Slot {
            entry: self.entry.clone(),
            loaded: self.loaded,
            generation: self.generation,
            retry: self.retry.clone(),
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
    /// a miss or a stale entry, so a hit builds no loader state). The future `load`
    /// makes owns what it needs: a stale entry may be reloaded in the background.
    pub async fn get_or_load<E, L, F>(&self, id: &str, load: L) -> Result<Option<Arc<V>>, Arc<E>>
    where
        E: Send + Sync + 'static,
        L: Fn() -> F,
        F: Future<Output = Result<Option<V>, E>> + Send + 'static,
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
        L: Fn() -> F,
        F: Future<Output = Result<Option<V>, E>> + Send + 'static,
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
        L: Fn() -> F,
        F: Future<Output = Result<Option<V>, E>> + Send + 'static,
    {
        // A round repeats only when what it found was loaded before an invalidation
        // this caller has seen (it joined a load already in flight).
        for _ in 0..3 {
            let (generation, seen) = self.front.stamp(id);
            if let Round::Done(value) = self.lookup(id, generation, seen, &load).await? {
                return Ok(value);
            }
        }
        // Writes keep racing with loads: answer from the store, cache nothing.
        self.misses.inc();
        load()
            .await
            .map(|found| found.map(Arc::new))
            .map_err(Arc::new)
    }

    /// One round: `generation` is the count a load started now runs under, `seen` the
    /// count of the last invalidation of `id` this caller knows of.
    async fn lookup<E, L, F>(
        &self,
        id: &str,
        generation: u64,
        seen: u64,
        load: &L,
    ) -> Result<Round<V>, Arc<E>>
    where
        E: Send + Sync + 'static,
        L: Fn() -> F,
        F: Future<Output = Result<Option<V>, E>> + Send + 'static,
    {
        if let Some(slot) = self.inner.get(id).await {
            if slot.generation < seen {
                // Loaded before an invalidation of this id: never served again.
                self.discard(id, &slot).await;
            } else {
                let now = Instant::now();
                if self.lifetimes.is_fresh(&slot, now) {
                    self.hits.inc();
                    self.front.insert(id, &slot, now);
                    return Ok(Round::Done(entry_value(slot.entry)));
                }
                if let Some(retry) = &slot.retry {
                    // Its last reload failed: the stale value answers at once, and one
                    // caller, once the retry is due, reloads it in the background.
                    self.stale.inc();
                    if retry.claim(now) {
                        self.retry_in_background(id, slot.clone(), load());
                    }
                    return Ok(Round::Done(entry_value(slot.entry)));
                }
                return self
                    .reload_stale(id, generation, load)
                    .await
                    .map(Round::Done);
            }
        }
        self.misses.inc();
        let loading = load();
        let slot = self
            .inner
            .try_get_with(id.to_string(), async move {
                loading.await.map(|found| Slot::loaded(found, generation))
            })
            .await?;
        if slot.generation < seen {
            // This caller joined a load that began before an invalidation of this id
            // that it has seen.
            self.discard(id, &slot).await;
            return Ok(Round::Again);
        }
        self.mirror(id, &slot);
        Ok(Round::Done(entry_value(slot.entry)))
    }

    /// Copies an entry moka holds to the front. Not when moka has already let it go (its
    /// admission policy may refuse a new entry when full): the front never holds more
    /// than moka.
    fn mirror(&self, id: &str, slot: &Slot<V>) {
        if self.inner.contains_key(id) {
            self.front.insert(id, slot, Instant::now());
        }
    }

    /// Drops `slot` from moka unless a newer load replaced it meanwhile.
    async fn discard(&self, id: &str, slot: &Slot<V>) {
        self.inner
            .entry_by_ref(id)
            .and_compute_with(|current| {
                std::future::ready(match current {
                    Some(c) if c.value().same_load(slot) => Op::Remove,
                    _ => Op::Nop,
                })
            })
            .await;
    }

    async fn reload_stale<E, L, F>(
        &self,
        id: &str,
        generation: u64,
        load: &L,
    ) -> Result<Option<Arc<V>>, Arc<E>>
    where
        E: Send + Sync + 'static,
        L: Fn() -> F,
        F: Future<Output = Result<Option<V>, E>> + Send + 'static,
    {
        let lifetimes = self.lifetimes;
        let front = &self.front;
        let mut failure: Option<E> = None;
        let mut uncached: Option<Option<Arc<V>>> = None;
        let (failure_ref, uncached_ref) = (&mut failure, &mut uncached);
        let loading = load();
        let result = self
            .inner
            .entry_by_ref(id)
            .and_compute_with(|current| async move {
                let now = Instant::now();
                let current = current.map(|c| c.into_value());
                if let Some(slot) = &current {
                    // Someone else reloaded it, or gave up on the store a moment ago.
                    if !front.invalidated_since(id, slot.generation)
                        && (lifetimes.is_fresh(slot, now) || slot.retry.is_some())
                    {
                        return Op::Nop;
                    }
                }
                match loading.await {
                    Ok(found) => {
                        let slot = Slot::loaded(found, generation);
                        if front.invalidated_since(id, generation) {
                            // Invalidated while loading: this caller gets what it
                            // read, nothing is kept.
                            *uncached_ref = Some(entry_value(slot.entry));
                            return if current.is_some() {
                                Op::Remove
                            } else {
                                Op::Nop
                            };
                        }
                        Op::Put(slot)
                    }
                    Err(e) => {
                        *failure_ref = Some(e);
                        match current {
                            // Keep answering with the stale value for now.
                            Some(stale) if !front.invalidated_since(id, stale.generation) => {
                                Op::Put(Slot {
                                    retry: Retry::after_failure(),
                                    ..stale
                                })
                            }
                            // Invalidated meanwhile (a write): never bring it back.
                            _ => Op::Nop,
                        }
                    }
                }
            })
            .await;
        if let Some(value) = uncached {
            self.misses.inc();
            return Ok(value);
        }
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

    /// Reloads a stale entry whose last reload failed, off the request path. The result
    /// replaces the entry only if it is still the one the retry started from.
    fn retry_in_background<E, F>(&self, id: &str, stale: Slot<V>, loading: F)
    where
        E: Send + 'static,
        F: Future<Output = Result<Option<V>, E>> + Send + 'static,
    {
        let inner = self.inner.clone();
        let front = Arc::clone(&self.front);
        let id = id.to_string();
        tokio::spawn(async move {
            let next = match loading.await {
                Ok(found) => Slot::loaded(found, stale.generation),
                Err(_) => Slot {
                    retry: Retry::after_failure(),
                    ..stale.clone()
                },
            };
            let front_ref = &front;
            let id_ref = id.as_str();
            let result = inner
                .entry_by_ref(id_ref)
                .and_compute_with(|current| {
                    let same = current.is_some_and(|c| c.value().same_load(&stale))
                        && !front_ref.invalidated_since(id_ref, stale.generation);
                    std::future::ready(if same { Op::Put(next) } else { Op::Nop })
                })
                .await;
            if let CompResult::ReplacedWith(entry) = result {
                if inner.contains_key(id_ref) {
                    front.insert(id_ref, &entry.into_value(), Instant::now());
                }
            }
        });
    }

    /// The cached value for `id`, if any, without loading it (not counted as a lookup).
    pub fn peek(&self, id: &str) -> Option<Arc<V>> {
        let slot = self.front.get(id)?;
        (self.lifetimes.deadline(&slot) > Instant::now())
            .then(|| entry_value(slot.entry))
            .flatten()
    }

    /// Forgets `id`: the next lookup goes to the store, and no load already in flight
    /// can bring the old value back.
    pub async fn invalidate(&self, id: &str) {
        self.front.invalidate(id);
        self.inner.invalidate(id).await;
    }

    /// Forgets every entry (a change log gap: changes may have been missed).
    pub fn invalidate_all(&self) {
        self.front.invalidate_all();
        self.inner.invalidate_all();
    }

    pub fn entry_count(&self) -> u64 {
        self.inner.entry_count()
    }
}

/// One read of `SAMPLE_EVERY` front hits (per thread) is also shown to moka.
const SAMPLE_EVERY: u32 = 64;

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

type Shard<V> = RwLock<ShardMap<V>>;

/// How many ids' last invalidation a front shard remembers; past it, the shard forgets
/// them all and treats every id as invalidated at its current count (each entry loaded
/// before then is loaded again once).
const INVALIDATIONS_KEPT: usize = 4096;

struct ShardMap<V> {
    map: HashMap<Box<str>, Slot<V>, foldhash::fast::RandomState>,
    /// How many invalidations reached this shard: the count a load starting now runs
    /// under.
    generation: u64,
    /// Each recently invalidated id and the count its last invalidation made: a slot of
    /// that id loaded under an older count is never served or put here (see
    /// `LookupCache::invalidate`).
    invalidated: HashMap<Box<str>, u64, foldhash::fast::RandomState>,
    /// Every id not in `invalidated` was last invalidated at this count or before.
    floor: u64,
}

impl<V> ShardMap<V> {
    /// Whether `id` was invalidated after a load that began under `generation`.
    fn invalidated_since(&self, id: &str, generation: u64) -> bool {
        self.last_invalidation(id) > generation
    }

    /// The count `id`'s last invalidation made (or a count no older).
    fn last_invalidation(&self, id: &str) -> u64 {
        self.invalidated.get(id).copied().unwrap_or(self.floor)
    }
}

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
                .map(|_| {
                    RwLock::new(ShardMap {
                        map: HashMap::default(),
                        generation: 0,
                        invalidated: HashMap::default(),
                        floor: 0,
                    })
                })
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
        shard.map.get(id).cloned()
    }

    /// The invalidation count a load of `id` starting now runs under, and the count of
    /// `id`'s own last invalidation.
    fn stamp(&self, id: &str) -> (u64, u64) {
        let shard = self
            .shard(id)
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        (shard.generation, shard.last_invalidation(id))
    }

    /// Whether `id` was invalidated after a load that began under `generation`.
    fn invalidated_since(&self, id: &str, generation: u64) -> bool {
        self.shard(id)
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .invalidated_since(id, generation)
    }

    /// Puts `slot` here, unless `id` was invalidated since its load began.
    fn insert(&self, id: &str, slot: &Slot<V>, now: Instant) {
        let mut shard = self
            .shard(id)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if shard.invalidated_since(id, slot.generation) {
            return;
        }
        if shard.map.len() >= self.shard_cap && !shard.map.contains_key(id) {
            let lifetimes = self.lifetimes;
            shard.map.retain(|_, s| lifetimes.deadline(s) > now);
            if shard.map.len() >= self.shard_cap {
                shard.map.clear();
            }
        }
        shard.map.insert(id.into(), slot.clone());
    }

    /// Forgets `id` and counts the invalidation, under one lock.
    fn invalidate(&self, id: &str) {
        let mut shard = self
            .shard(id)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        shard.generation += 1;
        if shard.invalidated.len() >= INVALIDATIONS_KEPT && !shard.invalidated.contains_key(id) {
            shard.floor = shard.generation;
            shard.invalidated.clear();
        } else {
            let generation = shard.generation;
            shard.invalidated.insert(id.into(), generation);
        }
        shard.map.remove(id);
    }

    /// Removes `id` if it is still the entry loaded at `loaded` (not a newer load).
    fn remove_if_loaded_at(&self, id: &str, loaded: Instant) {
        let mut shard = self
            .shard(id)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if shard.map.get(id).is_some_and(|s| s.loaded == loaded) {
            shard.map.remove(id);
        }
    }

    fn invalidate_all(&self) {
        for shard in self.shards.iter() {
            let mut shard = shard.write().unwrap_or_else(PoisonError::into_inner);
            shard.generation += 1;
            shard.floor = shard.generation;
            shard.invalidated.clear();
            shard.map.clear();
        }
    }
}

/// What one round of a lookup came to.
enum Round<V> {
    Done(Option<Arc<V>>),
    /// What it found was loaded before an invalidation: look again.
    Again,
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
                    .get_or_load("cold", || {
                        let loads = Arc::clone(&loads);
                        async move {
                            loads.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            Ok::<_, ()>(Some("v".to_string()))
                        }
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
        let loads = Arc::new(AtomicUsize::new(0));
        let load = || {
            let loads = Arc::clone(&loads);
            async move {
                loads.fetch_add(1, Ordering::SeqCst);
                Ok::<Option<u32>, ()>(None)
            }
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
        let loads = Arc::new(AtomicUsize::new(0));
        let down = || {
            let loads = Arc::clone(&loads);
            async move {
                loads.fetch_add(1, Ordering::SeqCst);
                Err::<Option<u32>, _>("store down")
            }
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
                    .map
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

    type HeldLoad = std::pin::Pin<Box<dyn Future<Output = Result<Option<u32>, ()>> + Send>>;

    /// A loader held open on `gate`, answering what the "store" held when it began.
    fn held_loader(
        store: &Arc<std::sync::atomic::AtomicU32>,
        gate: &Arc<tokio::sync::Semaphore>,
        loads: &Arc<AtomicUsize>,
    ) -> impl Fn() -> HeldLoad + Clone + Send + Sync + 'static {
        let (store, gate, loads) = (Arc::clone(store), Arc::clone(gate), Arc::clone(loads));
        move || {
            let (store, gate, loads) = (Arc::clone(&store), Arc::clone(&gate), Arc::clone(&loads));
            Box::pin(async move {
                let read = store.load(Ordering::SeqCst);
                loads.fetch_add(1, Ordering::SeqCst);
                let _permit = gate.acquire().await.map_err(|_| ())?;
                Ok(Some(read))
            })
        }
    }

    async fn wait_for_loads(loads: &AtomicUsize, n: usize) {
        while loads.load(Ordering::SeqCst) < n {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_invalidation_is_never_undone_by_a_load_in_flight() {
        let cache = Arc::new(test_cache::<u32>(
            100,
            Duration::from_secs(60),
            Duration::from_secs(60),
            Duration::ZERO,
        ));
        let store = Arc::new(std::sync::atomic::AtomicU32::new(1));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let loads = Arc::new(AtomicUsize::new(0));
        let load = held_loader(&store, &gate, &loads);
        // A cold load reads the old record and is held open...
        let first = {
            let (cache, load) = (Arc::clone(&cache), load.clone());
            tokio::spawn(async move { cache.get_or_load("k", load).await })
        };
        wait_for_loads(&loads, 1).await;
        // ...while a write changes the record and invalidates it.
        store.store(2, Ordering::SeqCst);
        cache.invalidate("k").await;
        // A lookup after the invalidation joins the load in flight.
        let second = {
            let (cache, load) = (Arc::clone(&cache), load.clone());
            tokio::spawn(async move { cache.get_or_load("k", load).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        gate.add_permits(100);
        // The request that began before the write may see what it read...
        assert_eq!(first.await.unwrap().unwrap().as_deref(), Some(&1));
        // ...but nothing that began after it sees the old record.
        assert_eq!(second.await.unwrap().unwrap().as_deref(), Some(&2));
        for _ in 0..3 {
            assert_eq!(
                cache.get_or_load("k", &load).await.unwrap().as_deref(),
                Some(&2)
            );
        }
        assert_eq!(cache.peek("k").as_deref(), Some(&2));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_invalidation_is_never_undone_by_a_stale_reload_in_flight() {
        let cache = Arc::new(test_cache::<u32>(
            100,
            Duration::from_millis(50),
            Duration::from_millis(50),
            Duration::from_secs(60),
        ));
        let store = Arc::new(std::sync::atomic::AtomicU32::new(1));
        let gate = Arc::new(tokio::sync::Semaphore::new(1));
        let loads = Arc::new(AtomicUsize::new(0));
        let load = held_loader(&store, &gate, &loads);
        cache.get_or_load("k", &load).await.unwrap();
        tokio::time::sleep(Duration::from_millis(80)).await;
        // Past its TTL: the reload reads the old record and is held open...
        let reload = {
            let (cache, load) = (Arc::clone(&cache), load.clone());
            tokio::spawn(async move { cache.get_or_load("k", load).await })
        };
        wait_for_loads(&loads, 2).await;
        store.store(2, Ordering::SeqCst);
        cache.invalidate("k").await;
        gate.add_permits(100);
        assert_eq!(reload.await.unwrap().unwrap().as_deref(), Some(&1));
        assert_eq!(
            cache.get_or_load("k", &load).await.unwrap().as_deref(),
            Some(&2)
        );
        assert_eq!(cache.peek("k").as_deref(), Some(&2));
    }

    #[tokio::test]
    async fn invalidating_one_id_leaves_the_others_served_while_the_store_fails() {
        let cache = test_cache::<u32>(
            1000,
            Duration::from_millis(50),
            Duration::from_millis(50),
            Duration::from_secs(60),
        );
        // Enough ids that many share a front shard with the one invalidated.
        let ids: Vec<String> = (0..200).map(|i| format!("k{i}")).collect();
        for (i, id) in ids.iter().enumerate() {
            let v = u32::try_from(i).unwrap();
            cache
                .get_or_load(id, move || async move { Ok::<_, &str>(Some(v)) })
                .await
                .unwrap();
        }
        cache.invalidate("k0").await;
        tokio::time::sleep(Duration::from_millis(80)).await;
        let down = || async { Err::<Option<u32>, _>("down") };
        assert!(cache.get_or_load("k0", down).await.is_err());
        for (i, id) in ids.iter().enumerate().skip(1) {
            let v = cache.get_or_load(id, down).await;
            assert_eq!(
                v.ok().flatten().as_deref(),
                Some(&u32::try_from(i).unwrap()),
                "{id} lost its stale value"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn after_a_failed_reload_the_stale_value_answers_at_once_and_reloads_behind() {
        let cache = Arc::new(test_cache::<u32>(
            100,
            Duration::from_millis(50),
            Duration::from_millis(50),
            Duration::from_secs(60),
        ));
        cache
            .get_or_load("k", || async { Ok::<_, &str>(Some(1)) })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(80)).await;
        let v = cache
            .get_or_load("k", || async { Err::<Option<u32>, _>("down") })
            .await
            .unwrap();
        assert_eq!(v.as_deref(), Some(&1));
        tokio::time::sleep(STALE_RETRY + Duration::from_millis(50)).await;
        // The retry is due: it runs in the background, held open here, while the stale
        // value answers at once.
        let store = Arc::new(std::sync::atomic::AtomicU32::new(2));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let loads = Arc::new(AtomicUsize::new(0));
        let load = held_loader(&store, &gate, &loads);
        for _ in 0..5 {
            let v = cache.get_or_load("k", &load).await.unwrap();
            assert_eq!(v.as_deref(), Some(&1));
        }
        wait_for_loads(&loads, 1).await;
        assert_eq!(loads.load(Ordering::SeqCst), 1, "one retry at a time");
        gate.add_permits(100);
        let deadline = Instant::now() + Duration::from_secs(5);
        while cache.peek("k").as_deref() != Some(&2) {
            assert!(
                Instant::now() < deadline,
                "the background reload never landed"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            cache.get_or_load("k", &load).await.unwrap().as_deref(),
            Some(&2)
        );
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }
}
