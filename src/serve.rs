//! `wpgate serve`: logging, the store and keyring, and the Pingora server.

use crate::config::reload::{self, KeyringInUse, KeyringReload, ReloadError, Reloader};
use crate::config::{self, Config, LogFormat};
use crate::crypto::{Keyring, KeyringSource};
use crate::fleet::Fleet;
use crate::health::targets::{metrics_hook, FleetTargets};
use crate::health::{HealthBoard, Ledger};
use crate::metrics::Metrics;
use crate::proxy::Gateway;
use anyhow::Context;
use pingora::apps::HttpServerOptions;
use pingora::server::configuration::ServerConf;
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{BackgroundService, GenBackgroundService};
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
        // (ASCII only, as `log.level`: see config/validate.rs.)
        .filter(|v| v.is_ascii())
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
    let metrics = Arc::new(Metrics::new().context("cannot register the metrics")?);
    // Start-up work (store, migrations, keyring) runs on a small runtime of its own,
    // which stays alive: the store's first pooled connections are registered with its
    // I/O driver. Everything else runs on Pingora's runtimes, as Pingora services.
    let startup = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("wpgate-startup")
        .enable_all()
        .build()
        .context("cannot start the start-up runtime")?;
    let (fleet, source) = startup
        .block_on(Fleet::open(&config, Arc::clone(&metrics)))
        .context("cannot open the store and keyring")?;
    log_keyring_source(&source);
    // The browser origins the sites allow, for preflights from the first request on (the
    // store change follower keeps them current).
    if let Err(e) = startup.block_on(fleet.reload_origins()) {
        tracing::warn!(error = %e, "cannot read the sites' CORS origins yet");
    }
    metrics.config_last_reload_success.set(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default(),
    );
    metrics.set_per_site_labels(config.live.metrics_per_site_labels);
    // The TLS listeners' certificates, checked before anything listens.
    let certs = Arc::new(
        crate::tls::ServingCerts::start(&config.boot, &config.live.tls, crate::time::now_unix())
            .context("cannot load the TLS certificates")?,
    );
    certs.record(&metrics);
    for served in certs.in_use() {
        tracing::info!(
            listener = served.listener,
            subject = %served.info.subject,
            serial = %served.info.serial,
            not_after = %crate::time::rfc3339(served.info.not_after),
            "TLS certificate loaded"
        );
    }
    let admin_tls = match (config.boot.listen_admin_tls, certs.admin()) {
        (false, _) => None,
        (true, Some(resolver)) => Some(
            crate::tls::admin_acceptor(Arc::clone(resolver))
                .context("cannot set up TLS on the admin listener")?,
        ),
        (true, None) => anyhow::bail!("listen.admin_tls is set but no certificate is"),
    };

    let boot = config.boot.clone();
    let data_dir = &boot.data_dir;
    let server_conf = ServerConf {
        threads: boot.proxy_threads,
        pid_file: data_dir.join("wpgate.pid").display().to_string(),
        upgrade_sock: data_dir.join("wpgate-upgrade.sock").display().to_string(),
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(10),
        // One proxy thread has nothing to steal work from: a plain single-thread runtime
        // is cheaper per request (callgrind: -0.7k instructions of ~98k). With more,
        // Pingora's runtimes without stealing spawn each idle upstream connection's
        // watcher on a random thread, so a reused connection would wake another one.
        work_stealing: boot.proxy_threads > 1,
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

    // Outside an upgrade, failing to bind the admin listener is fatal. During one, the
    // old process holds the port until it exits: bind in the background so the proxy
    // starts at once.
    let admin_listener = if serve.upgrade {
        None
    } else {
        let l = std::net::TcpListener::bind(boot.listen_admin)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .with_context(|| format!("cannot listen on {} (listen.admin)", boot.listen_admin))?;
        Some(l)
    };

    let keyring_from_env = source == KeyringSource::Environment;
    let current_tls = config.live.tls.clone();
    let current = config::current(config);
    let fleet = Arc::new(fleet);
    let reloader = Arc::new(Reloader::new(
        options,
        Arc::clone(&current),
        Arc::new(FleetKeyring(Arc::clone(&fleet))),
        keyring_from_env,
        Arc::clone(&certs),
        Arc::clone(&metrics),
    ));
    let auth = crate::auth::Authenticator::new(Arc::clone(&fleet), &current.load_full())
        .context("cannot set up the proxy")?;
    let jwks = Arc::clone(auth.jwks());
    let board = Arc::new(HealthBoard::new());
    let gateway = Gateway::new(
        Arc::clone(&fleet),
        Arc::clone(&current),
        auth,
        Arc::clone(&board),
    );
    let health = &boot.health;
    let health_client = crate::health::client(boot.upstream_ca_file.as_deref(), health.timeout)
        .context("cannot set up the health checks")?;
    let tokens = Arc::new(crate::admin::token::AdminTokens::new());

    server.add_service(background("config reload triggers", {
        let reloader = Arc::clone(&reloader);
        move || reload::run_triggers(Arc::clone(&reloader))
    }));
    // This process's id among the replicas sharing the store: the holder of its health
    // check leases and the `checked_by` of its results.
    let replica = crate::health::new_replica_id();
    let ledger = Arc::new(Ledger::new(fleet.shared_store(), replica.as_str()));
    if health.enabled {
        let mut settings = crate::health::ProberSettings::with_interval(health.interval);
        settings.concurrency = health.concurrency;
        settings.timeout = health.timeout;
        let targets: Arc<dyn crate::health::TargetSource> = Arc::new(FleetTargets {
            fleet: Arc::clone(&fleet),
        });
        let hook = metrics_hook(Arc::clone(&board), Arc::clone(&metrics));
        let (board, client, ledger) = (
            Arc::clone(&board),
            health_client.clone(),
            Arc::clone(&ledger),
        );
        server.add_service(background("health prober", move || {
            crate::health::run_prober(
                Arc::clone(&ledger),
                Arc::clone(&targets),
                Arc::clone(&board),
                client.clone(),
                settings.clone(),
                Some(Arc::clone(&hook)),
            )
        }));
    }
    // Follow changes other processes make to the store (and watch that it answers).
    server.add_service(background("store change follower", {
        let (fleet, tokens) = (Arc::clone(&fleet), Arc::clone(&tokens));
        let poll = boot.store_poll_interval;
        move || {
            let tokens = Arc::clone(&tokens);
            crate::fleet::follow::run(
                Arc::clone(&fleet),
                poll,
                Some(Arc::new(move |id: Option<&str>| tokens.forget(id))),
            )
        }
    }));
    // Write when keys were last used, purge old revoked and expired keys.
    server.add_service(background_with_stop("api key upkeep", {
        let (fleet, current) = (Arc::clone(&fleet), Arc::clone(&current));
        let settings = crate::fleet::upkeep::UpkeepSettings {
            flush_every: boot.keys.last_used_flush,
            purge_every: boot.keys.purge_interval,
        };
        move |stop| {
            let current = Arc::clone(&current);
            crate::fleet::upkeep::run(
                Arc::clone(&fleet),
                settings,
                move || current.load().live.key_retention,
                stop,
            )
        }
    }));
    // Refresh JWKS sets before they expire.
    let refresh_every = (boot.auth.jwks_min_ttl / 2).max(std::time::Duration::from_secs(1));
    server.add_service(background("jwks refresher", move || {
        jwks.refresher(refresh_every)
    }));
    let admin = AdminListener {
        addr: boot.listen_admin,
        bound: std::sync::Mutex::new(admin_listener),
        header_read_timeout: boot.admin.header_read_timeout,
        tls: admin_tls,
        state: crate::admin::AdminState {
            fleet,
            tokens,
            failures: Arc::new(crate::admin::failures::AdminFailures::new(&boot.admin)),
            health: Arc::clone(&board),
            health_ledger: ledger,
            health_client: Some(health_client),
            health_timeout: health.timeout,
            upstream_ca_file: boot.upstream_ca_file.clone(),
            reloader: Some(reloader),
        },
    };
    server.add_service(pingora::services::background::background_service(
        "admin listener",
        admin,
    ));

    let mut service = pingora::proxy::http_proxy_service(&server.configuration, gateway);
    if let Some(proxy) = service.app_logic_mut() {
        let mut options = HttpServerOptions::default();
        options.h2c = true;
        // CONNECT reaches `request_filter`, which refuses it like TRACE (405 with the
        // error body, request id and access log line); it is never forwarded.
        options.allow_connect_method_proxying = true;
        proxy.server_options = Some(options);
    }
    if let Some(addr) = boot.listen_proxy {
        service.add_tcp(&addr.to_string());
    }
    // HTTPS beside (or instead of) plain HTTP, on the same proxy: one set of phases.
    // (Pingora turns h2c off on TLS connections: ALPN chooses there.)
    if let Some(addr) = boot.listen_proxy_tls {
        let (Some(resolver), Some(files)) = (certs.proxy(), current_tls.certificate.as_ref())
        else {
            anyhow::bail!("listen.proxy_tls is set but tls.cert_file is not");
        };
        let settings = crate::tls::proxy_settings(files, Arc::clone(resolver))
            .context("cannot set up TLS on the proxy listener")?;
        service.add_tls_with_settings(&addr.to_string(), None, settings);
    }
    server.add_service(service);
    let shown = |a: Option<std::net::SocketAddr>| a.map_or_else(|| "off".into(), |a| a.to_string());
    tracing::info!(
        listen = %shown(boot.listen_proxy),
        listen_tls = %shown(boot.listen_proxy_tls),
        version = env!("CARGO_PKG_VERSION"),
        replica = %replica,
        "wpgate serving"
    );
    // `startup` stays alive (see above): run_forever never returns.
    server.run_forever();
}

