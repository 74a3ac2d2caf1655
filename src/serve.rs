//! `wpgate serve`: logging, the store and keyring, and the Pingora server.

use crate::config::reload::{self, KeyringInUse, KeyringReload, ReloadError, Reloader};
use crate::config::{self, Config, LogFormat};
use crate::crypto::{Keyring, KeyringSource};
use crate::fleet::Fleet;
use crate::proxy::Gateway;
use anyhow::Context;
use pingora::apps::HttpServerOptions;
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use std::sync::Arc;

/// Installs the global tracing subscriber (stderr). `RUST_LOG`, when set, wins over
/// `log.level`. Trace-level events are kept only from wpgate itself: other crates
/// (Pingora's HTTP code) dump whole header sets at trace, credentials included.
pub fn init_logging(config: &Config) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| tracing_subscriber::EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| {
            tracing_subscriber::EnvFilter::try_new(&config.boot.log.level)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
        });
    // With the filter's ceiling as its hint, so that events above the configured level
    // (the per-request access line at `warn`, say) are dropped at the call site.
    let no_foreign_trace = tracing_subscriber::filter::filter_fn(|meta| {
        *meta.level() < tracing::Level::TRACE || meta.target().starts_with("wpgate")
    })
    .with_max_level_hint(
        filter
            .max_level_hint()
            .unwrap_or(tracing_subscriber::filter::LevelFilter::TRACE),
    );
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let fmt = match config.boot.log.format {
        LogFormat::Json => fmt.json().boxed(),
        LogFormat::Pretty => fmt.boxed(),
    };
    // Pingora logs through the `log` crate. Without a ceiling every one of its per-request
    // debug/trace records would be built and handed to tracing only to be dropped: set
    // `log`'s max level from the filter (never above debug: foreign trace is dropped).
    let log_ceiling = match filter.max_level_hint() {
        Some(l) if l >= tracing_subscriber::filter::LevelFilter::DEBUG => log::LevelFilter::Debug,
        Some(l) if l == tracing_subscriber::filter::LevelFilter::INFO => log::LevelFilter::Info,
        Some(l) if l == tracing_subscriber::filter::LevelFilter::WARN => log::LevelFilter::Warn,
        Some(l) if l == tracing_subscriber::filter::LevelFilter::ERROR => log::LevelFilter::Error,
        Some(_) => log::LevelFilter::Off,
        None => log::LevelFilter::Debug,
    };
    // A second init (tests, repeated commands) is harmless: keep the first.
    let _ = tracing_subscriber::registry()
        .with(fmt.with_filter(filter).with_filter(no_foreign_trace))
        .try_init();
    log::set_max_level(log_ceiling);
}

