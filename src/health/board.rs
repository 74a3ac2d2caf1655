//! The latest health report of each site.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError, RwLock};

use super::{HealthReport, HealthState};

/// The latest report per site, shared by the prober, the proxy (fail-fast), the admin API
/// and the metrics. Reads take a read lock and clone one report.
#[derive(Default)]
pub struct HealthBoard {
    reports: RwLock<HashMap<String, HealthReport>>,
    rechecks: Mutex<HashSet<String>>,
    /// Wakes the prober when a recheck is requested.
    pub(super) recheck_requested: tokio::sync::Notify,
}

impl HealthBoard {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, site: &str) -> Option<HealthReport> {
        self.read().get(site).cloned()
    }

    /// The site's state; `Unknown` when it has not been checked.
    pub fn state(&self, site: &str) -> HealthState {
        self.read()
            .get(site)
            .map_or(HealthState::Unknown, |r| r.state)
    }

    /// Stores `r` as it is.
    pub fn set(&self, site: &str, r: HealthReport) {
        self.write().insert(site.to_string(), r);
    }

    /// Stores the result of a check, counting `consecutive_failures` on from the previous
    /// report; returns what was stored. Use this for every fresh check (the prober does).
    pub fn record(&self, site: &str, mut r: HealthReport) -> HealthReport {
        let mut reports = self.write();
        r.consecutive_failures = if r.state.is_failure() {
            reports
                .get(site)
                .filter(|prev| prev.state.is_failure())
                .map_or(1, |prev| prev.consecutive_failures.saturating_add(1))
        } else {
            0
        };
        reports.insert(site.to_string(), r.clone());
        r
    }

    pub fn remove(&self, site: &str) {
        self.write().remove(site);
    }

    /// How many sites are in each state, every state listed (sites never checked are not
    /// on the board, so `Unknown` counts only reports stored as unknown).
    pub fn counts(&self) -> Vec<(HealthState, usize)> {
        let reports = self.read();
        HealthState::ALL
            .iter()
            .map(|s| (*s, reports.values().filter(|r| r.state == *s).count()))
            .collect()
    }

    /// Every report, sorted by site id.
    pub fn snapshot(&self) -> Vec<(String, HealthReport)> {
        let mut all: Vec<_> = self
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Asks the prober to check `site` now (and to re-read its targets first), e.g. after
    /// its credential or upstream changed, or when the proxy sees a site marked down
    /// answer again. Without a running prober this does nothing.
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
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, HealthReport>> {
        self.reports.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, HealthReport>> {
        self.reports.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(state: HealthState) -> HealthReport {
        HealthReport {
            state,
            message: String::new(),
            checked_at: 0,
            duration_ms: 0,
            consecutive_failures: 0,
            wordpress_user: None,
        }
    }

    #[test]
    fn the_board_counts_failures_in_a_row() {
        let b = HealthBoard::new();
        assert_eq!(b.state("a"), HealthState::Unknown);
        assert_eq!(b.get("a"), None);
        let in_a_row = |steps: &[(HealthState, u32)]| {
            for (state, failures) in steps {
                let stored = b.record("a", report(*state));
                assert_eq!(stored.consecutive_failures, *failures, "{state}");
            }
        };
        in_a_row(&[
            (HealthState::Unreachable, 1),
            (HealthState::AuthFailed, 2),
            (HealthState::Degraded, 3),
        ]);
        assert_eq!(b.get("a").unwrap().consecutive_failures, 3);
        in_a_row(&[
            (HealthState::Healthy, 0),
            (HealthState::Unreachable, 1),
            (HealthState::Disabled, 0),
        ]);
        b.set("b", report(HealthState::Healthy));
        b.set("c", report(HealthState::Healthy));
        assert_eq!(b.state("b"), HealthState::Healthy);
        let counts = b.counts();
        assert_eq!(counts.len(), HealthState::ALL.len());
        assert!(counts.contains(&(HealthState::Healthy, 2)));
        assert!(counts.contains(&(HealthState::Disabled, 1)));
        assert!(counts.contains(&(HealthState::Unreachable, 0)));
        let ids: Vec<_> = b.snapshot().into_iter().map(|(id, _)| id).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        b.remove("b");
        assert_eq!(b.state("b"), HealthState::Unknown);
    }
}
