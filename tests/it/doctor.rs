//! `wpgate doctor`: the real binary against real WordPress (the sites of
//! `tests/wordpress/setup.sh`, under the read lock of [`SITES`]; one test revokes a real
//! Application Password under its write lock, and gets a new one after), a WordPress mimic, closed ports, a host name that cannot resolve, a keyring
//! that lost a key, HTTPS upstreams, both store backends, and the admin API's copy of the
//! report. doctor reads only: most tests run it on a gateway that is not even serving.
//!
//! The host that does not resolve has a 64-character label: glibc's resolver refuses to
//! build a DNS query for a label over 63 octets (RFC 1035), so the lookup fails on this
//! machine without any packet. A `*.invalid` name would be sent to the configured
//! nameserver, which is not on loopback here.

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use crate::harness::postgres::TestDb;
use crate::harness::wordpress::{wp_env, RestoreSites, SITES};
use crate::harness::{
    free_port, sha256_hex, toml_str, CliOutput, Gateway, GatewayConfig, SiteAuth, TestCa, Upstream,
    WpMimic,
};

/// The bearer token the WordPress mimic accepts.
const TOKEN: &str = "doctor-test-token-9f2c";
/// The site checks in report order.
const SITE_CHECKS: [&str; 8] = [
    "record",
    "dns",
    "tcp",
    "tls",
    "rest_index",
    "credential",
    "namespaces",
    "clock",
];
const GATEWAY_CHECKS: [&str; 4] = ["config", "store", "schema", "keyring"];

/// A gateway's configuration, data dir and store, not serving: doctor reads the store
/// and keyring itself.
fn prepared() -> Gateway {
    Gateway::prepare(GatewayConfig::default())
}

fn mimic() -> WpMimic {
    let m = WpMimic::start();
    m.accept_token(TOKEN, 7, "fleet-bot");
    m
}

/// `wpgate --json doctor <args>`: its output and the report, whose `exit_code` must be
/// the process's.
#[track_caller]
fn doctor(gw: &Gateway, args: &[&str]) -> (CliOutput, Value) {
    let mut all = vec!["doctor"];
    all.extend_from_slice(args);
    let out = gw.cli_json(&all);
    let report: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor --json printed no report ({e})\nstdout:\n{}\nstderr:\n{}",
            out.stdout, out.stderr
        )
    });
    assert_eq!(
        out.status.code().map(i64::from),
        report["exit_code"].as_i64(),
        "exit status and report disagree: {report:#}"
    );
    (out, report)
}

#[track_caller]
fn site<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["site_id"] == id)
        .unwrap_or_else(|| panic!("no site {id} in {report:#}"))
}

#[track_caller]
fn check<'a>(checks: &'a Value, name: &str) -> &'a Value {
    checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {checks:#}"))
}

fn names(checks: &Value) -> Vec<&str> {
    checks
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect()
}

#[track_caller]
fn assert_check(checks: &Value, name: &str, status: &str, says: &[&str]) -> Value {
    let c = check(checks, name);
    assert_eq!(c["status"], status, "{name}: {c:#}");
    let text = format!("{} {}", c["message"], c["fix"]);
    for part in says {
        assert!(text.contains(part), "{name} should say {part:?}: {c:#}");
    }
    c.clone()
}

#[track_caller]
fn assert_no_secret(out: &CliOutput, secrets: &[&str]) {
    for s in secrets {
        for form in [s.to_string(), s.replace(' ', "")] {
            assert!(
                !out.stdout.contains(&form) && !out.stderr.contains(&form),
                "a secret reached doctor's output"
            );
        }
    }
}

/// The bytes doctor must leave as they are: the store file (and its WAL) and the keyring.
fn store_fingerprint(gw: &Gateway) -> Vec<String> {
    let db = gw.db_path();
    let wal = db.with_extension("db-wal");
    [db, wal, gw.keyring_path()]
        .iter()
        .map(|p| sha256_hex(&std::fs::read(p).unwrap_or_default()))
        .collect()
}