/// Binds the admin listener. During a graceful upgrade the old process holds the port
/// until it exits (a few seconds after SIGQUIT): keep trying for up to 60 s.
async fn bind_admin(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match tokio::net::TcpListener::bind(addr).await {
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

/// Records this process's id (for `kill -HUP` / `kill -QUIT`); a failure is logged.
fn write_pid_file(path: &std::path::Path) {
    if let Err(e) = std::fs::write(path, format!("{}\n", std::process::id())) {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the pid file");
    }
}

pub fn log_keyring_source(source: &KeyringSource) {
    match source {
        KeyringSource::Generated(path) => tracing::warn!(
            path = %path.display(),
            "generated a new keyring (mode 0600): it seals every secret in the store; back it up"
        ),
        KeyringSource::File(path) => tracing::debug!(path = %path.display(), "keyring loaded"),
        KeyringSource::Environment => tracing::info!("keyring loaded from WPGATE_KEYRING"),
    }
}

/// How `serve` starts, besides the configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServeOptions {
    /// Take over the listening sockets of the running gateway (graceful binary upgrade).
    pub upgrade: bool,
}

/// Runs the gateway until it is told to stop. Never returns on success.
pub fn run(
    config: Config,
    options: config::LoadOptions,
    serve: ServeOptions,
) -> anyhow::Result<()> {
    // Start-up work and background tasks run on their own small runtime; Pingora builds
    // one runtime per service for the request path.
    let control = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("wpgate-control")
        .enable_all()
        .build()
        .context("cannot start the control runtime")?;
    let (fleet, source) = control
        .block_on(Fleet::open(&config))
        .context("cannot open the store and keyring")?;
    log_keyring_source(&source);
    if let Some(m) = crate::metrics::get() {
        m.config_last_reload_success.set(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or_default(),
        );
    }

    let boot = &config.boot;
    let data_dir = &boot.data_dir;
    let server_conf = ServerConf {
        threads: boot.proxy_threads,
        pid_file: data_dir.join("wpgate.pid").display().to_string(),
        upgrade_sock: data_dir.join("wpgate-upgrade.sock").display().to_string(),
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(10),
        // Upstream read/write timeouts on tokio's timer wheel (per runtime) rather than
        // Pingora's shared fast-timer map: fewer instructions per upstream read that has to
        // wait (measured with callgrind on the proxy under load), and no clock thread.
        fast_timeout_to_tokio_threshold_seconds: Some(0),
        ca_file: boot
            .upstream_ca_file
            .as_ref()
            .map(|p| p.display().to_string()),
        ..ServerConf::default()
    };
    let opt = pingora::server::configuration::Opt {
        upgrade: serve.upgrade,
        ..Default::default()
    };
    if serve.upgrade {
        tracing::info!(
            "graceful upgrade: waiting for the running gateway's sockets (send it SIGQUIT)"
        );
    }
    let mut server = Server::new_with_opt_and_conf(Some(opt), server_conf);
    server.bootstrap();
    write_pid_file(&data_dir.join("wpgate.pid"));

    let listen = boot.listen_proxy;
    let listen_admin = boot.listen_admin;
    let health = boot.health.clone();
    let health_ca = boot.upstream_ca_file.clone();
    if let Some(m) = crate::metrics::get() {
        m.set_per_site_labels(config.live.metrics_per_site_labels);
    }
    let refresh_every = (boot.auth.jwks_min_ttl / 2).max(std::time::Duration::from_secs(1));
    let poll_interval = boot.store_poll_interval;
    let keyring_from_env = source == KeyringSource::Environment;
    let current = config::current(config);
    let fleet = Arc::new(fleet);
    let reloader = Arc::new(Reloader::new(
        options,
        Arc::clone(&current),
        Arc::new(FleetKeyring(Arc::clone(&fleet))),
        keyring_from_env,
    ));
    {
        let _guard = control.enter();
        reload::spawn_triggers(Arc::clone(&reloader));
    }
    let auth = crate::auth::Authenticator::new(Arc::clone(&fleet), &current.load_full())
        .context("cannot set up the proxy")?;
    let health_board = Arc::new(crate::health::HealthBoard::new());
    let gateway = Gateway::new(Arc::clone(&fleet), current, auth, health_board);
    let health_client = crate::health::client(health_ca.as_deref(), health.timeout)
        .context("cannot set up the health checks")?;
    if health.enabled {
        let client = health_client.clone();
        let mut settings = crate::health::ProberSettings::with_interval(health.interval);
        settings.concurrency = health.concurrency;
        settings.timeout = health.timeout;
        let board = Arc::clone(gateway.health());
        let _guard = control.enter();
        crate::health::spawn_prober(
            Arc::new(crate::health::targets::FleetTargets {
                fleet: Arc::clone(&fleet),
            }),
            Arc::clone(&board),
            client,
            settings,
            Some(crate::health::targets::metrics_hook(board)),
        );
    }
    let tokens = Arc::new(crate::admin::token::AdminTokens::new());
    {
        // Follow changes other processes make to the store (and watch that it answers).
        let _guard = control.enter();
        let tokens = Arc::clone(&tokens);
        crate::fleet::follow::spawn(
            Arc::clone(&fleet),
            poll_interval,
            Some(Arc::new(move || tokens.forget_all())),
        );
    }
    // The admin listener runs on the control runtime; failing to bind it is fatal.
    let admin_state = crate::admin::AdminState {
        fleet,
        tokens,
        health: Arc::clone(gateway.health()),
        health_client: Some(health_client),
        health_timeout: health.timeout,
        reloader: Some(reloader),
    };
    // Outside an upgrade, failing to bind it is fatal. During one, the old process holds
    // the port until it exits: bind in the background so the proxy starts at once.
    let admin_listener = if serve.upgrade {
        None
    } else {
        Some(
            control
                .block_on(tokio::net::TcpListener::bind(listen_admin))
                .with_context(|| format!("cannot listen on {listen_admin} (listen.admin)"))?,
        )
    };
    control.spawn(async move {
        let listener = match admin_listener {
            Some(l) => l,
            None => match bind_admin(listen_admin).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(listen = %listen_admin, error = %e, "cannot listen on listen.admin");
                    return;
                }
            },
        };
        tracing::info!(listen = %listen_admin, "admin listener serving /healthz /readyz /metrics");
        if let Err(e) = axum::serve(listener, crate::admin::router(admin_state)).await {
            tracing::error!(error = %e, "admin listener stopped");
        }
    });
    {
        // Refresh JWKS sets before they expire, on the control runtime.
        let _guard = control.enter();
        gateway.jwks().spawn_refresher(refresh_every);
    }
    let mut service = pingora::proxy::http_proxy_service(&server.configuration, gateway);
    if let Some(proxy) = service.app_logic_mut() {
        let mut options = HttpServerOptions::default();
        options.h2c = true;
        proxy.server_options = Some(options);
    }
    service.add_tcp(&listen.to_string());
    server.add_service(service);
    tracing::info!(listen = %listen, version = env!("CARGO_PKG_VERSION"), "wpgate serving");
    // `control` stays alive: run_forever never returns.
    server.run_forever();
}

/// The keyring's part in a reload, done on the fleet.
struct FleetKeyring(Arc<Fleet>);

#[async_trait::async_trait]
impl KeyringReload for FleetKeyring {
    async fn reload(&self, file: &std::path::Path) -> Result<(), ReloadError> {
        let path = file.to_path_buf();
        let keyring = tokio::task::spawn_blocking(move || Keyring::load_file(&path))
            .await
            .map_err(|source| ReloadError::Interrupted {
                what: "keyring load",
                source,
            })?
            .map_err(|e| ReloadError::Keyring(e.into()))?;
        crate::fleet::check_keyring_covers(self.0.store(), &keyring)
            .await
            .map_err(|e| ReloadError::Keyring(e.into()))?;
        self.0.set_keyring(keyring);
        Ok(())
    }

    async fn in_use(&self) -> KeyringInUse {
        crate::fleet::follow::refresh_keyring_counts(&self.0).await;
        let keyring = self.0.keyring();
        KeyringInUse {
            primary: keyring.primary_id().to_string(),
            keys: keyring.key_ids().count(),
        }
    }
}
