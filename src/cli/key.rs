//! `wpgate key ...`: issue, list, rotate and revoke a site's API keys.

use super::{actor, explain, parse_duration, print_table, report, time_or_dash};
use crate::admin::views::KeyView;
use crate::fleet::Fleet;
use crate::site::SiteId;
use crate::store::ApiKeyRecord;
use anyhow::bail;
use clap::Subcommand;
use serde_json::{json, Value};
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Issue an API key for a site; prints the whole key once, alone on one line.
    Issue {
        site_id: SiteId,
        #[arg(long)]
        label: Option<String>,
        /// Lifetime, e.g. 30d, 12h.
        #[arg(long, value_parser = parse_duration)]
        expires_in: Option<Duration>,
    },
    /// List a site's keys (never the secret).
    List { site_id: SiteId },
    /// Revoke a key, optionally keeping it valid for a grace period (e.g. 1h).
    Revoke {
        key_id: String,
        #[arg(long, value_parser = parse_duration)]
        grace: Option<Duration>,
    },
    /// Replace a key in one audited step: issue its successor (same site, same label, the
    /// same lifetime if it expires) and revoke it with a grace period. Prints the new key
    /// once, alone on one line.
    Rotate {
        key_id: String,
        /// How long the old key keeps working; 0s cuts it off at once.
        #[arg(long, value_parser = parse_duration, default_value = "24h")]
        grace: Duration,
    },
}

fn key_json(k: &ApiKeyRecord) -> Value {
    serde_json::to_value(KeyView::from(k)).unwrap_or(Value::Null)
}

fn check_key_id(key_id: &str) -> anyhow::Result<()> {
    if !crate::auth::api_key::is_key_id(key_id) {
        bail!("{key_id:?} is not a key id (12 characters, the part after wpg_)");
    }
    Ok(())
}

pub(super) async fn run(fleet: &Fleet, cmd: &KeyCommand, json: bool) -> anyhow::Result<()> {
    let actor = actor();
    match cmd {
        KeyCommand::Issue {
            site_id,
            label,
            expires_in,
        } => {
            let (record, key) = fleet
                .issue_key(site_id, label.clone(), *expires_in, &actor)
                .await
                .map_err(explain)?;
            let text = key.expose_str().unwrap_or_default();
            if json {
                let mut v = key_json(&record);
                v["key"] = json!(text);
                println!("{v}");
            } else {
                println!("{text}");
            }
            eprintln!(
                "key {} issued for site {site_id}: it is shown only this once",
                record.key_id
            );
        }
        KeyCommand::Rotate { key_id, grace } => {
            check_key_id(key_id)?;
            let rotated = fleet
                .rotate_key(key_id, *grace, &actor)
                .await
                .map_err(explain)?;
            let text = rotated.key.expose_str().unwrap_or_default();
            if json {
                let mut v = key_json(&rotated.new);
                v["key"] = json!(text);
                v["replaces"] = key_json(&rotated.old);
                println!("{v}");
            } else {
                println!("{text}");
            }
            let until = rotated
                .old
                .grace_until
                .map(crate::time::rfc3339)
                .unwrap_or_default();
            eprintln!(
                "key {} issued for site {} to replace key {key_id}, which is accepted until \
                 {until}: the new key is shown only this once",
                rotated.new.key_id, rotated.new.site_id
            );
        }
        KeyCommand::List { site_id } => {
            fleet.site(site_id).await.map_err(explain)?;
            let keys = fleet.store().list_api_keys(site_id.as_str()).await?;
            if json {
                println!("{}", Value::Array(keys.iter().map(key_json).collect()));
            } else {
                let columns = [
                    ("KEY ID", 14),
                    ("LABEL", 20),
                    ("CREATED", 22),
                    ("EXPIRES", 22),
                    ("REVOKED", 22),
                    ("GRACE UNTIL", 22),
                    ("LAST USED", 0),
                ];
                print_table(
                    columns,
                    keys.iter().map(|k| {
                        [
                            k.key_id.clone(),
                            k.label.as_deref().unwrap_or("-").to_string(),
                            crate::time::rfc3339(k.created_at),
                            time_or_dash(k.expires_at),
                            time_or_dash(k.revoked_at),
                            time_or_dash(k.grace_until),
                            time_or_dash(k.last_used_at),
                        ]
                    }),
                );
            }
        }
        KeyCommand::Revoke { key_id, grace } => {
            check_key_id(key_id)?;
            let k = fleet
                .revoke_key(key_id, *grace, &actor)
                .await
                .map_err(explain)?;
            let until = k.grace_until.map(crate::time::rfc3339).unwrap_or_default();
            report(
                json,
                key_json(&k),
                format!("key {key_id} revoked; accepted until {until}"),
            );
        }
    }
    Ok(())
}
