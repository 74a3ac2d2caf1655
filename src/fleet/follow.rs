//! Keeping this process's caches in step with the store when other processes write to
//! it (other replicas on PostgreSQL, the CLI on either backend).
//!
//! Two paths, one outcome: pushed notifications (PostgreSQL LISTEN/NOTIFY) invalidate
//! at once; a poll of the change log every `store.poll_interval` catches whatever a
//! notification missed (listener down, SQLite). A gap in the log (pruned past the last
//! change seen) forgets every cached entry. The fleet's allowed browser origins
//! (`origins`) are read again once per batch of site changes (and at first contact and
//! after a gap). The same loop watches whether the store answers (`wpgate_store_up`) and
//! keeps `wpgate_keyring_sealed_records` current.

use super::Fleet;
use crate::store::{Change, ChangeEvent, ChangeKind};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Changes read per change-log query.
const BATCH: u32 = 1000;
/// Change-log rows older than this are pruned.
const KEEP_CHANGES: Duration = Duration::from_secs(24 * 3600);
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
const KEYRING_COUNTS_EVERY: Duration = Duration::from_secs(60);

/// Called when an admin token changed elsewhere (its id), or when any may have (`None`,
/// after a gap in the change log): what was verified of it must be forgotten.
pub type AdminTokensChanged = Arc<dyn Fn(Option<&str>) + Send + Sync>;

/// Follows the store's changes until the future is dropped (at shutdown).
pub async fn run(
    fleet: Arc<Fleet>,
    poll: Duration,
    admin_tokens_changed: Option<AdminTokensChanged>,
) {
    Follower {
        fleet,
        admin_tokens_changed,
        last: None,
        origins_stale: true,
    }
    .run(poll)
    .await
}

struct Follower {
    fleet: Arc<Fleet>,
    admin_tokens_changed: Option<AdminTokensChanged>,
    /// The newest change applied; `None` until the store first answered.
    last: Option<i64>,
    /// A site changed (or the log has a gap) since the fleet's origins were last read.
    origins_stale: bool,
}

