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

use moka::future::Cache;
use moka::ops::compute::Op;
use moka::Expiry;
use std::future::Future;
use std::sync::Arc;
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
            Entry::Missing => true,
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
pub struct LookupCache<V> {
    inner: Cache<String, Slot<V>>,
    lifetimes: Lifetimes,
    /// `wpgate_cache_requests_total{cache=<name>, result=hit|miss|stale}`, resolved once.
    hits: Option<prometheus::IntCounter>,
    misses: Option<prometheus::IntCounter>,
    stale: Option<prometheus::IntCounter>,
}

impl<V: Send + Sync + 'static> LookupCache<V> {
    pub fn new(
        name: &str,
        capacity: u64,
        ttl: Duration,
        negative_ttl: Duration,
        max_stale: Duration,
    ) -> Self {
        let lifetimes = Lifetimes {
            ttl,
            negative_ttl,
            max_stale,
        };
        let inner = Cache::builder()
            .name(name)
            .max_capacity(capacity)
            .expire_after(lifetimes)
            .build();
        let counter = |result: &str| {
            crate::metrics::get().map(|m| m.cache_requests.with_label_values(&[name, result]))
        };
        Self {
            inner,
            lifetimes,
            hits: counter("hit"),
            misses: counter("miss"),
            stale: counter("stale"),
        }
    }

    /// The cached value for `id`, or the loader's result (shared by every concurrent
    /// caller for the same id). Past its TTL a value is reloaded; if that fails it is
    /// still answered (as stale) until `max_stale` past the TTL.
    pub async fn get_or_load<E, F>(&self, id: &str, load: F) -> Result<Option<Arc<V>>, Arc<E>>
    where
        E: Send + Sync + 'static,
        F: Future<Output = Result<Option<V>, E>>,
    {
        // The hit path borrows `id`: no allocation.
        if let Some(slot) = self.inner.get(id).await {
            let now = Instant::now();
            if self.lifetimes.is_fresh(&slot, now) {
                count(&self.hits);
                return Ok(entry_value(slot.entry));
            }
            if slot.retry_at.is_some_and(|at| now < at) {
                count(&self.stale);
                return Ok(entry_value(slot.entry));
            }
            return self.reload_stale(id, load).await;
        }
        count(&self.misses);
        let slot = self
            .inner
            .try_get_with(id.to_string(), async move {
                load.await.map(|found| Slot {
                    entry: match found {
                        Some(v) => Entry::Found(Arc::new(v)),
                        None => Entry::Missing,
                    },
                    loaded: Instant::now(),
                    retry_at: None,
                })
            })
            .await?;
        Ok(entry_value(slot.entry))
    }

    /// Reloads an entry past its TTL, one caller at a time per id; on failure keeps the
    /// stale value (and answers with it) and holds off further reloads for a second.
    async fn reload_stale<E, F>(&self, id: &str, load: F) -> Result<Option<Arc<V>>, Arc<E>>
    where
        E: Send + Sync + 'static,
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
                match load.await {
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
                count(&self.misses);
                Ok(entry_value(entry.into_value().entry))
            }
            (Some(entry), Some(_)) => {
                count(&self.stale);
                Ok(entry_value(entry.into_value().entry))
            }
            (None, Some(e)) => Err(Arc::new(e)),
            // Only a failed load leaves no entry behind.
            (None, None) => Ok(None),
        }
    }

    /// The cached value for `id`, if any, without loading it (not counted as a lookup).
    pub async fn peek(&self, id: &str) -> Option<Arc<V>> {
        self.inner.get(id).await.and_then(|s| entry_value(s.entry))
    }

    /// Forgets `id`: the next lookup goes to the store.
    pub async fn invalidate(&self, id: &str) {
        self.inner.invalidate(id).await;
    }

    /// Forgets every entry (a change log gap: changes may have been missed).
    pub fn invalidate_all(&self) {
        self.inner.invalidate_all();
    }

    pub fn entry_count(&self) -> u64 {
        self.inner.entry_count()
    }
}

