//! The background prober: this process's share of the fleet's health checks, and its
//! board kept in step with everyone's results.
//!
//! The schedule lives in the store (`site_health`, see [`crate::store::HealthStore`]),
//! so every process on a store shares it: each site is due at one time, whoever is
//! running. A prober claims the due sites (one statement: a lease on each, so no other
//! process checks them meanwhile), checks them with at most `concurrency` at once, and
//! writes each result with the site's next due time: `interval`, jittered, after it was
//! due, or while it is down its backoff after the check (see [`next_check`]). So with
//! any number of replicas each site is checked once per interval in all. Every prober
//! also reads every result written (its own and the others') into its board and hands
//! the changes to the report hook (metrics): all replicas show the same state and
//! message for a site.
//!
//! A replica that dies mid-check holds its leases until they run out
//! ([`ProberSettings::lease`]); the sites are then claimed by another. A site changed in
//! the store is due at once (the store makes it so), and a check of it still running is
//! not written.

use async_trait::async_trait;
use rand::Rng;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::ledger::{Ledger, StoredReport};
use super::{probe, HealthBoard, HealthReport, ProbeTarget};
use crate::store::{HealthClaim, NextCheck, StoreError};

/// Where the prober gets what it checks.
#[async_trait]
pub trait TargetSource: Send + Sync + 'static {
    /// The site as it is now (read from the store, not a cache): disabled sites too
    /// (they are reported `Disabled`). `None` when it is gone or cannot be read now: the
    /// check is skipped, and the site is claimed again when the lease runs out.
    async fn target(&self, site: &str) -> Option<ProbeTarget>;
}

/// Room for the store calls around a check in a lease (see [`ProberSettings::lease`]).
const LEASE_MARGIN: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct ProberSettings {
    /// Between checks of a site that is up (healthy or degraded). Default 5 min.
    pub interval: Duration,
    /// Each delay is multiplied by a random factor in `1 ± jitter` (clamped to 0..=0.9) so
    /// checks of many sites spread out. Default 0.1.
    pub jitter: f64,
    /// Checks in flight at once in this process. Default 16.
    pub concurrency: usize,
    /// Per request of a check. Default 10 s.
    pub timeout: Duration,
    /// The longest delay between checks of a site that is down. Default `interval * 8`.
    pub max_backoff: Duration,
    /// The shortest delay after a failed check. Default 5 s.
    pub min_backoff: Duration,
    /// How often the board reads the results written since its last read (and the
    /// longest wait between claims). Default `interval / 8`, within 100 ms..=5 s.
    pub sync_every: Duration,
    /// How often the board reads every result (dropping deleted sites). Default
    /// `interval`, within `sync_every`..=30 s.
    pub full_sync_every: Duration,
}

impl Default for ProberSettings {
    fn default() -> Self {
        Self::with_interval(Duration::from_secs(300))
    }
}

