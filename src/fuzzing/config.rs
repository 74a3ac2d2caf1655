//! `wpgate.toml` text through the layers and validation that `wpgate check` and `serve`
//! use ([`Config::load_text`]): it never panics, what it accepts keeps the validated
//! rules, writes back to text that loads to the same configuration, and never shows the
//! store's password.

use crate::config::file::FileConfig;
use crate::config::{Config, ConfigError, LoadOptions};
use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use std::time::Duration;

pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let loaded = Config::load_text(&text, &LoadOptions::default());
    if let Ok(config) = &loaded {
        keeps_the_rules(config);
        writes_back(&text, config);
    }
    hides_the_store_password(&text, &shown(&loaded));
}

/// What an operator can see of a load: the configuration's `Debug` and store, or the
/// error.
fn shown(loaded: &Result<Config, ConfigError>) -> String {
    match loaded {
        Ok(config) => format!("{config:?} {}", config.boot.store),
        Err(e) => format!("{e} {e:?}"),
    }
}

fn keeps_the_rules(c: &Config) {
    let b = &c.boot;
    assert_ne!(b.listen_proxy, Some(b.listen_admin));
    assert!(b.listen_proxy.is_some() || b.listen_proxy_tls.is_some());
    assert!(!b.data_dir.as_os_str().is_empty());
    assert!(b.cache.capacity >= 1);
    assert!(!b.cache.negative_ttl.is_zero() && b.cache.negative_ttl <= b.cache.ttl);
    assert!(b.store_poll_interval >= Duration::from_millis(100));
    assert!((1..=256).contains(&b.proxy_threads));
    assert!(!b.auth.jwks_min_ttl.is_zero() && b.auth.jwks_min_ttl <= b.auth.jwks_max_ttl);
    assert!(!b.auth.failure_window.is_zero() && !b.auth.fetch_timeout.is_zero());
    assert!(b.health.interval >= Duration::from_secs(1) && b.health.concurrency >= 1);
    assert!(!c.live.upstream.connect_timeout.is_zero());
    assert!(!c.live.upstream.read_timeout.is_zero());
}

/// The file layer as read, serialised to TOML again, loads to the same configuration.
fn writes_back(text: &str, config: &Config) {
    let file: FileConfig = match Figment::from(Serialized::defaults(FileConfig::default()))
        .merge(Toml::string(text))
        .extract()
    {
        Ok(file) => file,
        Err(e) => panic!("the file layer alone does not read: {e}"),
    };
    let written = match toml::to_string(&file) {
        Ok(written) => written,
        Err(e) => panic!("an accepted configuration does not serialise: {e}"),
    };
    match Config::load_text(&written, &LoadOptions::default()) {
        Ok(again) => {
            assert_eq!(again.boot, config.boot, "written back as {written}");
            assert_eq!(again.live, config.live, "written back as {written}");
        }
        Err(e) => panic!("an accepted configuration, written back, is refused: {e}\n{written}"),
    }
}

/// Every key and string value in `value`, decoded.
pub(super) fn strings_of(value: &toml::Value, out: &mut Vec<String>) {
    match value {
        toml::Value::String(s) => out.push(s.clone()),
        toml::Value::Array(items) => items.iter().for_each(|v| strings_of(v, out)),
        toml::Value::Table(table) => {
            for (k, v) in table {
                out.push(k.clone());
                strings_of(v, out);
            }
        }
        _ => {}
    }
}

/// The password of `store.url` (in the user part, or a `password` query parameter),
/// where the text has one, writes it once, and no other string or key of the document
/// holds it (so that showing it can only be an echo of the password).
fn store_passwords(text: &str) -> Vec<String> {
    let Ok(mut doc) = toml::from_str::<toml::Table>(text) else {
        return Vec::new();
    };
    let url = doc
        .get_mut("store")
        .and_then(|s| s.as_table_mut())
        .and_then(|s| s.remove("url"));
    let Some(toml::Value::String(url)) = url else {
        return Vec::new();
    };
    let mut others = Vec::new();
    strings_of(&toml::Value::Table(doc), &mut others);
    let url = url.as_str();
    // Only a PostgreSQL URL has a password; a SQLite one is a file path.
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Vec::new();
    }
    let Ok(parsed) = url::Url::parse(url) else {
        return Vec::new();
    };
    let mut passwords: Vec<String> = parsed.password().into_iter().map(str::to_string).collect();
    passwords.extend(
        parsed
            .query_pairs()
            .filter(|(k, _)| k.to_ascii_lowercase().contains("password"))
            .map(|(_, v)| v.into_owned()),
    );
    // The rest of the URL as the url crate reads it (it drops tabs and newlines, so the
    // text may spell a password elsewhere, e.g. in the fragment, that the URL's
    // password only equals once read).
    let mut rest = parsed.clone();
    let _ = rest.set_password(None);
    rest.set_query(None);
    others.push(rest.to_string());
    // The query's other parameters as written, too: their escapes may spell the
    // password's percent-encoded form (a password with a non-ASCII character is read
    // back encoded), which the decoded pairs below do not.
    // A password parameter's name is shown (only its value is redacted).
    for raw in parsed.query().unwrap_or_default().split('&') {
        let is_password = url::form_urlencoded::parse(raw.as_bytes())
            .any(|(k, _)| k.to_ascii_lowercase().contains("password"));
        if is_password {
            others.push(raw.split('=').next().unwrap_or_default().to_string());
        } else {
            others.push(raw.to_string());
        }
    }
    // And each parameter as the loader writes it back (decoded, then encoded again:
    // a name with a non-ASCII character may then spell the password's encoded form).
    let encoded = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    for (k, v) in parsed.query_pairs() {
        if !k.to_ascii_lowercase().contains("password") {
            others.push(encoded(&v));
            others.push(v.into_owned());
        }
        others.push(encoded(&k));
        others.push(k.into_owned());
    }
    passwords.retain(|p| {
        p.len() >= 6
            && text.matches(p.as_str()).count() == 1
            && !others.iter().any(|o| o.contains(p.as_str()))
    });
    passwords
}

/// The password shows no more often than when the URL carries another one instead (the
/// words of the output, field names included, may spell a password by chance).
fn hides_the_store_password(text: &str, shown_here: &str) {
    for password in store_passwords(text) {
        let Some(other) = ['Q', 'Z', 'x', '7']
            .into_iter()
            .find(|&c| !password.contains(c))
            .map(|c| c.to_string().repeat(password.len()))
        else {
            continue;
        };
        let elsewhere = shown(&Config::load_text(
            &text.replacen(&password, &other, 1),
            &LoadOptions::default(),
        ));
        assert!(
            shown_here.matches(&password).count() <= elsewhere.matches(&password).count(),
            "the store password {password:?} is shown: {shown_here}"
        );
    }
}