fn count(counter: &Option<prometheus::IntCounter>) {
    if let Some(c) = counter {
        c.inc();
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

    #[tokio::test]
    async fn a_burst_of_cold_lookups_loads_once() {
        let cache = LookupCache::<String>::new(
            "t",
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
                    .get_or_load("cold", async {
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
        let cache = LookupCache::<u32>::new(
            "t",
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
        assert_eq!(cache.get_or_load("x", load()).await.unwrap(), None);
        assert_eq!(cache.get_or_load("x", load()).await.unwrap(), None);
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(cache.get_or_load("x", load()).await.unwrap(), None);
        assert_eq!(loads.load(Ordering::SeqCst), 2);

        assert!(cache
            .get_or_load("e", async { Err::<Option<u32>, _>("down") })
            .await
            .is_err());
        let v = cache
            .get_or_load("e", async { Ok::<_, &str>(Some(7)) })
            .await
            .unwrap();
        assert_eq!(v.as_deref(), Some(&7));
    }

    #[tokio::test]
    async fn stale_values_answer_while_the_store_fails_then_expire() {
        let cache = LookupCache::<u32>::new(
            "t",
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
            cache.get_or_load("k", ok(1)).await.unwrap().as_deref(),
            Some(&1)
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
        // Past its TTL with the store down: the last good value answers.
        assert_eq!(
            cache.get_or_load("k", down()).await.unwrap().as_deref(),
            Some(&1)
        );
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        // ...and the store is not asked again for a while.
        assert_eq!(
            cache.get_or_load("k", down()).await.unwrap().as_deref(),
            Some(&1)
        );
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        // A write (invalidation) is never undone by stale serving.
        cache.get_or_load("r", ok(5)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        cache.invalidate("r").await;
        assert!(cache.get_or_load("r", down()).await.is_err());
        // Beyond max_stale the entry is gone: the error shows.
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert!(cache.get_or_load("k", down()).await.is_err());
        // The store is back: fresh values again.
        assert_eq!(
            cache.get_or_load("k", ok(2)).await.unwrap().as_deref(),
            Some(&2)
        );
    }

    #[tokio::test]
    async fn a_stale_entry_is_reloaded_when_the_store_answers() {
        let cache = LookupCache::<u32>::new(
            "t",
            100,
            Duration::from_millis(50),
            Duration::from_millis(50),
            Duration::from_secs(60),
        );
        cache
            .get_or_load("k", async { Ok::<_, ()>(Some(1)) })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(80)).await;
        let v = cache
            .get_or_load("k", async { Ok::<_, ()>(Some(2)) })
            .await
            .unwrap();
        assert_eq!(v.as_deref(), Some(&2));
        // A revoked/removed record: the reload finds nothing, and says so.
        tokio::time::sleep(Duration::from_millis(80)).await;
        let v = cache
            .get_or_load("k", async { Ok::<_, ()>(None) })
            .await
            .unwrap();
        assert_eq!(v, None);
    }

    #[tokio::test]
    async fn invalidate_forces_a_reload() {
        let cache = LookupCache::<u32>::new(
            "t",
            100,
            Duration::from_secs(60),
            Duration::from_secs(1),
            Duration::ZERO,
        );
        let v = cache
            .get_or_load("k", async { Ok::<_, ()>(Some(1)) })
            .await
            .unwrap();
        assert_eq!(v.as_deref(), Some(&1));
        let v = cache
            .get_or_load("k", async { Ok::<_, ()>(Some(2)) })
            .await
            .unwrap();
        assert_eq!(v.as_deref(), Some(&1));
        cache.invalidate("k").await;
        let v = cache
            .get_or_load("k", async { Ok::<_, ()>(Some(2)) })
            .await
            .unwrap();
        assert_eq!(v.as_deref(), Some(&2));
    }
}
