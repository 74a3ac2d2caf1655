//! `wpgate store ...`: work on whole stores (copy one into another).

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy a whole store (sites, API keys, admin tokens, settings, audit log) into an
    /// empty one, e.g. sqlite://./data/wpgate.db to postgres://gw@db/wpgate.
    Migrate(MigrateArgs),
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The store to copy: sqlite://PATH or postgres://... (or $WPGATE_MIGRATE_FROM,
    /// which keeps a password off the command line).
    #[arg(
        long,
        value_name = "URL",
        env = "WPGATE_MIGRATE_FROM",
        hide_env_values = true
    )]
    pub from: UrlArg,
    /// The empty store to copy into (created and migrated if needed), or
    /// $WPGATE_MIGRATE_TO.
    #[arg(
        long,
        value_name = "URL",
        env = "WPGATE_MIGRATE_TO",
        hide_env_values = true
    )]
    pub to: UrlArg,
    /// Records per batch (one transaction each).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch: u32,
}

/// A store URL as given on the command line: `Debug` never shows it (it may hold a
/// password), and neither does a parse error.
#[derive(Clone)]
pub struct UrlArg(pub String);

impl std::str::FromStr for UrlArg {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(UrlArg(s.to_string()))
    }
}

impl std::fmt::Debug for UrlArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("UrlArg")
            .field(&crate::config::redact_url(&self.0))
            .finish()
    }
}

pub(super) async fn run(cmd: &StoreCommand, json: bool) -> anyhow::Result<()> {
    use crate::config::StoreUrl;
    let StoreCommand::Migrate(args) = cmd;
    let parse_url = |flag: &str, raw: &str| {
        StoreUrl::parse(raw).map_err(|problem| {
            anyhow::anyhow!("{flag} {}: {problem}", crate::config::redact_url(raw))
        })
    };
    let from = parse_url("--from", &args.from.0)?;
    let to = parse_url("--to", &args.to.0)?;
    if from == to {
        bail!("--from and --to name the same store ({from})");
    }
    if let StoreUrl::Sqlite(path) = &from {
        // Opening would create an empty file: a typo must not "migrate" nothing.
        if !path.exists() {
            bail!("--from: {} does not exist", path.display());
        }
    }
    let source = crate::store::open(&from)
        .await
        .with_context(|| format!("cannot open the source store {from}"))?;
    let target = crate::store::open(&to)
        .await
        .with_context(|| format!("cannot open the target store {to}"))?;
    let options = crate::store::copy::CopyOptions {
        batch: args.batch,
        from: from.to_string(),
        to: to.to_string(),
    };
    let report = crate::store::copy::copy(source.as_ref(), target.as_ref(), &options).await?;
    if json {
        println!("{}", serde_json::to_value(&report)?);
    } else {
        println!(
            "copied {} from {} to {} in {} batches, {:.1}s",
            report.copied, report.from, report.to, report.batches, report.seconds
        );
    }
    Ok(())
}
