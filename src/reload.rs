//! Reloading the configuration and keyring while serving.
//!
//! A reload (SIGHUP, a change of the config or keyring file, or `POST /admin/v1/reload`)
//! re-reads every layer, validates it, loads the keyring and checks it still opens every
//! stored record, then swaps the new snapshot in atomically. Requests in flight finish
//! on the snapshot they started with. A bad snapshot is refused as a whole: the old one
//! keeps serving, and the reason is logged once, counted and returned to the caller.
//! Settings that a running process cannot change (listen addresses, the store, thread
//! and cache sizes, ...) are reported as needing a restart; the rest applies.

use crate::config::{Config, Live, LoadOptions};
use crate::crypto::Keyring;
use crate::fleet::Fleet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadReport {
    /// Settings whose new value is now in effect.
    pub applied: Vec<&'static str>,
    /// Settings that changed but only take effect after a restart (or graceful upgrade).
    pub restart_required: Vec<&'static str>,
    pub keyring_primary: String,
    pub keyring_keys: usize,
}

pub struct Reloader {
    options: LoadOptions,
    /// The configuration the process started with: what restart-only settings are.
    started: Arc<Config>,
    live: Live,
    fleet: Arc<Fleet>,
    /// The keyring came from `WPGATE_KEYRING`: it cannot change without a restart.
    keyring_from_env: bool,
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl Reloader {
    pub fn new(
        options: LoadOptions,
        live: Live,
        fleet: Arc<Fleet>,
        keyring_from_env: bool,
    ) -> Self {
        let started = live.load_full();
        Reloader {
            options,
            started,
            live,
            fleet,
            keyring_from_env,
            one_at_a_time: tokio::sync::Mutex::new(()),
        }
    }

    /// The files whose change triggers a reload.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let c = self.live.load();
        let mut files: Vec<PathBuf> = c.source_file.iter().cloned().collect();
        if !self.keyring_from_env {
            files.push(c.keyring_file.clone());
        }
        files
    }

    /// Loads, validates and swaps in a new snapshot; on error the old one stays.
    pub async fn reload(&self, trigger: &str) -> Result<ReloadReport, String> {
        let _one = self.one_at_a_time.lock().await;
        let result = self.try_reload().await;
        let m = crate::metrics::get();
        match &result {
            Ok(report) => {
                if let Some(m) = m {
                    m.config_reloads.with_label_values(&["success"]).inc();
                    m.config_last_reload_success.set(unix_now());
                }
                tracing::info!(
                    trigger,
                    applied = ?report.applied,
                    restart_required = ?report.restart_required,
                    keyring_primary = %report.keyring_primary,
                    "configuration reloaded"
                );
                if !report.restart_required.is_empty() {
                    tracing::warn!(
                        settings = ?report.restart_required,
                        "changed settings take effect only after a restart (or graceful upgrade)"
                    );
                }
            }
            Err(reason) => {
                if let Some(m) = m {
                    m.config_reloads.with_label_values(&["failure"]).inc();
                }
                tracing::error!(trigger, reason = %reason, "reload refused: the previous configuration keeps serving");
            }
        }
        result
    }

    async fn try_reload(&self) -> Result<ReloadReport, String> {
        let options = self.options.clone();
        let new = tokio::task::spawn_blocking(move || Config::load(&options))
            .await
            .map_err(|e| format!("configuration load did not finish: {e}"))?
            .map_err(|e| e.to_string())?;
        let keyring = if self.keyring_from_env {
            None
        } else {
            let path = new.keyring_file.clone();
            let keyring = tokio::task::spawn_blocking(move || Keyring::load_file(&path))
                .await
                .map_err(|e| format!("keyring load did not finish: {e}"))?
                .map_err(|e| e.to_string())?;
            crate::fleet::check_keyring_covers(self.fleet.store(), &keyring)
                .await
                .map_err(|e| e.to_string())?;
            Some(keyring)
        };
        let old = self.live.load_full();
        let (applied, restart_required) = diff(&self.started, &old, &new);
        if let Some(m) = crate::metrics::get() {
            m.set_per_site_labels(new.metrics_per_site_labels);
        }
        if let Some(keyring) = keyring {
            self.fleet.set_keyring(keyring);
        }
        self.live.store(Arc::new(new));
        let keyring = self.fleet.keyring();
        crate::fleet::follow::refresh_keyring_counts(&self.fleet).await;
        Ok(ReloadReport {
            applied,
            restart_required,
            keyring_primary: keyring.primary_id().to_string(),
            keyring_keys: keyring.key_ids().count(),
        })
    }
}