impl Follower {
    async fn run(mut self, poll: Duration) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut pushed = self.fleet.store().spawn_listener(tx);
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pruned_at: Option<Instant> = None;
        let mut counted_at: Option<Instant> = None;
        loop {
            tokio::select! {
                event = rx.recv(), if pushed => {
                    pushed = self.event(event).await;
                    // A burst of notifications (one write's, or a rewrap batch's) is
                    // taken whole before the origins are read again.
                    while pushed {
                        match rx.try_recv() {
                            Ok(event) => pushed = self.event(Some(event)).await,
                            Err(mpsc::error::TryRecvError::Empty) => break,
                            Err(mpsc::error::TryRecvError::Disconnected) => pushed = false,
                        }
                    }
                    self.sync_origins().await;
                }
                _ = tick.tick() => {
                    let up = self.poll().await;
                    if up {
                        self.sync_origins().await;
                    }
                    if up && pruned_at.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
                        pruned_at = Some(Instant::now());
                        self.prune().await;
                    }
                    if up && counted_at.is_none_or(|t| t.elapsed() >= KEYRING_COUNTS_EVERY) {
                        counted_at = Some(Instant::now());
                        refresh_keyring_counts(&self.fleet).await;
                    }
                }
            }
        }
    }

    /// One event of the listener; false when it has stopped.
    async fn event(&mut self, event: Option<ChangeEvent>) -> bool {
        match event {
            Some(ChangeEvent::Changed(change)) => self.pushed(change).await,
            Some(ChangeEvent::Connected) => {
                self.set_listener(1);
                self.poll().await;
            }
            Some(ChangeEvent::Disconnected) => self.set_listener(0),
            None => return false,
        }
        true
    }

    /// Reads the fleet's allowed origins again if a site changed since they were read
    /// (one query); on failure they are read at the next chance.
    async fn sync_origins(&mut self) {
        if !self.origins_stale {
            return;
        }
        match self.fleet.reload_origins().await {
            Ok(()) => self.origins_stale = false,
            Err(e) => tracing::warn!(error = %e, "cannot read the sites' CORS origins"),
        }
    }

    /// A notification: applied at once; it also advances the position when it is the
    /// next change in order, so the poll does not apply it again.
    async fn pushed(&mut self, change: Change) {
        self.apply(&change, "notify").await;
        if self.last == Some(change.seq - 1) {
            self.last = Some(change.seq);
        }
    }

    /// Reads the change log from the last position; false when the store failed.
    async fn poll(&mut self) -> bool {
        let fleet = Arc::clone(&self.fleet);
        let store = fleet.store();
        let Some(mut last) = self.last else {
            // First contact: start from the newest change (the caches are empty or were
            // filled after it).
            return match store.latest_change().await {
                Ok(seq) => {
                    self.last = Some(seq);
                    self.store_up(true);
                    true
                }
                Err(e) => self.failed("latest_change", &e),
            };
        };
        loop {
            let batch = match store.changes_since(last, BATCH).await {
                Ok(batch) => batch,
                Err(e) => return self.failed("changes_since", &e),
            };
            if !batch.complete {
                tracing::warn!(
                    after = last,
                    "store change log has a gap (pruned): forgetting every cached site and key"
                );
                self.fleet.forget_all();
                self.origins_stale = true;
                if let Some(hook) = &self.admin_tokens_changed {
                    hook(None);
                }
            }
            let n = batch.changes.len();
            for change in &batch.changes {
                self.apply(change, "poll").await;
                last = change.seq;
            }
            self.last = Some(last);
            if n < BATCH as usize {
                self.store_up(true);
                return true;
            }
        }
    }

    async fn apply(&mut self, change: &Change, source: &str) {
        self.fleet.apply_change(change).await;
        if change.kind == ChangeKind::Site {
            self.origins_stale = true;
        }
        if change.kind == ChangeKind::AdminToken {
            if let Some(hook) = &self.admin_tokens_changed {
                // A token created elsewhere changes nothing verified here; one revoked
                // (or gone, or unreadable now) must not be accepted from memory.
                let still_valid = matches!(
                    self.fleet.store().get_admin_token(&change.id).await,
                    Ok(Some(t)) if t.revoked_at.is_none()
                );
                if !still_valid {
                    hook(Some(&change.id));
                }
            }
        }
        self.fleet
            .metrics()
            .store_changes_applied
            .with_label_values(&[source])
            .inc();
    }

    async fn prune(&self) {
        let before = crate::time::now_unix() - KEEP_CHANGES.as_secs() as i64;
        if let Err(e) = self.fleet.store().prune_changes(before).await {
            self.failed("prune_changes", &e);
        }
    }

    fn failed(&self, op: &str, e: &crate::store::StoreError) -> bool {
        if self.fleet.metrics().store_up.get() != 0 {
            tracing::warn!(error = %e, "store unreachable: serving cached sites and keys");
        }
        self.store_up(false);
        self.fleet
            .metrics()
            .store_errors
            .with_label_values(&[op])
            .inc();
        false
    }

    fn store_up(&self, up: bool) {
        let m = self.fleet.metrics();
        let was = m.store_up.get();
        m.store_up.set(i64::from(up));
        if up && was == 0 {
            tracing::info!("store reachable");
        }
    }

    fn set_listener(&self, v: i64) {
        self.fleet.metrics().store_listener_connected.set(v);
    }
}

/// Sets `wpgate_keyring_sealed_records{key_id}` from the store (every key of the
/// keyring is listed, at 0 when it seals nothing).
pub async fn refresh_keyring_counts(fleet: &Fleet) {
    let m = fleet.metrics();
    match fleet.store().sealed_key_counts().await {
        Ok(counts) => {
            m.keyring_sealed_records.reset();
            for id in fleet.keyring().key_ids() {
                m.keyring_sealed_records.with_label_values(&[id]).set(0);
            }
            for (id, n) in counts {
                m.keyring_sealed_records.with_label_values(&[&id]).set(n);
            }
        }
        Err(_) => m
            .store_errors
            .with_label_values(&["sealed_key_counts"])
            .inc(),
    }
}
