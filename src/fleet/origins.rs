//! The browser origins the fleet allows (CORS): the union of every site's allowed
//! origins. A preflight carries no site id, so it is answered from this set: held in
//! memory and read without a lock, an allocation or a store query.
//!
//! It is kept current the way the caches are: this process's own writes update it at
//! once (`writes`); other processes' writes reach it through the change follower
//! (`follow`), which reloads it with one store query per batch of site changes (only
//! the sites that allow some origin are read).

use super::{Fleet, FleetError};
use crate::site::CorsAllow;
use arc_swap::ArcSwap;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// Every site's allowed origins, and their union for the request path.
#[derive(Default)]
pub struct FleetOrigins {
    /// Per site, for updates (only sites that allow some origin).
    by_site: Mutex<HashMap<String, CorsAllow>>,
    /// The union, rebuilt and swapped on every change.
    union: ArcSwap<HashSet<Box<str>>>,
}

impl FleetOrigins {
    /// True when some site allows `origin` (an `Origin` header's bytes), compared byte
    /// for byte with the normalised origins.
    pub fn allows(&self, origin: &[u8]) -> bool {
        let Ok(text) = std::str::from_utf8(origin) else {
            return false;
        };
        self.union.load().contains(text)
    }

    /// How many distinct origins some site allows.
    pub fn len(&self) -> usize {
        self.union.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sets one site's origins (none: the site allows none, or is gone). The fleet's
    /// writes call it with what they stored.
    pub fn set_site(&self, site: &str, cors: CorsAllow) {
        let mut by_site = self.lock();
        if cors.is_empty() {
            if by_site.remove(site).is_none() {
                return;
            }
        } else {
            by_site.insert(site.to_string(), cors);
        }
        self.publish(&by_site);
    }

    /// Replaces every site's origins.
    pub(super) fn replace(&self, all: HashMap<String, CorsAllow>) {
        let mut by_site = self.lock();
        *by_site = all;
        self.publish(&by_site);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CorsAllow>> {
        // The map is whole after every update: a panic elsewhere cannot leave it half done.
        self.by_site.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Swaps in the union (under the lock, so the last update is the one published).
    fn publish(&self, by_site: &HashMap<String, CorsAllow>) {
        let union: HashSet<Box<str>> = by_site
            .values()
            .flat_map(|c| c.origins())
            .map(|o| Box::from(o.as_str()))
            .collect();
        self.union.store(Arc::new(union));
    }
}

impl Fleet {
    /// The origins some site allows.
    pub fn origins(&self) -> &FleetOrigins {
        &self.origins
    }

    /// Reads every site's allowed origins from the store (one query) and swaps them in.
    /// A site whose stored origins do not parse is left out, with a log line.
    pub async fn reload_origins(&self) -> Result<(), FleetError> {
        let rows = self.store.site_origins().await.inspect_err(|_| {
            self.metrics
                .store_errors
                .with_label_values(&["site_origins"])
                .inc();
        })?;
        let mut all = HashMap::with_capacity(rows.len());
        for (site, origins) in rows {
            match CorsAllow::parse(&origins) {
                Ok(cors) if !cors.is_empty() => {
                    all.insert(site, cors);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(
                        site = %site,
                        error = %e,
                        "stored CORS origins cannot be used: left out"
                    );
                }
            }
        }
        self.origins.replace(all);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: &[&str]) -> CorsAllow {
        CorsAllow::parse(origins).unwrap()
    }

    #[test]
    fn the_union_follows_every_site() {
        let o = FleetOrigins::default();
        assert!(o.is_empty());
        assert!(!o.allows(b"https://a.example"));
        o.set_site("shop", cors(&["https://a.example", "https://b.example"]));
        o.set_site(
            "blog",
            cors(&["https://b.example", "http://localhost:3000"]),
        );
        assert_eq!(o.len(), 3);
        for yes in [
            "https://a.example",
            "https://b.example",
            "http://localhost:3000",
        ] {
            assert!(o.allows(yes.as_bytes()), "{yes}");
        }
        for no in [
            &b"https://A.example"[..],
            b"https://a.example/",
            b"",
            b"\xff",
        ] {
            assert!(!o.allows(no));
        }
        // Another site still allows b when shop drops it; a is gone with shop's list.
        o.set_site("shop", CorsAllow::none());
        assert!(!o.allows(b"https://a.example"));
        assert!(o.allows(b"https://b.example"));
        o.set_site("ghost", CorsAllow::none());
        assert_eq!(o.len(), 2);
        // A reload replaces everything.
        o.replace(HashMap::from([(
            "news".to_string(),
            cors(&["https://news.example"]),
        )]));
        assert!(o.allows(b"https://news.example"));
        assert!(!o.allows(b"https://b.example"));
        assert_eq!(o.len(), 1);
    }
}
