//! Day-two operations, through the real binary: when each API key was last used
//! (written off the request path, in batches), key rotation in one audited step, the
//! purge of old revoked and expired keys, input hygiene in the CLI and the admin API, and
//! what an operator reads in the log (no ERROR for a client that hangs up, durations
//! rounded).

use std::io::Write as _;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::{
    log_field, poll_until, ApiKey, Gateway, GatewayConfig, SiteAuth, Upstream, CHANGE_DEADLINE,
    KEY_HEADER, SITE_HEADER,
};

fn with_keys(keys_toml: &str) -> GatewayConfig {
    GatewayConfig {
        extra_toml: format!("[keys]\n{keys_toml}\n"),
        ..GatewayConfig::default()
    }
}

/// `key list <site> --json`, by key id.
fn keys_of(gw: &Gateway, site: &str) -> Vec<Value> {
    let out = gw.cli_json(&["key", "list", site]);
    out.assert_success();
    out.json().as_array().unwrap().clone()
}

fn key_view(gw: &Gateway, site: &str, key_id: &str) -> Option<Value> {
    keys_of(gw, site)
        .into_iter()
        .find(|k| k["key_id"] == key_id)
}

fn unix(rfc3339: &Value) -> i64 {
    let text = rfc3339
        .as_str()
        .unwrap_or_else(|| panic!("not a time: {rfc3339}"));
    let t = humantime::parse_rfc3339(text).unwrap();
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// SIGTERM, and wait (up to 20 s) for the gateway to exit.
fn terminate(gw: &mut Gateway) {
    gw.signal("TERM");
    let mut child = gw.take_child().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the gateway did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn last_used_is_written_by_the_flush_and_at_shutdown_never_by_the_request() {
    let up = Upstream::start();
    // A flush interval no test reaches: only the shutdown flush writes.
    let mut gw = Gateway::start_with(with_keys("last_used_flush = \"1h\""));
    gw.add_site("blog", &up.url(), &SiteAuth::None);
    let used = gw.issue_key("blog", &[]);
    let idle = gw.issue_key("blog", &[]);
    let before = now();
    for _ in 0..3 {
        gw.get_as("blog", &used.full, "/wp-json/wp/v2/posts")
            .await
            .assert_ok();
    }
    // The requests wrote nothing to the store.
    let k = key_view(&gw, "blog", &used.key_id).unwrap();
    assert!(
        k["last_used_at"].is_null(),
        "written on the request path: {k}"
    );
    // Stopping flushes what was gathered.
    terminate(&mut gw);
    let k = key_view(&gw, "blog", &used.key_id).unwrap();
    let at = unix(&k["last_used_at"]);
    assert!((before..=now()).contains(&at), "{k}");
    assert!(key_view(&gw, "blog", &idle.key_id).unwrap()["last_used_at"].is_null());
    let table = gw.cli(&["key", "list", "blog"], None);
    assert!(
        table.assert_success().stdout.contains("LAST USED"),
        "{}",
        table.stdout
    );
}

#[tokio::test]
async fn last_used_follows_the_flush_interval_in_the_cli_and_the_admin_api() {
    let up = Upstream::start();
    let gw = Gateway::start_with(with_keys("last_used_flush = \"300ms\""));
    gw.add_site("blog", &up.url(), &SiteAuth::None);
    let key = gw.issue_key("blog", &[]);
    let token = gw.admin_token("read", None);
    let before = now();
    gw.get_as("blog", &key.full, "/wp-json/wp/v2/posts")
        .await
        .assert_ok();
    let at = poll_until("last_used_at in key list", CHANGE_DEADLINE, || async {
        match key_view(&gw, "blog", &key.key_id) {
            Some(k) if !k["last_used_at"].is_null() => Ok(unix(&k["last_used_at"])),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(at >= before && at <= now(), "{at}");
    let a = gw
        .admin_call(Method::GET, "/admin/v1/sites/blog/keys", &token, None)
        .await;
    assert_eq!(a.status, 200, "{}", a.summary());
    let listed = a.json().unwrap();
    assert_eq!(
        listed["keys"][0]["last_used_at"],
        json!(humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + Duration::from_secs(at as u64)
        )
        .to_string()),
        "{listed}"
    );
    // The OpenAPI description documents it, the rotation and the create warnings.
    let doc = gw
        .admin_call(Method::GET, "/admin/v1/openapi.json", &token, None)
        .await
        .json()
        .unwrap();
    let schemas = &doc["components"]["schemas"];
    assert!(schemas["KeyView"]["properties"]["last_used_at"].is_object());
    let created = schemas["CreatedSite"].to_string();
    assert!(created.contains("\"warnings\""), "{created}");
    assert!(doc["paths"]["/admin/v1/keys/{key_id}/rotate"]["post"].is_object());
}

/// The `key.rotate` entries of a site's audit log.
async fn rotations(gw: &Gateway, token: &str, site: &str) -> Vec<Value> {
    let a = gw
        .admin_call(
            Method::GET,
            &format!("/admin/v1/audit?site={site}&limit=100"),
            token,
            None,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.summary());
    a.json().unwrap()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "key.rotate")
        .cloned()
        .collect()
}

#[tokio::test]
async fn rotate_keeps_the_old_key_through_its_grace_in_one_audited_step() {
    let up = Upstream::start();
    let gw = Gateway::start();
    gw.add_site("blog", &up.url(), &SiteAuth::None);
    let token = gw.admin_token("write", Some("ops"));
    let path = "/wp-json/wp/v2/posts";

    // CLI: the new key alone on stdout; both keys work during the grace.
    let old = gw.issue_key("blog", &["--label", "mobile app", "--expires-in", "30d"]);
    let out = gw.cli(&["key", "rotate", &old.key_id, "--grace", "1h"], None);
    let new = ApiKey::parse(&out.assert_success().single_line());
    assert!(out.stderr.contains(&old.key_id), "{}", out.stderr);
    gw.get_as("blog", &old.full, path).await.assert_ok();
    gw.poll_status("blog", &new.full, path, 200).await;
    let old_view = key_view(&gw, "blog", &old.key_id).unwrap();
    let new_view = key_view(&gw, "blog", &new.key_id).unwrap();
    let grace = unix(&old_view["grace_until"]) - now();
    assert!((3500..=3601).contains(&grace), "{old_view}");
    assert_eq!(new_view["label"], "mobile app");
    assert!(new_view["revoked_at"].is_null());
    // The same lifetime (30 days) from now.
    let lifetime = |k: &Value| unix(&k["expires_at"]) - unix(&k["created_at"]);
    assert_eq!(lifetime(&new_view), lifetime(&old_view), "{new_view}");
    assert!((30 * 86_400..=30 * 86_400 + 1).contains(&lifetime(&new_view)));
    // One audit entry naming both keys.
    let entries = rotations(&gw, &token, "blog").await;
    assert_eq!(entries.len(), 1, "{entries:#?}");
    assert_eq!(entries[0]["target"], format!("key:{}", old.key_id));
    let detail = entries[0]["detail"].as_str().unwrap();
    assert!(detail.contains(&new.key_id), "{detail}");
    assert!(entries[0]["actor"].as_str().unwrap().starts_with("cli:"));

    // A revoked key is not rotated; an unknown one does not exist.
    let again = gw.cli(&["key", "rotate", &old.key_id], None);
    assert!(
        again.assert_failure().stderr.contains("already revoked"),
        "{}",
        again.stderr
    );
    let ghost = gw.cli(&["key", "rotate", "abcdefghijkl"], None);
    assert!(
        ghost.assert_failure().stderr.contains("does not exist"),
        "{}",
        ghost.stderr
    );

    // Admin API: the same step, audited with the call's request id.
    let a = gw
        .send(
            gw.admin_request(
                Method::POST,
                &format!("/admin/v1/keys/{}/rotate", new.key_id),
                &token,
            )
            .header("X-Request-ID", "rotate-call-1")
            .json(&json!({"grace": "1h"})),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.summary());
    assert_eq!(a.header("cache-control"), Some("no-store"));
    let body = a.json().unwrap();
    let newer = ApiKey::parse(body["key"].as_str().unwrap());
    assert_eq!(body["replaces"]["key_id"], new.key_id.as_str());
    assert_eq!(body["site_id"], "blog");
    assert!(!body["replaces"]["grace_until"].is_null());
    gw.get_as("blog", &new.full, path).await.assert_ok();
    gw.get_as("blog", &newer.full, path).await.assert_ok();
    let entries = rotations(&gw, &token, "blog").await;
    assert_eq!(entries.len(), 2, "{entries:#?}");
    assert_eq!(entries[0]["request_id"], "rotate-call-1");
    assert_eq!(entries[0]["actor"], "admin:ops");
    assert!(entries[0]["detail"]
        .as_str()
        .unwrap()
        .contains(&newer.key_id));

    // No grace: the old key is refused at once (here, as soon as the change is seen).
    let a = gw
        .admin_call(
            Method::POST,
            &format!("/admin/v1/keys/{}/rotate", newer.key_id),
            &token,
            Some(json!({"grace": "0s"})),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.summary());
    let last = ApiKey::parse(a.json().unwrap()["key"].as_str().unwrap());
    gw.get_as("blog", &newer.full, path)
        .await
        .assert_error(401, "auth.invalid_credentials");
    gw.get_as("blog", &last.full, path).await.assert_ok();
    // A revoked key: 409 (it is in no state to rotate); an unknown one: 404.
    let a = gw
        .admin_call(
            Method::POST,
            &format!("/admin/v1/keys/{}/rotate", newer.key_id),
            &token,
            None,
        )
        .await;
    a.assert_error(409, "admin.conflict");
    let a = gw
        .admin_call(
            Method::POST,
            "/admin/v1/keys/abcdefghijkl/rotate",
            &token,
            None,
        )
        .await;
    a.assert_error(404, "admin.not_found");
}

#[tokio::test]
async fn revoked_and_expired_keys_are_purged_after_the_retention() {
    let up = Upstream::start();
    let gw = Gateway::start_with(with_keys("retention = \"1s\"\npurge_interval = \"1s\""));
    gw.add_site("blog", &up.url(), &SiteAuth::None);
    let token = gw.admin_token("read", None);
    let revoked = gw.issue_key("blog", &[]);
    gw.cli(&["key", "revoke", &revoked.key_id], None)
        .assert_success();
    let graced = gw.issue_key("blog", &[]);
    gw.cli(&["key", "revoke", &graced.key_id, "--grace", "1h"], None)
        .assert_success();
    let expiring = gw.issue_key("blog", &["--expires-in", "1s"]);
    let live = gw.issue_key("blog", &[]);
    poll_until(
        "the purge of the revoked and the expired key",
        CHANGE_DEADLINE,
        || async {
            let ids: Vec<String> = keys_of(&gw, "blog")
                .iter()
                .map(|k| k["key_id"].as_str().unwrap().to_owned())
                .collect();
            if ids.contains(&revoked.key_id) || ids.contains(&expiring.key_id) {
                Err(format!("still listed: {ids:?}"))
            } else {
                Ok(())
            }
        },
    )
    .await;
    // Within its grace, or still valid: kept.
    for kept in [&graced, &live] {
        assert!(
            key_view(&gw, "blog", &kept.key_id).is_some(),
            "{}",
            kept.key_id
        );
    }
    gw.get_as("blog", &live.full, "/wp-json/wp/v2/posts")
        .await
        .assert_ok();
    // Each purged key has its own audit entry, by the gateway, naming its site.
    let a = gw
        .admin_call(
            Method::GET,
            "/admin/v1/audit?site=blog&limit=100",
            &token,
            None,
        )
        .await;
    let entries = a.json().unwrap()["entries"].as_array().unwrap().clone();
    let purges: Vec<&Value> = entries
        .iter()
        .filter(|e| e["action"] == "key.purge")
        .collect();
    let mut targets: Vec<String> = purges
        .iter()
        .map(|e| e["target"].as_str().unwrap().to_owned())
        .collect();
    targets.sort();
    let mut want = vec![
        format!("key:{}", revoked.key_id),
        format!("key:{}", expiring.key_id),
    ];
    want.sort();
    assert_eq!(targets, want, "{purges:#?}");
    for e in &purges {
        assert_eq!(e["actor"], "gateway:retention", "{e}");
        assert_eq!(e["site_id"], "blog", "{e}");
    }
}

#[tokio::test]
async fn hygiene_refusals_name_the_field_in_the_cli() {
    let up = Upstream::start();
    let gw = Gateway::prepare(GatewayConfig::default());
    gw.add_site("blog", &up.url(), &SiteAuth::None);
    let long = "x".repeat(201);
    let refused = |args: &[&str], stdin: Option<&str>, field: &str| {
        let out = gw.cli(args, stdin);
        out.assert_failure();
        assert!(
            out.stderr.contains(&format!("{field}: ")),
            "`{}` should name {field}: {}",
            args.join(" "),
            out.stderr
        );
    };
    refused(
        &["site", "add", "a", "--upstream", &up.url(), "--name", &long],
        None,
        "name",
    );
    refused(
        &[
            "site",
            "add",
            "a",
            "--upstream",
            &up.url(),
            "--name",
            "a\u{7}b",
        ],
        None,
        "name",
    );
    refused(&["site", "update", "blog", "--name", " "], None, "name");
    refused(&["key", "issue", "blog", "--label", &long], None, "label");
    refused(
        &["key", "issue", "blog", "--label", "line\nbreak"],
        None,
        "label",
    );
    refused(
        &[
            "admin", "token", "create", "--scope", "read", "--label", "a\tb",
        ],
        None,
        "label",
    );
    refused(
        &[
            "site",
            "add",
            "a",
            "--upstream",
            &up.url(),
            "--auth",
            "app-password",
            "--username",
            "api\u{1b}[2J",
            "--secret-stdin",
        ],
        Some("pass word"),
        "credential.username",
    );
    refused(
        &[
            "site",
            "add",
            "a",
            "--upstream",
            &up.url(),
            "--auth",
            "header",
            "--header-name",
            &"X".repeat(201),
            "--secret-stdin",
        ],
        Some("s3cret"),
        "credential.header_name",
    );
    refused(
        &[
            "site",
            "set-auth",
            "blog",
            "--methods",
            "jwt",
            "--jwt-alg",
            "HS256",
            "--jwt-secret-stdin",
        ],
        Some("        \n"),
        "jwt_secret",
    );
    // A blank secret on stdin is refused by the CLI itself, naming the flag.
    let out = gw.cli(
        &[
            "site",
            "add",
            "a",
            "--upstream",
            &up.url(),
            "--auth",
            "bearer",
            "--secret-stdin",
        ],
        Some("   \n"),
    );
    assert!(
        out.assert_failure().stderr.contains("--secret-stdin"),
        "{}",
        out.stderr
    );
    // Nothing of it was stored.
    let sites = gw.cli_json(&["site", "list"]);
    assert_eq!(sites.assert_success().json().as_array().unwrap().len(), 1);
    assert!(keys_of(&gw, "blog").is_empty());
    // 200 characters are fine.
    gw.issue_key("blog", &["--label", &"é".repeat(200)]);
}

#[tokio::test]
async fn hygiene_refusals_name_the_field_in_the_admin_api() {
    let up = Upstream::start();
    let gw = Gateway::start();
    let token = gw.admin_token("write", Some("ops"));
    let long = "x".repeat(201);
    let url = up.url();
    let post = |path: &'static str, body: Value| {
        let gw = &gw;
        let token = token.clone();
        async move { gw.admin_call(Method::POST, path, &token, Some(body)).await }
    };
    for (body, field) in [
        (json!({"id": "a", "upstream": url, "name": long}), "name"),
        (
            json!({"id": "a", "upstream": url, "name": "tab\there"}),
            "name",
        ),
        (
            json!({"id": "a", "upstream": url,
                   "credential": {"kind": "bearer", "secret": "   "}}),
            "credential.secret",
        ),
        (
            json!({"id": "a", "upstream": url,
                   "credential": {"kind": "app_password", "username": "a\u{0}b", "secret": "pw"}}),
            "credential.username",
        ),
        (
            json!({"id": "a", "upstream": url,
                   "credential": {"kind": "header", "header_name": "X-A\r\nX-B", "secret": "pw"}}),
            "credential.header_name",
        ),
    ] {
        let a = post("/admin/v1/sites", body.clone()).await;
        let e = a.assert_error(400, "admin.invalid_request");
        let message = e["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("{field}: ")),
            "{body}: {message}"
        );
    }
    let a = post("/admin/v1/sites", json!({"id": "blog", "upstream": url})).await;
    assert_eq!(a.status, 201, "{}", a.summary());
    for label in [long.as_str(), "new\nline", ""] {
        let a = post("/admin/v1/sites/blog/keys", json!({"label": label})).await;
        let e = a.assert_error(400, "admin.invalid_request");
        assert!(e["message"].as_str().unwrap().starts_with("label: "), "{e}");
    }
    let a = gw
        .send(
            gw.admin_request(Method::PATCH, "/admin/v1/sites/blog", &token)
                .header("If-Match", "\"1\"")
                .json(&json!({"name": "\u{85}"})),
        )
        .await;
    let e = a.assert_error(400, "admin.invalid_request");
    assert!(e["message"].as_str().unwrap().starts_with("name: "), "{e}");
    let a = gw
        .admin_call(
            Method::PUT,
            "/admin/v1/sites/blog/credential",
            &token,
            Some(json!({"kind": "bearer", "secret": "\t \n"})),
        )
        .await;
    let e = a.assert_error(400, "admin.invalid_request");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .starts_with("credential.secret: "),
        "{e}"
    );
}

#[tokio::test]
async fn a_second_site_on_the_same_upstream_is_added_with_a_warning() {
    let up = Upstream::start();
    let gw = Gateway::start();
    let token = gw.admin_token("write", Some("ops"));
    let url = up.url();
    let first = gw.add_site("first", &url, &SiteAuth::None);
    assert!(!first.stderr.contains("warning"), "{}", first.stderr);
    // CLI: added, with a warning line on stderr naming the other site.
    let slashed = format!("{}/", url.trim_end_matches('/'));
    let second = gw.add_site("second", &slashed, &SiteAuth::None);
    let warning = second
        .stderr
        .lines()
        .find(|l| l.starts_with("warning: "))
        .unwrap_or_else(|| panic!("no warning: {}", second.stderr));
    assert!(warning.contains("already used by site first"), "{warning}");
    // Admin API: 201 with the warnings; none for an upstream of its own.
    let a = gw
        .admin_call(
            Method::POST,
            "/admin/v1/sites",
            &token,
            Some(json!({"id": "third", "upstream": url})),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.summary());
    let body = a.json().unwrap();
    assert_eq!(body["id"], "third");
    let warnings = body["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{body}");
    let w = warnings[0].as_str().unwrap();
    assert!(w.contains("first") && w.contains("second"), "{w}");
    let a = gw
        .admin_call(
            Method::POST,
            "/admin/v1/sites",
            &token,
            Some(json!({"id": "own", "upstream": "http://127.0.0.1:9/own"})),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.summary());
    assert_eq!(a.json().unwrap()["warnings"], json!([]));
}

/// The raw text of a numeric field in a JSON log line, e.g. `0.117`.
fn raw_number(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!("\"{key}\":"))? + key.len() + 3;
    Some(
        line[start..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == 'e' || *c == '-')
            .collect(),
    )
}

