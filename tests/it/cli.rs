//! The operator CLI (`wpgate site ...`, `wpgate key ...`) against a gateway's store,
//! and what a running gateway makes of its changes.

use crate::harness::{ApiKey, Gateway, SiteAuth, Upstream};

#[tokio::test]
async fn site_lifecycle() {
    let up = Upstream::start();
    let gw = Gateway::start();
    let upstream = format!("{}/wp", up.url());
    let add = |rest: &[&'static str]| {
        let mut args = vec!["site", "add", "cli-site", "--upstream", &upstream];
        args.extend_from_slice(rest);
        args
    };
    let bearer = ["--name", "CLI Site", "--auth", "bearer", "--secret-stdin"];
    gw.cli(&add(&bearer), Some("cli-secret-token\n"))
        .assert_success();

    // Adding the same id twice is refused.
    gw.cli(&add(&["--auth", "none"]), None).assert_failure();

    let show = gw.cli_json(&["site", "show", "cli-site"]);
    show.assert_success();
    let shown = show.json();
    assert!(
        shown.is_object(),
        "`site show --json` is not an object: {shown}"
    );
    let text = shown.to_string();
    assert!(text.contains("cli-site"), "{text}");
    assert!(text.contains("CLI Site"), "{text}");
    assert!(
        text.contains(&up.port().to_string()),
        "upstream missing: {text}"
    );
    assert!(!text.contains("cli-secret-token"), "secret shown: {text}");

    let list = gw.cli_json(&["site", "list"]);
    list.assert_success();
    let listed = list.json();
    let arr = listed
        .as_array()
        .unwrap_or_else(|| panic!("`site list --json` is not an array: {listed}"));
    assert_eq!(arr.len(), 1, "{listed}");
    assert!(arr[0].to_string().contains("cli-site"));
    assert!(!list.stdout.contains("cli-secret-token"));
    // Plain output mentions the site too.
    assert!(gw.cli(&["site", "list"], None).stdout.contains("cli-site"));

    let key = gw.issue_key("cli-site", &[]);
    gw.get_as("cli-site", &key.full, "/wp-json/")
        .await
        .assert_ok();

    gw.cli(&["site", "rm", "cli-site"], None).assert_success();
    gw.cli_json(&["site", "show", "cli-site"]).assert_failure();
    let listed = gw.cli_json(&["site", "list"]).json();
    assert_eq!(listed.as_array().map(Vec::len), Some(0), "{listed}");
    gw.poll_status("cli-site", &key.full, "/wp-json/", 401)
        .await
        .assert_error(401, "auth.invalid_credentials");
}

#[tokio::test]
async fn site_add_refuses_bad_input() {
    let gw = Gateway::start();
    let add = |id, upstream, auth: &[&'static str]| {
        let mut args = vec!["site", "add", id, "--upstream", upstream, "--auth"];
        args.extend_from_slice(auth);
        args
    };
    for args in [
        add("bad id", "http://127.0.0.1:1", &["none"]),
        add("ok-id", "ftp://127.0.0.1:1", &["none"]),
        add("ok-id", "not a url", &["none"]),
        add("ok-id", "http://127.0.0.1:1", &["kerberos"]),
        // app-password without a username
        add(
            "ok-id",
            "http://127.0.0.1:1",
            &["app-password", "--secret-stdin"],
        ),
        // header without a header name
        add("ok-id", "http://127.0.0.1:1", &["header", "--secret-stdin"]),
    ] {
        gw.cli(&args, Some("s3cret\n")).assert_failure();
    }
    let listed = gw.cli_json(&["site", "list"]).json();
    assert_eq!(listed.as_array().map(Vec::len), Some(0), "{listed}");
    // Keys for a site that does not exist are refused.
    gw.cli(&["key", "issue", "no-such-site"], None)
        .assert_failure();
}

