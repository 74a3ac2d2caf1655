//! Onboarding, through the real binary and the real gateway: legacy single-site mode (a
//! request without X-Website-ID goes to `legacy.default_site`, authenticated as ever and
//! marked deprecated), `site import-env` (a one-site set-up's environment), bulk import
//! and export of JSON lines and CSV in the CLI and the admin API (checked whole,
//! written in one transaction, idempotent, never a secret out), and 1,000 sites.

use std::path::Path;
use std::time::Instant;

use reqwest::Method;
use serde_json::Value;

use crate::harness::postgres::TestDb;
use crate::harness::records::site;
use crate::harness::{
    log_field, marker, metric_value, parse_metrics, poll_until, promtool_check_metrics, run_within,
    toml_str, wpgate_command, CliOutput, Gateway, GatewayConfig, Recorded, SiteAuth, Upstream,
    CHANGE_DEADLINE, CLI_DEADLINE, KEY_HEADER, SITE_HEADER,
};
use wpgate::config::StoreUrl;
use wpgate::store::{self, AuditEntry, SiteWrite, StoreError};

const LEGACY_METRIC: &str = "wpgate_legacy_requests_total";
/// The variables `site import-env` reads; removed from every command, then set per call.
const WORDPRESS_VARS: [&str; 4] = [
    "WORDPRESS_API_URL",
    "WORDPRESS_USERNAME",
    "WORDPRESS_APP_PASSWORD",
    "WORDPRESS_AUTH_TOKEN",
];