#[tokio::test]
async fn access_line_durations_are_rounded_to_the_microsecond() {
    let up = Upstream::start();
    let gw = Gateway::start();
    gw.add_site("blog", &up.url(), &SiteAuth::None);
    let key = gw.issue_key("blog", &[]);
    let mut ids = Vec::new();
    for i in 0..8 {
        let rid = format!("rounded-{i}");
        // Accepted and refused requests alike.
        let k = if i % 2 == 0 {
            key.full.clone()
        } else {
            key.with_wrong_secret()
        };
        gw.send(
            gw.get("/wp-json/wp/v2/posts")
                .header(SITE_HEADER, "blog")
                .header(KEY_HEADER, k)
                .header("X-Request-ID", &rid),
        )
        .await;
        ids.push(rid);
    }
    for rid in &ids {
        gw.access_line(rid).await;
        let logs = gw.logs();
        let line = logs
            .lines()
            .find(|l| l.contains(&format!("\"request_id\":\"{rid}\"")))
            .unwrap();
        let text = raw_number(line, "duration_ms").unwrap_or_else(|| panic!("{line}"));
        let decimals = text.split('.').nth(1).unwrap_or_default();
        assert!(
            !text.contains('e') && decimals.len() <= 3,
            "duration_ms={text} in {line}"
        );
        assert!(text.parse::<f64>().unwrap() >= 0.0);
    }
}

