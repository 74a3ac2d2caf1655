//! `wpgate serve`: logging, the store and keyring, and the Pingora server.

use crate::config::{self, Config, LogFormat};
use crate::crypto::KeyringSource;
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
            tracing_subscriber::EnvFilter::try_new(&config.log.level)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
        });
    let no_foreign_trace = tracing_subscriber::filter::filter_fn(|meta| {
        *meta.level() < tracing::Level::TRACE || meta.target().starts_with("wpgate")
    });
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let fmt = match config.log.format {
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

/// Runs the gateway until it is told to stop. Never returns on success.
pub fn run(config: Config) -> anyhow::Result<()> {
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

    let data_dir = &config.data_dir;
    let server_conf = ServerConf {
        threads: config.proxy.threads,
        pid_file: data_dir.join("wpgate.pid").display().to_string(),
        upgrade_sock: data_dir.join("wpgate-upgrade.sock").display().to_string(),
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(10),
        ca_file: config
            .upstream
            .ca_file
            .as_ref()
            .map(|p| p.display().to_string()),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, server_conf);
    server.bootstrap();

    let listen = config.listen_proxy;
    let listen_admin = config.listen_admin;
    let health = config.health.clone();
    let health_ca = config.upstream.ca_file.clone();
    if let Some(m) = crate::metrics::get() {
        m.set_per_site_labels(config.metrics_per_site_labels);
    }
    let refresh_every = (config.auth.jwks_min_ttl / 2).max(std::time::Duration::from_secs(1));
    let live = config::live(config);
    let fleet = Arc::new(fleet);
    let gateway = Gateway::new(Arc::clone(&fleet), live).context("cannot set up the proxy")?;
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
            Arc::new(crate::health_targets::FleetTargets {
                fleet: Arc::clone(&fleet),
            }),
            Arc::clone(&board),
            client,
            settings,
            Some(crate::health_targets::metrics_hook(board)),
        );
    }
    // The admin listener runs on the control runtime; failing to bind it is fatal.
    let admin_state = crate::admin::AdminState {
        fleet,
        tokens: Arc::new(crate::admin::token::AdminTokens::new()),
        health: Arc::clone(gateway.health()),
        health_client: Some(health_client),
        health_timeout: health.timeout,
    };
    let admin_listener = control
        .block_on(tokio::net::TcpListener::bind(listen_admin))
        .with_context(|| format!("cannot listen on {listen_admin} (listen.admin)"))?;
    control.spawn(async move {
        if let Err(e) = axum::serve(admin_listener, crate::admin::router(admin_state)).await {
            tracing::error!(error = %e, "admin listener stopped");
        }
    });
    tracing::info!(listen = %listen_admin, "admin listener serving /healthz /readyz /metrics");
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
