//! API-key upkeep in the background of a running gateway: writing when keys were last
//! used (every `keys.last_used_flush`, and once more when the gateway stops), and
//! purging keys revoked or expired longer than `keys.retention` ago (every
//! `keys.purge_interval`, and once at start).

use super::Fleet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// How long the last flush at shutdown may take (Pingora's grace period is 1 s).
const FINAL_FLUSH_LIMIT: Duration = Duration::from_millis(900);

#[derive(Debug, Clone, Copy)]
pub struct UpkeepSettings {
    pub flush_every: Duration,
    pub purge_every: Duration,
}

/// Runs until `stop` completes, then flushes once more. `retention` is read at each
/// purge (it follows reloads).
pub async fn run(
    fleet: Arc<Fleet>,
    settings: UpkeepSettings,
    retention: impl Fn() -> Duration + Send,
    stop: impl Future<Output = ()> + Send,
) {
    let mut flush = tokio::time::interval(settings.flush_every);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    flush.tick().await; // the first tick is now: nothing was used yet
    let mut purge = tokio::time::interval(settings.purge_every);
    purge.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = flush.tick() => flush_key_use(&fleet).await,
            _ = purge.tick() => purge_keys(&fleet, retention()).await,
        }
    }
    if tokio::time::timeout(FINAL_FLUSH_LIMIT, flush_key_use(&fleet))
        .await
        .is_err()
    {
        tracing::warn!(
            "shutting down: the store did not take the keys' last use in time; \
             up to a minute of last_used_at is lost"
        );
    }
}

async fn flush_key_use(fleet: &Fleet) {
    match fleet.flush_key_use().await {
        Ok(0) => {}
        Ok(n) => tracing::debug!(keys = n, "recorded when API keys were last used"),
        Err(e) => {
            fleet
                .metrics()
                .store_errors
                .with_label_values(&["record_key_use"])
                .inc();
            tracing::warn!(error = %e, "cannot record when API keys were last used; retrying at the next flush");
        }
    }
}

async fn purge_keys(fleet: &Fleet, retention: Duration) {
    match fleet.purge_keys(retention).await {
        Ok(ids) if ids.is_empty() => {}
        Ok(ids) => tracing::info!(
            count = ids.len(),
            // Each key has its own audit entry; the line names the first few.
            keys = %ids.iter().take(20).map(String::as_str).collect::<Vec<_>>().join(","),
            retention = %humantime::format_duration(retention),
            "purged API keys revoked or expired longer than keys.retention ago"
        ),
        Err(e) => {
            fleet
                .metrics()
                .store_errors
                .with_label_values(&["purge_api_keys"])
                .inc();
            tracing::warn!(error = %e, "cannot purge old API keys; retrying at the next purge");
        }
    }
}
