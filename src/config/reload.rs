//! Reloading the configuration and keyring while serving.
//!
//! A reload (SIGHUP, a change of the config, keyring or a TLS certificate or key file,
//! or `POST /admin/v1/reload`) re-reads every layer, validates it, loads and checks the
//! TLS certificates, loads the keyring and checks it still opens every stored record,
//! then swaps the new snapshot in atomically (new TLS handshakes get the new
//! certificates; established connections are left alone). Requests in flight finish
//! on the snapshot they started with. A bad snapshot is refused as a whole: the old one
//! keeps serving, and the reason is logged once, counted and returned to the caller.
//! Only the live half of the configuration is swapped; a changed boot setting (listen
//! addresses, the store, thread and cache sizes, ...) is reported as needing a restart.

use super::{Config, ConfigError, Current, LoadOptions};
use crate::metrics::Metrics;
use crate::tls::{CertError, ServedCert, ServingCerts};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The keyring does not load, or lacks a key that stored records use.
    #[error(transparent)]
    Keyring(Box<dyn std::error::Error + Send + Sync>),
    /// A TLS certificate or key file does not load, or the two do not match.
    #[error(transparent)]
    Certificate(#[from] CertError),
    #[error("{what} did not finish: {source}")]
    Interrupted {
        what: &'static str,
        source: tokio::task::JoinError,
    },
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadReport {
    /// Settings whose new value is now in effect.
    pub applied: Vec<&'static str>,
    /// Settings that changed but only take effect after a restart (or graceful upgrade).
    pub restart_required: Vec<&'static str>,
    pub keyring_primary: String,
    pub keyring_keys: usize,
    /// The certificate each TLS listener serves after the reload.
    pub certificates: Vec<ServedCert>,
}

/// The keyring's part in a reload. The fleet holds the keyring and the store it has to
/// open, so the fleet does this work; the trait keeps config below the fleet.
#[async_trait::async_trait]
pub trait KeyringReload: Send + Sync {
    /// Re-reads the keyring file, checks that it opens every stored record, and swaps it
    /// in. On error nothing has changed.
    async fn reload(&self, file: &Path) -> Result<(), ReloadError>;
    /// The keyring in use after a reload (refreshing what the metrics say about it).
    async fn in_use(&self) -> KeyringInUse;
}

#[derive(Debug, Clone)]
pub struct KeyringInUse {
    pub primary: String,
    pub keys: usize,
}

pub struct Reloader {
    options: LoadOptions,
    current: Current,
    keyring: Arc<dyn KeyringReload>,
    /// The keyring came from `WPGATE_KEYRING`: it cannot change without a restart.
    keyring_from_env: bool,
    certs: Arc<ServingCerts>,
    metrics: Arc<Metrics>,
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl Reloader {
    pub fn new(
        options: LoadOptions,
        current: Current,
        keyring: Arc<dyn KeyringReload>,
        keyring_from_env: bool,
        certs: Arc<ServingCerts>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Reloader {
            options,
            current,
            keyring,
            keyring_from_env,
            certs,
            metrics,
            one_at_a_time: tokio::sync::Mutex::new(()),
        }
    }

    /// The files whose change triggers a reload.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let c = self.current.load();
        let mut files: Vec<PathBuf> = c.source_file.iter().cloned().collect();
        if !self.keyring_from_env {
            files.push(c.boot.keyring_file.clone());
        }
        let tls = &c.live.tls;
        for pair in [&tls.certificate, &tls.admin_certificate]
            .into_iter()
            .flatten()
        {
            files.extend([pair.cert.clone(), pair.key.clone()]);
        }
        files
    }

    /// Loads, validates and swaps in a new snapshot; on error the old one stays.
    pub async fn reload(&self, trigger: &str) -> Result<ReloadReport, ReloadError> {
        let _one = self.one_at_a_time.lock().await;
        let result = self.try_reload().await;
        let m = &self.metrics;
        match &result {
            Ok(report) => {
                m.config_reloads.with_label_values(&["success"]).inc();
                m.config_last_reload_success.set(unix_now());
                tracing::info!(
                    trigger,
                    applied = ?report.applied,
                    restart_required = ?report.restart_required,
                    keyring_primary = %report.keyring_primary,
                    certificates = ?report.certificates,
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
                m.config_reloads.with_label_values(&["failure"]).inc();
                tracing::error!(trigger, reason = %reason, "reload refused: the previous configuration keeps serving");
            }
        }
        result
    }

    async fn try_reload(&self) -> Result<ReloadReport, ReloadError> {
        let options = self.options.clone();
        let new = tokio::task::spawn_blocking(move || Config::load(&options))
            .await
            .map_err(|source| ReloadError::Interrupted {
                what: "configuration load",
                source,
            })??;
        // Every certificate the new snapshot names is loaded and checked before anything
        // is swapped (the keyring reload below swaps the keyring).
        let tls = new.live.tls.clone();
        let certs =
            tokio::task::spawn_blocking(move || crate::tls::prepare(&tls, crate::time::now_unix()))
                .await
                .map_err(|source| ReloadError::Interrupted {
                    what: "certificate load",
                    source,
                })??;
        let old = self.current.load_full();
        if !self.keyring_from_env {
            self.keyring.reload(&old.boot.keyring_file).await?;
        }
        // The boot half is the one the process started with (it is never swapped), so
        // a boot setting stays reported until the process restarts.
        let applied = old.live.changed(&new.live);
        let restart_required = old.boot.changed(&new.boot);
        self.metrics
            .set_per_site_labels(new.live.metrics_per_site_labels);
        self.current.store(Arc::new(Config {
            boot: old.boot.clone(),
            live: new.live,
            source_file: new.source_file,
        }));
        self.certs.apply(&certs);
        self.certs.record(&self.metrics);
        let keyring = self.keyring.in_use().await;
        Ok(ReloadReport {
            applied,
            restart_required,
            keyring_primary: keyring.primary,
            keyring_keys: keyring.keys,
            certificates: self.certs.in_use(),
        })
    }
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
/// Runs until the future is dropped (at shutdown).
pub async fn run_triggers(reloader: Arc<Reloader>) {
    tokio::join!(on_sighup(&reloader), on_file_change(&reloader));
}

async fn on_sighup(reloader: &Reloader) {
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGHUP: reload by file change or the admin API");
            return;
        }
    };
    while hup.recv().await.is_some() {
        let _ = reloader.reload("sighup").await;
    }
}

async fn on_file_change(reloader: &Reloader) {
    {
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
    }
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
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts keyring reloads; the keyring itself never changes.
    #[derive(Default)]
    struct SameKeyring(AtomicUsize);

    #[async_trait::async_trait]
    impl KeyringReload for SameKeyring {
        async fn reload(&self, _file: &Path) -> Result<(), ReloadError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        async fn in_use(&self) -> KeyringInUse {
            KeyringInUse {
                primary: "k1".into(),
                keys: 1,
            }
        }
    }

    #[tokio::test]
    async fn diff_splits_live_and_restart_settings() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("wpgate.toml");
        std::fs::write(&file, "").unwrap();
        let options = LoadOptions {
            config_file: Some(file.clone()),
            data_dir: Some(dir.path().to_path_buf()),
        };
        let started = Config::load(&options).unwrap();
        let current = crate::config::current(started.clone());
        let keyring = Arc::new(SameKeyring::default());
        let reloader = Reloader::new(
            options,
            Arc::clone(&current),
            keyring.clone(),
            false,
            Arc::new(ServingCerts::default()),
            Arc::new(Metrics::new().unwrap()),
        );

        std::fs::write(
            &file,
            "[upstream]\nread_timeout = \"99s\"\n[listen]\nproxy = \"127.0.0.1:1\"\n",
        )
        .unwrap();
        let report = reloader.reload("test").await.unwrap();
        assert_eq!(report.applied, vec!["upstream.read_timeout"]);
        assert_eq!(report.restart_required, vec!["listen.proxy"]);
        assert_eq!(keyring.0.load(Ordering::SeqCst), 1);
        let now = current.load();
        assert_eq!(now.live.upstream.read_timeout, Duration::from_secs(99));
        assert_eq!(now.boot, started.boot, "the boot half is never swapped");

        // Against the started config: still reported after a second reload.
        let report = reloader.reload("test").await.unwrap();
        assert!(report.applied.is_empty());
        assert_eq!(report.restart_required, vec!["listen.proxy"]);

        // A bad file is refused as a whole and names the key.
        std::fs::write(&file, "[upstream]\nread_timeout = \"banana\"\n").unwrap();
        let err = reloader.reload("test").await.unwrap_err().to_string();
        assert!(err.contains("read_timeout"), "{err}");
        assert_eq!(
            current.load().live.upstream.read_timeout,
            Duration::from_secs(99)
        );
    }
}
