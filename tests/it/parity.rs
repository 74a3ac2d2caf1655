//! CLI/admin API parity, through the real binary: every operation exists in both (or the
//! list below says why it is only in one), and each write made through either is
//! audited with the same action and has the same effect.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::{run_wpgate, Answer, Gateway, GatewayConfig, Upstream};

/// Every operation in both: the CLI command and the admin API route that do it.
const BOTH: &[(&str, &str)] = &[
    ("site add", "POST /admin/v1/sites"),
    ("site list", "GET /admin/v1/sites"),
    ("site show", "GET /admin/v1/sites/{id}"),
    ("site update", "PATCH /admin/v1/sites/{id}"),
    ("site rm", "DELETE /admin/v1/sites/{id}"),
    ("site enable", "POST /admin/v1/sites/{id}/enable"),
    ("site disable", "POST /admin/v1/sites/{id}/disable"),
    ("site set-credential", "PUT /admin/v1/sites/{id}/credential"),
    (
        "site set-health",
        "PUT /admin/v1/sites/{id}/health-settings",
    ),
    ("site set-routes", "PUT /admin/v1/sites/{id}/routes"),
    ("site set-cors", "PUT /admin/v1/sites/{id}/cors"),
    ("site set-auth", "PUT /admin/v1/sites/{id}/auth"),
    ("site test", "POST /admin/v1/sites/{id}/test"),
    ("site health", "GET /admin/v1/sites/{id}/health"),
    ("site import", "POST /admin/v1/import/sites"),
    ("doctor", "GET /admin/v1/doctor"),
    ("site export", "GET /admin/v1/export/sites"),
    ("key issue", "POST /admin/v1/sites/{id}/keys"),
    ("key list", "GET /admin/v1/sites/{id}/keys"),
    ("key revoke", "POST /admin/v1/keys/{key_id}/revoke"),
    ("key rotate", "POST /admin/v1/keys/{key_id}/rotate"),
    ("audit", "GET /admin/v1/audit"),
    ("reload", "POST /admin/v1/reload"),
    ("keyring status", "GET /admin/v1/keyring"),
    ("admin token create", "POST /admin/v1/tokens"),
    ("admin token list", "GET /admin/v1/tokens"),
    (
        "admin token revoke",
        "POST /admin/v1/tokens/{token_id}/revoke",
    ),
];

/// In the CLI only, and why.
const CLI_ONLY: &[(&str, &str)] = &[
    ("serve", "runs the gateway itself"),
    (
        "check",
        "validates the local configuration files before a start",
    ),
    (
        "healthcheck",
        "the container probe: asks the admin listener",
    ),
    (
        "store migrate",
        "copies a whole store into another: run offline",
    ),
    (
        "site import-env",
        "reads the single-site WORDPRESS_* variables of the machine it runs on",
    ),
    (
        "keyring init",
        "writes the local keyring file before the first start",
    ),
    (
        "keyring add",
        "edits the local keyring file (secret material)",
    ),
    ("keyring set-primary", "edits the local keyring file"),
    (
        "keyring rewrap",
        "re-seals every record with local key material",
    ),
    ("keyring retire", "edits the local keyring file"),
];

/// In the admin API only, and why.
const API_ONLY: &[(&str, &str)] = &[
    ("GET /admin/v1/openapi.json", "describes the API itself"),
    (
        "GET /admin/v1/overview",
        "counts the refusals of the serving process, which a CLI command (another \
         process) cannot see; its health counts are `wpgate doctor`'s and `site list`'s",
    ),
];

/// The subcommand names a `--help` text lists under `Commands:`.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// Every leaf command of the CLI, as `group sub`, found by walking `--help`.
fn cli_leaves(prefix: &[String]) -> Vec<String> {
    let mut args: Vec<&str> = prefix.iter().map(String::as_str).collect();
    args.push("--help");
    let out = run_wpgate(&args, None, &[]);
    out.assert_success();
    let subs = subcommands(&out.stdout);
    if subs.is_empty() {
        return vec![prefix.join(" ")];
    }
    subs.into_iter()
        .flat_map(|s| {
            let mut next = prefix.to_vec();
            next.push(s);
            cli_leaves(&next)
        })
        .collect()
}

