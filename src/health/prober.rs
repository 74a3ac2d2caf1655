//! The background prober: keeps the board fresh, checking each site on its own schedule
//! (interval, jitter, backoff while down) with a bounded number of checks at once.

use async_trait::async_trait;
use rand::Rng;
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{probe, HealthBoard, HealthReport, ProbeTarget};

/// Where the prober gets its sites; called about every `min(interval, 30s)` and whenever
/// a recheck is requested. Include disabled sites (they are reported `Disabled`); a site
/// that is no longer listed is dropped from the board.
#[async_trait]
pub trait TargetSource: Send + Sync + 'static {
    async fn targets(&self) -> Vec<ProbeTarget>;
}

#[derive(Debug, Clone)]
pub struct ProberSettings {
    /// Between checks of a site that is up (healthy or degraded). Default 5 min.
    pub interval: Duration,
    /// Each delay is multiplied by a random factor in `1 ± jitter` (clamped to 0..=0.9) so
    /// checks of many sites spread out. Default 0.1.
    pub jitter: f64,
    /// Checks in flight at once. Default 16.
    pub concurrency: usize,
    /// Per request of a check. Default 10 s.
    pub timeout: Duration,
    /// The longest delay between checks of a site that is down. Default `interval * 8`.
    pub max_backoff: Duration,
    /// The shortest delay after a failed check. Default 5 s.
    pub min_backoff: Duration,
}

impl Default for ProberSettings {
    fn default() -> Self {
        Self::with_interval(Duration::from_secs(300))
    }
}

impl ProberSettings {
    /// The defaults for a given interval.
    pub fn with_interval(interval: Duration) -> Self {
        ProberSettings {
            interval,
            jitter: 0.1,
            concurrency: 16,
            timeout: Duration::from_secs(10),
            max_backoff: interval.saturating_mul(8),
            min_backoff: Duration::from_secs(5),
        }
    }

    /// The delay until the next check after the `failures`-th failed check in a row of a
    /// site that is down (`failures` >= 1), before jitter: `max(interval/8, min_backoff)`,
    /// doubling with each failure, at most `max(max_backoff, that first delay)`. So with
    /// the defaults a site that goes down is checked again after 37.5 s, 75 s, 150 s, … and
    /// from the seventh failure every 40 min: a short outage is noticed as over quickly, a
    /// long-dead site costs little. Call [`HealthBoard::request_recheck`] to cut a wait.
    pub fn backoff(&self, failures: u32) -> Duration {
        let first = (self.interval / 8).max(self.min_backoff);
        let doublings = failures.saturating_sub(1).min(30);
        first
            .saturating_mul(1u32 << doublings)
            .min(self.max_backoff.max(first))
    }

    fn jittered(&self, d: Duration) -> Duration {
        let j = if self.jitter.is_finite() {
            self.jitter.clamp(0.0, 0.9)
        } else {
            0.0
        };
        if j == 0.0 {
            return d;
        }
        d.mul_f64(1.0 + rand::thread_rng().gen_range(-j..=j))
    }
}

/// Called with each fresh report (e.g. to update metrics).
pub type ReportHook = Arc<dyn Fn(&str, &HealthReport) + Send + Sync>;

/// Runs checks until the future is dropped (it never returns on its own).
///
/// Each site is checked as soon as it appears and whenever its target changes (upstream,
/// credential, kind, namespaces, enabled). After a check the next one is due:
/// - up (healthy, degraded) or disabled: after `interval`;
/// - down (unreachable, auth_failed): after [`ProberSettings::backoff`] of the number of
///   down results in a row;
///
/// each delay jittered by `± jitter`. At most `concurrency` checks run at once; due sites
/// wait in order of their due time. Each report is stored with [`HealthBoard::record`]
/// and handed to `on_report`.
pub async fn run_prober(
    source: Arc<dyn TargetSource>,
    board: Arc<HealthBoard>,
    client: reqwest::Client,
    settings: ProberSettings,
    on_report: Option<ReportHook>,
) {
    let prober = Prober {
        source,
        board,
        client,
        settings,
        on_report,
        hasher: RandomState::new(),
    };
    prober.run().await
}

struct Prober {
    source: Arc<dyn TargetSource>,
    board: Arc<HealthBoard>,
    client: reqwest::Client,
    settings: ProberSettings,
    on_report: Option<ReportHook>,
    /// Keyed per process: fingerprints of targets (credential included) never leave memory
    /// and cannot be compared across processes.
    hasher: RandomState,
}

