//! Secrets stay secret: not in the database file, not in logs, not in responses, not
//! in CLI output; the keyring file is private and a readable one is refused.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use crate::harness::{
    free_port, marker, random_string, run_wpgate_within, Answer, ApiKey, CliOutput, Gateway,
    GatewayConfig, SiteAuth, Upstream, KEY_HEADER, SITE_HEADER,
};

/// A gateway with one site per credential kind, keys for each, and some traffic
/// (successful and failed) through all of them.
struct Planted {
    up: Upstream,
    gw: Gateway,
    sites: Vec<(&'static str, SiteAuth, ApiKey)>,
    /// Every CLI run except `key issue` (whose stdout is the key, by design).
    cli_outputs: Vec<CliOutput>,
    answers: Vec<Answer>,
}

impl Planted {
    /// Every string that must never show up anywhere.
    fn secrets(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (site, auth, key) in &self.sites {
            for s in auth.secrets() {
                out.push((format!("upstream credential of {site}"), s));
            }
            out.push((format!("API key secret of {site}"), key.secret.clone()));
            out.push((format!("full API key of {site}"), key.full.clone()));
        }
        out
    }
}

async fn plant(log_level: &str) -> Planted {
    let up = Upstream::start();
    let gw = Gateway::start_with(GatewayConfig {
        log_level: log_level.into(),
        ..GatewayConfig::default()
    });
    let password = format!(
        "{} {} {} {} {} {}",
        random_string(4),
        random_string(4),
        random_string(4),
        random_string(4),
        random_string(4),
        random_string(4)
    );
    let specs = [
        ("sec-app", SiteAuth::app_password("sec-user", &password)),
        (
            "sec-bearer",
            SiteAuth::bearer(&format!("tok_{}", random_string(40))),
        ),
        (
            "sec-header",
            SiteAuth::header("X-Plugin-Auth", &random_string(36)),
        ),
    ];
    let mut cli_outputs = Vec::new();
    let mut sites = Vec::new();
    for (site, auth) in specs {
        cli_outputs.push(gw.add_site(site, &up.url(), &auth));
        let key = gw.issue_key(site, &["--label", "planted"]);
        sites.push((site, auth, key));
    }
    // A site whose upstream is down, with a credential: errors must not leak it.
    let down_auth = SiteAuth::bearer(&format!("down_{}", random_string(40)));
    cli_outputs.push(gw.add_site(
        "sec-down",
        &format!("http://127.0.0.1:{}", free_port()),
        &down_auth,
    ));
    let down_key = gw.issue_key("sec-down", &[]);
    sites.push(("sec-down", down_auth, down_key));

    let mut answers = Vec::new();
    for (site, _, key) in &sites {
        let site: &str = site;
        let m = marker();
        let first = gw
            .get_as(site, &key.full, &format!("/wp-json/wp/v2/users/me?{m}"))
            .await;
        let expected = if site == "sec-down" { 502 } else { 200 };
        assert_eq!(first.status, expected, "{site}: {}", first.summary());
        answers.push(first);
        answers.push(
            gw.send(
                gw.request(reqwest::Method::POST, "/wp-json/wp/v2/posts")
                    .header(SITE_HEADER, site)
                    .bearer_auth(&key.full)
                    .body("{\"title\":\"t\"}"),
            )
            .await,
        );
        answers.push(gw.get_as(site, &key.full, "/wp-json/status/401").await);
        answers.push(gw.get_as(site, &key.with_wrong_secret(), "/wp-json/").await);
        answers.push(gw.send(gw.get("/wp-json/").header(SITE_HEADER, site)).await);
        answers.push(
            gw.send(
                gw.get("/wp-json/")
                    .header(SITE_HEADER, site)
                    .header(KEY_HEADER, &key.full)
                    .bearer_auth(&key.full),
            )
            .await,
        );
    }
    // A key used on the wrong site.
    answers.push(gw.get_as("sec-bearer", &sites[0].2.full, "/wp-json/").await);

    for args in [
        vec!["--json", "site", "show", "sec-app"],
        vec!["--json", "site", "show", "sec-bearer"],
        vec!["--json", "site", "show", "sec-header"],
        vec!["--json", "site", "list"],
        vec!["site", "show", "sec-app"],
        vec!["site", "list"],
        vec!["--json", "key", "list", "sec-app"],
        vec!["key", "list", "sec-bearer"],
    ] {
        let out = gw.cli(&args, None);
        out.assert_success();
        cli_outputs.push(out);
    }
    Planted {
        up,
        gw,
        sites,
        cli_outputs,
        answers,
    }
}

fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn read_db_files(data_dir: &Path) -> Vec<(String, Vec<u8>)> {
    [
        "wpgate.db",
        "wpgate.db-wal",
        "wpgate.db-shm",
        "wpgate.db-journal",
    ]
    .iter()
    .filter_map(|name| {
        std::fs::read(data_dir.join(name))
            .ok()
            .map(|b| ((*name).to_owned(), b))
    })
    .collect()
}

#[tokio::test]
async fn database_holds_no_plaintext_secret() {
    let p = plant("info").await;
    let files = read_db_files(&p.gw.data_dir);
    assert!(
        files.iter().any(|(n, b)| n == "wpgate.db" && !b.is_empty()),
        "no database at {}",
        p.gw.db_path().display()
    );
    let all: Vec<u8> = files.iter().flat_map(|(_, b)| b.iter().copied()).collect();
    // Sanity: the files are the store we wrote to (site ids are not secret).
    assert!(
        contains_bytes(&all, b"sec-bearer"),
        "site ids not found in the database files: wrong files?"
    );
    for (what, secret) in p.secrets() {
        for (name, bytes) in &files {
            assert!(
                !contains_bytes(bytes, secret.as_bytes()),
                "{what} found in plaintext in {name}"
            );
        }
    }
    assert!(!p.up.requests().is_empty());
}

#[tokio::test]
async fn logs_hold_no_secret() {
    assert_logs_hold_no_secret("info,wpgate=debug").await;
}

/// An operator who turns logging all the way up to chase a problem must not get
/// credentials in the log either (third-party crates log whole header maps at trace).
#[tokio::test]
async fn logs_hold_no_secret_even_at_trace_level() {
    assert_logs_hold_no_secret("trace").await;
}

async fn assert_logs_hold_no_secret(level: &str) {
    let p = plant(level).await;
    // Wait until the per-request log lines are out (a site id shows up in them).
    crate::harness::poll_until("request log lines", Duration::from_secs(5), || async {
        if p.gw.logs().contains("sec-header") {
            Ok(())
        } else {
            Err(p.gw.logs().lines().last().unwrap_or("").to_owned())
        }
    })
    .await;
    let logs = p.gw.logs();
    for (what, secret) in p.secrets() {
        if let Some(line) = logs.lines().find(|l| l.contains(&secret)) {
            panic!(
                "{what} found in the gateway log (level {level:?}):\n{}",
                line.replace(&secret, "<SECRET>")
            );
        }
    }
    for out in &p.cli_outputs {
        for (what, secret) in p.secrets() {
            assert!(
                !out.stderr.contains(&secret),
                "{what} in stderr of `wpgate {}`",
                out.args.join(" ")
            );
        }
    }
}

#[tokio::test]
async fn cli_output_never_shows_a_secret() {
    let p = plant("info").await;
    for out in &p.cli_outputs {
        for (what, secret) in p.secrets() {
            assert!(
                !out.stdout.contains(&secret) && !out.stderr.contains(&secret),
                "{what} printed by `wpgate {}`:\n{}{}",
                out.args.join(" "),
                out.stdout,
                out.stderr
            );
        }
    }
    // The JSON forms parse.
    for out in p
        .cli_outputs
        .iter()
        .filter(|o| o.args.first().map(String::as_str) == Some("--json"))
    {
        out.json();
    }
}

#[tokio::test]
async fn upstream_credentials_never_appear_in_responses() {
    let p = plant("info").await;
    assert!(p.answers.iter().any(|a| a.status == 200));
    assert!(p.answers.iter().any(|a| a.status == 502));
    assert!(p.answers.iter().any(|a| a.status == 401));
    for a in &p.answers {
        let text = a.all_text();
        for (site, auth, _) in &p.sites {
            for secret in auth.secrets() {
                assert!(
                    !text.contains(&secret),
                    "upstream credential of {site} in a response: {}",
                    a.summary()
                );
            }
        }
    }
}

#[tokio::test]
async fn keyring_is_created_private() {
    let gw = Gateway::start();
    let keyring = gw.keyring_path();
    let meta = std::fs::metadata(&keyring)
        .unwrap_or_else(|e| panic!("no keyring at {}: {e}", keyring.display()));
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "keyring mode is {:o}",
        meta.permissions().mode() & 0o777
    );
    assert!(
        gw.db_path().exists(),
        "no database at {}",
        gw.db_path().display()
    );
}