#[tokio::test]
async fn a_client_that_hangs_up_is_not_an_error() {
    let up = Upstream::start();
    let gw = Gateway::start();
    gw.add_site("blog", &up.url(), &SiteAuth::None);
    let key = gw.issue_key("blog", &[]);
    // A request the upstream answers only after a while; the client leaves before.
    let request = format!(
        "GET /wp-json/wp/v2/slow HTTP/1.1\r\nHost: {}\r\n{SITE_HEADER}: blog\r\n\
         {KEY_HEADER}: {}\r\nX-Request-ID: hangup-1\r\n\r\n",
        gw.proxy_addr, key.full
    );
    let mut conn = std::net::TcpStream::connect(gw.proxy_addr).unwrap();
    conn.write_all(request.as_bytes()).unwrap();
    poll_until(
        "the upstream to get the request",
        CHANGE_DEADLINE,
        || async {
            if up.requests_with("/slow").is_empty() {
                Err("not yet".to_owned())
            } else {
                Ok(())
            }
        },
    )
    .await;
    drop(conn);
    let line = gw.access_line("hangup-1").await;
    assert_eq!(log_field(&line, "status").as_deref(), Some("0"), "{line}");
    assert!(log_field(&line, "error").is_some(), "{line}");
    let errors: Vec<Value> = gw
        .log_json()
        .into_iter()
        .filter(|l| l["level"] == "ERROR")
        .collect();
    assert!(
        errors.is_empty(),
        "a client hanging up was logged as an error: {errors:#?}"
    );
}