/// `wpgate --config <gw's> <args>` with exactly `env` of the WordPress variables (and
/// any other variables given), feeding `stdin`.
fn cli_env(gw: &Gateway, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> CliOutput {
    let config = gw.config_path.to_string_lossy().into_owned();
    let mut all = vec!["--config", config.as_str()];
    all.extend_from_slice(args);
    let mut cmd = wpgate_command(&all);
    for var in WORDPRESS_VARS {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    run_within(cmd, &all, stdin, CLI_DEADLINE).expect("the command hung")
}

/// Writes `text` as `name` in the gateway's temp dir; returns the path.
fn file(gw: &Gateway, name: &str, text: &str) -> String {
    let path = gw.dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

/// The stored sites (`site list --json`).
fn sites(gw: &Gateway) -> Vec<Value> {
    let out = gw.cli_json(&["site", "list"]);
    out.assert_success();
    out.json().as_array().unwrap().clone()
}

fn site_ids(gw: &Gateway) -> Vec<String> {
    sites(gw)
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

fn show(gw: &Gateway, id: &str) -> Value {
    let out = gw.cli_json(&["site", "show", id]);
    out.assert_success();
    out.json()
}

#[track_caller]
fn assert_no_secret(out: &CliOutput, secrets: &[&str]) {
    for s in secrets {
        assert!(
            !out.stdout.contains(s) && !out.stderr.contains(s),
            "`wpgate {}` printed a secret:\n{}\n{}",
            out.args.join(" "),
            out.stdout,
            out.stderr
        );
    }
}

/// The audit entries (newest first) through the admin API.
async fn audit(gw: &Gateway, token: &str) -> Vec<Value> {
    let a = gw
        .admin_call(Method::GET, "/admin/v1/audit?limit=1000", token, None)
        .await;
    assert_eq!(a.status, 200, "{}", a.summary());
    a.json().unwrap()["entries"].as_array().unwrap().clone()
}

/// GET `path` for `site` with its key (asserting 200); the request the upstream got.
async fn forwarded(gw: &Gateway, up: &Upstream, site: &str, key: &str, path: &str) -> Recorded {
    let m = marker();
    gw.get_as(site, key, &format!("{path}?{m}"))
        .await
        .assert_ok();
    up.one_with(&m)
}

// ---- legacy single-site mode ----

fn legacy_config(extra: &str) -> GatewayConfig {
    GatewayConfig {
        proxy_toml: "trusted_proxies = [\"127.0.0.1\"]".into(),
        extra_toml: format!("[legacy]\ndefault_site = \"shop\"\n{extra}"),
        ..GatewayConfig::default()
    }
}

#[tokio::test]
async fn legacy_mode_sends_old_clients_to_the_default_site_authenticated_and_deprecated() {
    let up = Upstream::start();
    let gw = Gateway::start_with(legacy_config(
        "deprecated_since = \"2025-06-01T00:00:00Z\"\n\
         deprecation_link = \"https://docs.example.com/migrate\"\n",
    ));
    let shop_auth = SiteAuth::app_password("api", "abcd efgh ijkl mnop qrst uvwx");
    gw.add_site("shop", &up.url(), &shop_auth);
    gw.add_site(
        "blog",
        &up.url(),
        &SiteAuth::bearer("blog-token-0123456789"),
    );
    let shop = gw.issue_key("shop", &[]);
    let blog = gw.issue_key("blog", &[]);
    let deprecated = |a: &crate::harness::Answer| {
        assert_eq!(a.header("deprecation"), Some("@1748736000"), "{a:?}");
        let link = a.header("link").unwrap_or_default();
        assert!(
            link.contains("<https://docs.example.com/migrate>; rel=\"deprecation\""),
            "{link}"
        );
    };

    // (The harness's readiness probe, sent without X-Website-ID, counts too.)
    let legacy_before = metric_value(&gw.metric_samples().await, LEGACY_METRIC, &[]).unwrap();

    // An old client: no X-Website-ID, shop's key (in either header). The site gets its
    // own credential, never the client's key.
    let m = marker();
    let a = gw
        .send(
            gw.get(&format!("/wp-json/wp/v2/posts?{m}"))
                .header(KEY_HEADER, &shop.full),
        )
        .await;
    a.assert_ok();
    deprecated(&a);
    let seen = up.one_with(&m);
    seen.assert_credential(&shop_auth);
    assert!(
        !format!("{seen:?}").contains(&shop.secret),
        "the key reached the site"
    );
    let m = marker();
    let a = gw
        .send(gw.get(&format!("/wp-json/?{m}")).bearer_auth(&shop.full))
        .await;
    a.assert_ok();
    up.one_with(&m).assert_credential(&shop_auth);

    // Authenticated exactly as with the header: a wrong key, no key, another site's key.
    let a = gw
        .send(
            gw.get("/wp-json/")
                .header(KEY_HEADER, shop.with_wrong_secret()),
        )
        .await;
    a.assert_error(401, "auth.invalid_credentials");
    deprecated(&a);
    gw.send(gw.get("/wp-json/"))
        .await
        .assert_error(401, "auth.missing_credentials");
    gw.send(gw.get("/wp-json/").header(KEY_HEADER, &blog.full))
        .await
        .assert_error(401, "auth.invalid_credentials");

    // Requests that name their site are not affected.
    for (site, key) in [("blog", &blog), ("shop", &shop)] {
        let a = gw.get_as(site, &key.full, "/wp-json/").await;
        a.assert_ok();
        assert_eq!(a.header("deprecation"), None, "{site}: {a:?}");
    }
    gw.send(
        gw.get("/wp-json/")
            .header(SITE_HEADER, "nope nope")
            .header(KEY_HEADER, &shop.full),
    )
    .await
    .assert_error(400, "request.invalid_site_id");

    // Two more clients (through the trusted proxy), one of them twice.
    for client in ["203.0.113.7", "203.0.113.7", "203.0.113.8"] {
        gw.send(
            gw.get("/wp-json/")
                .header(KEY_HEADER, &shop.full)
                .header("x-forwarded-for", client),
        )
        .await
        .assert_ok();
    }

    // Every request without X-Website-ID is counted; the exposition stays valid.
    let text = gw.metrics_text().await;
    assert_eq!(
        metric_value(&parse_metrics(&text), LEGACY_METRIC, &[]),
        Some(legacy_before + 8.0),
        "{text}"
    );
    let report = promtool_check_metrics(&text);
    assert!(report.errors.is_empty(), "promtool: {}", report.output);
    assert!(
        !report.lint.iter().any(|l| l.contains(LEGACY_METRIC)),
        "promtool: {}",
        report.output
    );

    // Each client is warned about once, naming the site and never a credential.
    let warned = poll_until("one warning per legacy client", CHANGE_DEADLINE, || async {
        let mut clients: Vec<String> = gw
            .log_json()
            .iter()
            .filter(|l| l.get("target").and_then(Value::as_str) == Some("wpgate::legacy"))
            .map(|l| {
                assert_eq!(log_field(l, "site").as_deref(), Some("shop"), "{l}");
                assert_eq!(l.get("level").and_then(Value::as_str), Some("WARN"), "{l}");
                log_field(l, "client").unwrap_or_default()
            })
            .collect();
        clients.sort();
        if clients.len() >= 3 {
            Ok(clients)
        } else {
            Err(format!("{clients:?}"))
        }
    })
    .await;
    assert_eq!(warned, ["127.0.0.1", "203.0.113.7", "203.0.113.8"]);
    let logs = gw.logs();
    for secret in [shop.secret.as_str(), "abcd efgh"] {
        assert!(!logs.contains(secret), "a secret in the log");
    }
}

#[tokio::test]
async fn without_the_setting_no_site_id_is_refused_and_a_reload_turns_it_on_and_off() {
    let up = Upstream::start();
    let gw = Gateway::start();
    gw.add_site("shop", &up.url(), &SiteAuth::None);
    let key = gw.issue_key("shop", &[]);
    let without_id = || gw.send(gw.get("/wp-json/").header(KEY_HEADER, &key.full));
    let a = without_id().await;
    a.assert_error(400, "request.missing_site_id");
    assert_eq!(a.header("deprecation"), None);
    let samples = gw.metric_samples().await;
    assert_eq!(metric_value(&samples, LEGACY_METRIC, &[]), Some(0.0));

    // A live setting: a reload turns it on, and off again.
    let token = gw.admin_token("write", None);
    let plain = std::fs::read_to_string(&gw.config_path).unwrap();
    for (config, want) in [
        (format!("{plain}\n[legacy]\ndefault_site = \"shop\"\n"), 200),
        (plain.clone(), 400),
    ] {
        std::fs::write(&gw.config_path, config).unwrap();
        let a = gw
            .send(gw.admin_request(Method::POST, "/admin/v1/reload", &token))
            .await;
        assert_eq!(a.status, 200, "{}", a.summary());
        let a = poll_until("the reloaded legacy setting", CHANGE_DEADLINE, || async {
            let a = without_id().await;
            if a.status == want {
                Ok(a)
            } else {
                Err(a.summary())
            }
        })
        .await;
        let since = a.header("deprecation");
        if want == 200 {
            assert!(since.is_some_and(|d| d.starts_with('@')), "{a:?}");
        } else {
            assert_eq!(since, None);
            a.assert_error(400, "request.missing_site_id");
        }
    }
}

#[test]
fn check_names_the_legacy_site_and_refuses_a_bad_one_by_name() {
    let gw = Gateway::prepare(legacy_config(""));
    let out = gw.cli(&["check"], None);
    assert!(
        out.assert_success()
            .stdout
            .contains("legacy single-site mode: requests without X-Website-ID go to site shop"),
        "{}",
        out.stdout
    );
    let text = std::fs::read_to_string(&gw.config_path)
        .unwrap()
        .replace("default_site = \"shop\"", "default_site = \"not a site\"");
    std::fs::write(&gw.config_path, text).unwrap();
    let out = gw.cli(&["check"], None);
    out.assert_failure();
    assert!(out.stderr.contains("legacy.default_site"), "{}", out.stderr);
}

// ---- site import-env ----

#[tokio::test]
async fn import_env_adds_the_site_of_a_single_site_environment() {
    let up = Upstream::start();
    let mut gw = Gateway::prepare(GatewayConfig::default());
    let password = "abcd efgh ijkl mnop qrst uvwx";
    let token = "jwt-plugin-token-0123456789";
    let rest_url = format!("{}/wp-json/wp/v2", up.url());

    let out = cli_env(
        &gw,
        &["site", "import-env", "shop"],
        None,
        &[
            ("WORDPRESS_API_URL", &rest_url),
            ("WORDPRESS_USERNAME", "api"),
            ("WORDPRESS_APP_PASSWORD", password),
        ],
    );
    out.assert_success();
    assert_no_secret(&out, &[password, "abcd"]);
    assert!(
        out.stdout.contains(&format!(
            "upstream:   {} (/wp-json/wp/v2 removed from WORDPRESS_API_URL)",
            up.url()
        )),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("credential: app-password for user api, 29 chars (from WORDPRESS_USERNAME, WORDPRESS_APP_PASSWORD)"),
        "{}",
        out.stdout
    );

    // A bearer token; the JSON answer says what was found.
    let out = cli_env(
        &gw,
        &["--json", "site", "import-env", "blog"],
        None,
        &[
            ("WORDPRESS_API_URL", &format!("{}/blog/wp-json/", up.url())),
            ("WORDPRESS_AUTH_TOKEN", token),
        ],
    );
    out.assert_success();
    assert_no_secret(&out, &[token]);
    let found = out.json();
    assert_eq!(found["upstream"], format!("{}/blog", up.url()));
    assert_eq!(found["credential"]["kind"], "bearer");
    assert_eq!(found["credential"]["secret_chars"], token.len());
    assert_eq!(found["site"]["credential"]["kind"], "bearer");

    // The secret on standard input; a dry run adds nothing.
    let out = cli_env(
        &gw,
        &["site", "import-env", "news", "--secret-stdin", "--dry-run"],
        Some("piped-pass-word\n"),
        &[
            ("WORDPRESS_API_URL", &up.url()),
            ("WORDPRESS_USERNAME", "editor"),
        ],
    );
    out.assert_success();
    assert!(
        out.stdout
            .contains("app-password for user editor, 15 chars")
            && out.stdout.contains("taken as the site's base URL")
            && out.stdout.contains("dry run"),
        "{}",
        out.stdout
    );
    assert_eq!(site_ids(&gw), ["blog", "shop"]);

    // Refusals, each with its stable code; nothing added, no secret shown.
    let url = ("WORDPRESS_API_URL", rest_url.as_str());
    for (env, code) in [
        (
            vec![("WORDPRESS_AUTH_TOKEN", token)],
            "import_env.missing_url",
        ),
        (vec![url], "import_env.missing_credential"),
        (
            vec![
                url,
                ("WORDPRESS_USERNAME", "api"),
                ("WORDPRESS_APP_PASSWORD", password),
                ("WORDPRESS_AUTH_TOKEN", token),
            ],
            "import_env.ambiguous_credential",
        ),
        (
            vec![url, ("WORDPRESS_APP_PASSWORD", password)],
            "import_env.incomplete_credential",
        ),
        (
            vec![url, ("WORDPRESS_USERNAME", "api")],
            "import_env.incomplete_credential",
        ),
        (
            vec![url, ("WORDPRESS_AUTH_TOKEN", " ")],
            "import_env.empty_variable",
        ),
        (
            vec![
                (
                    "WORDPRESS_API_URL",
                    "https://api:pw-in-the-url@x.example/wp-json",
                ),
                ("WORDPRESS_AUTH_TOKEN", token),
            ],
            "import_env.invalid_url",
        ),
    ] {
        let out = cli_env(&gw, &["site", "import-env", "other"], None, &env);
        out.assert_failure();
        assert!(out.stderr.contains(code), "{env:?}: {}", out.stderr);
        assert_no_secret(&out, &[password, token, "pw-in-the-url"]);
    }
    // The same id again: refused by `site add`'s rule.
    let out = cli_env(
        &gw,
        &["site", "import-env", "shop"],
        None,
        &[url, ("WORDPRESS_AUTH_TOKEN", token)],
    );
    out.assert_failure();
    assert!(out.stderr.contains("already exists"), "{}", out.stderr);
    assert_eq!(site_ids(&gw), ["blog", "shop"]);

    // Served: the sites' REST API at the derived base URLs, with their credentials.
    gw.serve();
    let shop = gw.issue_key("shop", &[]);
    let blog = gw.issue_key("blog", &[]);
    let seen = forwarded(&gw, &up, "shop", &shop.full, "/wp-json/wp/v2/posts").await;
    assert_eq!(seen.path(), "/wp-json/wp/v2/posts");
    seen.assert_credential(&SiteAuth::app_password("api", password));
    let seen = forwarded(&gw, &up, "blog", &blog.full, "/wp-json/wp/v2/posts").await;
    assert_eq!(seen.path(), "/blog/wp-json/wp/v2/posts");
    seen.assert_credential(&SiteAuth::bearer(token));
    // Audited like `site add`.
    let read = gw.admin_token("read", None);
    let created: Vec<Value> = audit(&gw, &read)
        .await
        .into_iter()
        .filter(|e| e["action"] == "site.create")
        .collect();
    assert_eq!(created.len(), 2, "{created:?}");
}

// ---- bulk import and export ----

fn jsonl_sites(up: &Upstream, token_file: &Path) -> String {
    let u = up.url();
    format!(
        "{{\"id\":\"shop\",\"name\":\"The Shop\",\"upstream\":\"{u}\",\"auth\":\"app-password\",\"username\":\"api\",\"secret\":\"shop pass word\"}}\n\
         \n\
         {{\"id\":\"blog\",\"upstream\":\"{u}/blog\",\"auth\":\"bearer\",\"secret\":\"file:{}\"}}\n\
         {{\"id\":\"news\",\"upstream\":\"{u}\",\"auth\":\"header\",\"header_name\":\"X-Plugin-Auth\",\"secret\":\"env:NEWS_PLUGIN_TOKEN\"}}\n",
        token_file.display()
    )
}

const NEWS_ENV: (&str, &str) = ("NEWS_PLUGIN_TOKEN", "news-token-from-env");

#[tokio::test]
async fn import_creates_sites_from_json_lines_and_csv_and_running_it_again_changes_nothing() {
    let up = Upstream::start();
    let gw = Gateway::start();
    let token_file = gw.dir.path().join("blog-token");
    std::fs::write(&token_file, "blog-token-from-file\n").unwrap();
    let sites_file = file(&gw, "sites.jsonl", &jsonl_sites(&up, &token_file));
    let import = |path: &str, extra: &[&str]| {
        let mut args = vec!["site", "import", path];
        args.extend_from_slice(extra);
        let out = cli_env(&gw, &args, None, &[NEWS_ENV]);
        assert_no_secret(
            &out,
            &["shop pass word", "blog-token-from-file", NEWS_ENV.1],
        );
        out
    };

    // A dry run says what it would do and writes nothing.
    let out = import(&sites_file, &["--dry-run"]);
    out.assert_success();
    for line in [
        "would create shop (line 1)",
        "would create blog (line 3)",
        "would create news (line 4)",
        "3 sites: 3 to create, 0 to update, 0 unchanged (dry run: nothing written)",
    ] {
        assert!(out.stdout.contains(line), "{line}:\n{}", out.stdout);
    }
    assert!(site_ids(&gw).is_empty());

    let out = import(&sites_file, &[]);
    out.assert_success();
    assert!(
        out.stdout
            .contains("3 sites: 3 created, 0 updated, 0 unchanged"),
        "{}",
        out.stdout
    );
    assert_eq!(site_ids(&gw), ["blog", "news", "shop"]);
    assert_eq!(show(&gw, "shop")["name"], "The Shop");
    assert_eq!(show(&gw, "blog")["name"], "blog");

    // Each site's credential (a value, a file, an environment variable) reaches it.
    let expected = [
        ("shop", SiteAuth::app_password("api", "shop pass word"), ""),
        ("blog", SiteAuth::bearer("blog-token-from-file"), "/blog"),
        ("news", SiteAuth::header("X-Plugin-Auth", NEWS_ENV.1), ""),
    ];
    let mut keys = Vec::new();
    for (id, auth, prefix) in &expected {
        let key = gw.issue_key(id, &[]);
        let seen = forwarded(&gw, &up, id, &key.full, "/wp-json/").await;
        seen.assert_credential(auth);
        assert_eq!(seen.path(), format!("{prefix}/wp-json/"));
        keys.push(key);
    }

    // One audit entry per site, as `site add` writes.
    let read = gw.admin_token("read", None);
    let entries = audit(&gw, &read).await;
    let creates: Vec<&Value> = entries
        .iter()
        .filter(|e| e["action"] == "site.create")
        .collect();
    assert_eq!(creates.len(), 3, "{entries:?}");
    for e in &creates {
        let detail = e["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("source=import"), "{e}");
        assert!(e["actor"].as_str().unwrap().starts_with("cli:"), "{e}");
    }

    // Again: nothing changes, nothing is written.
    let out = import(&sites_file, &["--json"]);
    out.assert_success();
    let report = out.json();
    assert_eq!(report["created"], serde_json::json!([]));
    assert_eq!(report["updated"], serde_json::json!([]));
    assert_eq!(report["unchanged"].as_array().unwrap().len(), 3, "{report}");
    assert_eq!(audit(&gw, &read).await.len(), entries.len());
    assert_eq!(show(&gw, "shop")["version"], 1);

    // A changed file: shop gets a new name and password; blog has no secret (keeps its
    // credential); news is as before.
    let changed = jsonl_sites(&up, &token_file)
        .replace("\"The Shop\"", "\"Shop\"")
        .replace("shop pass word", "new shop pass word")
        .replace(
            &format!(",\"secret\":\"file:{}\"", token_file.display()),
            "",
        );
    let changed_file = file(&gw, "changed.jsonl", &changed);
    let out = import(&changed_file, &["--dry-run"]);
    out.assert_success();
    for line in [
        "would update shop (line 1): name, credential",
        "unchanged blog (line 3)",
        "unchanged news (line 4)",
    ] {
        assert!(out.stdout.contains(line), "{line}:\n{}", out.stdout);
    }
    assert_eq!(show(&gw, "shop")["version"], 1, "a dry run wrote");
    let out = import(&changed_file, &[]);
    out.assert_success();
    assert!(
        out.stdout
            .contains("updated shop (line 1): name, credential")
            && out.stdout.contains("0 created, 1 updated, 2 unchanged"),
        "{}",
        out.stdout
    );
    assert_eq!(show(&gw, "shop")["name"], "Shop");
    let new_shop = SiteAuth::app_password("api", "new shop pass word");
    poll_until("shop's new credential in use", CHANGE_DEADLINE, || async {
        let seen = forwarded(&gw, &up, "shop", &keys[0].full, "/wp-json/").await;
        match new_shop.expected_upstream_header() {
            Some((name, value)) if seen.header(&name) == Some(value.as_str()) => Ok(()),
            _ => Err(format!("{seen:?}")),
        }
    })
    .await;
    forwarded(&gw, &up, "blog", &keys[1].full, "/wp-json/")
        .await
        .assert_credential(&expected[1].1);

    // CSV: a header row in any order, an empty cell is a missing field, quoted names.
    let u = up.url();
    let csv = format!(
        "id,upstream,auth,username,header_name,secret,name\n\
         shop2,{u},app-password,api2,,csv pass,\"Shop, two\"\n\
         docs,{u},none,,,,\n"
    );
    let csv_file = file(&gw, "more.csv", &csv);
    let out = import(&csv_file, &[]);
    out.assert_success();
    assert!(
        out.stdout.contains("created shop2 (line 2)"),
        "{}",
        out.stdout
    );
    assert_eq!(show(&gw, "shop2")["name"], "Shop, two");
    assert_eq!(show(&gw, "docs")["credential"]["kind"], "none");
    // From standard input, the format said or found by content.
    for extra in [&["--format", "csv"][..], &[]] {
        let mut args = vec!["site", "import", "-"];
        args.extend_from_slice(extra);
        let out = cli_env(&gw, &args, Some(&csv), &[]);
        out.assert_success();
        assert!(
            out.stdout
                .contains("2 sites: 0 created, 0 updated, 2 unchanged"),
            "{}",
            out.stdout
        );
    }
    let key = gw.issue_key("shop2", &[]);
    forwarded(&gw, &up, "shop2", &key.full, "/wp-json/")
        .await
        .assert_credential(&SiteAuth::app_password("api2", "csv pass"));
}

#[test]
fn a_bad_row_refuses_the_whole_file_with_its_line_and_nothing_is_written() {
    let gw = Gateway::prepare(GatewayConfig::default());
    let u = "http://127.0.0.1:9";
    let ok = |id: &str| {
        format!("{{\"id\":\"{id}\",\"upstream\":\"{u}\",\"auth\":\"bearer\",\"secret\":\"token-{id}\"}}")
    };
    let long = "n".repeat(201);
    let rows = [
        ok("a"),
        ok("b"),
        String::new(),
        format!("{{\"id\":\"c\",\"name\":\"{long}\",\"upstream\":\"{u}\",\"auth\":\"none\"}}"),
        ok("a"),
        format!("{{\"id\":\"d\",\"upstream\":\"{u}\",\"auth\":\"bearer\",\"secret\":\"env:ONBOARD_SURELY_UNSET\"}}"),
        format!("{{\"id\":\"e\",\"upstream\":\"{u}\",\"auth\":\"basic\"}}"),
        format!("{{\"id\":\"f\",\"upstream\":\"{u}\",\"auth\":\"bearer\",\"secret\":\"   \"}}"),
        format!("{{\"id\":\"g\",\"upstream\":\"{u}\",\"auth\":\"bearer\",\"secret\":\"top-secret\\u0001value\"}}"),
        "{\"id\":\"h\",".to_string(),
    ];
    let path = file(&gw, "bad.jsonl", &rows.join("\n"));
    for extra in [&["--dry-run"][..], &[]] {
        let mut args = vec!["site", "import", path.as_str()];
        args.extend_from_slice(extra);
        let out = gw.cli(&args, None);
        out.assert_failure();
        for want in [
            "nothing was written",
            "line 4: name: must be at most 200 characters",
            "line 5: id: \"a\" is already on line 1",
            "line 6: secret: environment variable ONBOARD_SURELY_UNSET is not set",
            "line 7: auth: must be app-password, bearer, header or none",
            "line 8: secret: must not be empty or only whitespace",
            "line 9: secret: ",
            "line 10: ",
        ] {
            assert!(out.stderr.contains(want), "{want}:\n{}", out.stderr);
        }
        assert_no_secret(&out, &["top-secret", "token-a", "token-b"]);
    }
    assert!(site_ids(&gw).is_empty(), "the good rows were written");

    // One bad row among good ones, in CSV (the header is line 1).
    let csv =
        format!("id,upstream,auth,secret\na,{u},bearer,token-a\nb,{u},bearer,\nc,{u},none,\n");
    let path = file(&gw, "bad.csv", &csv);
    let out = gw.cli(&["site", "import", &path], None);
    out.assert_failure();
    assert!(
        out.stderr
            .contains("line 3: secret: required for the new site b (auth bearer)"),
        "{}",
        out.stderr
    );
    assert!(site_ids(&gw).is_empty());

    // A file that changes a stored site and has a bad row changes nothing.
    gw.cli(&["site", "import", "-"], Some(&ok("a")))
        .assert_success();
    let file_text = format!(
        "{}\n{{\"id\":\"z\",\"upstream\":\"not a url\",\"auth\":\"none\"}}\n",
        ok("a").replace("token-a", "token-a2")
    );
    let out = gw.cli(&["site", "import", "-"], Some(&file_text));
    out.assert_failure();
    assert!(out.stderr.contains("line 2: upstream: "), "{}", out.stderr);
    assert_eq!(site_ids(&gw), ["a"]);
    assert_eq!(show(&gw, "a")["version"], 1);
}

#[tokio::test]
async fn an_export_never_holds_a_secret_and_imports_again_unchanged() {
    let up = Upstream::start();
    let gw = Gateway::start();
    let token_file = gw.dir.path().join("blog-token");
    std::fs::write(&token_file, "blog-token-from-file\n").unwrap();
    let path = file(&gw, "sites.jsonl", &jsonl_sites(&up, &token_file));
    cli_env(&gw, &["site", "import", &path], None, &[NEWS_ENV]).assert_success();
    gw.add_site("docs", &up.url(), &SiteAuth::None);
    let secrets = ["shop pass word", "blog-token-from-file", NEWS_ENV.1];

    let jsonl = gw.cli(&["site", "export"], None);
    jsonl.assert_success();
    assert_no_secret(&jsonl, &secrets);
    let lines: Vec<Value> = jsonl
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<&str> = lines.iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["blog", "docs", "news", "shop"]);
    for l in &lines {
        for key in l.as_object().unwrap().keys() {
            assert!(
                ["id", "name", "upstream", "auth", "username", "header_name"]
                    .contains(&key.as_str()),
                "{l}"
            );
        }
    }
    assert_eq!(lines[3]["auth"], "app-password");
    assert_eq!(lines[3]["username"], "api");
    assert_eq!(lines[2]["header_name"], "X-Plugin-Auth");
    let csv = gw.cli(&["site", "export", "--format", "csv"], None);
    csv.assert_success();
    assert_no_secret(&csv, &secrets);
    assert!(
        csv.stdout
            .starts_with("id,name,upstream,auth,username,header_name\n"),
        "{}",
        csv.stdout
    );

    // Both import again without a change; the credentials stay.
    let exported = [
        file(&gw, "export.jsonl", &jsonl.stdout),
        file(&gw, "export.csv", &csv.stdout),
    ];
    for path in &exported {
        let out = gw.cli(&["site", "import", path], None);
        out.assert_success();
        assert!(
            out.stdout
                .contains("4 sites: 0 created, 0 updated, 4 unchanged"),
            "{}",
            out.stdout
        );
    }
    let key = gw.issue_key("shop", &[]);
    forwarded(&gw, &up, "shop", &key.full, "/wp-json/")
        .await
        .assert_credential(&SiteAuth::app_password("api", "shop pass word"));

    // A site gone from the store cannot come back from an export: it has no secret.
    gw.cli(&["site", "rm", "shop"], None).assert_success();
    for (path, line) in [(&exported[0], 4), (&exported[1], 5)] {
        let out = gw.cli(&["site", "import", path], None);
        out.assert_failure();
        let want = format!("line {line}: secret: required for the new site shop");
        assert!(out.stderr.contains(&want), "{want}: {}", out.stderr);
    }
    assert_eq!(site_ids(&gw), ["blog", "docs", "news"]);
}

#[tokio::test]
async fn the_admin_api_imports_and_exports_and_refuses_secret_references() {
    let up = Upstream::start();
    let gw = Gateway::start();
    let write = gw.admin_token("write", Some("onboarding"));
    let read = gw.admin_token("read", None);
    let u = up.url();
    let body = format!(
        "{{\"id\":\"shop\",\"upstream\":\"{u}\",\"auth\":\"app-password\",\"username\":\"api\",\"secret\":\"api pass word\"}}\n\
         {{\"id\":\"blog\",\"upstream\":\"{u}\",\"auth\":\"bearer\",\"secret\":\"api-bearer-token\"}}\n"
    );
    let import = |query: &str, token: &str, content_type: &str, body: String| {
        gw.send(
            gw.admin_request(
                Method::POST,
                &format!("/admin/v1/import/sites{query}"),
                token,
            )
            .header("content-type", content_type)
            .body(body),
        )
    };
    let listed = || async {
        let a = gw
            .admin_call(Method::GET, "/admin/v1/sites", &read, None)
            .await;
        let ids: Vec<String> = a.json().unwrap()["sites"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect();
        ids
    };

    let a = import("?dry_run=true", &write, "application/jsonl", body.clone()).await;
    assert_eq!(a.status, 200, "{}", a.summary());
    let report = a.json().unwrap();
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["created"].as_array().unwrap().len(), 2, "{report}");
    assert!(listed().await.is_empty());

    let a = import("", &write, "application/jsonl", body.clone()).await;
    assert_eq!(a.status, 200, "{}", a.summary());
    assert_eq!(a.json().unwrap()["created"][1]["id"], "blog");
    assert_eq!(listed().await, ["blog", "shop"]);
    let a = import("", &write, "application/jsonl", body.clone()).await;
    assert_eq!(a.json().unwrap()["unchanged"].as_array().unwrap().len(), 2);
    let entries = audit(&gw, &read).await;
    let creates: Vec<&Value> = entries
        .iter()
        .filter(|e| e["action"] == "site.create")
        .collect();
    assert_eq!(creates.len(), 2);
    assert!(creates
        .iter()
        .all(|e| e["actor"] == "admin:onboarding" && e["request_id"].is_string()));
    let key = gw.issue_key("shop", &[]);
    forwarded(&gw, &up, "shop", &key.full, "/wp-json/")
        .await
        .assert_credential(&SiteAuth::app_password("api", "api pass word"));

    // CSV by its content type.
    let csv = format!("id,upstream,auth\ndocs,{u},none\n");
    let a = import("", &write, "text/csv", csv).await;
    assert_eq!(a.status, 200, "{}", a.summary());
    assert_eq!(a.json().unwrap()["created"][0]["line"], 2);

    // env: and file: references are refused (a remote caller must not read the
    // gateway's environment or files), with the line; nothing is written.
    let passwd = "/etc/passwd";
    for reference in ["env:HOME", &format!("file:{passwd}")] {
        let refs = format!(
            "{{\"id\":\"ok\",\"upstream\":\"{u}\",\"auth\":\"none\"}}\n\
             {{\"id\":\"leak\",\"upstream\":\"{u}\",\"auth\":\"bearer\",\"secret\":\"{reference}\"}}\n"
        );
        let a = import("", &write, "application/jsonl", refs).await;
        let err = a.assert_error(400, "admin.invalid_request");
        let message = err["message"].as_str().unwrap();
        assert!(
            message.contains("line 2: secret: env: and file: references are not accepted"),
            "{message}"
        );
        assert!(!a.body.contains("root:"), "{}", a.body);
    }
    assert_eq!(listed().await, ["blog", "docs", "shop"]);
    // A bad row, a read token, an unknown format.
    let bad =
        format!("{{\"id\":\"x\",\"upstream\":\"{u}\",\"auth\":\"none\",\"usrname\":\"u\"}}\n");
    let a = import("", &write, "application/jsonl", bad).await;
    let err = a.assert_error(400, "admin.invalid_request");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("line 1: unknown field `usrname`"),
        "{err}"
    );
    import("", &read, "application/jsonl", body.clone())
        .await
        .assert_error(403, "admin.forbidden");
    import("?format=xml", &write, "application/jsonl", body.clone())
        .await
        .assert_error(400, "admin.invalid_request");

    // Export with a read token; never a secret.
    for (query, content_type, first) in [
        ("", "application/jsonl", "{\"id\":\"blog\""),
        (
            "?format=csv",
            "text/csv",
            "id,name,upstream,auth,username,header_name\n",
        ),
    ] {
        let a = gw
            .admin_call(
                Method::GET,
                &format!("/admin/v1/export/sites{query}"),
                &read,
                None,
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.summary());
        assert!(
            a.header("content-type").unwrap().starts_with(content_type),
            "{a:?}"
        );
        assert!(a.body.starts_with(first), "{}", a.body);
        for secret in ["api pass word", "api-bearer-token"] {
            assert!(!a.body.contains(secret), "{}", a.body);
        }
        // It imports back unchanged.
        let ct = if query.is_empty() {
            "application/jsonl"
        } else {
            "text/csv"
        };
        let back = import("", &write, ct, a.body.clone()).await;
        assert_eq!(
            back.json().unwrap()["unchanged"].as_array().unwrap().len(),
            3
        );
    }

    // Documented.
    let doc = gw
        .admin_call(Method::GET, "/admin/v1/openapi.json", &read, None)
        .await
        .json()
        .unwrap();
    assert!(doc["paths"]["/admin/v1/import/sites"]["post"].is_object());
    assert!(doc["paths"]["/admin/v1/export/sites"]["get"].is_object());
    assert!(doc["components"]["schemas"]["ImportReport"].is_object());
}

// ---- scale and both backends ----

#[test]
fn a_thousand_sites_import_once_and_a_second_run_changes_nothing() {
    let gw = Gateway::prepare(GatewayConfig::default());
    let u = "http://127.0.0.1:9";
    let rows: Vec<String> = (0..1000)
        .map(|i| match i % 4 {
            0 => format!("{{\"id\":\"site-{i:04}\",\"name\":\"Site {i}\",\"upstream\":\"{u}/s{i}\",\"auth\":\"app-password\",\"username\":\"api\",\"secret\":\"pass word {i}\"}}"),
            1 => format!("{{\"id\":\"site-{i:04}\",\"upstream\":\"{u}/s{i}\",\"auth\":\"bearer\",\"secret\":\"token-{i}\"}}"),
            2 => format!("{{\"id\":\"site-{i:04}\",\"upstream\":\"{u}/s{i}\",\"auth\":\"header\",\"header_name\":\"X-Plugin-Auth\",\"secret\":\"header-{i}\"}}"),
            _ => format!("{{\"id\":\"site-{i:04}\",\"upstream\":\"{u}/s{i}\",\"auth\":\"none\"}}"),
        })
        .collect();
    let path = file(&gw, "fleet.jsonl", &(rows.join("\n") + "\n"));

    let started = Instant::now();
    let out = gw.cli(&["site", "import", &path], None);
    let first = started.elapsed();
    out.assert_success();
    assert!(
        out.stdout
            .contains("1000 sites: 1000 created, 0 updated, 0 unchanged"),
        "{}",
        out.stdout
    );
    let started = Instant::now();
    let out = gw.cli(&["site", "import", &path], None);
    let again = started.elapsed();
    out.assert_success();
    assert!(
        out.stdout
            .contains("1000 sites: 0 created, 0 updated, 1000 unchanged"),
        "{}",
        out.stdout
    );
    eprintln!(
        "onboard: 1,000 sites imported through the binary on SQLite in {:.2} s; the same \
         file again (every credential opened and compared, nothing written) in {:.2} s",
        first.as_secs_f64(),
        again.as_secs_f64()
    );
    assert_eq!(sites(&gw).len(), 1000);
    let export = gw.cli(&["site", "export"], None);
    export.assert_success();
    assert_eq!(export.stdout.lines().count(), 1000);
}

#[test]
fn on_postgresql_an_import_is_checked_whole_and_idempotent_too() {
    let db = TestDb::create();
    let gw = Gateway::prepare(GatewayConfig {
        extra_toml: format!("[store]\nurl = {}\n", toml_str(&db.url)),
        ..GatewayConfig::default()
    });
    let u = "http://127.0.0.1:9";
    let rows: Vec<String> = (0..50)
        .map(|i| format!("{{\"id\":\"pg-{i}\",\"upstream\":\"{u}\",\"auth\":\"bearer\",\"secret\":\"token-{i}\"}}"))
        .collect();
    let text = rows.join("\n");
    let out = gw.cli(&["site", "import", "-"], Some(&text));
    out.assert_success();
    assert!(out.stdout.contains("50 created"), "{}", out.stdout);
    let out = gw.cli(&["site", "import", "-"], Some(&text));
    assert!(
        out.assert_success().stdout.contains("50 unchanged"),
        "{}",
        out.stdout
    );
    let bad = format!(
        "{}\n{{\"id\":\"pg-new\",\"upstream\":\"{u}\",\"auth\":\"bearer\"}}",
        text.replace("token-1\"", "token-x\"")
    );
    let out = gw.cli(&["site", "import", "-"], Some(&bad));
    out.assert_failure();
    assert!(
        out.stderr.contains("line 51: secret: required"),
        "{}",
        out.stderr
    );
    assert_eq!(sites(&gw).len(), 50);
}

fn entry(id: &str, action: &str) -> AuditEntry {
    AuditEntry {
        actor: "test".into(),
        action: action.into(),
        target: format!("site:{id}"),
        site_id: Some(id.into()),
        request_id: None,
        detail: Some("source=import".into()),
    }
}

/// `Store::write_sites` on one backend: every write or none.
async fn all_or_nothing(url: StoreUrl) {
    let s = store::open(&url).await.unwrap();
    s.create_site(&site("a"), &entry("a", "site.create"))
        .await
        .unwrap();
    let audit_before = s.list_audit(None, 100).await.unwrap().len();
    let change_before = s.latest_change().await.unwrap();
    let mut renamed = site("a");
    renamed.name = "renamed".into();
    let create = |id: &str| SiteWrite::Create {
        site: site(id),
        audit: entry(id, "site.create"),
    };
    let update = |record: &wpgate::store::SiteRecord| SiteWrite::Update {
        site: record.clone(),
        audit: entry(&record.id, "site.update"),
    };

    // A conflict at the end rolls back what came before it.
    let err = s
        .write_sites(&[create("b"), update(&renamed), create("a")])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists(_)), "{err:?}");
    let mut stale = renamed.clone();
    stale.version = 7;
    let err = s
        .write_sites(&[create("b"), update(&stale)])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::VersionConflict { .. }), "{err:?}");
    assert_eq!(s.get_site("b").await.unwrap(), None);
    assert_eq!(s.get_site("a").await.unwrap().unwrap().name, "a");
    assert_eq!(s.list_audit(None, 100).await.unwrap().len(), audit_before);
    assert_eq!(s.latest_change().await.unwrap(), change_before);

    // Whole: each write with its audit entry and change-log row.
    let written = s
        .write_sites(&[create("b"), update(&renamed)])
        .await
        .unwrap();
    assert_eq!(written.len(), 2);
    assert_eq!(
        (written[1].name.as_str(), written[1].version),
        ("renamed", 2)
    );
    assert_eq!(s.get_site("a").await.unwrap().unwrap().version, 2);
    assert!(s.get_site("b").await.unwrap().is_some());
    assert_eq!(
        s.list_audit(None, 100).await.unwrap().len(),
        audit_before + 2
    );
    let changes = s.changes_since(change_before, 100).await.unwrap().changes;
    let ids: Vec<&str> = changes.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["b", "a"]);
    assert!(s.write_sites(&[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn write_sites_is_all_or_nothing_on_sqlite_and_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    all_or_nothing(StoreUrl::Sqlite(dir.path().join("store.db"))).await;
    let db = TestDb::create();
    all_or_nothing(db.store_url()).await;
}