// ---------------------------------------------------------------------------------
// Real WordPress
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn a_healthy_real_wordpress_site_passes_every_check_and_nothing_is_written() {
    let _shared = SITES.read().await;
    let wp = wp_env().sites[0].clone();
    let gw = prepared();
    let auth = SiteAuth::app_password(&wp.user, &wp.app_password);
    gw.add_site("wp-one", &wp.url, &auth);
    gw.cli(
        &[
            "site",
            "set-health",
            "wp-one",
            "--require-namespace",
            "wp/v2",
        ],
        None,
    )
    .assert_success();
    let before = store_fingerprint(&gw);

    let (out, report) = doctor(&gw, &["wp-one"]);
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(report["status"], "pass", "{report:#}");
    assert_eq!(names(&report["gateway"]), GATEWAY_CHECKS);
    for c in report["gateway"].as_array().unwrap() {
        assert_eq!(c["status"], "pass", "{c:#}");
    }
    let s = site(&report, "wp-one");
    assert_eq!(names(&s["checks"]), SITE_CHECKS);
    for c in s["checks"].as_array().unwrap() {
        let expected = if c["check"] == "tls" { "skip" } else { "pass" };
        assert_eq!(c["status"], expected, "{c:#}");
        assert!(c["fix"].is_null(), "{c:#}");
    }
    assert_check(&s["checks"], "tls", "skip", &["http://"]);
    assert_check(
        &s["checks"],
        "credential",
        "pass",
        &[&format!(
            "application password for user '{}' accepted",
            wp.user
        )],
    );
    assert_check(&s["checks"], "namespaces", "pass", &["wp/v2"]);
    assert_check(&s["checks"], "clock", "pass", &["warned above 60 s"]);
    assert!(s["wordpress_user"].is_string(), "{s:#}");
    assert_eq!(report["summary"]["passed"], 1);

    // The text report, as an operator reads it.
    let text = gw.cli(&["doctor", "wp-one"], None);
    assert_eq!(text.status.code(), Some(0), "{}", text.stdout);
    assert!(text.stdout.contains("pass  credential"), "{}", text.stdout);
    assert!(
        text.stdout.contains("wpgate doctor: PASS"),
        "{}",
        text.stdout
    );
    assert_no_secret(&out, &[&wp.app_password]);
    assert_no_secret(&text, &[&wp.app_password]);
    assert_eq!(
        store_fingerprint(&gw),
        before,
        "doctor changed the store or the keyring"
    );
}

#[tokio::test]
async fn an_application_password_revoked_in_wordpress_fails_with_its_fix() {
    let _exclusive = SITES.write().await;
    let env = wp_env();
    let wp = env.sites[1].clone();
    let mut restore = RestoreSites::new(&env);
    let gw = prepared();
    gw.add_site(
        "wp-live",
        &wp.url,
        &SiteAuth::app_password(&wp.user, &wp.app_password),
    );
    // The site's own, current Application Password: every check passes.
    let (out, report) = doctor(&gw, &["wp-live"]);
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_check(
        &site(&report, "wp-live")["checks"],
        "credential",
        "pass",
        &[],
    );

    // The same password, revoked in WordPress (setup.sh revoke-app-password).
    restore.revoke_app_password(&wp.name);
    let (out, report) = doctor(&gw, &["wp-live"]);
    assert_eq!(out.status.code(), Some(1), "{report:#}");
    let checks = &site(&report, "wp-live")["checks"];
    assert_check(checks, "rest_index", "pass", &[]);
    let c = assert_check(checks, "credential", "fail", &["answered 401"]);
    let fix = c["fix"].as_str().unwrap();
    assert!(
        fix.contains("Users → Profile → Application Passwords"),
        "{fix}"
    );
    assert!(
        fix.contains("`wpgate site set-credential wp-live --auth app-password --username"),
        "{fix}"
    );
    assert!(
        !out.stdout.contains(&wp.app_password),
        "a secret in the report"
    );
    restore.new_app_password(&wp.name);
}

