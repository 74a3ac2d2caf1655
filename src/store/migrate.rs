//! `wpgate store migrate --from URL --to URL`: copies a whole store into an empty one,
//! e.g. from the embedded SQLite file to PostgreSQL when a fleet outgrows one replica.
//!
//! Everything is copied as stored: sites (every column, versions and timestamps), API
//! keys, admin tokens, settings and the audit log with its ids. Sealed values are copied
//! byte for byte and never opened, so no keyring is needed here; the gateway on the new
//! store needs the same keyring as on the old one. The change log is not copied: it only
//! matters to the processes that served the old store.
//!
//! Records go over in batches, each batch one transaction on the target. The target
//! must be empty (a merge would have to pick between two API-key peppers and two
//! histories). Stop writes to the source while it runs (gateways may keep serving):
//! the copy is checked against the source's counts at the end.

use super::{ImportBatch, RecordCounts, Store};
use crate::config::{redact_url, StoreUrl};
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use std::time::Instant;

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
        f.debug_tuple("UrlArg").field(&redact_url(&self.0)).finish()
    }
}

/// What a migration copied.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MigrateReport {
    pub from: String,
    pub to: String,
    pub copied: RecordCounts,
    pub batches: u64,
    pub seconds: f64,
}

pub async fn run(cmd: &StoreCommand, json: bool) -> anyhow::Result<()> {
    match cmd {
        StoreCommand::Migrate(args) => {
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
            let source = super::open(&from)
                .await
                .with_context(|| format!("cannot open the source store {from}"))?;
            let target = super::open(&to)
                .await
                .with_context(|| format!("cannot open the target store {to}"))?;
            let report = migrate(
                source.as_ref(),
                target.as_ref(),
                args.batch,
                &from.to_string(),
                &to.to_string(),
            )
            .await?;
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
    }
}

fn parse_url(flag: &str, raw: &str) -> anyhow::Result<StoreUrl> {
    StoreUrl::parse(raw).map_err(|problem| anyhow::anyhow!("{flag} {}: {problem}", redact_url(raw)))
}

/// Copies every record of `source` into the empty `target`, `batch` records per
/// transaction, and checks the copy against the source's counts.
pub async fn migrate(
    source: &dyn Store,
    target: &dyn Store,
    batch: u32,
    from: &str,
    to: &str,
) -> anyhow::Result<MigrateReport> {
    let started = Instant::now();
    let batch = batch.max(1);
    let size = usize::try_from(batch).unwrap_or(usize::MAX);
    let present = target
        .record_counts()
        .await
        .context("cannot count the target's records")?;
    if !present.is_empty() {
        bail!(
            "the target store {to} is not empty ({present}): `store migrate` copies into an \
             empty store only. A gateway started on it once creates the API-key pepper setting: \
             start from a freshly created database"
        );
    }
    let expected = source
        .record_counts()
        .await
        .context("cannot count the source's records")?;
    tracing::info!(target: "wpgate::store", from, to, records = %expected, "copying the store");
    let mut batches = 0u64;
    let mut copy = |b: ImportBatch| {
        batches += 1;
        async move { target.import(&b).await }
    };

    // Settings and admin tokens are few: whole lists, cut into batches.
    let settings = source.export_settings().await?;
    for chunk in settings.chunks(size) {
        copy(ImportBatch {
            settings: chunk.to_vec(),
            ..ImportBatch::default()
        })
        .await
        .context("copying settings")?;
    }
    let tokens = source.list_admin_tokens().await?;
    for chunk in tokens.chunks(size) {
        copy(ImportBatch {
            admin_tokens: chunk.to_vec(),
            ..ImportBatch::default()
        })
        .await
        .context("copying admin tokens")?;
    }
    // Sites before their keys (the keys' foreign key).
    let mut after: Option<String> = None;
    loop {
        let page = source.list_sites(after.as_deref(), batch).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        copy(ImportBatch {
            sites: page,
            ..ImportBatch::default()
        })
        .await
        .context("copying sites")?;
    }
    let mut after: Option<String> = None;
    loop {
        let page = source.export_api_keys(after.as_deref(), batch).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.key_id.clone());
        copy(ImportBatch {
            api_keys: page,
            ..ImportBatch::default()
        })
        .await
        .context("copying API keys")?;
    }
    let mut after = 0;
    loop {
        let page = source.export_audit(after, batch).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        copy(ImportBatch {
            audit: page,
            ..ImportBatch::default()
        })
        .await
        .context("copying the audit log")?;
    }

    let copied = target.record_counts().await?;
    let now = source.record_counts().await?;
    if copied != now {
        bail!(
            "the copy does not match the source: source now holds {now}, the target {copied} \
             (was the source written to meanwhile? stop writes, empty the target and run again)"
        );
    }
    Ok(MigrateReport {
        from: from.to_string(),
        to: to.to_string(),
        copied,
        batches,
        seconds: started.elapsed().as_secs_f64(),
    })
}
