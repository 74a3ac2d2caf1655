//! `wpgate audit` (the audit log, a page at a time) and `wpgate reload` (a running
//! gateway re-reads its configuration, keyring and certificates).

use super::{print_table, report};
use crate::admin::views::AuditEntryView;
use crate::config::Config;
use crate::fleet::Fleet;
use crate::site::SiteId;
use crate::store::{read_audit, AuditPage};
use anyhow::{bail, Context};
use clap::Args;
use serde_json::{json, Value};

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only the entries about this site (its keys included).
    #[arg(long)]
    pub site: Option<SiteId>,
    /// Only entries from this time on: RFC 3339 (2026-12-01T00:00:00Z) or a duration ago
    /// (24h, 7d).
    #[arg(long)]
    pub since: Option<String>,
    /// How many, newest first (1-1000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
    /// The cursor a previous page printed: the entries older than it.
    #[arg(long)]
    pub cursor: Option<i64>,
}

pub(super) async fn audit(fleet: &Fleet, args: &AuditArgs, json: bool) -> anyhow::Result<()> {
    let since = args
        .since
        .as_deref()
        .map(|s| crate::time::parse_since(s, crate::time::now_unix()))
        .transpose()
        .map_err(|e| anyhow::anyhow!("--since: {e}"))?;
    if args.cursor.is_some_and(|c| c <= 0) {
        bail!("--cursor: the cursor a previous page printed");
    }
    let (entries, next) = read_audit(
        fleet.store(),
        &AuditPage {
            site_id: args.site.as_ref().map(SiteId::as_str),
            since,
            before: args.cursor,
            limit: args.limit,
        },
    )
    .await?;
    let views: Vec<AuditEntryView> = entries.iter().map(AuditEntryView::from).collect();
    if json {
        println!(
            "{}",
            json!({"entries": views, "next_cursor": next.map(|n| n.to_string())})
        );
        return Ok(());
    }
    print_table(
        [
            ("ID", 8),
            ("AT", 21),
            ("ACTOR", 24),
            ("ACTION", 22),
            ("TARGET", 28),
            ("DETAIL", 0),
        ],
        views.into_iter().map(|v| {
            [
                v.id.to_string(),
                v.at,
                v.actor,
                v.action,
                v.target,
                v.detail.unwrap_or_default(),
            ]
        }),
    );
    if let Some(n) = next {
        eprintln!("more: wpgate audit --cursor {n} (with the same filters)");
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct ReloadArgs {
    /// The admin API to ask (default: listen.admin, on 127.0.0.1 when it listens on
    /// every interface).
    #[arg(long)]
    pub url: Option<String>,
    /// Send SIGHUP to the gateway of this data directory (its pid file) instead of asking
    /// the admin API; the gateway's log says what it applied.
    #[arg(long)]
    pub signal: bool,
}

/// Asks a running gateway to reload: through the admin API (`POST /admin/v1/reload`,
/// with a write token from `WPGATE_ADMIN_TOKEN`), which answers what was applied, or
/// with SIGHUP to the pid in the data directory.
pub(super) async fn reload(config: &Config, args: &ReloadArgs, json: bool) -> anyhow::Result<()> {
    if args.signal {
        return signal_reload(config, json);
    }
    let token = std::env::var("WPGATE_ADMIN_TOKEN").map_err(|_| {
        anyhow::anyhow!(
            "wpgate reload asks the admin API: set WPGATE_ADMIN_TOKEN to a write token \
             (wpgate admin token create --scope write), or use --signal to send SIGHUP"
        )
    })?;
    let base = match &args.url {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => admin_base(config),
    };
    let mut client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none());
    if let Some(files) = config
        .live
        .tls
        .admin()
        .filter(|_| config.boot.listen_admin_tls)
    {
        // The admin listener's own certificate is the one to trust.
        let pem = std::fs::read(&files.cert)
            .with_context(|| format!("cannot read {}", files.cert.display()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)? {
            client = client.add_root_certificate(cert);
        }
    }
    let url = format!("{base}/admin/v1/reload");
    let resp = client
        .build()?
        .post(&url)
        .bearer_auth(token.trim())
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{url}: no answer ({e})"))?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let code = body["error"]["code"].as_str().unwrap_or("-");
        let message = body["error"]["message"].as_str().unwrap_or("");
        bail!("reload refused ({status}, {code}): {message}");
    }
    let list = |k: &str| {
        body[k]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    let text = format!(
        "reloaded: applied [{}]; needs a restart [{}]; keyring primary {} ({} keys)",
        list("applied"),
        list("restart_required"),
        body["keyring_primary"].as_str().unwrap_or("-"),
        body["keyring_keys"]
    );
    report(json, body, text);
    Ok(())
}

fn admin_base(config: &Config) -> String {
    let mut addr = config.boot.listen_admin;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let scheme = if config.boot.listen_admin_tls {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{addr}")
}

fn signal_reload(config: &Config, json: bool) -> anyhow::Result<()> {
    let path = config.boot.data_dir.join("wpgate.pid");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {} (is a gateway running on this data directory?)",
            path.display()
        )
    })?;
    let pid: i32 = text
        .trim()
        .parse()
        .with_context(|| format!("{} does not hold a process id", path.display()))?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGHUP,
    )
    .with_context(|| format!("cannot signal process {pid} (from {})", path.display()))?;
    report(
        json,
        json!({"signalled": pid}),
        format!("sent SIGHUP to the gateway (pid {pid}); its log says what it applied"),
    );
    Ok(())
}
