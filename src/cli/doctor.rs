//! `wpgate doctor [SITE]`: every check of `crate::doctor`, read-only, printed for
//! people (each failure with its fix) or as the JSON report (`--json`). The exit status
//! says how it went: 0 passed (warnings allowed), 1 a site check failed, 3 a gateway
//! check failed (2 is a usage error, from the argument parser).

use super::parse_duration;
use crate::config::{Config, LoadOptions, StoreUrl};
use crate::doctor::{self, Check, CheckName, Report, SiteReport, Source, Sources, Status};
use crate::site::SiteId;
use clap::Args;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Check only this site (also when it is disabled); default: every site.
    pub site: Option<SiteId>,
    /// How many sites are checked at once.
    #[arg(long, default_value_t = doctor::DEFAULT_CONCURRENCY as u16,
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: u16,
    /// The longest each step may take (resolving, connecting, the TLS handshake, each
    /// request); default: `health.timeout`.
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Warn when a site's clock (its Date header) is off by more than this.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub clock_skew_warn: Duration,
    /// Warn when an upstream's TLS certificate expires within this.
    #[arg(long, default_value = "14d", value_parser = parse_duration)]
    pub certificate_warn: Duration,
}

/// Runs the checks and prints the report; returns the exit status.
pub(super) fn run(options: &LoadOptions, args: &DoctorArgs, json: bool) -> u8 {
    let config = Config::load(options);
    if let Ok(config) = &config {
        crate::serve::init_logging(config);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start a runtime: {e}");
            return doctor::EXIT_GATEWAY_FAILED;
        }
    };
    let report = runtime.block_on(examine(config, args));
    if json {
        match serde_json::to_string(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("error: cannot write the report: {e}"),
        }
    } else {
        print_report(&report, args.site.is_some());
    }
    report.exit_code
}

async fn examine(config: Result<Config, crate::config::ConfigError>, args: &DoctorArgs) -> Report {
    let mut settings = doctor::Settings::new(args.timeout.unwrap_or(DEFAULT_TIMEOUT), None);
    settings.concurrency = usize::from(args.concurrency);
    settings.clock_skew_warn = args.clock_skew_warn;
    settings.certificate_warn = args.certificate_warn;
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            let why = "not checked: the configuration does not load".to_string();
            let sources = Sources {
                config: Check::fail(
                    CheckName::Config,
                    e.to_string(),
                    Some(
                        "fix the file or variable named above; `wpgate check` validates \
                          a configuration without starting anything"
                            .into(),
                    ),
                ),
                keyring: Source::NotChecked(why.clone()),
                store: Source::NotChecked(why),
            };
            return doctor::run(sources, args.site.as_ref(), &settings).await;
        }
    };
    settings.timeout = args.timeout.unwrap_or(config.boot.health.timeout);
    settings.ca_file = config.boot.upstream_ca_file.clone();
    let env_keyring = std::env::var("WPGATE_KEYRING").ok();
    let store = match crate::store::open_read_only(&config.boot.store).await {
        Ok(store) => Source::Ready(store, store_text(&config.boot.store)),
        Err(e) => Source::Failed {
            message: format!("{}: {e}", store_text(&config.boot.store)),
            fix: None,
        },
    };
    let sources = Sources {
        config: config_check(&config),
        keyring: doctor::load_keyring(&config.boot.keyring_file, env_keyring.as_deref()),
        store,
    };
    doctor::run(sources, args.site.as_ref(), &settings).await
}

/// When the configuration does not load (so `health.timeout` is unknown).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

fn store_text(url: &StoreUrl) -> String {
    match url {
        StoreUrl::Sqlite(_) => format!("SQLite store {url}"),
        StoreUrl::Postgres(_) => format!("PostgreSQL store {url}"),
    }
}

/// The configuration loaded; its TLS listener certificates too, as a start would load
/// them.
fn config_check(config: &Config) -> Check {
    let source = config.source_file.as_ref().map_or(
        "the built-in defaults and WPGATE_* variables".to_string(),
        |p| p.display().to_string(),
    );
    match crate::tls::prepare(&config.live.tls, crate::time::now_unix()) {
        Ok(_) => Check::pass(
            CheckName::Config,
            format!("the configuration ({source}) loads and validates"),
        ),
        Err(e) => Check::fail(
            CheckName::Config,
            format!(
                "the configuration ({source}) loads, but a TLS listener's certificate is \
                 refused: {e}"
            ),
            Some("replace the certificate or key file named above, then `wpgate check`".into()),
        ),
    }
}

fn print_report(report: &Report, named: bool) {
    println!("gateway:");
    for c in &report.gateway {
        print_check(c);
    }
    for site in &report.sites {
        print_site(site, named);
    }
    let s = &report.summary;
    println!(
        "\nwpgate doctor: {} — {} site(s): {} passed, {} warned, {} failed ({:.2} s; exit {})",
        report.status.as_str().to_uppercase(),
        s.sites,
        s.passed,
        s.warned,
        s.failed,
        report.duration_ms as f64 / 1000.0,
        report.exit_code
    );
}

/// A site's lines: every check when the site was named or something is wrong, else one.
fn print_site(site: &SiteReport, named: bool) {
    let user = site
        .wordpress_user
        .as_deref()
        .map(|u| format!(", WordPress user '{u}'"))
        .unwrap_or_default();
    let head = format!(
        "site {} ({}): {}",
        site.site_id,
        site.upstream,
        site.status.as_str()
    );
    if site.status == Status::Pass && !named {
        let run = site
            .checks
            .iter()
            .filter(|c| c.status != Status::Skip)
            .count();
        println!("{head} ({run} checks passed{user})");
        return;
    }
    println!("{head}");
    for c in &site.checks {
        print_check(c);
    }
}

fn print_check(c: &Check) {
    println!(
        "  {:<4}  {:<10}  {}",
        c.status.as_str(),
        c.check.as_str(),
        c.message
    );
    if let Some(fix) = &c.fix {
        println!("        {:<10}  fix: {fix}", "");
    }
}
