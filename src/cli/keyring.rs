//! `wpgate keyring ...`: rotate the master keys that seal every secret in the store.

use super::{actor, explain, report};
use crate::config::Config;
use crate::crypto::Keyring;
use anyhow::Context;
use clap::Subcommand;
use serde_json::json;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum KeyringCommand {
    /// Print a new keyring (one random primary key) to standard output, for a secret
    /// store or WPGATE_KEYRING. Touches no file and no store.
    Init,
    /// Keys, the primary, and how many stored records each key still seals.
    Status,
    /// Add a new random key to the keyring file (then reload the gateways).
    Add {
        /// Make the new key the primary (new secrets are sealed with it).
        #[arg(long)]
        primary: bool,
    },
    /// Make an existing key the primary.
    SetPrimary { key_id: String },
    /// Re-seal every stored record with the primary key, batch by batch (each batch one
    /// transaction). Safe while gateways serve; run it again to resume.
    Rewrap {
        /// Records per batch.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10000))]
        batch: u32,
    },
    /// Remove a key from the keyring file; refused while any record is sealed with it.
    Retire { key_id: String },
}

/// Rewrites the keyring file (private mode, atomically) with `edit(text, origin)` and
/// returns its path. A keyring given in `WPGATE_KEYRING` is the operator's secret
/// store's to change, not ours.
fn edit_keyring_file(
    config: &Config,
    edit: impl FnOnce(&str, &str) -> anyhow::Result<zeroize::Zeroizing<String>>,
) -> anyhow::Result<PathBuf> {
    if std::env::var_os("WPGATE_KEYRING").is_some() {
        anyhow::bail!(
            "the keyring comes from WPGATE_KEYRING: change it where that variable is kept \
             (wpgate keyring edits only a keyring file)"
        );
    }
    let path = config.boot.keyring_file.clone();
    // Loading checks the permissions and the content.
    Keyring::load_file(&path)?;
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?,
    );
    let new_text = edit(&text, &format!("file {}", path.display()))?;
    crate::crypto::replace_private_file(&path, &new_text)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

pub(super) async fn run(config: &Config, cmd: &KeyringCommand, json: bool) -> anyhow::Result<()> {
    if let KeyringCommand::Init = cmd {
        let (keyring, text) = Keyring::generate();
        if json {
            println!(
                "{}",
                json!({"primary": keyring.primary_id(), "keyring": text.as_str()})
            );
        } else {
            print!("{}", text.as_str());
        }
        return Ok(());
    }
    let env_text = std::env::var("WPGATE_KEYRING").ok();
    let current = || -> anyhow::Result<Keyring> {
        Ok(match &env_text {
            Some(text) => Keyring::parse(text, "from WPGATE_KEYRING")?,
            None => Keyring::load_file(&config.boot.keyring_file)?,
        })
    };
    let store = crate::store::open(&config.boot.store)
        .await
        .context("cannot open the store")?;
    match cmd {
        // Answered above, before the store is opened.
        KeyringCommand::Init => {}
        KeyringCommand::Status => {
            let keyring = current()?;
            let counts = store.sealed_key_counts().await?;
            let view = crate::admin::ops::keyring_view(&keyring, &counts);
            if json {
                println!("{}", serde_json::to_value(&view)?);
            } else {
                for k in &view.keys {
                    println!(
                        "{}{}  seals {} record(s)",
                        k.id,
                        if k.primary { " (primary)" } else { "" },
                        k.sealed_records
                    );
                }
                for k in &view.missing {
                    println!(
                        "{}  MISSING from the keyring: seals {} record(s) that cannot be opened",
                        k.id, k.sealed_records
                    );
                }
            }
            if !view.missing.is_empty() {
                anyhow::bail!("the keyring lacks keys that stored records use");
            }
        }
        KeyringCommand::Add { primary } => {
            let mut id = String::new();
            let path = edit_keyring_file(config, |text, origin| {
                let (new_text, new_id) = crate::crypto::edit::add_key(text, origin, *primary)?;
                id = new_id;
                Ok(new_text)
            })?;
            report(
                json,
                json!({"key_id": id, "primary": primary}),
                format!(
                    "added key {id}{} to {}; reload the gateways (SIGHUP or POST /admin/v1/reload){}",
                    if *primary { " as primary" } else { "" },
                    path.display(),
                    if *primary { ", then run `wpgate keyring rewrap`" } else { "" }
                ),
            );
        }
        KeyringCommand::SetPrimary { key_id } => {
            let path = edit_keyring_file(config, |text, origin| {
                Ok(crate::crypto::edit::set_primary(text, origin, key_id)?)
            })?;
            report(
                json,
                json!({"primary": key_id}),
                format!(
                    "key {key_id} is now the primary in {}; reload the gateways",
                    path.display()
                ),
            );
        }
        KeyringCommand::Rewrap { batch } => {
            let keyring = current()?;
            let progress =
                crate::fleet::rotation::rewrap(store.as_ref(), &keyring, *batch, &actor(), |p| {
                    if !json {
                        println!("rewrapped {}/{} (batch {})", p.resealed, p.total, p.batches);
                    }
                })
                .await
                .map_err(explain)?;
            report(
                json,
                serde_json::to_value(progress)?,
                format!(
                    "done: every stored record is sealed with {} ({} re-sealed)",
                    keyring.primary_id(),
                    progress.resealed
                ),
            );
        }
        KeyringCommand::Retire { key_id } => {
            let counts = store.sealed_key_counts().await?;
            let path = edit_keyring_file(config, |text, origin| {
                if let Some((_, n)) = counts.iter().find(|(k, n)| k == key_id && *n > 0) {
                    anyhow::bail!(
                        "key {key_id} still seals {n} stored record(s): run `wpgate keyring rewrap` \
                         with another primary first"
                    );
                }
                Ok(crate::crypto::edit::remove_key(text, origin, key_id)?)
            })?;
            report(
                json,
                json!({"retired": key_id}),
                format!(
                    "retired key {key_id} from {}; reload the gateways",
                    path.display()
                ),
            );
        }
    }
    Ok(())
}
