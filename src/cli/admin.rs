//! `wpgate admin token ...`: tokens for the admin API.

use super::{actor, print_table, report, time_or_dash};
use crate::admin::token::AdminTokens;
use crate::admin::views::AdminTokenView;
use crate::fleet::Fleet;
use crate::store::{AdminScope, StoreError};
use anyhow::bail;
use clap::{Subcommand, ValueEnum};

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Admin API tokens (`Authorization: Bearer wpgat_...` on /admin/v1).
    #[command(subcommand)]
    Token(AdminTokenCommand),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScopeArg {
    /// GET requests only.
    Read,
    /// Everything.
    Write,
}

#[derive(Debug, Subcommand)]
pub enum AdminTokenCommand {
    /// Create a token; prints the whole token once, alone on one line.
    Create {
        #[arg(long, value_enum)]
        scope: ScopeArg,
        /// Names the token in the audit log (`admin:<label>`): [A-Za-z0-9._@:-]{1,64}.
        #[arg(long)]
        label: Option<String>,
    },
    /// List tokens (never a secret or hash).
    List,
    /// Revoke a token. A running gateway may accept it for up to a minute more.
    Revoke { id: String },
}

pub(super) async fn token(
    fleet: &Fleet,
    cmd: &AdminTokenCommand,
    json: bool,
) -> anyhow::Result<()> {
    let store = fleet.store();
    let tokens = AdminTokens::new();
    let actor = actor();
    match cmd {
        AdminTokenCommand::Create { scope, label } => {
            let scope = match scope {
                ScopeArg::Read => AdminScope::Read,
                ScopeArg::Write => AdminScope::Write,
            };
            let (record, token) = tokens.create(store, scope, label.clone(), &actor).await?;
            println!("{}", token.expose_str().unwrap_or_default());
            eprintln!(
                "admin token {} ({}) created: it is shown only this once",
                record.id,
                scope.as_str()
            );
        }
        AdminTokenCommand::List => {
            let all = store.list_admin_tokens().await?;
            if json {
                let views: Vec<AdminTokenView> = all.iter().map(AdminTokenView::from).collect();
                println!("{}", serde_json::to_value(views)?);
            } else {
                let columns = [
                    ("ID", 14),
                    ("SCOPE", 6),
                    ("LABEL", 24),
                    ("CREATED", 22),
                    ("REVOKED", 22),
                    ("LAST USED", 0),
                ];
                print_table(
                    columns,
                    all.iter().map(|r| {
                        [
                            r.id.clone(),
                            r.scope.as_str().to_string(),
                            r.label.as_deref().unwrap_or("-").to_string(),
                            crate::time::rfc3339(r.created_at),
                            time_or_dash(r.revoked_at),
                            time_or_dash(r.last_used_at),
                        ]
                    }),
                );
            }
        }
        AdminTokenCommand::Revoke { id } => {
            if !crate::admin::token::is_token_id(id) {
                bail!("{id:?} is not a token id (12 characters, the part after wpgat_)");
            }
            let r = tokens
                .revoke(store, id, &actor)
                .await
                .map_err(|e| match e {
                    crate::admin::token::TokenError::Store(StoreError::NotFound(what)) => {
                        anyhow::anyhow!("{what} does not exist")
                    }
                    other => anyhow::Error::new(other),
                })?;
            report(
                json,
                serde_json::to_value(AdminTokenView::from(&r))?,
                format!("admin token {id} revoked"),
            );
        }
    }
    Ok(())
}
