//! moka caches in front of the store for sites and API keys.
//!
//! - bounded capacity and a TTL;
//! - single-flight: a burst of lookups of one cold id makes one store query;
//! - short-lived negative entries, so unknown ids do not hammer the store;
//! - `invalidate` for every write made through wpgate's own code.
//!
//! Errors are never cached: the next lookup tries the store again.

use moka::future::Cache;
use moka::Expiry;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

struct FoundOrMissing {
    ttl: Duration,
    negative_ttl: Duration,
}

impl<V> Expiry<String, Entry<V>> for FoundOrMissing {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Entry<V>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(match value {
            Entry::Found(_) => self.ttl,
            Entry::Missing => self.negative_ttl,
        })
    }
}

/// A cache of `id -> Option<V>` over a loader.
pub struct LookupCache<V> {
    inner: Cache<String, Entry<V>>,
    /// `wpgate_cache_requests_total{cache=<name>, result=hit|miss}`, resolved once.
    hits: Option<prometheus::IntCounter>,
    misses: Option<prometheus::IntCounter>,
}

impl<V: Send + Sync + 'static> LookupCache<V> {
    pub fn new(name: &str, capacity: u64, ttl: Duration, negative_ttl: Duration) -> Self {
        let inner = Cache::builder()
            .name(name)
            .max_capacity(capacity)
            .expire_after(FoundOrMissing { ttl, negative_ttl })
            .build();
        let counter = |result: &str| {
            crate::metrics::get().map(|m| m.cache_requests.with_label_values(&[name, result]))
        };
        Self {
            inner,
            hits: counter("hit"),
            misses: counter("miss"),
        }
    }

    /// The cached value for `id`, or the loader's result (shared by every concurrent
    /// caller for the same id).
    pub async fn get_or_load<E, F>(&self, id: &str, load: F) -> Result<Option<Arc<V>>, Arc<E>>
    where
        E: Send + Sync + 'static,
        F: Future<Output = Result<Option<V>, E>>,
    {
        // The hit path borrows `id`: no allocation.
        if let Some(entry) = self.inner.get(id).await {
            if let Some(c) = &self.hits {
                c.inc();
            }
            return Ok(entry_value(entry));
        }
        if let Some(c) = &self.misses {
            c.inc();
        }
        let entry = self
            .inner
            .try_get_with(id.to_string(), async move {
                load.await.map(|found| match found {
                    Some(v) => Entry::Found(Arc::new(v)),
                    None => Entry::Missing,
                })
            })
            .await?;
        Ok(entry_value(entry))
    }

    /// The cached value for `id`, if any, without loading it (not counted as a lookup).
    pub async fn peek(&self, id: &str) -> Option<Arc<V>> {
        self.inner.get(id).await.and_then(entry_value)
    }

    /// Forgets `id`: the next lookup goes to the store.
    pub async fn invalidate(&self, id: &str) {
        self.inner.invalidate(id).await;
    }

    pub fn entry_count(&self) -> u64 {
        self.inner.entry_count()
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
        let cache =
            LookupCache::<String>::new("t", 100, Duration::from_secs(60), Duration::from_secs(1));
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
    async fn invalidate_forces_a_reload() {
        let cache =
            LookupCache::<u32>::new("t", 100, Duration::from_secs(60), Duration::from_secs(1));
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