/// A background task as a Pingora service: `task()` runs on the service's runtime until
/// it ends or Pingora shuts down, whichever comes first.
fn background<F, Fut>(name: &str, task: F) -> GenBackgroundService<UntilShutdown<F>>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    pingora::services::background::background_service(name, UntilShutdown(task))
}

struct UntilShutdown<F>(F);

/// Completes when Pingora shuts down.
type Stop = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// A background task that is told when Pingora shuts down (`task(stop)`: `stop`
/// completes then) and may finish its work in the grace period, instead of being dropped.
fn background_with_stop<F, Fut>(name: &str, task: F) -> GenBackgroundService<WithStop<F>>
where
    F: Fn(Stop) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    pingora::services::background::background_service(name, WithStop(task))
}

struct WithStop<F>(F);

#[async_trait::async_trait]
impl<F, Fut> BackgroundService for WithStop<F>
where
    F: Fn(Stop) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    async fn start(&self, mut shutdown: ShutdownWatch) {
        (self.0)(Box::pin(async move {
            let _ = shutdown.changed().await;
        }))
        .await
    }
}

#[async_trait::async_trait]
impl<F, Fut> BackgroundService for UntilShutdown<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    async fn start(&self, mut shutdown: ShutdownWatch) {
        tokio::select! {
            () = (self.0)() => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// The admin API (and /healthz, /readyz, /metrics) as a Pingora service: it stops
/// accepting at shutdown and lets requests in flight finish.
struct AdminListener {
    addr: std::net::SocketAddr,
    /// Bound before start-up (outside an upgrade); taken once by `start`.
    bound: std::sync::Mutex<Option<std::net::TcpListener>>,
    header_read_timeout: std::time::Duration,
    /// `listen.admin_tls`: the handshake, with the certificate a reload swaps.
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: crate::admin::AdminState,
}

#[async_trait::async_trait]
impl BackgroundService for AdminListener {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let bound = self.bound.lock().ok().and_then(|mut b| b.take());
        let listener = match bound {
            Some(l) => tokio::net::TcpListener::from_std(l),
            None => bind_admin(self.addr).await,
        };
        let listener = match listener {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(listen = %self.addr, error = %e, "cannot listen on listen.admin");
                return;
            }
        };
        tracing::info!(listen = %self.addr, tls = self.tls.is_some(), "admin listener serving /healthz /readyz /metrics");
        // Time one argon2 verification for the refusal floor of admin token checks.
        let tokens = std::sync::Arc::clone(&self.state.tokens);
        tokio::spawn(async move { tokens.calibrate().await });
        let router = crate::admin::router(self.state.clone());
        let stop = async move {
            let _ = shutdown.changed().await;
        };
        crate::admin::listener::serve(
            listener,
            router,
            self.header_read_timeout,
            self.tls.clone(),
            stop,
        )
        .await;
    }
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