struct Scheduled {
    target: Arc<ProbeTarget>,
    fingerprint: u64,
    due: Instant,
    in_flight: bool,
    /// Check again as soon as the running check ends.
    again: bool,
    /// Down results in a row.
    down: u32,
}

struct Done {
    site: String,
    fingerprint: u64,
    report: HealthReport,
}

impl Prober {
    fn fingerprint(&self, t: &ProbeTarget) -> u64 {
        let mut h = self.hasher.build_hasher();
        t.base_url.hash(&mut h);
        t.credential_kind.as_str().hash(&mut h);
        t.username.hash(&mut h);
        t.required_namespaces.hash(&mut h);
        t.enabled.hash(&mut h);
        t.unusable.hash(&mut h);
        if let Some((name, value)) = &t.credential {
            name.as_str().hash(&mut h);
            value.as_bytes().hash(&mut h);
        }
        h.finish()
    }

    async fn run(self) {
        let concurrency = self.settings.concurrency.max(1);
        let refresh_every = self
            .settings
            .interval
            .min(Duration::from_secs(30))
            .max(Duration::from_millis(10));
        let mut schedule: HashMap<String, Scheduled> = HashMap::new();
        let mut tasks: JoinSet<Done> = JoinSet::new();
        let mut running: HashMap<tokio::task::Id, String> = HashMap::new();
        let mut next_refresh = Instant::now();
        loop {
            let rechecks = self.board.take_rechecks();
            if !rechecks.is_empty() || Instant::now() >= next_refresh {
                self.refresh(&mut schedule).await;
                next_refresh = Instant::now() + refresh_every;
            }
            let now = Instant::now();
            for site in rechecks {
                if let Some(s) = schedule.get_mut(&site) {
                    if s.in_flight {
                        s.again = true;
                    } else {
                        s.due = now;
                    }
                }
            }

            // Start the most overdue checks while there is room.
            if tasks.len() < concurrency {
                let mut due: Vec<(Instant, &String)> = schedule
                    .iter()
                    .filter(|(_, s)| !s.in_flight && s.due <= now)
                    .map(|(id, s)| (s.due, id))
                    .collect();
                due.sort();
                let start: Vec<String> = due
                    .into_iter()
                    .take(concurrency - tasks.len())
                    .map(|(_, id)| id.clone())
                    .collect();
                for site in start {
                    if let Some(s) = schedule.get_mut(&site) {
                        s.in_flight = true;
                        let target = Arc::clone(&s.target);
                        let fingerprint = s.fingerprint;
                        let client = self.client.clone();
                        let timeout = self.settings.timeout;
                        let handle = tasks.spawn(async move {
                            let report = probe(&client, &target, timeout).await;
                            Done {
                                site: target.site_id.clone(),
                                fingerprint,
                                report,
                            }
                        });
                        running.insert(handle.id(), site);
                    }
                }
            }

            let next_due = schedule
                .values()
                .filter(|s| !s.in_flight)
                .map(|s| s.due)
                .min();
            let wake = match next_due {
                Some(due) if tasks.len() < concurrency => due.min(next_refresh),
                _ => next_refresh,
            };
            tokio::select! {
                done = tasks.join_next_with_id(), if !tasks.is_empty() => match done {
                    Some(Ok((id, done))) => {
                        running.remove(&id);
                        self.finish(&mut schedule, done);
                    }
                    Some(Err(e)) => {
                        // A check panicked: forget it ran, try again at the normal pace.
                        if let Some(site) = running.remove(&e.id()) {
                            tracing::error!(site = %site, error = %e, "health check task failed");
                            if let Some(s) = schedule.get_mut(&site) {
                                s.in_flight = false;
                                s.due = Instant::now() + self.settings.jittered(self.settings.interval);
                            }
                        }
                    }
                    None => {}
                },
                () = tokio::time::sleep_until(wake) => {}
                () = self.board.recheck_requested.notified() => {}
            }
        }
    }