/// A setting's name and how to read it (rendered, for comparison).
type Setting = (&'static str, fn(&Config) -> String);

/// Settings a reload applies, and settings that need a restart, that differ.
fn diff(started: &Config, old: &Config, new: &Config) -> (Vec<&'static str>, Vec<&'static str>) {
    fn s<T: std::fmt::Debug>(v: &T) -> String {
        format!("{v:?}")
    }
    let live: [Setting; 5] = [
        ("proxy.strip_headers", |c| s(&c.proxy.strip_headers)),
        ("proxy.trusted_proxies", |c| s(&c.proxy.trusted_proxies)),
        ("upstream.connect_timeout", |c| {
            s(&c.upstream.connect_timeout)
        }),
        ("upstream.read_timeout", |c| s(&c.upstream.read_timeout)),
        ("metrics.per_site_labels", |c| s(&c.metrics_per_site_labels)),
    ];
    let restart: [Setting; 12] = [
        ("data_dir", |c| s(&c.data_dir)),
        ("listen.proxy", |c| s(&c.listen_proxy)),
        ("listen.admin", |c| s(&c.listen_admin)),
        ("store.url", |c| s(&c.store)),
        ("store.poll_interval", |c| s(&c.store_poll_interval)),
        ("keyring.file", |c| s(&c.keyring_file)),
        ("cache", |c| s(&c.cache)),
        ("upstream.ca_file", |c| s(&c.upstream.ca_file)),
        ("proxy.threads", |c| s(&c.proxy.threads)),
        ("auth", |c| s(&c.auth)),
        ("health", |c| s(&c.health)),
        ("log", |c| s(&c.log)),
    ];
    let applied = live
        .iter()
        .filter(|(_, get)| get(old) != get(new))
        .map(|(name, _)| *name)
        .collect();
    let restart_required = restart
        .iter()
        .filter(|(_, get)| get(started) != get(new))
        .map(|(name, _)| *name)
        .collect();
    (applied, restart_required)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// Reloads on SIGHUP and when a watched file changes (polled every second; a change
/// is acted on once the file has been stable for one more poll, so an editor's
/// several writes make one reload).
pub fn spawn_triggers(reloader: Arc<Reloader>) {
    {
        let reloader = Arc::clone(&reloader);
        tokio::spawn(async move {
            let mut hup = match tokio::signal::unix::signal(
                tokio::signal::unix::SignalKind::hangup(),
            ) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGHUP: reload by file change or the admin API");
                    return;
                }
            };
            while hup.recv().await.is_some() {
                let _ = reloader.reload("sighup").await;
            }
        });
    }
    tokio::spawn(async move {
        let mut seen = fingerprints(&reloader.watched_files());
        let mut pending: Option<Vec<Option<Fingerprint>>> = None;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = fingerprints(&reloader.watched_files());
            if now == seen {
                pending = None;
                continue;
            }
            // Changed: wait until it stops changing (debounce), then reload once.
            if pending.as_ref() != Some(&now) {
                pending = Some(now);
                continue;
            }
            pending = None;
            seen = now;
            let _ = reloader.reload("file_change").await;
        }
    });
}

/// What tells a file changed: modification time, size and a hash of the content.
type Fingerprint = (Option<SystemTime>, u64, u64);

fn fingerprints(files: &[PathBuf]) -> Vec<Option<Fingerprint>> {
    use std::hash::{Hash, Hasher};
    files
        .iter()
        .map(|p| {
            let meta = std::fs::metadata(p).ok()?;
            let bytes = std::fs::read(p).ok()?;
            let mut h = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut h);
            Some((meta.modified().ok(), meta.len(), h.finish()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_splits_live_and_restart_settings() {
        let base = Config::load(&LoadOptions {
            config_file: None,
            data_dir: Some(PathBuf::from("/tmp/wpgate-diff")),
        })
        .unwrap();
        let mut new = base.clone();
        new.upstream.read_timeout = Duration::from_secs(99);
        new.listen_proxy = "127.0.0.1:1".parse().unwrap();
        let (applied, restart) = diff(&base, &base, &new);
        assert_eq!(applied, vec!["upstream.read_timeout"]);
        assert_eq!(restart, vec!["listen.proxy"]);
        // Against the started config: still reported after a second reload.
        let (applied, restart) = diff(&base, &new, &new);
        assert!(applied.is_empty());
        assert_eq!(restart, vec!["listen.proxy"]);
    }
}