#[tokio::test]
async fn a_refused_application_password_names_the_exact_set_credential_command() {
    let _shared = SITES.read().await;
    let wp = wp_env().sites[1].clone();
    let gw = prepared();
    // A password WordPress never issued (or one revoked): the same 401 to WordPress.
    let wrong = "abcd efgh ijkl mnop qrst uvwx";
    gw.add_site(
        "wp-revoked",
        &wp.url,
        &SiteAuth::app_password(&wp.user, wrong),
    );

    let (out, report) = doctor(&gw, &["wp-revoked"]);
    assert_eq!(out.status.code(), Some(1), "{report:#}");
    let checks = &site(&report, "wp-revoked")["checks"];
    assert_check(checks, "rest_index", "pass", &[]);
    let command = format!(
        "`wpgate site set-credential wp-revoked --auth app-password --username {} --secret-stdin`",
        wp.user
    );
    let c = assert_check(
        checks,
        "credential",
        "fail",
        &[
            &format!(
                "WordPress rejected the application password for user '{}'",
                wp.user
            ),
            "answered 401",
        ],
    );
    let fix = c["fix"].as_str().unwrap();
    assert!(
        fix.contains("Users → Profile → Application Passwords"),
        "{fix}"
    );
    assert!(fix.contains(&command), "{fix}");
    assert_check(checks, "clock", "pass", &[]);
    assert_eq!(report["summary"]["failed"], 1);

    let text = gw.cli(&["doctor", "wp-revoked"], None);
    assert_eq!(text.status.code(), Some(1));
    assert!(text.stdout.contains("fail  credential"), "{}", text.stdout);
    assert!(text
        .stdout
        .contains(&format!("fix: log in to wp-admin as '{}'", wp.user)));
    assert!(text.stdout.contains(&command), "{}", text.stdout);
    assert_no_secret(&out, &[wrong, &wp.app_password]);
    assert_no_secret(&text, &[wrong, &wp.app_password]);
}

// ---------------------------------------------------------------------------------
// Unreachable sites, a lost keyring key
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn a_closed_port_and_a_name_that_does_not_resolve_fail_with_their_fix() {
    let gw = prepared();
    let port = free_port();
    gw.add_site(
        "closed",
        &format!("http://127.0.0.1:{port}"),
        &SiteAuth::None,
    );
    let host = format!("{}.invalid", "a".repeat(64));
    gw.add_site("nowhere", &format!("http://{host}"), &SiteAuth::None);

    let (out, report) = doctor(&gw, &[]);
    assert_eq!(out.status.code(), Some(1), "{report:#}");
    assert_eq!(report["summary"]["failed"], 2, "{report:#}");

    let closed = &site(&report, "closed")["checks"];
    assert_check(closed, "dns", "pass", &["IP address"]);
    assert_check(
        closed,
        "tcp",
        "fail",
        &[
            "connection refused",
            "start the site's web server",
            "`wpgate site update closed --upstream <URL>`",
        ],
    );
    for later in ["tls", "rest_index", "credential", "namespaces", "clock"] {
        assert_check(closed, later, "skip", &["not checked: no TCP connection"]);
    }

    let nowhere = &site(&report, "nowhere")["checks"];
    assert_check(
        nowhere,
        "dns",
        "fail",
        &[
            &format!("{host} does not resolve"),
            &format!("`getent hosts {host}`"),
            "`wpgate site update nowhere --upstream <URL>`",
        ],
    );
    assert_check(nowhere, "tcp", "skip", &["the host does not resolve"]);
}