#[tokio::test]
async fn every_operation_is_in_the_cli_and_the_api_or_says_why_not() {
    let gw = Gateway::start();
    let token = gw.admin_token("read", None);

    let cli: BTreeSet<String> = cli_leaves(&[]).into_iter().collect();
    let listed: BTreeSet<String> = BOTH
        .iter()
        .map(|(c, _)| c.to_string())
        .chain(CLI_ONLY.iter().map(|(c, _)| c.to_string()))
        .collect();
    assert_eq!(
        cli, listed,
        "the CLI's commands and this test's list differ: add the new command's API route \
         to BOTH, or say in CLI_ONLY why it has none"
    );

    let doc = gw
        .admin_call(Method::GET, "/admin/v1/openapi.json", &token, None)
        .await;
    assert_eq!(doc.status, 200, "{}", doc.summary());
    let doc = doc.json().unwrap();
    let mut api = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            api.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    let listed: BTreeSet<String> = BOTH
        .iter()
        .map(|(_, a)| a.to_string())
        .chain(API_ONLY.iter().map(|(a, _)| a.to_string()))
        .collect();
    assert_eq!(
        api, listed,
        "the admin API's routes and this test's list differ: add the new route's CLI \
         command to BOTH, or say in API_ONLY why it has none"
    );
}

/// The newest audit entry made by `actor_prefix` (`cli:` or `admin:`), through the CLI.
fn newest_action(gw: &Gateway, actor_prefix: &str) -> (String, String) {
    let out = gw.cli_json(&["audit", "--limit", "50"]);
    out.assert_success();
    let v = out.json();
    let e = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["actor"].as_str().unwrap().starts_with(actor_prefix))
        .unwrap_or_else(|| panic!("no audit entry by {actor_prefix}: {v}"))
        .clone();
    (
        e["action"].as_str().unwrap().to_string(),
        e["target"].as_str().unwrap().to_string(),
    )
}

#[track_caller]
fn ok(a: &Answer) -> Value {
    assert!(
        (200..300).contains(&a.status),
        "expected success, got {}",
        a.summary()
    );
    a.json().unwrap_or(Value::Null)
}

/// One write done both ways: the CLI on `c`, the API on `a`; both audited with the same
/// action on the matching target.
async fn both_ways(
    gw: &Gateway,
    token: &str,
    cli: &[&str],
    stdin: Option<&str>,
    api: (Method, &str, Option<Value>),
) -> (Value, Value) {
    let out = gw.cli(&[&["--json"][..], cli].concat(), stdin);
    out.assert_success();
    let by_cli = newest_action(gw, "cli:");
    let (method, path, body) = api;
    let answer = gw.admin_call(method, path, token, body).await;
    let api_json = ok(&answer);
    let by_api = newest_action(gw, "admin:");
    assert_eq!(
        by_cli.0,
        by_api.0,
        "`{}` and `{path}` are audited differently",
        cli.join(" ")
    );
    let kind = |target: &str| target.split(':').next().unwrap_or_default().to_string();
    assert_eq!(
        kind(&by_cli.1),
        kind(&by_api.1),
        "`{}` and `{path}` name different kinds of target",
        cli.join(" ")
    );
    (out.json(), api_json)
}

/// A site's version, as `site show` reads it.
fn version(gw: &Gateway, id: &str) -> i64 {
    let out = gw.cli_json(&["site", "show", id]);
    out.assert_success();
    out.json()["version"].as_i64().unwrap()
}

