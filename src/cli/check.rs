//! `wpgate check`: validates the configuration (and the keyring, if present, and the
//! TLS certificates); `wpgate healthcheck`: asks a running gateway whether it is up.

use crate::config::Config;
use crate::crypto::Keyring;
use serde_json::json;

pub(super) fn run(config: &Config, json: bool) -> anyhow::Result<()> {
    let keyring = match std::env::var("WPGATE_KEYRING") {
        Ok(text) => {
            let k = Keyring::parse(&text, "from WPGATE_KEYRING")?;
            format!(
                "WPGATE_KEYRING ({} keys, primary {})",
                k.key_ids().count(),
                k.primary_id()
            )
        }
        Err(_) if config.boot.keyring_file.exists() => {
            let k = Keyring::load_file(&config.boot.keyring_file)?;
            format!(
                "{} ({} keys, primary {})",
                config.boot.keyring_file.display(),
                k.key_ids().count(),
                k.primary_id()
            )
        }
        Err(_) => format!(
            "{} (does not exist yet: generated on first start)",
            config.boot.keyring_file.display()
        ),
    };
    // The same checks a start and a reload make: parse, key matches, not expired.
    let tls = crate::tls::prepare(&config.live.tls, crate::time::now_unix())?;
    let certificates: Vec<String> = [
        (
            "tls.cert_file",
            &config.live.tls.certificate,
            tls.certificate(),
        ),
        (
            "tls.admin_cert_file",
            &config.live.tls.admin_certificate,
            tls.admin_certificate(),
        ),
    ]
    .into_iter()
    .filter_map(|(setting, files, loaded)| {
        let (files, info) = (files.as_ref()?, loaded?.info());
        Some(format!(
            "{setting} {}: {}, serial {}, expires {}",
            files.cert.display(),
            info.subject,
            info.serial,
            crate::time::rfc3339(info.not_after)
        ))
    })
    .collect();
    let listen = |a: Option<std::net::SocketAddr>| a.map(|a| a.to_string());
    let source = config
        .source_file
        .as_ref()
        .map_or("built-in defaults and environment".to_string(), |p| {
            p.display().to_string()
        });
    if json {
        println!(
            "{}",
            json!({
                "ok": true,
                "config": source,
                "keyring": keyring,
                "listen_proxy": listen(config.boot.listen_proxy),
                "listen_proxy_tls": listen(config.boot.listen_proxy_tls),
                "admin_tls": config.boot.listen_admin_tls,
                "certificates": certificates,
                "legacy_default_site": config.live.legacy.as_ref().map(|l| l.default_site.as_str()),
            })
        );
    } else {
        println!("configuration OK: {source}");
        if let Some(addr) = config.boot.listen_proxy {
            println!("  proxy listens on {addr} (HTTP)");
        }
        if let Some(addr) = config.boot.listen_proxy_tls {
            println!("  proxy listens on {addr} (HTTPS)");
        }
        if config.boot.listen_admin_tls {
            println!("  admin listens on {} (HTTPS)", config.boot.listen_admin);
        }
        for c in &certificates {
            println!("  {c}");
        }
        if let Some(l) = &config.live.legacy {
            println!(
                "  legacy single-site mode: requests without X-Website-ID go to site {} (deprecated: remove [legacy] once every client sends it)",
                l.default_site
            );
        }
        println!("  keyring: {keyring}");
    }
    Ok(())
}

/// GET /healthz on the admin listener (or `url`); an error unless it answers 200.
pub(super) async fn healthcheck(config: &Config, url: Option<&str>) -> anyhow::Result<()> {
    let url = match url {
        Some(u) => u.to_string(),
        None => {
            let mut addr = config.boot.listen_admin;
            if addr.ip().is_unspecified() {
                addr.set_ip(match addr {
                    std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                    std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                });
            }
            format!("http://{addr}/healthz")
        }
    };
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(3))
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let status = client
        .get(&url)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{url}: no answer ({e})"))?
        .status();
    anyhow::ensure!(status.is_success(), "{url}: answered {status}");
    println!("{url}: {status}");
    Ok(())
}
