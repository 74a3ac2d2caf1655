//! The latest health report of each site, as this process knows it from the store.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError, RwLock};

use super::{HealthReport, HealthState, StoredReport};

struct Entry {
    report: HealthReport,
    /// The stored result's `seq`: only a later result replaces it.
    seq: i64,
}

/// The latest report per site, shared by the prober, the proxy (fail-fast), the admin API
/// and the metrics. Reads take a read lock and clone one report.
#[derive(Default)]
pub struct HealthBoard {
    reports: RwLock<HashMap<String, Entry>>,
    rechecks: Mutex<HashSet<String>>,
    /// Wakes the prober when a recheck is requested.
    pub(super) recheck_requested: tokio::sync::Notify,
}

impl HealthBoard {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, site: &str) -> Option<HealthReport> {
        self.read().get(site).map(|e| e.report.clone())
    }

    /// The site's state; `Unknown` when it has not been checked.
    pub fn state(&self, site: &str) -> HealthState {
        self.read()
            .get(site)
            .map_or(HealthState::Unknown, |e| e.report.state)
    }

    /// Takes a stored result unless the board holds a later one of the site (results
    /// may be read out of order); returns whether the site's report changed.
    pub fn apply(&self, stored: &StoredReport) -> bool {
        let mut reports = self.write();
        match reports.get_mut(&stored.site) {
            Some(e) if e.seq >= stored.seq => false,
            Some(e) => {
                e.seq = stored.seq;
                let changed = e.report != stored.report;
                e.report = stored.report.clone();
                changed
            }
            None => {
                reports.insert(
                    stored.site.clone(),
                    Entry {
                        report: stored.report.clone(),
                        seq: stored.seq,
                    },
                );
                true
            }
        }
    }

    pub fn remove(&self, site: &str) {
        self.write().remove(site);
    }

    /// Drops every site `keep` refuses (sites deleted from the store); returns them with
    /// their last reports.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) -> Vec<(String, HealthReport)> {
        let mut reports = self.write();
        let gone: Vec<String> = reports.keys().filter(|s| !keep(s)).cloned().collect();
        gone.into_iter()
            .filter_map(|site| {
                let entry = reports.remove(&site)?;
                Some((site, entry.report))
            })
            .collect()
    }

    /// How many sites are in each state, every state listed (sites never checked are not
    /// on the board, so `Unknown` counts only reports stored as unknown).
    pub fn counts(&self) -> Vec<(HealthState, usize)> {
        let reports = self.read();
        HealthState::ALL
            .iter()
            .map(|s| {
                let n = reports.values().filter(|e| e.report.state == *s).count();
                (*s, n)
            })
            .collect()
    }

    /// Every report, sorted by site id.
    pub fn snapshot(&self) -> Vec<(String, HealthReport)> {
        let mut all: Vec<_> = self
            .read()
            .iter()
            .map(|(k, e)| (k.clone(), e.report.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Asks the prober to have `site` checked now (by whichever process claims it
    /// first), e.g. when the proxy sees a site marked down answer again. Without a
    /// running prober this does nothing.
    pub fn request_recheck(&self, site: &str) {
        self.rechecks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(site.to_string());
        self.recheck_requested.notify_one();
    }

    pub(super) fn take_rechecks(&self) -> Vec<String> {
        self.rechecks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .collect()
    }

    // A panic while holding the lock cannot leave a HashMap of reports half-updated in a
    // way that matters: keep serving.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Entry>> {
        self.reports.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Entry>> {
        self.reports.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(site: &str, state: HealthState, seq: i64) -> StoredReport {
        StoredReport {
            site: site.into(),
            report: HealthReport {
                state,
                message: format!("{state} at {seq}"),
                checked_at: seq,
                duration_ms: 0,
                consecutive_failures: 0,
                wordpress_user: None,
                checked_by: Some("r1".into()),
            },
            seq,
        }
    }

    #[test]
    fn the_board_keeps_the_latest_result_of_each_site() {
        let b = HealthBoard::new();
        assert_eq!(b.state("a"), HealthState::Unknown);
        assert_eq!(b.get("a"), None);
        assert!(b.apply(&stored("a", HealthState::Unreachable, 5)));
        // The same result again, or an earlier one read late, changes nothing.
        assert!(!b.apply(&stored("a", HealthState::Unreachable, 5)));
        assert!(!b.apply(&stored("a", HealthState::Healthy, 3)));
        assert_eq!(b.state("a"), HealthState::Unreachable);
        assert!(b.apply(&stored("a", HealthState::Healthy, 9)));
        assert_eq!(b.get("a").unwrap().message, "healthy at 9");

        b.apply(&stored("b", HealthState::Healthy, 1));
        b.apply(&stored("c", HealthState::Disabled, 2));
        let counts = b.counts();
        assert_eq!(counts.len(), HealthState::ALL.len());
        assert!(counts.contains(&(HealthState::Healthy, 2)));
        assert!(counts.contains(&(HealthState::Disabled, 1)));
        assert!(counts.contains(&(HealthState::Unreachable, 0)));
        let ids: Vec<_> = b.snapshot().into_iter().map(|(id, _)| id).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        let gone = b.retain(|site| site != "b");
        assert_eq!(gone.len(), 1);
        assert_eq!(
            (gone[0].0.as_str(), gone[0].1.state),
            ("b", HealthState::Healthy)
        );
        assert_eq!(b.state("b"), HealthState::Unknown);
        b.remove("c");
        assert_eq!(b.snapshot().len(), 1);
    }
}