    /// Re-reads the targets: new or changed ones are due now, vanished ones leave the
    /// board. On a source that hangs, keeps the old list.
    async fn refresh(&self, schedule: &mut HashMap<String, Scheduled>) {
        let wait = self.settings.timeout.max(Duration::from_secs(30));
        let targets = match tokio::time::timeout(wait, self.source.targets()).await {
            Ok(t) => t,
            Err(_) => {
                tracing::warn!("health prober: the site list did not arrive within {wait:?}; keeping the old one");
                return;
            }
        };
        let now = Instant::now();
        let mut seen = HashSet::with_capacity(targets.len());
        for target in targets {
            let fingerprint = self.fingerprint(&target);
            let id = target.site_id.clone();
            seen.insert(id.clone());
            match schedule.get_mut(&id) {
                Some(s) if s.fingerprint == fingerprint => {}
                Some(s) => {
                    s.target = Arc::new(target);
                    s.fingerprint = fingerprint;
                    s.down = 0;
                    if s.in_flight {
                        s.again = true;
                    } else {
                        s.due = now;
                    }
                }
                None => {
                    schedule.insert(
                        id,
                        Scheduled {
                            target: Arc::new(target),
                            fingerprint,
                            due: now,
                            in_flight: false,
                            again: false,
                            down: 0,
                        },
                    );
                }
            }
        }
        schedule.retain(|id, _| {
            let keep = seen.contains(id);
            if !keep {
                self.board.remove(id);
            }
            keep
        });
    }

