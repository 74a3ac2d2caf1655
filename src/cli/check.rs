//! `wpgate check`: validates the configuration (and the keyring, if present).

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
    let source = config
        .source_file
        .as_ref()
        .map_or("built-in defaults and environment".to_string(), |p| {
            p.display().to_string()
        });
    if json {
        println!(
            "{}",
            json!({"ok": true, "config": source, "keyring": keyring, "listen_proxy": config.boot.listen_proxy.to_string()})
        );
    } else {
        println!("configuration OK: {source}");
        println!("  proxy listens on {}", config.boot.listen_proxy);
        println!("  keyring: {keyring}");
    }
    Ok(())
}