impl ProberSettings {
    /// The defaults for a given interval.
    pub fn with_interval(interval: Duration) -> Self {
        let sync_every = (interval / 8).clamp(Duration::from_millis(100), Duration::from_secs(5));
        ProberSettings {
            interval,
            jitter: 0.1,
            concurrency: 16,
            timeout: Duration::from_secs(10),
            max_backoff: interval.saturating_mul(8),
            min_backoff: Duration::from_secs(5),
            sync_every,
            full_sync_every: interval.clamp(sync_every, Duration::from_secs(30).max(sync_every)),
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

    /// How long a claim keeps other processes off a site: the longest a check takes
    /// (three requests, each within `timeout`) and 5 s for the store calls around it.
    /// A process that dies mid-check leaves its sites to be claimed after this.
    pub fn lease(&self) -> Duration {
        self.timeout.saturating_mul(3).saturating_add(LEASE_MARGIN)
    }

    /// The delay after a check that found the site in `state` with `failures` failed
    /// checks in a row (this one included), jittered.
    fn next_delay(&self, report: &HealthReport, failures: u32) -> Duration {
        let delay = if report.state.is_down() {
            self.backoff(failures.max(1))
        } else {
            self.interval
        };
        self.jittered(delay)
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

/// Where a report handed to the [`ReportHook`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportOrigin {
    /// This process ran the check.
    Checked,
    /// Another process ran it; read from the store.
    Shared,
    /// The site is no longer in the store: this was its last report, and the board no
    /// longer holds it.
    Gone,
}

/// Called with each report that changes the board, and with each check this process
/// ran (e.g. to update metrics).
pub type ReportHook = Arc<dyn Fn(&str, &HealthReport, ReportOrigin) + Send + Sync>;

/// Runs until the future is dropped (it never returns on its own).
///
/// Each loop: ask the store for rechecks requested on this process's board
/// ([`HealthBoard::request_recheck`]), read the results written since the last read
/// (every `sync_every`; all of them every `full_sync_every`), and, while fewer than
/// `concurrency` checks run, claim due sites (leases of [`ProberSettings::lease`]) and
/// start their checks. The next claim is tried when the store says the next site is
/// due (but not within `sync_every / 5` of the last), when a check ends while more are
/// due, or after `sync_every` at the latest. Store errors are logged and retried at
/// that pace; meanwhile the board keeps its last reports.
pub async fn run_prober(
    ledger: Arc<Ledger>,
    source: Arc<dyn TargetSource>,
    board: Arc<HealthBoard>,
    client: reqwest::Client,
    settings: ProberSettings,
    on_report: Option<ReportHook>,
) {
    let prober = Prober {
        ledger,
        source,
        board,
        client,
        settings,
        on_report,
    };
    prober.run().await
}

struct Prober {
    ledger: Arc<Ledger>,
    source: Arc<dyn TargetSource>,
    board: Arc<HealthBoard>,
    client: reqwest::Client,
    settings: ProberSettings,
    on_report: Option<ReportHook>,
}

/// How one claimed check ended.
enum Done {
    Written(StoredReport),
    /// The lease was lost (the site changed, was deleted, or the lease ran out): the
    /// result was not written.
    LeaseLost(String),
    /// The site could not be read: nothing was checked.
    Skipped(String),
    Failed(String, StoreError),
}

/// What the loop remembers between turns.
struct Turn {
    /// The highest `seq` read.
    seen: i64,
    next_sync: Instant,
    next_full: Instant,
    next_claim: Instant,
    /// A store error was logged and not yet followed by a success.
    failing: bool,
}

impl Prober {
    async fn run(self) {
        let concurrency = self.settings.concurrency.max(1);
        let sync_every = self.settings.sync_every.max(Duration::from_millis(10));
        let lease_ms = millis(self.settings.lease());
        // The shortest wait between claims: sites due within it are claimed together
        // (a check starts at most this late), so replicas do not query the store for
        // every single due site.
        let claim_gap = (sync_every / 5).max(Duration::from_millis(2));
        let mut tasks: JoinSet<Done> = JoinSet::new();
        let mut running: HashMap<tokio::task::Id, String> = HashMap::new();
        let now = Instant::now();
        let mut turn = Turn {
            seen: 0,
            next_sync: now,
            next_full: now,
            next_claim: now,
            failing: false,
        };
        loop {
            let rechecks = self.board.take_rechecks();
            for site in &rechecks {
                if let Err(e) = self.ledger.due_now(site).await {
                    self.store_failed(&mut turn, "cannot request a recheck", &e);
                }
            }
            if !rechecks.is_empty() {
                turn.next_claim = Instant::now();
            }

            let now = Instant::now();
            if now >= turn.next_sync {
                let full = now >= turn.next_full;
                self.sync(&mut turn, full).await;
                turn.next_sync = now + sync_every;
                if full {
                    turn.next_full = now + self.settings.full_sync_every.max(sync_every);
                }
            }

            let room = concurrency.saturating_sub(tasks.len());
            if room > 0 && Instant::now() >= turn.next_claim {
                let limit = u32::try_from(room).unwrap_or(u32::MAX);
                turn.next_claim = match self.ledger.claim(limit, lease_ms).await {
                    Ok(claims) => {
                        turn.failing = false;
                        let taken = claims.claimed.len();
                        for claim in claims.claimed {
                            let site = claim.site_id.clone();
                            let handle = tasks.spawn(self.check(claim));
                            running.insert(handle.id(), site);
                        }
                        let now = Instant::now();
                        match claims.next_due_in_ms {
                            // More are due than there was room for: claim again as soon
                            // as a check ends.
                            Some(ms) if ms <= 0 && taken == room => now,
                            // Due, but others hold them while their claims commit.
                            Some(ms) if ms <= 0 => now + claim_gap,
                            Some(ms) => {
                                let wait = Duration::from_millis(u64::try_from(ms).unwrap_or(0));
                                now + wait.clamp(claim_gap, sync_every)
                            }
                            None => now + sync_every,
                        }
                    }
                    Err(e) => {
                        self.store_failed(&mut turn, "cannot claim sites to check", &e);
                        Instant::now() + sync_every
                    }
                };
            }

            let wake = if tasks.len() < concurrency {
                turn.next_sync.min(turn.next_claim)
            } else {
                turn.next_sync
            };
            tokio::select! {
                done = tasks.join_next_with_id(), if !tasks.is_empty() => match done {
                    Some(Ok((id, done))) => {
                        running.remove(&id);
                        self.finish(&mut turn, done);
                    }
                    Some(Err(e)) => {
                        // A check panicked: its lease runs out and the site is claimed again.
                        if let Some(site) = running.remove(&e.id()) {
                            tracing::error!(site = %site, error = %e, "health check task failed");
                        }
                    }
                    None => {}
                },
                () = tokio::time::sleep_until(wake) => {}
                () = self.board.recheck_requested.notified() => {}
            }
        }
    }

    /// One claimed check: the site as stored now, the requests, the result written.
    fn check(&self, claim: HealthClaim) -> impl std::future::Future<Output = Done> + Send {
        let (ledger, source) = (Arc::clone(&self.ledger), Arc::clone(&self.source));
        let (client, settings) = (self.client.clone(), self.settings.clone());
        async move {
            let site = claim.site_id.clone();
            let Some(target) = source.target(&site).await else {
                return Done::Skipped(site);
            };
            let report = probe(&client, &target, settings.timeout).await;
            let failures = if report.state.is_failure() {
                u32::try_from(claim.consecutive_failures)
                    .unwrap_or(u32::MAX)
                    .saturating_add(1)
            } else {
                0
            };
            let delay = millis(settings.next_delay(&report, failures));
            let next = next_check(&claim, delay, !report.state.is_down());
            match ledger.finish(&claim, &report, next).await {
                Ok(Some(stored)) => Done::Written(stored),
                Ok(None) => Done::LeaseLost(site),
                Err(e) => Done::Failed(site, e),
            }
        }
    }

    fn finish(&self, turn: &mut Turn, done: Done) {
        match done {
            Done::Written(stored) => {
                let previous = self.board.state(&stored.site);
                self.board.apply(&stored);
                let (site, report) = (&stored.site, &stored.report);
                let state = report.state;
                if state != previous {
                    if state.is_failure() {
                        tracing::warn!(site = %site, state = state.as_str(), previous = previous.as_str(), message = %report.message, "site health changed");
                    } else {
                        tracing::info!(site = %site, state = state.as_str(), previous = previous.as_str(), "site health changed");
                    }
                }
                if let Some(hook) = &self.on_report {
                    hook(site, report, ReportOrigin::Checked);
                }
            }
            Done::LeaseLost(site) => {
                tracing::debug!(site = %site, "health: the site changed or its lease ran out during the check; result not written");
            }
            Done::Skipped(site) => {
                tracing::debug!(site = %site, "health: site not checked (gone, or cannot be read)");
            }
            Done::Failed(site, e) => {
                tracing::debug!(site = %site, error = %e, "health: result not written");
                self.store_failed(turn, "cannot write a check's result", &e);
            }
        }
    }

    /// Brings the board up to date with the store: the results written since the last
    /// read, or (`full`) every result, dropping sites no longer in the store.
    async fn sync(&self, turn: &mut Turn, full: bool) {
        let read = if full {
            self.ledger.all().await
        } else {
            self.ledger.since(turn.seen).await
        };
        let stored = match read {
            Ok(s) => s,
            Err(e) => {
                self.store_failed(turn, "cannot read the health results", &e);
                return;
            }
        };
        turn.failing = false;
        for s in &stored {
            turn.seen = turn.seen.max(s.seq);
            // This process's own results reach the board as they are written.
            if s.report.checked_by.as_deref() == Some(self.ledger.replica()) {
                continue;
            }
            if self.board.apply(s) {
                if let Some(hook) = &self.on_report {
                    hook(&s.site, &s.report, ReportOrigin::Shared);
                }
            }
        }
        if full {
            let present: HashSet<&str> = stored.iter().map(|s| s.site.as_str()).collect();
            for (gone, last) in self.board.retain(|site| present.contains(site)) {
                tracing::debug!(site = %gone, "health: site no longer in the store");
                if let Some(hook) = &self.on_report {
                    hook(&gone, &last, ReportOrigin::Gone);
                }
            }
        }
    }

    /// Logs a store error once until the store answers again.
    fn store_failed(&self, turn: &mut Turn, what: &str, e: &StoreError) {
        if !std::mem::replace(&mut turn.failing, true) {
            tracing::warn!(error = %e, "health prober: {what}; the board keeps its last reports");
        }
    }
}

/// When a site is checked next after the check `claim` started, `delay` (ms) the pause
/// before the next. With `paced` (a site that is up): one delay after it was due, so a
/// site keeps its pace when claims come a little late (a busy replica, a loaded
/// machine), or one delay after the claim when it came later than half the delay (a new
/// or changed site, a store outage, a lease that ran out); and at least half a delay
/// after this check ended. Else (a backoff): one delay after this check ended.
fn next_check(claim: &HealthClaim, delay: i64, paced: bool) -> NextCheck {
    if !paced {
        return NextCheck {
            at: 0,
            min_wait_ms: delay,
        };
    }
    let late = claim.claimed_at.saturating_sub(claim.due_at);
    let from = if late < delay / 2 {
        claim.due_at
    } else {
        claim.claimed_at
    };
    NextCheck {
        at: from.saturating_add(delay),
        min_wait_ms: delay / 2,
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::mimic::*;
    use crate::health::HealthState;
    use crate::store::Store;
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

    #[test]
    fn checks_keep_their_pace() {
        let claim = |due_at, claimed_at| HealthClaim {
            site_id: "a".into(),
            due_at,
            claimed_at,
            consecutive_failures: 0,
        };
        let next = |at, min_wait_ms| NextCheck { at, min_wait_ms };
        // Claimed 300 ms late: due one interval after it was due, not after the claim.
        assert_eq!(
            next_check(&claim(10_000, 10_300), 2_000, true),
            next(12_000, 1_000)
        );
        // New (due at 0), or claimed very late: one interval after the claim.
        assert_eq!(
            next_check(&claim(0, 10_300), 2_000, true),
            next(12_300, 1_000)
        );
        assert_eq!(
            next_check(&claim(10_000, 11_500), 2_000, true),
            next(13_500, 1_000)
        );
        // A backoff (a site that is down) counts from the end of the check.
        assert_eq!(
            next_check(&claim(10_000, 10_300), 5_000, false),
            next(0, 5_000)
        );
    }

    #[test]
    fn leases_and_reads_follow_the_interval() {
        let s = ProberSettings::default();
        assert_eq!(
            s.lease(),
            Duration::from_secs(35),
            "3 requests of 10 s + 5 s"
        );
        assert_eq!(s.sync_every, Duration::from_secs(5));
        assert_eq!(s.full_sync_every, Duration::from_secs(30));
        let fast = ProberSettings::with_interval(Duration::from_secs(2));
        assert_eq!(fast.sync_every, Duration::from_millis(250));
        assert_eq!(fast.full_sync_every, Duration::from_secs(2));
        let tiny = ProberSettings::with_interval(Duration::from_millis(200));
        assert_eq!(tiny.sync_every, Duration::from_millis(100));
        assert_eq!(tiny.full_sync_every, Duration::from_millis(200));
    }

    /// Targets by site id, as a test sets them.
    struct Targets(Mutex<HashMap<String, ProbeTarget>>);

    impl Targets {
        fn of(targets: Vec<ProbeTarget>) -> Arc<Targets> {
            let map = targets.into_iter().map(|t| (t.site_id.clone(), t));
            Arc::new(Targets(Mutex::new(map.collect())))
        }
    }

    #[async_trait]
    impl TargetSource for Targets {
        async fn target(&self, site: &str) -> Option<ProbeTarget> {
            self.0.lock().unwrap().get(site).cloned()
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
            sync_every: Duration::from_millis(50),
            full_sync_every: Duration::from_millis(200),
        }
    }

    /// A prober of replica `replica` on `store`; returns its board and task.
    fn start(
        store: &Arc<dyn Store>,
        replica: &str,
        source: Arc<dyn TargetSource>,
        settings: ProberSettings,
        hook: Option<ReportHook>,
    ) -> (Arc<HealthBoard>, tokio::task::JoinHandle<()>) {
        let board = Arc::new(HealthBoard::new());
        let handle = tokio::spawn(run_prober(
            Arc::new(Ledger::new(Arc::clone(store), replica)),
            source,
            Arc::clone(&board),
            test_client(),
            settings,
            hook,
        ));
        (board, handle)
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
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_sites(dir.path(), &["good", "bad"]).await;
        let (good_base, good_counts) = serve_counted(Mimic::new()).await;
        let (bad_base, bad_counts) = serve_counted(Mimic::new()).await;
        let mut failing = target("bad", &bad_base);
        failing.credential = Some((AUTHORIZATION, basic(USER, "wrong-password")));
        let source = Targets::of(vec![target("good", &good_base), failing]);
        let hook_calls = Arc::new(AtomicUsize::new(0));
        let hook: ReportHook = {
            let calls = Arc::clone(&hook_calls);
            Arc::new(move |_site: &str, r: &HealthReport, origin| {
                assert_no_secret(r);
                assert_eq!(origin, ReportOrigin::Checked, "one process: all its own");
                calls.fetch_add(1, Ordering::SeqCst);
            })
        };
        let settings = fast(Duration::from_millis(100), 4);
        let (board, handle) = start(&store, "r1", source, settings.clone(), Some(hook));

        eventually("4 failures in a row", || {
            board
                .get("bad")
                .is_some_and(|r| r.consecutive_failures >= 4)
        })
        .await;
        handle.abort();
        let bad_report = board.get("bad").unwrap();
        assert_eq!(bad_report.state, HealthState::AuthFailed);
        assert_eq!(bad_report.checked_by.as_deref(), Some("r1"));
        assert_eq!(board.state("good"), HealthState::Healthy);
        assert_eq!(
            board.get("good").unwrap().wordpress_user.as_deref(),
            Some("admin")
        );
        // The board holds what the store holds.
        let stored = store.get_site_health("bad").await.unwrap().unwrap();
        assert!(stored.consecutive_failures >= 4);
        assert_eq!(stored.message, board.get("bad").unwrap().message);

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
        let ids: Vec<String> = (0..10).map(|i| format!("s{i}")).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_sites(dir.path(), &ids).await;
        let mut m = Mimic::new();
        m.delay = Duration::from_millis(150);
        let (base, counters) = serve_counted(m).await;
        let source = Targets::of(ids.iter().map(|id| target(id, &base)).collect());
        let settings = fast(Duration::from_secs(3600), 2);
        let (board, handle) = start(&store, "r1", source, settings, None);
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
    async fn rechecks_and_changed_sites_are_checked_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_sites(dir.path(), &["a", "b"]).await;
        let (base, counters) = serve_counted(Mimic::new()).await;
        let source = Targets::of(vec![target("a", &base), target("b", &base)]);
        let settings = fast(Duration::from_secs(3600), 4);
        let (board, handle) = start(
            &store,
            "r1",
            Arc::clone(&source) as Arc<dyn TargetSource>,
            settings,
            None,
        );
        eventually("both checked", || board.snapshot().len() == 2).await;
        assert_eq!(counters.index.load(Ordering::SeqCst), 2);

        // On request: checked again at once, despite the hour-long interval.
        board.request_recheck("a");
        eventually("a rechecked", || counters.index.load(Ordering::SeqCst) == 3).await;

        // a changes in the store (its credential, here only in the test's targets): it is
        // checked anew at once. b is deleted: it leaves the board.
        source.0.lock().unwrap().get_mut("a").unwrap().credential =
            Some((AUTHORIZATION, basic(USER, "wrong-password")));
        store
            .update_site(&site_record("a"), &audit("a"))
            .await
            .unwrap();
        store.delete_site("b", &audit("b")).await.unwrap();
        eventually("a refused", || board.state("a") == HealthState::AuthFailed).await;
        eventually("b gone", || board.get("b").is_none()).await;
        assert_eq!(board.get("a").unwrap().consecutive_failures, 1);
        handle.abort();
    }

    /// Two processes on one store (two store handles on one SQLite file): each site is
    /// checked once per interval in all, not once by each, and both boards show the same
    /// results.
    #[tokio::test]
    async fn two_replicas_share_the_checks_and_agree() {
        let ids: Vec<String> = (0..20).map(|i| format!("s{i:02}")).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let dir = tempfile::tempdir().unwrap();
        let one = store_with_sites(dir.path(), &ids).await;
        let two = store_with_sites(dir.path(), &[]).await;
        let mut m = Mimic::new();
        m.delay = Duration::from_millis(20);
        let (base, counters) = serve_counted(m).await;
        let mut targets: Vec<ProbeTarget> = ids.iter().map(|id| target(id, &base)).collect();
        targets[0].credential = Some((AUTHORIZATION, basic(USER, "wrong-password")));
        let source = Targets::of(targets);
        // An hour-long interval: in the test's time, every site is due exactly once.
        let settings = fast(Duration::from_secs(3600), 3);
        let (board_1, h1) = start(
            &one,
            "r1",
            Arc::clone(&source) as Arc<dyn TargetSource>,
            settings.clone(),
            None,
        );
        let (board_2, h2) = start(&two, "r2", source, settings, None);
        eventually("both boards full", || {
            board_1.snapshot().len() == 20 && board_2.snapshot().len() == 20
        })
        .await;
        // Another round of reads changes nothing: each site was checked once in all.
        tokio::time::sleep(Duration::from_millis(300)).await;
        h1.abort();
        h2.abort();
        assert_eq!(counters.index.load(Ordering::SeqCst), 20);
        assert_eq!(counters.me.load(Ordering::SeqCst), 20);
        assert_eq!(board_1.snapshot(), board_2.snapshot());
        assert_eq!(board_1.state("s00"), HealthState::AuthFailed);
        assert_eq!(board_2.state("s01"), HealthState::Healthy);
    }
}