#[tokio::test]
async fn each_write_through_the_cli_or_the_api_is_audited_the_same_and_does_the_same() {
    let up = Upstream::start();
    let up2 = Upstream::start();
    let mut gw = Gateway::start_with(GatewayConfig::default());
    let token = gw.admin_token("write", Some("parity"));
    let t = token.as_str();

    let (c, a) = both_ways(
        &gw,
        t,
        &[
            "site",
            "add",
            "c",
            "--upstream",
            &up.url(),
            "--auth",
            "bearer",
            "--secret-stdin",
        ],
        Some("tok-c"),
        (
            Method::POST,
            "/admin/v1/sites",
            Some(json!({"id": "a", "upstream": up.url(),
                        "credential": {"kind": "bearer", "secret": "tok-a"}})),
        ),
    )
    .await;
    assert_eq!(c["credential"], a["credential"]);

    // PATCH needs the version read first.
    let v = version(&gw, "a");
    let out = gw.cli_json(&["site", "update", "c", "--name", "Renamed"]);
    out.assert_success();
    let by_cli = newest_action(&gw, "cli:");
    let answer = gw
        .send(
            gw.admin_request(Method::PATCH, "/admin/v1/sites/a", t)
                .header("If-Match", format!("\"{v}\""))
                .json(&json!({"name": "Renamed"})),
        )
        .await;
    let api = ok(&answer);
    assert_eq!(by_cli.0, newest_action(&gw, "admin:").0);
    assert_eq!(out.json()["name"], api["name"]);

    for (cli, path, body) in [
        (vec!["site", "disable"], "disable", None),
        (vec!["site", "enable"], "enable", None),
    ] {
        let mut args = cli.clone();
        args.push("c");
        both_ways(
            &gw,
            t,
            &args,
            None,
            (Method::POST, &format!("/admin/v1/sites/a/{path}"), body),
        )
        .await;
    }

    let (c, a) = both_ways(
        &gw,
        t,
        &[
            "site",
            "set-credential",
            "c",
            "--auth",
            "bearer",
            "--secret-stdin",
        ],
        Some("tok-c2"),
        (
            Method::PUT,
            "/admin/v1/sites/a/credential",
            Some(json!({"kind": "bearer", "secret": "tok-a2"})),
        ),
    )
    .await;
    assert_eq!(c["credential"]["kind"], a["credential"]["kind"]);

    let (c, a) = both_ways(
        &gw,
        t,
        &[
            "site",
            "set-health",
            "c",
            "--require-namespace",
            "myplugin/v1",
            "--fail-fast",
        ],
        None,
        (
            Method::PUT,
            "/admin/v1/sites/a/health-settings",
            Some(json!({"required_namespaces": ["myplugin/v1"], "fail_fast": true})),
        ),
    )
    .await;
    assert_eq!(c["health"], a["health"]);
    assert_eq!(a["health"]["fail_fast"], true);

    let (c, a) = both_ways(
        &gw,
        t,
        &["site", "set-routes", "c", "--allow-path", "/xmlrpc.php"],
        None,
        (
            Method::PUT,
            "/admin/v1/sites/a/routes",
            Some(json!({"allow_paths": ["/xmlrpc.php"]})),
        ),
    )
    .await;
    assert_eq!(c["routes"], a["routes"]);

    let (c, a) = both_ways(
        &gw,
        t,
        &[
            "site",
            "set-cors",
            "c",
            "--allow-origin",
            "https://app.example.com",
        ],
        None,
        (
            Method::PUT,
            "/admin/v1/sites/a/cors",
            Some(json!({"allow_origins": ["https://app.example.com"]})),
        ),
    )
    .await;
    assert_eq!(c["cors"], a["cors"]);

    let (c, a) = both_ways(
        &gw,
        t,
        &[
            "site",
            "set-auth",
            "c",
            "--methods",
            "api_key,jwt",
            "--jwt-alg",
            "HS256",
            "--jwt-secret-stdin",
        ],
        Some("a-long-enough-hmac-secret-for-hs256-0123456789"),
        (
            Method::PUT,
            "/admin/v1/sites/a/auth",
            Some(json!({
                "methods": ["api_key", "jwt"],
                "jwt": {"algorithms": ["HS256"]},
                "jwt_secret": "a-long-enough-hmac-secret-for-hs256-0123456789",
            })),
        ),
    )
    .await;
    assert_eq!(c["auth"], a["auth"]);
    assert!(!a.to_string().contains("hmac-secret"), "{a}");

    // A check now, both ways: the same state for the same upstream; the CLI's exit
    // status says whether it is healthy.
    let cli_test = gw.cli_json(&["site", "test", "c"]);
    let cli_view: Value = serde_json::from_str(cli_test.stdout.trim())
        .unwrap_or_else(|e| panic!("site test printed no JSON ({e}): {}", cli_test.stdout));
    let api_view = ok(&gw
        .admin_call(Method::POST, "/admin/v1/sites/a/test", t, None)
        .await);
    assert_eq!(
        cli_view["state"], api_view["state"],
        "{cli_view} vs {api_view}"
    );
    assert_eq!(cli_test.success(), api_view["state"] == "healthy");

    // Keys: issue, rotate, revoke.
    let (c, a) = both_ways(
        &gw,
        t,
        &["key", "issue", "c", "--label", "app"],
        None,
        (
            Method::POST,
            "/admin/v1/sites/a/keys",
            Some(json!({"label": "app"})),
        ),
    )
    .await;
    let (c_key, a_key) = (
        c["key_id"].as_str().unwrap().to_string(),
        a["key_id"].as_str().unwrap().to_string(),
    );
    let out = gw.cli_json(&["key", "rotate", &c_key, "--grace", "1h"]);
    out.assert_success();
    let by_cli = newest_action(&gw, "cli:");
    let rotated = ok(&gw
        .admin_call(
            Method::POST,
            &format!("/admin/v1/keys/{a_key}/rotate"),
            t,
            Some(json!({"grace": "1h"})),
        )
        .await);
    assert_eq!(by_cli.0, newest_action(&gw, "admin:").0);
    let (c_key, a_key) = (
        out.json()["key_id"].as_str().unwrap().to_string(),
        rotated["key_id"].as_str().unwrap().to_string(),
    );
    let out = gw.cli_json(&["key", "revoke", &c_key]);
    out.assert_success();
    let by_cli = newest_action(&gw, "cli:");
    ok(&gw
        .admin_call(
            Method::POST,
            &format!("/admin/v1/keys/{a_key}/revoke"),
            t,
            None,
        )
        .await);
    assert_eq!(by_cli.0, newest_action(&gw, "admin:").0);

    // Reads agree.
    let cli_keys = gw.cli_json(&["key", "list", "c"]);
    cli_keys.assert_success();
    let api_keys = ok(&gw
        .admin_call(Method::GET, "/admin/v1/sites/a/keys", t, None)
        .await);
    assert_eq!(
        cli_keys.json().as_array().unwrap().len(),
        api_keys["keys"].as_array().unwrap().len()
    );
    let cli_list = gw.cli_json(&["site", "list"]);
    cli_list.assert_success();
    let api_list = ok(&gw.admin_call(Method::GET, "/admin/v1/sites", t, None).await);
    assert_eq!(
        cli_list.json().as_array().unwrap().len(),
        api_list["sites"].as_array().unwrap().len()
    );
    let cli_ring = gw.cli_json(&["keyring", "status"]);
    cli_ring.assert_success();
    let api_ring = ok(&gw
        .admin_call(Method::GET, "/admin/v1/keyring", t, None)
        .await);
    assert_eq!(cli_ring.json()["primary"], api_ring["primary"]);

    // Admin tokens, both ways; the secret is shown once, the list never shows it.
    let out = gw.cli(
        &[
            "admin", "token", "create", "--scope", "read", "--label", "c-token",
        ],
        None,
    );
    let c_token = out.assert_success().single_line();
    let by_cli = newest_action(&gw, "cli:");
    let created = gw
        .admin_call(
            Method::POST,
            "/admin/v1/tokens",
            t,
            Some(json!({"scope": "read", "label": "a-token"})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.summary());
    assert_eq!(created.header("cache-control"), Some("no-store"));
    let created = created.json().unwrap();
    let a_token = created["token"].as_str().unwrap().to_string();
    assert!(a_token.starts_with("wpgat_"), "{created}");
    assert_eq!(by_cli.0, newest_action(&gw, "admin:").0);
    // The token made through the API works.
    ok(&gw
        .admin_call(Method::GET, "/admin/v1/sites", &a_token, None)
        .await);
    let listed = ok(&gw
        .admin_call(Method::GET, "/admin/v1/tokens", t, None)
        .await);
    let text = listed.to_string();
    assert!(
        !text.contains(&a_token[6..]) && !text.contains(&c_token[6..]),
        "{text}"
    );
    let ids: Vec<&str> = listed["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    let a_id = created["id"].as_str().unwrap();
    assert!(ids.contains(&a_id), "{listed}");
    let c_id = &c_token[6..18];
    gw.cli(&["admin", "token", "revoke", c_id], None)
        .assert_success();
    let by_cli = newest_action(&gw, "cli:");
    ok(&gw
        .admin_call(
            Method::POST,
            &format!("/admin/v1/tokens/{a_id}/revoke"),
            t,
            None,
        )
        .await);
    assert_eq!(by_cli.0, newest_action(&gw, "admin:").0);
    gw.admin_call(Method::GET, "/admin/v1/sites", &a_token, None)
        .await
        .assert_error(401, "admin.unauthorized");

    // Reload: the CLI asks the admin API with WPGATE_ADMIN_TOKEN.
    gw.env.push(("WPGATE_ADMIN_TOKEN".into(), token.clone()));
    let out = gw.cli_json(&["reload"]);
    out.assert_success();
    let api = ok(&gw
        .admin_call(Method::POST, "/admin/v1/reload", t, None)
        .await);
    assert_eq!(out.json()["keyring_primary"], api["keyring_primary"]);

    // Audit pages: the same entries through both, a cursor to the next page.
    let cli_page = gw.cli_json(&["audit", "--site", "a", "--limit", "3"]);
    cli_page.assert_success();
    let api_page = ok(&gw
        .admin_call(Method::GET, "/admin/v1/audit?site=a&limit=3", t, None)
        .await);
    assert_eq!(cli_page.json(), api_page);
    let cursor = api_page["next_cursor"].as_str().unwrap().to_string();
    let next = ok(&gw
        .admin_call(
            Method::GET,
            &format!("/admin/v1/audit?site=a&limit=3&cursor={cursor}"),
            t,
            None,
        )
        .await);
    let cli_next = gw.cli_json(&["audit", "--site", "a", "--limit", "3", "--cursor", &cursor]);
    cli_next.assert_success();
    assert_eq!(cli_next.json(), next);
    let first: Vec<i64> = api_page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    let second: Vec<i64> = next["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(first.len(), 3);
    assert!(
        second.iter().all(|id| *id < first[2]),
        "{first:?} then {second:?}"
    );
    // --since in the future: nothing.
    let none = ok(&gw
        .admin_call(Method::GET, "/admin/v1/audit?since=32503680000", t, None)
        .await);
    assert_eq!(none["entries"], json!([]));
    gw.admin_call(Method::GET, "/admin/v1/audit?since=yesterday", t, None)
        .await
        .assert_error(400, "admin.invalid_request");

    // Update the upstream to another origin needs a credential, both ways.
    let out = gw.cli(&["site", "update", "c", "--upstream", &up2.url()], None);
    out.assert_failure();
    let v = version(&gw, "a");
    gw.send(
        gw.admin_request(Method::PATCH, "/admin/v1/sites/a", t)
            .header("If-Match", format!("\"{v}\""))
            .json(&json!({"upstream": up2.url()})),
    )
    .await
    .assert_error(409, "site.credential_required");

    // Delete, both ways.
    both_ways(
        &gw,
        t,
        &["site", "rm", "c"],
        None,
        (Method::DELETE, "/admin/v1/sites/a", None),
    )
    .await;
}