fn mentions_permissions(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("permission") || t.contains("mode") || t.contains("0644") || t.contains("0640")
}

#[tokio::test]
async fn readable_keyring_is_refused() {
    let mut gw = Gateway::start();
    let up = Upstream::start();
    gw.add_site("kr", &up.url(), &SiteAuth::bearer("kr-token"));
    let key = gw.issue_key("kr", &[]);
    gw.stop();
    let keyring = gw.keyring_path();
    let config = gw.config_path.to_string_lossy().into_owned();

    for mode in [0o644, 0o640] {
        std::fs::set_permissions(&keyring, std::fs::Permissions::from_mode(mode)).unwrap();

        let out = gw.cli(&["check"], None);
        out.assert_failure();
        assert!(
            mentions_permissions(&format!("{}{}", out.stderr, out.stdout)),
            "`check` with a {mode:o} keyring fails without naming the permissions:\n{}",
            out.stderr
        );

        let serve = run_wpgate_within(
            &["--config", &config, "serve"],
            None,
            &[],
            Duration::from_secs(20),
        )
        .unwrap_or_else(|| panic!("`serve` kept running with a {mode:o} keyring"));
        serve.assert_failure();
        assert!(
            mentions_permissions(&format!("{}{}", serve.stderr, serve.stdout)),
            "`serve` with a {mode:o} keyring fails without naming the permissions:\n{}",
            serve.stderr
        );
        assert!(
            !crate::harness::http_answers(gw.proxy_addr),
            "proxy listening with a {mode:o} keyring"
        );
    }

    // Back to 0600: the same data serves again.
    std::fs::set_permissions(&keyring, std::fs::Permissions::from_mode(0o600)).unwrap();
    gw.cli(&["check"], None).assert_success();
    gw.serve();
    gw.get_as("kr", &key.full, "/wp-json/").await.assert_ok();
}

#[tokio::test]
async fn keyring_can_come_from_the_environment() {
    let mut gw = Gateway::start();
    let up = Upstream::start();
    let auth = SiteAuth::bearer(&format!("envk_{}", random_string(30)));
    gw.add_site("envk", &up.url(), &auth);
    let key = gw.issue_key("envk", &[]);
    gw.stop();

    let keyring = gw.keyring_path();
    let content = std::fs::read_to_string(&keyring).unwrap();
    let moved = gw.dir.path().join("keyring.moved");
    std::fs::rename(&keyring, &moved).unwrap();
    gw.env.push(("WPGATE_KEYRING".into(), content));
    gw.serve();

    let m = marker();
    gw.get_as("envk", &key.full, &format!("/wp-json/?{m}"))
        .await
        .assert_ok();
    up.one_with(&m).assert_credential(&auth);
}
