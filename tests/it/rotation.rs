//! Reload and rotation on a running gateway (the real binary): configuration reload by
//! file change, SIGHUP and the admin API; refused snapshots; keyring add / rewrap /
//! retire; an interrupted rewrap; credential rotation confirmed against the site; and
//! all of it under a bounded request loop with zero failed requests.

use crate::harness::{
    metric_sum, parse_metrics, poll_until, ApiKey, Gateway, GatewayConfig, SiteAuth, Upstream,
    WpMimic,
};
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn write_config(gw: &Gateway, config: &GatewayConfig) {
    std::fs::write(
        &gw.config_path,
        config.render(&gw.data_dir, gw.proxy_addr, gw.admin_addr),
    )
    .unwrap();
}

async fn reload(gw: &Gateway, token: &str) -> crate::harness::Answer {
    gw.send(gw.admin_request(Method::POST, "/admin/v1/reload", token))
        .await
}

async fn reloads(gw: &Gateway, result: &str) -> f64 {
    let samples = parse_metrics(&gw.metrics_text().await);
    metric_sum(
        &samples,
        "wpgate_config_reloads_total",
        &[("result", result)],
    )
}

fn keyring_status(gw: &Gateway) -> Value {
    let out = gw.cli_json(&["keyring", "status"]);
    out.assert_success();
    out.json()
}