#[tokio::test]
async fn a_record_sealed_with_a_key_the_keyring_lost_is_named_with_its_fix() {
    let wp = mimic();
    let gw = prepared();
    gw.add_site(
        "good",
        &format!("{}/good", wp.url()),
        &SiteAuth::bearer(TOKEN),
    );
    let keyring = gw.keyring_path();
    let original = std::fs::read_to_string(&keyring).unwrap();
    gw.cli(&["keyring", "add", "--primary"], None)
        .assert_success();
    let status: Value = serde_json::from_str(&gw.cli_json(&["keyring", "status"]).stdout).unwrap();
    let lost = status["primary"].as_str().unwrap().to_string();
    gw.add_site(
        "orphan",
        &format!("{}/orphan", wp.url()),
        &SiteAuth::bearer(TOKEN),
    );
    // The key that sealed `orphan` is gone (a keyring restored from an old backup).
    std::fs::write(&keyring, &original).unwrap();

    let (out, report) = doctor(&gw, &[]);
    assert_eq!(out.status.code(), Some(3), "{report:#}");
    let k = assert_check(
        &report["gateway"],
        "keyring",
        "fail",
        &[
            "1 of 3 sealed records do not open",
            &format!(
                "site orphan upstream credential (sealed with key {lost}, which the keyring lacks)"
            ),
            &format!("put key(s) {lost} back into the keyring"),
        ],
    );
    assert!(!k["message"].as_str().unwrap().contains("good"), "{k:#}");
    for other in ["config", "store", "schema"] {
        assert_check(&report["gateway"], other, "pass", &[]);
    }
    assert_eq!(report["sealed_records"]["checked"], 3);
    let failed = report["sealed_records"]["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert_eq!(failed[0]["kind"], "site_credential");
    assert_eq!(failed[0]["id"], "orphan");
    assert_eq!(failed[0]["key_id"], lost.as_str());

    let orphan = site(&report, "orphan");
    assert_check(
        &orphan["checks"],
        "record",
        "fail",
        &[
            &format!("put key {lost} back into the keyring"),
            "`wpgate site set-credential orphan --auth bearer --secret-stdin`",
        ],
    );
    assert_check(&orphan["checks"], "tcp", "pass", &[]);
    assert_check(
        &orphan["checks"],
        "rest_index",
        "skip",
        &["record cannot be used"],
    );
    assert_eq!(site(&report, "good")["status"], "pass", "{report:#}");
    assert_no_secret(&out, &[TOKEN]);
}

// ---------------------------------------------------------------------------------
// The report's shape; many sites
// ---------------------------------------------------------------------------------

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

#[tokio::test]
async fn the_json_report_has_the_documented_fields() {
    let wp = mimic();
    let gw = prepared();
    gw.add_site(
        "shape",
        &format!("{}/blog", wp.url()),
        &SiteAuth::bearer(TOKEN),
    );
    let (_, r) = doctor(&gw, &["--concurrency", "4", "--timeout", "7s"]);
    assert_eq!(
        keys(&r),
        [
            "checked_at",
            "duration_ms",
            "exit_code",
            "gateway",
            "sealed_records",
            "settings",
            "sites",
            "status",
            "summary"
        ]
    );
    assert_eq!(r["status"], "pass", "{r:#}");
    assert_eq!(r["exit_code"], 0);
    assert_eq!(
        r["settings"],
        serde_json::json!({"timeout_ms": 7000, "concurrency": 4,
            "clock_skew_warn_seconds": 60, "certificate_warn_days": 14})
    );
    assert!(r["checked_at"].as_str().unwrap().ends_with('Z'), "{r:#}");
    assert_eq!(keys(&r["sealed_records"]), ["checked", "failed"]);
    assert_eq!(keys(&r["summary"]), ["failed", "passed", "sites", "warned"]);
    let s = site(&r, "shape");
    assert_eq!(
        keys(s),
        [
            "checks",
            "duration_ms",
            "enabled",
            "site_id",
            "status",
            "upstream",
            "wordpress_user"
        ]
    );
    assert_eq!(s["wordpress_user"], "fleet-bot");
    assert_eq!(s["upstream"], format!("{}/blog", wp.url()));
    for c in r["gateway"]
        .as_array()
        .unwrap()
        .iter()
        .chain(s["checks"].as_array().unwrap())
    {
        assert_eq!(keys(c), ["check", "fix", "message", "status"], "{c:#}");
    }
    // The credential was injected as the proxy injects it.
    assert_eq!(wp.users_me_calls(), vec![format!("Bearer {TOKEN}")]);
}

#[tokio::test]
async fn five_hundred_sites_are_checked_in_seconds() {
    use wpgate::config::{Config, LoadOptions};
    use wpgate::fleet::{Actor, CredentialInput, Fleet, NewSite};
    use wpgate::secret::Secret;
    use wpgate::site::CredentialKind;

    const SITES_N: usize = 500;
    let wp = mimic();
    let gw = prepared();
    // Registered in this process through the library: 500 CLI processes would take
    // longer than the checks.
    let config = Config::load(&LoadOptions {
        config_file: Some(gw.config_path.clone()),
        data_dir: None,
    })
    .unwrap();
    let metrics = Arc::new(wpgate::metrics::Metrics::new().unwrap());
    let (fleet, _) = Fleet::open(&config, metrics).await.unwrap();
    for n in 0..SITES_N {
        let new = NewSite {
            id: format!("site-{n:03}").parse().unwrap(),
            name: None,
            upstream_url: format!("{}/s{n:03}", wp.url()),
            credential: CredentialInput {
                kind: CredentialKind::Bearer,
                username: None,
                secret: Some(Secret::from_string(TOKEN.into())),
            },
        };
        fleet.add_site(new, &Actor::new("test")).await.unwrap();
    }
    drop(fleet);

    let started = Instant::now();
    let (out, report) = doctor(&gw, &[]);
    let elapsed = started.elapsed();
    eprintln!(
        "doctor over {SITES_N} sites (one local upstream, --concurrency 32): {:.2} s for the \
         process, {} ms for the checks",
        elapsed.as_secs_f64(),
        report["duration_ms"]
    );
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert_eq!(report["summary"]["sites"], SITES_N);
    assert_eq!(report["summary"]["passed"], SITES_N);
    assert_eq!(report["sealed_records"]["checked"], SITES_N + 1);
    assert_eq!(wp.users_me_calls().len(), SITES_N);
    // The text report folds a passing site into one line.
    let text = gw.cli(&["doctor", "--concurrency", "64"], None);
    assert_eq!(text.status.code(), Some(0));
    assert!(
        text.stdout.contains("site site-042 (")
            && text
                .stdout
                .contains("checks passed, WordPress user 'fleet-bot')"),
        "{}",
        &text.stdout[..text.stdout.len().min(2000)]
    );
}

// ---------------------------------------------------------------------------------
// TLS, PostgreSQL, the admin API
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn https_upstreams_are_trusted_as_the_proxy_trusts_them() {
    let ca = TestCa::generate();
    let up = Upstream::start_tls(&ca);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).unwrap();

    let trusting = Gateway::prepare(GatewayConfig {
        ca_file: Some(ca_file.clone()),
        ..GatewayConfig::default()
    });
    trusting.add_site("tls", &up.url(), &SiteAuth::None);
    let (_, report) = doctor(&trusting, &["tls"]);
    assert_check(
        &site(&report, "tls")["checks"],
        "tls",
        "pass",
        &["valid for localhost and trusted", "upstream.ca_file"],
    );

    // Without the CA file the system's trust store is used, which lacks the test CA.
    let system = prepared();
    system.add_site("tls", &up.url(), &SiteAuth::None);
    let (out, report) = doctor(&system, &["tls"]);
    assert_eq!(out.status.code(), Some(1));
    let checks = &site(&report, "tls")["checks"];
    assert_check(
        checks,
        "tls",
        "fail",
        &[
            "not trusted",
            "the system's trust store",
            "set `upstream.ca_file`",
        ],
    );
    assert_check(checks, "rest_index", "skip", &["TLS failed"]);
}