    fn finish(&self, schedule: &mut HashMap<String, Scheduled>, done: Done) {
        // A site removed while its check ran stays off the board.
        let Some(s) = schedule.get_mut(&done.site) else {
            return;
        };
        s.in_flight = false;
        if s.fingerprint != done.fingerprint {
            // The target changed while the check ran: the result is about the old one.
            s.due = Instant::now();
            s.again = false;
            return;
        }
        let previous = self.board.state(&done.site);
        let report = self.board.record(&done.site, done.report);
        let state = report.state;
        if state != previous {
            if state.is_failure() {
                tracing::warn!(site = %done.site, state = state.as_str(), previous = previous.as_str(), message = %report.message, "site health changed");
            } else {
                tracing::info!(site = %done.site, state = state.as_str(), previous = previous.as_str(), "site health changed");
            }
        }
        if let Some(hook) = &self.on_report {
            hook(&done.site, &report);
        }
        let delay = if state.is_down() {
            s.down = s.down.saturating_add(1);
            self.settings.backoff(s.down)
        } else {
            s.down = 0;
            self.settings.interval
        };
        s.due = if std::mem::take(&mut s.again) {
            Instant::now()
        } else {
            Instant::now() + self.settings.jittered(delay)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::mimic::*;
    use crate::health::HealthState;
    use http::header::AUTHORIZATION;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let s = ProberSettings::default();
        assert_eq!(s.max_backoff, Duration::from_secs(2400));
        let secs: Vec<f64> = (1..=8).map(|n| s.backoff(n).as_secs_f64()).collect();
        assert_eq!(
            secs,
            [37.5, 75.0, 150.0, 300.0, 600.0, 1200.0, 2400.0, 2400.0]
        );
        assert_eq!(s.backoff(u32::MAX), Duration::from_secs(2400));
        let short = ProberSettings::with_interval(Duration::from_secs(8));
        assert_eq!(
            short.backoff(1),
            Duration::from_secs(5),
            "at least min_backoff"
        );
        for _ in 0..100 {
            let d = s.jittered(Duration::from_secs(100));
            assert!(
                d >= Duration::from_secs(90) && d <= Duration::from_secs(110),
                "{d:?}"
            );
        }
        let wild = ProberSettings {
            jitter: f64::NAN,
            ..ProberSettings::default()
        };
        assert_eq!(
            wild.jittered(Duration::from_secs(1)),
            Duration::from_secs(1)
        );
    }

    struct Targets(Mutex<Vec<ProbeTarget>>);

    #[async_trait]
    impl TargetSource for Targets {
        async fn targets(&self) -> Vec<ProbeTarget> {
            self.0.lock().unwrap().clone()
        }
    }

    fn fast(interval: Duration, concurrency: usize) -> ProberSettings {
        ProberSettings {
            interval,
            jitter: 0.0,
            concurrency,
            timeout: Duration::from_secs(5),
            max_backoff: Duration::from_millis(800),
            min_backoff: Duration::from_millis(100),
        }
    }

    /// Polls `cond` until it holds; panics after 15 s.
    async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while !cond() {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn the_prober_fills_the_board_and_backs_off_a_failing_site() {
        let (good_base, good_counts) = serve_counted(Mimic::new()).await;
        let (bad_base, bad_counts) = serve_counted(Mimic::new()).await;
        let mut failing = target("bad", &bad_base);
        failing.credential = Some((AUTHORIZATION, basic(USER, "wrong-password")));
        let source = Arc::new(Targets(Mutex::new(vec![
            target("good", &good_base),
            failing,
        ])));
        let board = Arc::new(HealthBoard::new());
        let hook_calls = Arc::new(AtomicUsize::new(0));
        let hook: ReportHook = {
            let calls = Arc::clone(&hook_calls);
            Arc::new(move |_site: &str, r: &HealthReport| {
                assert_no_secret(r);
                calls.fetch_add(1, Ordering::SeqCst);
            })
        };
        let settings = fast(Duration::from_millis(100), 4);
        let handle = tokio::spawn(run_prober(
            source,
            Arc::clone(&board),
            test_client(),
            settings.clone(),
            Some(hook),
        ));

        eventually("4 failures in a row", || {
            board
                .get("bad")
                .is_some_and(|r| r.consecutive_failures >= 4)
        })
        .await;
        handle.abort();
        let bad_report = board.get("bad").unwrap();
        assert_eq!(bad_report.state, HealthState::AuthFailed);
        assert_eq!(board.state("good"), HealthState::Healthy);
        assert_eq!(
            board.get("good").unwrap().wordpress_user.as_deref(),
            Some("admin")
        );

        // Between checks of the failing site: at least 100, 200, 400 ms (never early).
        let times = bad_counts.me_times.lock().unwrap().clone();
        assert!(times.len() >= 4, "{}", times.len());
        for (i, pair) in times.windows(2).take(3).enumerate() {
            let gap = pair[1] - pair[0];
            let floor = settings.backoff(u32::try_from(i).unwrap() + 1);
            assert!(
                gap + Duration::from_millis(2) >= floor,
                "gap {i}: {gap:?} < {floor:?}"
            );
        }
        // Meanwhile the healthy site was checked every 100 ms: more often.
        let good_checks = good_counts.me.load(Ordering::SeqCst);
        assert!(
            good_checks > times.len(),
            "good {good_checks}, bad {}",
            times.len()
        );
        assert!(hook_calls.load(Ordering::SeqCst) >= good_checks + 4);
    }

    #[tokio::test]
    async fn the_prober_bounds_concurrency() {
        let mut m = Mimic::new();
        m.delay = Duration::from_millis(150);
        let (base, counters) = serve_counted(m).await;
        let targets = (0..10).map(|i| target(&format!("s{i}"), &base)).collect();
        let board = Arc::new(HealthBoard::new());
        let handle = tokio::spawn(run_prober(
            Arc::new(Targets(Mutex::new(targets))),
            Arc::clone(&board),
            test_client(),
            fast(Duration::from_secs(3600), 2),
            None,
        ));
        eventually("10 reports", || board.snapshot().len() == 10).await;
        handle.abort();
        assert!(board
            .snapshot()
            .iter()
            .all(|(_, r)| r.state == HealthState::Healthy));
        assert_eq!(counters.max_in_flight.load(Ordering::SeqCst), 2);
        assert_eq!(counters.index.load(Ordering::SeqCst), 10);
    }

    #[tokio::test]
    async fn the_prober_follows_target_changes_and_rechecks_on_request() {
        let (base, counters) = serve_counted(Mimic::new()).await;
        let source = Arc::new(Targets(Mutex::new(vec![
            target("a", &base),
            target("b", &base),
        ])));
        let board = Arc::new(HealthBoard::new());
        let handle = tokio::spawn(run_prober(
            Arc::clone(&source) as Arc<dyn TargetSource>,
            Arc::clone(&board),
            test_client(),
            fast(Duration::from_secs(3600), 4),
            None,
        ));
        eventually("both checked", || board.snapshot().len() == 2).await;
        assert_eq!(counters.index.load(Ordering::SeqCst), 2);

        // On request: checked again at once, despite the hour-long interval.
        board.request_recheck("a");
        eventually("a rechecked", || counters.index.load(Ordering::SeqCst) == 3).await;

        // b goes away, a's credential changes: b leaves the board, a is checked anew.
        {
            let mut targets = source.0.lock().unwrap();
            targets.retain(|t| t.site_id == "a");
            targets[0].credential = Some((AUTHORIZATION, basic(USER, "wrong-password")));
        }
        board.request_recheck("nothing-in-particular");
        eventually("a refused", || board.state("a") == HealthState::AuthFailed).await;
        assert_eq!(board.get("b"), None);
        assert_eq!(board.get("a").unwrap().consecutive_failures, 1);
        handle.abort();
    }
}