/// `key id -> records it seals` from `keyring status --json`.
fn sealed_by(status: &Value) -> Vec<(String, i64)> {
    status["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["id"].as_str().unwrap().to_string(),
                k["sealed_records"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// A gateway, the default config it runs (for the test to change and write back) and
/// a write admin token.
fn start_with_default_config() -> (GatewayConfig, Gateway, String) {
    let config = GatewayConfig::default();
    let gw = Gateway::start_with(config.clone());
    let token = gw.admin_token("write", None);
    (config, gw, token)
}

/// A request on `shop` with `X-Internal-Secret: s<n>` on a fresh path, which must
/// succeed; that path.
async fn send_with_secret(gw: &Gateway, key: &ApiKey, n: u32) -> String {
    let path = format!("/wp-json/reload-{n}-{}", crate::harness::marker());
    gw.send(
        gw.get(&path)
            .header("x-website-id", "shop")
            .header("x-api-key", &key.full)
            .header("x-internal-secret", format!("s{n}")),
    )
    .await
    .assert_ok();
    path
}

#[tokio::test]
async fn reload_applies_good_files_and_refuses_bad_ones() {
    let upstream = Upstream::start();
    let (mut config, gw, token) = start_with_default_config();
    gw.add_site(
        "shop",
        &upstream.url(),
        &SiteAuth::app_password("api", "pw one"),
    );
    let key = gw.issue_key("shop", &[]);

    // Before: a custom header reaches the site.
    let path = send_with_secret(&gw, &key, 1).await;
    assert_eq!(
        upstream.one_with(&path).header("x-internal-secret"),
        Some("s1")
    );

    // A changed file is picked up by the watcher: the header is now stripped.
    config.proxy_toml =
        "strip_headers = [\"Authorization\", \"X-API-Key\", \"Cookie\", \"X-Internal-Secret\"]"
            .into();
    write_config(&gw, &config);
    poll_until(
        "the file change to be applied",
        Duration::from_secs(15),
        || async {
            let path = send_with_secret(&gw, &key, 2).await;
            upstream
                .one_with(&path)
                .header("x-internal-secret")
                .is_none()
                .then_some(())
                .ok_or_else(|| "not yet".to_string())
        },
    )
    .await;
    assert!(gw.logs().contains("file_change"), "{}", gw.logs());
    assert!(reloads(&gw, "success").await >= 1.0);

    // SIGHUP reloads too.
    gw.signal("HUP");
    poll_until("the SIGHUP reload", Duration::from_secs(10), || async {
        gw.logs()
            .contains("sighup")
            .then_some(())
            .ok_or_else(|| "not yet".to_string())
    })
    .await;

    // The admin API: a restart-only setting is reported, the rest applies.
    config.ttl = "7s".into();
    config.read_timeout = "25s".into();
    write_config(&gw, &config);
    let a = reload(&gw, &token).await;
    assert_eq!(a.status, 200, "{}", a.summary());
    let body = a.json().unwrap();
    assert!(
        body["restart_required"]
            .as_array()
            .unwrap()
            .contains(&json!("cache")),
        "{body}"
    );
    let last_ok = {
        let samples = parse_metrics(&gw.metrics_text().await);
        metric_sum(
            &samples,
            "wpgate_config_last_reload_success_timestamp_seconds",
            &[],
        )
    };
    assert!(last_ok > 1.7e9, "{last_ok}");

    // A bad file is refused as a whole: the old snapshot keeps serving.
    let read = gw.admin_token("read", None);
    let failures_before = reloads(&gw, "failure").await;
    let good = std::fs::read_to_string(&gw.config_path).unwrap();
    std::fs::write(
        &gw.config_path,
        good.replace("read_timeout = \"25s\"", "read_timeout = \"banana\""),
    )
    .unwrap();
    let a = reload(&gw, &token).await;
    let e = a.assert_error(422, "admin.reload_refused");
    assert!(
        e["message"].as_str().unwrap().contains("read_timeout"),
        "{e}"
    );
    assert!(reloads(&gw, "failure").await > failures_before);
    assert!(gw.logs().contains("reload refused"), "{}", gw.logs());
    let path = send_with_secret(&gw, &key, 3).await;
    let seen = upstream.one_with(&path);
    assert!(seen.header("x-internal-secret").is_none());
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Basic {}", crate::harness::base64_std("api:pw one")).as_str())
    );
    // Read tokens cannot reload.
    reload(&gw, &read)
        .await
        .assert_error(403, "admin.forbidden");
}

#[tokio::test]
async fn a_keyring_that_lacks_an_in_use_key_is_refused_by_name() {
    let upstream = Upstream::start();
    let gw = Gateway::start();
    let token = gw.admin_token("write", None);
    gw.add_site("shop", &upstream.url(), &SiteAuth::bearer("tok-1"));
    let key = gw.issue_key("shop", &[]);
    let old = keyring_status(&gw)["primary"].as_str().unwrap().to_string();

    // A keyring with only a new key: every record would become unreadable.
    let original = std::fs::read_to_string(gw.keyring_path()).unwrap();
    let other = "primary = \"kother\"\n\n[[keys]]\nid = \"kother\"\n\
                 secret = \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"\n";
    std::fs::write(gw.keyring_path(), other).unwrap();
    let a = reload(&gw, &token).await;
    let e = a.assert_error(422, "admin.reload_refused");
    let msg = e["message"].as_str().unwrap();
    assert!(msg.contains(&old) && msg.contains("still seals"), "{msg}");
    // The CLI says the same, and the gateway still opens the site's credential.
    let status = gw.cli_json(&["keyring", "status"]);
    status.assert_failure();
    assert!(
        status.json()["missing"][0]["id"] == json!(old),
        "{}",
        status.stdout
    );
    std::fs::write(gw.keyring_path(), &original).unwrap();
    let a = gw.get_as("shop", &key.full, "/wp-json/after-refusal").await;
    a.assert_ok();
    assert_eq!(
        upstream
            .one_with("/wp-json/after-refusal")
            .header("authorization"),
        Some("Bearer tok-1")
    );

    // The primary cannot be retired, nor a key that still seals records.
    gw.cli(&["keyring", "retire", &old], None).assert_failure();
    gw.cli(&["keyring", "add"], None).assert_success();
    let status = keyring_status(&gw);
    let new = sealed_by(&status)
        .into_iter()
        .find(|(k, _)| *k != old)
        .unwrap()
        .0;
    gw.cli(&["keyring", "set-primary", &new], None)
        .assert_success();
    let out = gw.cli(&["keyring", "retire", &old], None);
    out.assert_failure();
    assert!(out.stderr.contains("still seals"), "{}", out.stderr);
}

#[tokio::test]
async fn an_interrupted_rewrap_leaves_everything_readable_and_resumes() {
    let upstream = Upstream::start();
    let gw = Gateway::start_with(GatewayConfig {
        ttl: "1h".into(),
        ..GatewayConfig::default()
    });
    let token = gw.admin_token("write", None);
    const SITES: usize = 300;
    let mut tasks = Vec::new();
    for i in 0..SITES {
        let req = gw
            .admin_request(Method::POST, "/admin/v1/sites", &token)
            .json(&json!({
                "id": format!("s{i}"),
                "upstream": upstream.url(),
                "credential": {"kind": "bearer", "secret": format!("tok-{i}")},
            }));
        tasks.push(tokio::spawn(
            async move { req.send().await.unwrap().status() },
        ));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 201);
    }
    let old = keyring_status(&gw)["primary"].as_str().unwrap().to_string();
    gw.cli(&["keyring", "add", "--primary"], None)
        .assert_success();
    reload(&gw, &token).await.assert_ok();

    // Start a rewrap one record per transaction, stop it dead after its first batch.
    let config = gw.config_path.to_string_lossy().into_owned();
    let mut child =
        crate::harness::wpgate_command(&["--config", &config, "keyring", "rewrap", "--batch", "1"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert!(line.starts_with("rewrapped"), "{line:?}");
    child.kill().unwrap();
    child.wait().unwrap();

    let counts = sealed_by(&keyring_status(&gw));
    let on_old = counts.iter().find(|(k, _)| *k == old).unwrap().1;
    assert!(
        on_old > 0,
        "the rewrap finished before it was killed: {counts:?}"
    );
    assert!(
        counts.iter().any(|(k, n)| *k != old && *n > 0),
        "nothing was rewrapped: {counts:?}"
    );
    // Every record opens: each site's credential reaches its upstream.
    let key_for = |i: usize| gw.issue_key(&format!("s{i}"), &[]);
    for i in [0, 1, SITES / 2, SITES - 1] {
        let k: ApiKey = key_for(i);
        let path = format!("/wp-json/mid-rewrap-{i}");
        gw.get_as(&format!("s{i}"), &k.full, &path)
            .await
            .assert_ok();
        assert_eq!(
            upstream.one_with(&path).header("authorization"),
            Some(format!("Bearer tok-{i}").as_str())
        );
    }

    // Run again: it resumes and finishes; then the old key can go.
    let out = gw.cli_json(&["keyring", "rewrap", "--batch", "50"]);
    out.assert_success();
    let counts = sealed_by(&keyring_status(&gw));
    assert_eq!(
        counts.iter().find(|(k, _)| *k == old).unwrap().1,
        0,
        "{counts:?}"
    );
    gw.cli(&["keyring", "retire", &old], None).assert_success();
    reload(&gw, &token).await.assert_ok();
    let samples = parse_metrics(&gw.metrics_text().await);
    assert_eq!(
        metric_sum(
            &samples,
            "wpgate_keyring_sealed_records",
            &[("key_id", &old)]
        ),
        0.0
    );
    // With a cold cache every credential opens under the new keyring alone.
    let mut restarted = gw;
    restarted.stop();
    restarted.serve();
    restarted.client = crate::harness::http_client();
    for i in [2, SITES - 2] {
        let k = restarted.issue_key(&format!("s{i}"), &[]);
        let path = format!("/wp-json/after-retire-{i}");
        restarted
            .get_as(&format!("s{i}"), &k.full, &path)
            .await
            .assert_ok();
        assert_eq!(
            upstream.one_with(&path).header("authorization"),
            Some(format!("Bearer tok-{i}").as_str())
        );
    }
}

#[tokio::test]
async fn a_new_credential_is_confirmed_against_the_site_before_it_replaces_the_old() {
    let wp = WpMimic::start();
    wp.accept_token("old-token", 1, "api");
    let gw = Gateway::start();
    let token = gw.admin_token("write", None);
    gw.add_site("blog", &wp.url(), &SiteAuth::bearer("old-token"));
    let key = gw.issue_key("blog", &[]);

    // The site does not accept the new token yet: refused, the old one stays.
    let out = gw.set_credential("blog", &SiteAuth::bearer("new-token"), &["--confirm"]);
    out.assert_failure();
    assert!(
        out.stderr.contains("old credential is kept"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("new-token"), "{}", out.stderr);
    gw.get_as("blog", &key.full, "/wp-json/still-old")
        .await
        .assert_ok();
    assert_eq!(
        wp.one_with("/wp-json/still-old").header("authorization"),
        Some("Bearer old-token")
    );
    let a = gw
        .send(
            gw.admin_request(
                Method::PUT,
                "/admin/v1/sites/blog/credential?confirm=true",
                &token,
            )
            .json(&json!({"kind": "bearer", "secret": "new-token"})),
        )
        .await;
    let e = a.assert_error(422, "admin.credential_rejected");
    assert!(!e.to_string().contains("new-token"));

    // Once WordPress knows it, the rotation goes through.
    wp.accept_token("new-token", 1, "api");
    let out = gw.set_credential("blog", &SiteAuth::bearer("new-token"), &["--confirm"]);
    out.assert_success();
    // The CLI wrote to the store: the gateway follows its change log.
    poll_until(
        "the new credential in use",
        Duration::from_secs(10),
        || async {
            let path = format!("/wp-json/now-new-{}", crate::harness::marker());
            gw.get_as("blog", &key.full, &path).await.assert_ok();
            (wp.one_with(&path).header("authorization") == Some("Bearer new-token"))
                .then_some(())
                .ok_or_else(|| "old credential still used".to_string())
        },
    )
    .await;
}

/// Requests from a few concurrent loops until stopped; counts answers that are not
/// 200 with the expected credential at the upstream.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(gw: &Gateway, sites: &[(String, String)]) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for worker in 0..4 {
            let client = gw.client.clone();
            let url = gw.url("/wp-json/load");
            let sites = sites.to_vec();
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = worker;
                while !stop.load(Ordering::Relaxed) {
                    let (site, key) = &sites[i % sites.len()];
                    i += 1;
                    let r = client
                        .get(&url)
                        .header("x-website-id", site)
                        .header("x-api-key", key)
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 200 => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => {
                            let status = r.status();
                            let text = r.text().await.unwrap_or_default();
                            failed
                                .lock()
                                .unwrap()
                                .push(format!("{site}: {status} {text}"));
                        }
                        Err(e) => failed.lock().unwrap().push(format!("{site}: {e}")),
                    }
                }
            }));
        }
        Load {
            stop,
            ok,
            failed,
            tasks,
        }
    }

    async fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        let failed = self.failed.lock().unwrap().clone();
        (self.ok.load(Ordering::Relaxed), failed)
    }
}