#[tokio::test]
async fn a_postgresql_store_is_read_and_never_migrated() {
    use sqlx::Connection;
    let db = TestDb::create();
    let wp = mimic();
    let gw = Gateway::prepare(GatewayConfig {
        extra_toml: format!("[store]\nurl = {}\n", toml_str(&db.url)),
        ..GatewayConfig::default()
    });
    gw.add_site(
        "pg-site",
        &format!("{}/pg", wp.url()),
        &SiteAuth::bearer(TOKEN),
    );

    let (out, report) = doctor(&gw, &[]);
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_check(&report["gateway"], "store", "pass", &["PostgreSQL store"]);
    assert_check(
        &report["gateway"],
        "schema",
        "pass",
        &["exactly this binary's"],
    );
    assert_eq!(site(&report, "pg-site")["status"], "pass");

    // The store as an older binary left it: one migration short.
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let latest: i64 = sqlx::query_scalar(
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT MAX(version) FROM \
         _sqlx_migrations) RETURNING version",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let (out, report) = doctor(&gw, &[]);
    assert_eq!(out.status.code(), Some(3), "{report:#}");
    assert_check(
        &report["gateway"],
        "schema",
        "fail",
        &[&format!("lacks migration(s) {latest}"), "wpgate serve"],
    );
    let still: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE version = $1")
        .bind(latest)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(still, 0, "doctor migrated the store");
    let _ = conn.close().await;
    drop(gw);
}

