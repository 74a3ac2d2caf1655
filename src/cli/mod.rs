//! The command line: `wpgate serve | check | site ... | key ...`. Every command works on
//! the same store as a running gateway. Arguments are parsed and results printed here
//! only; the commands call the domain modules below.

pub mod admin;
pub mod check;
pub mod doctor;
pub mod key;
pub mod keyring;
mod onboard;
pub mod ops;
pub mod serve;
pub mod site;
pub mod store;

use crate::config::{Config, LoadOptions};
use crate::fleet::{Actor, Fleet, FleetError};
use crate::store::StoreError;
use admin::AdminCommand;
use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "wpgate",
    version,
    about = "Authentication gateway for fleets of WordPress sites"
)]
pub struct Cli {
    /// Configuration file (default: config/wpgate.toml if it exists).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory (store and keyring); overrides the configuration.
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve(serve::ServeArgs),
    /// Validate the configuration (and the keyring, if present) and exit.
    Check,
    /// Check everything, read-only: configuration, keyring (every sealed record opens),
    /// store and schema, then each site (DNS, TCP, TLS, REST API, its credential,
    /// required namespaces, clock). Each failure comes with its fix. Exit status 0: all
    /// passed (warnings allowed); 1: a site check failed; 3: a gateway check failed.
    Doctor(doctor::DoctorArgs),
    /// Manage sites.
    #[command(subcommand)]
    Site(site::SiteCommand),
    /// Manage API keys.
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Manage the admin API.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Rotate the master keys that seal every secret in the store.
    #[command(subcommand)]
    Keyring(keyring::KeyringCommand),
    /// Read the audit log, newest first, a page at a time.
    Audit(ops::AuditArgs),
    /// Ask a running gateway to re-read its configuration, keyring and certificates
    /// (through the admin API with WPGATE_ADMIN_TOKEN, or --signal).
    Reload(ops::ReloadArgs),
    /// Work on whole stores (copy one into another).
    #[command(subcommand)]
    Store(store::StoreCommand),
    /// Ask a running gateway whether it is up (GET /healthz on its admin listener); exit
    /// status 0 when it answers 200. For container and service health checks.
    Healthcheck {
        /// The URL to ask (default: /healthz on listen.admin, 127.0.0.1 when it listens
        /// on every interface).
        #[arg(long)]
        url: Option<String>,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 30d, 12h, 90s)"))
}

fn actor() -> Actor {
    Actor::new(format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    ))
}

fn load_options(cli: &Cli) -> LoadOptions {
    LoadOptions {
        config_file: cli.config.clone(),
        data_dir: cli.data_dir.clone(),
    }
}

/// Runs the parsed command; the process's exit status.
pub fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    let options = load_options(&cli);
    // doctor reports a configuration that does not load like any other failed check.
    if let Command::Doctor(args) = &cli.command {
        return Ok(doctor::run(&options, args, cli.json).into());
    }
    run_command(&cli, &options).map(|()| std::process::ExitCode::SUCCESS)
}

fn run_command(cli: &Cli, options: &LoadOptions) -> anyhow::Result<()> {
    let config = Config::load(options)?;
    crate::serve::init_logging(&config);
    match &cli.command {
        Command::Serve(args) => crate::serve::run(config, options.clone(), args.options()),
        Command::Check => check::run(&config, cli.json),
        Command::Site(cmd) => {
            block_on(async { site::run(&open_fleet(&config).await?, &config, cmd, cli.json).await })
        }
        Command::Key(cmd) => {
            block_on(async { key::run(&open_fleet(&config).await?, cmd, cli.json).await })
        }
        Command::Admin(AdminCommand::Token(cmd)) => {
            block_on(async { admin::token(&open_fleet(&config).await?, cmd, cli.json).await })
        }
        Command::Keyring(cmd) => block_on(keyring::run(&config, cmd, cli.json)),
        Command::Store(cmd) => block_on(store::run(cmd, cli.json)),
        Command::Audit(args) => {
            block_on(async { ops::audit(&open_fleet(&config).await?, args, cli.json).await })
        }
        Command::Reload(args) => block_on(ops::reload(&config, args, cli.json)),
        Command::Healthcheck { url } => block_on(check::healthcheck(&config, url.as_deref())),
        Command::Doctor(_) => unreachable!("handled by run"),
    }
}

fn block_on<F: std::future::Future<Output = anyhow::Result<()>>>(f: F) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a runtime")?
        .block_on(f)
}

/// The fleet (the store and keyring of `config`) the site, key and token commands edit.
async fn open_fleet(config: &Config) -> anyhow::Result<Fleet> {
    // The CLI records nothing it exports: a registry of its own, dropped with the fleet.
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::new()?);
    let (fleet, source) = Fleet::open(config, metrics)
        .await
        .context("cannot open the store and keyring")?;
    crate::serve::log_keyring_source(&source);
    Ok(fleet)
}

fn report(json: bool, value: Value, text: String) {
    if json {
        println!("{value}");
    } else {
        println!("{text}");
    }
}

/// Prints a header line and one line per row; each cell is padded to its column's width
/// (give the last column 0) and cells are one space apart.
fn print_table<const N: usize>(
    columns: [(&str, usize); N],
    rows: impl IntoIterator<Item = [String; N]>,
) {
    let print = |cells: [&str; N]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(columns)
            .map(|(cell, (_, width))| format!("{cell:<width$}"))
            .collect();
        println!("{}", padded.join(" "));
    };
    print(columns.map(|(name, _)| name));
    for row in rows {
        print(row.each_ref().map(String::as_str));
    }
}

/// A time for a table cell: RFC 3339, or `-` when there is none.
fn time_or_dash(t: Option<i64>) -> String {
    t.map_or("-".to_string(), crate::time::rfc3339)
}

/// Turns a fleet error into a message for the operator.
fn explain(e: FleetError) -> anyhow::Error {
    match e {
        FleetError::Store(StoreError::NotFound(what)) => anyhow::anyhow!("{what} does not exist"),
        other => anyhow::Error::new(other),
    }
}
