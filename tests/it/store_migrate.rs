//! `wpgate store migrate`: a store built through the CLI on SQLite, copied to a fresh
//! PostgreSQL database, serves the same sites and keys from a gateway started on it
//! with the same keyring.

use crate::harness::postgres::TestDb;
use crate::harness::{marker, run_wpgate, toml_str, Gateway, GatewayConfig, SiteAuth, Upstream};
use crate::harness::{KEY_HEADER, SITE_HEADER};

/// The test database's URL with a password in it (trust authentication ignores it):
/// it must never be printed.
const PASSWORD: &str = "pw-s3cret-xyz";

fn with_password(url: &str) -> String {
    let mut u = url::Url::parse(url).unwrap();
    u.set_password(Some(PASSWORD)).unwrap();
    u.to_string()
}

#[tokio::test]
async fn sqlite_store_copied_to_postgres_serves_the_same_sites_and_keys() {
    let up = Upstream::start();
    let old = Gateway::prepare(GatewayConfig::default());
    let shop_auth = SiteAuth::app_password("gateway", "abcd EFGH 1234 ijkl MNOP 5678");
    let blog_auth = SiteAuth::bearer("blog-upstream-token-0123456789");
    old.add_site("shop", &up.url(), &shop_auth);
    old.add_site("blog", &up.url(), &blog_auth);
    let shop_key = old.issue_key("shop", &["--label", "ci"]);
    let blog_key = old.issue_key("blog", &[]);
    let revoked = old.issue_key("blog", &[]);
    old.cli(&["key", "revoke", &revoked.key_id], None)
        .assert_success();
    old.cli(&["site", "disable", "blog"], None).assert_success();
    old.cli(
        &["site", "set-routes", "shop", "--allow-path", "/xmlrpc.php"],
        None,
    )
    .assert_success();
    old.cli(
        &[
            "site",
            "set-cors",
            "shop",
            "--allow-origin",
            "https://app.example.com",
        ],
        None,
    )
    .assert_success();
    old.cli(&["admin", "token", "create", "--scope", "read"], None)
        .assert_success();

    let db = TestDb::create();
    let to = with_password(&db.url);
    let from = format!("sqlite://{}", old.db_path().display());
    let out = run_wpgate(
        &[
            "--json", "store", "migrate", "--from", &from, "--to", &to, "--batch", "1",
        ],
        None,
        &[],
    );
    out.assert_success();
    assert!(
        !out.stdout.contains(PASSWORD) && !out.stderr.contains(PASSWORD),
        "the password was printed:\n{}\n{}",
        out.stdout,
        out.stderr
    );
    let report = out.json();
    let copied = &report["copied"];
    assert_eq!(copied["sites"], 2, "{report}");
    assert_eq!(copied["api_keys"], 3, "{report}");
    assert_eq!(copied["admin_tokens"], 1, "{report}");
    assert_eq!(copied["settings"], 1, "the API-key pepper: {report}");
    // site add ×2, key issue ×3, key revoke, site disable, site set-routes, site
    // set-cors, admin token create
    assert_eq!(copied["audit"], 10, "{report}");
    // one record per batch
    assert_eq!(report["batches"], 17, "{report}");
    assert!(
        report["to"].as_str().unwrap().contains("redacted"),
        "{report}"
    );

    // Plain output: a one-line summary. A second run refuses the now non-empty target.
    let again = run_wpgate(
        &["store", "migrate", "--from", &from, "--to", &to],
        None,
        &[],
    );
    again.assert_failure();
    assert!(again.stderr.contains("not empty"), "{}", again.stderr);
    assert!(!again.stderr.contains(PASSWORD), "{}", again.stderr);

    // A gateway on the PostgreSQL store with the same keyring.
    let keyring = old.keyring_path();
    let mut new = Gateway::prepare(GatewayConfig {
        extra_toml: format!(
            "[store]\nurl = {}\n\n[keyring]\nfile = {}\n",
            toml_str(&to),
            toml_str(&keyring.to_string_lossy())
        ),
        ..GatewayConfig::default()
    });
    new.serve();
    assert!(!new.logs().contains(PASSWORD), "{}", new.logs());

    // The issued key works and the site's credential (opened with the same keyring)
    // is injected; the client's key is not forwarded.
    let m = marker();
    new.send(
        new.get(&format!("/wp-json/wp/v2/posts?{m}"))
            .header(SITE_HEADER, "shop")
            .header(KEY_HEADER, &shop_key.full),
    )
    .await
    .assert_ok();
    let r = up.one_with(&m);
    r.assert_credential(&shop_auth);
    assert!(r.header("x-api-key").is_none(), "{r:#?}");
    // The site's allowed paths came along: /xmlrpc.php reaches shop, not blog.
    new.get_as("shop", &shop_key.full, "/xmlrpc.php")
        .await
        .assert_ok();
    // The site's allowed origins came along: preflights (read at start-up) and requests
    // from the app pass, for shop only.
    let preflight = new
        .send(
            new.request(reqwest::Method::OPTIONS, "/wp-json/")
                .header("Origin", "https://app.example.com")
                .header("Access-Control-Request-Method", "GET"),
        )
        .await;
    assert_eq!(preflight.status, 204, "{}", preflight.summary());
    let from_app = new
        .send(
            new.get("/wp-json/")
                .header(SITE_HEADER, "shop")
                .header(KEY_HEADER, &shop_key.full)
                .header("Origin", "https://app.example.com"),
        )
        .await;
    from_app.assert_ok();
    assert_eq!(
        from_app.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    // A wrong secret for a copied key id is refused.
    new.get_as("shop", &shop_key.with_wrong_secret(), "/wp-json/")
        .await
        .assert_error(401, "auth.invalid_credentials");
    // The disabled site stayed disabled; enabling it through the CLI on the new store
    // lets its key through, with its own credential.
    new.get_as("blog", &blog_key.full, "/wp-json/")
        .await
        .assert_error(403, "site.disabled");
    new.cli(&["site", "enable", "blog"], None).assert_success();
    let m = marker();
    let answer = new
        .poll_status("blog", &blog_key.full, &format!("/wp-json/?{m}"), 200)
        .await;
    answer.assert_ok();
    let (name, value) = blog_auth.expected_upstream_header().unwrap();
    let seen = up.requests_with(&m);
    assert!(
        seen.iter()
            .any(|r| r.header_values(&name) == vec![value.as_str()]),
        "{seen:#?}"
    );
    new.get_as("blog", &blog_key.full, "/xmlrpc.php")
        .await
        .assert_error(403, "route.not_allowed");
    // The revoked key stayed revoked.
    new.get_as("blog", &revoked.full, "/wp-json/")
        .await
        .assert_error(401, "auth.invalid_credentials");
    // The new store keeps the history and goes on from it.
    let listed = new.cli_json(&["site", "list"]).json();
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    let fresh = new.issue_key("shop", &[]);
    new.get_as("shop", &fresh.full, "/wp-json/")
        .await
        .assert_ok();
}

#[test]
fn migrate_refuses_bad_input_without_showing_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("sqlite://{}", dir.path().join("nope.db").display());
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "--from".into(),
                missing.clone(),
                "--to".into(),
                "sqlite:///tmp/x.db".into(),
            ],
            "does not exist",
        ),
        (
            vec![
                "--from".into(),
                format!("mysql://u:{PASSWORD}@db/x"),
                "--to".into(),
                "sqlite:///tmp/x.db".into(),
            ],
            "must start with",
        ),
        (
            vec![
                "--from".into(),
                format!("postgres://u:{PASSWORD}@db/x"),
                "--to".into(),
                format!("postgres://u:{PASSWORD}@db/x"),
            ],
            "same store",
        ),
    ];
    for (args, wanted) in cases {
        let mut all = vec!["store", "migrate"];
        all.extend(args.iter().map(String::as_str));
        let out = run_wpgate(&all, None, &[]);
        out.assert_failure();
        assert!(out.stderr.contains(wanted), "{wanted}: {}", out.stderr);
        assert!(!out.stderr.contains(PASSWORD), "{}", out.stderr);
        assert!(!out.stdout.contains(PASSWORD), "{}", out.stdout);
    }
    assert!(
        !dir.path().join("nope.db").exists(),
        "a missing source must not be created"
    );
}