#[tokio::test]
async fn the_admin_api_answers_the_same_report() {
    let wp = mimic();
    let gw = Gateway::start();
    gw.add_site(
        "api-site",
        &format!("{}/api", wp.url()),
        &SiteAuth::bearer(TOKEN),
    );
    let token = gw.admin_token("read", Some("doctor"));

    let a = gw
        .admin_call(
            reqwest::Method::GET,
            "/admin/v1/doctor?site=api-site",
            &token,
            None,
        )
        .await;
    a.assert_ok();
    let api = a.json().unwrap();
    assert_eq!(api["status"], "pass", "{api:#}");
    assert_eq!(api["exit_code"], 0);
    assert_eq!(names(&api["gateway"]), GATEWAY_CHECKS);
    assert_eq!(names(&site(&api, "api-site")["checks"]), SITE_CHECKS);

    // The CLI, on the same store while the gateway runs, finds the same.
    let (_, cli) = doctor(&gw, &["api-site"]);
    let statuses = |r: &Value| -> Vec<String> {
        site(r, "api-site")["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| format!("{}={}", c["check"], c["status"]))
            .collect()
    };
    assert_eq!(statuses(&api), statuses(&cli));

    let all = gw
        .admin_call(reqwest::Method::GET, "/admin/v1/doctor", &token, None)
        .await;
    assert_eq!(all.json().unwrap()["summary"]["sites"], 1);
    gw.admin_call(
        reqwest::Method::GET,
        "/admin/v1/doctor?site=nope",
        &token,
        None,
    )
    .await
    .assert_error(404, "admin.not_found");
    gw.admin_call(
        reqwest::Method::GET,
        "/admin/v1/doctor?concurrency=0",
        &token,
        None,
    )
    .await
    .assert_error(400, "admin.invalid_request");
    gw.admin_get("/admin/v1/doctor")
        .await
        .assert_error(401, "admin.unauthorized");

    // Documented, with the report's schema.
    let doc = gw
        .admin_call(reqwest::Method::GET, "/admin/v1/openapi.json", &token, None)
        .await
        .json()
        .unwrap();
    assert!(
        doc["paths"]["/admin/v1/doctor"]["get"].is_object(),
        "{doc:#}"
    );
    let report = &doc["components"]["schemas"]["Report"]["properties"];
    for field in [
        "status",
        "exit_code",
        "gateway",
        "sealed_records",
        "sites",
        "summary",
    ] {
        assert!(
            report[field].is_object(),
            "Report.{field} is not documented: {report:#}"
        );
    }
}

#[tokio::test]
async fn a_gateway_never_started_and_a_wrong_configuration_exit_3_and_nothing_is_created() {
    let gw = prepared();
    let (out, report) = doctor(&gw, &[]);
    assert_eq!(out.status.code(), Some(3), "{report:#}");
    assert_check(&report["gateway"], "config", "pass", &[]);
    assert_check(
        &report["gateway"],
        "store",
        "fail",
        &["does not exist (the gateway creates it on its first start)"],
    );
    assert_check(&report["gateway"], "schema", "skip", &[]);
    assert_check(
        &report["gateway"],
        "keyring",
        "fail",
        &[
            "does not exist",
            "wpgate doctor never does",
            "`wpgate serve`",
        ],
    );
    assert!(!gw.data_dir.exists(), "doctor created the data directory");

    let bad = gw.dir.path().join("bad.toml");
    std::fs::write(&bad, "[upstream]\nconect_timeout = \"2s\"\n").unwrap();
    let out = crate::harness::run_wpgate(
        &["--json", "--config", bad.to_str().unwrap(), "doctor"],
        None,
        &[],
    );
    assert_eq!(out.status.code(), Some(3), "{}", out.stdout);
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_check(
        &report["gateway"],
        "config",
        "fail",
        &["conect_timeout", "wpgate check"],
    );
    for other in ["store", "schema", "keyring"] {
        assert_check(
            &report["gateway"],
            other,
            "skip",
            &["not checked: the configuration does not load"],
        );
    }
    assert_eq!(report["sites"], serde_json::json!([]));
}