#[tokio::test]
async fn key_issue_and_list_json() {
    let up = Upstream::start();
    let gw = Gateway::start();
    gw.add_site("keys", &up.url(), &SiteAuth::None);

    let issued = gw.cli_json(&["key", "issue", "keys", "--label", "ci-job"]);
    issued.assert_success();
    let obj = issued.json();
    let key = ApiKey::parse(
        obj["key"]
            .as_str()
            .unwrap_or_else(|| panic!("no key in {obj}")),
    );
    assert_eq!(obj["key_id"].as_str(), Some(key.key_id.as_str()), "{obj}");

    let expiring = gw.issue_key("keys", &["--expires-in", "30d"]);
    let plain = gw.issue_key("keys", &[]);
    assert_ne!(plain.key_id, key.key_id);
    assert_ne!(plain.secret, key.secret);

    let listed = gw.cli_json(&["key", "list", "keys"]);
    listed.assert_success();
    let arr = listed.json();
    let arr = arr
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {}", listed.stdout));
    assert_eq!(arr.len(), 3, "{}", listed.stdout);
    for k in [&key, &expiring, &plain] {
        assert!(
            !listed.stdout.contains(&k.secret),
            "key list shows a secret"
        );
    }
    let find = |id: &str| {
        arr.iter()
            .find(|o| o["key_id"].as_str() == Some(id))
            .unwrap_or_else(|| panic!("{id} not in {}", listed.stdout))
            .clone()
    };
    let labelled = find(&key.key_id);
    assert_eq!(labelled["label"], "ci-job");
    assert!(labelled["created_at"].is_string(), "{labelled}");
    assert!(labelled["expires_at"].is_null(), "{labelled}");
    assert!(labelled["revoked_at"].is_null(), "{labelled}");
    assert!(labelled["grace_until"].is_null(), "{labelled}");
    assert!(find(&expiring.key_id)["expires_at"].is_string());

    gw.cli(&["key", "revoke", &plain.key_id, "--grace", "1h"], None)
        .assert_success();
    let after = gw.cli_json(&["key", "list", "keys"]).json();
    let revoked = after
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["key_id"].as_str() == Some(plain.key_id.as_str()))
        .unwrap()
        .clone();
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    assert!(revoked["grace_until"].is_string(), "{revoked}");

    // All three keys work (the revoked one is within its hour of grace).
    for k in [&key, &expiring, &plain] {
        gw.get_as("keys", &k.full, "/wp-json/").await.assert_ok();
    }
    // Revoking an unknown key id fails.
    gw.cli(&["key", "revoke", "NoSuchKeyId0"], None)
        .assert_failure();
}

#[tokio::test]
async fn keyring_init_prints_a_keyring_the_gateway_serves_with() {
    // Two runs, two different keys; nothing written, no store opened.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_text = data.to_str().unwrap();
    let first =
        crate::harness::run_wpgate(&["--data-dir", data_text, "keyring", "init"], None, &[]);
    first.assert_success();
    let second =
        crate::harness::run_wpgate(&["--data-dir", data_text, "keyring", "init"], None, &[]);
    assert_ne!(first.stdout, second.stdout);
    assert!(
        !data.join("wpgate.db").exists() && !data.join("keyring.toml").exists(),
        "keyring init wrote files"
    );
    // The printed text is a keyring a gateway starts with (WPGATE_KEYRING).
    let mut gw = Gateway::prepare(Default::default());
    gw.env.push(("WPGATE_KEYRING".into(), first.stdout.clone()));
    gw.serve();
    let up = Upstream::start();
    gw.add_site("k", &up.url(), &SiteAuth::bearer("k-secret"));
    let key = gw.issue_key("k", &[]);
    gw.get_as("k", &key.full, "/wp-json/").await.assert_ok();
    let check = gw.cli(&["check"], None);
    check.assert_success();
    assert!(check.stdout.contains("WPGATE_KEYRING"), "{}", check.stdout);
}

#[tokio::test]
async fn healthcheck_says_whether_the_gateway_answers() {
    let gw = Gateway::start();
    gw.cli(&["healthcheck"], None).assert_success();
    let gone = format!("http://127.0.0.1:{}/healthz", crate::harness::free_port());
    gw.cli(&["healthcheck", "--url", &gone], None)
        .assert_failure();
}