#[tokio::test]
async fn rotating_everything_under_load_fails_no_request() {
    let wp = WpMimic::start();
    let (mut config, gw, token) = start_with_default_config();
    let mut sites = Vec::new();
    for i in 0..8 {
        let id = format!("site{i}");
        wp.accept_token(&format!("tok-{i}"), 1, "api");
        gw.add_site(&id, &wp.url(), &SiteAuth::bearer(&format!("tok-{i}")));
        let key = gw.issue_key(&id, &[]);
        sites.push((id, key.full));
    }
    let old = keyring_status(&gw)["primary"].as_str().unwrap().to_string();
    let load = Load::start(&gw, &sites);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Keyring: add a primary, reload, rewrap, retire the old key, reload.
    gw.cli(&["keyring", "add", "--primary"], None)
        .assert_success();
    reload(&gw, &token).await.assert_ok();
    gw.cli(&["keyring", "rewrap", "--batch", "3"], None)
        .assert_success();
    gw.cli(&["keyring", "retire", &old], None).assert_success();
    reload(&gw, &token).await.assert_ok();

    // Ten configuration reloads.
    for n in 0..10 {
        config.read_timeout = format!("{}s", 20 + n);
        write_config(&gw, &config);
        reload(&gw, &token).await.assert_ok();
    }

    // A site credential, confirmed first, and an API key rotated with grace.
    wp.accept_token("tok-0-new", 1, "api");
    gw.set_credential("site0", &SiteAuth::bearer("tok-0-new"), &["--confirm"])
        .assert_success();
    // API key rotation: a new key, the old one revoked with grace (still in use above).
    let new_key = gw.issue_key("site1", &[]);
    let old_key = ApiKey::parse(&sites[1].1);
    gw.cli(&["key", "revoke", &old_key.key_id, "--grace", "1h"], None)
        .assert_success();
    gw.get_as("site1", &new_key.full, "/wp-json/new-key")
        .await
        .assert_ok();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (ok, failed) = load.finish().await;
    assert!(
        failed.is_empty(),
        "{} failed requests: {:?}",
        failed.len(),
        &failed[..failed.len().min(10)]
    );
    assert!(ok > 50, "only {ok} requests ran");
    eprintln!("rotation under load: {ok} requests, 0 failed");
    poll_until(
        "the new credential in use",
        Duration::from_secs(10),
        || async {
            let path = format!("/wp-json/rotated-{}", crate::harness::marker());
            gw.get_as("site0", &sites[0].1, &path).await.assert_ok();
            (wp.one_with(&path).header("authorization") == Some("Bearer tok-0-new"))
                .then_some(())
                .ok_or_else(|| "old credential still used".to_string())
        },
    )
    .await;
}
