//! End to end against real WordPress: the `wpgate` binary in front of the two sites that
//! `tests/wordpress/setup.sh` runs on loopback (Debian's WordPress, php-fpm, nginx,
//! MariaDB). Requests through the gateway, health checks, metrics (checked with
//! Prometheus' `promtool`).
//!
//! `tests/run` runs setup.sh first and exports `WPGATE_WP_ENV` (its `sites.env`) and
//! `WPGATE_PROMTOOL`. Run alone, outside CI, the first test runs setup.sh itself. In CI
//! (`CI` set) a missing `sites.env` fails the suite: it is never skipped.
//!
//! The sites are shared (see `harness/wordpress.rs`): the health test stops a site and
//! revokes an Application Password, so it takes [`SITES`] for writing and restores both on
//! the way out, panics included; every other test takes it for reading. Only loopback is
//! ever contacted.

use std::time::{Duration, Instant};

use crate::harness::png::{adler32, crc32, random_png};
use crate::harness::wordpress::{
    parse_env_file, wp_client, wp_env, RestoreSites, WpCleanup, WpEnv, WpSite, SITES,
};
use crate::harness::{
    marker, metric_sum, metric_value, parse_metrics, poll_until, promtool_check_metrics,
    random_string, sha256_hex, Answer, ApiKey, Gateway, GatewayConfig, Sample, SiteAuth,
    HEALTH_STATES, KEY_HEADER, SITE_HEADER,
};
use reqwest::Method;
use serde_json::{json, Value};

/// How long a health state change may take to show (interval 1 s, the first backoff after
/// a failure 5 s, the next 8 s, plus a loaded 2-core machine).
const HEALTH_DEADLINE: Duration = Duration::from_secs(45);
/// How long a counter may take to show a request (recorded after the response is sent).
const METRIC_DEADLINE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------
// A gateway in front of both sites
// ---------------------------------------------------------------------------------

/// A WordPress site as registered in the gateway.
struct Linked {
    wp: WpSite,
    /// The gateway's site id.
    id: String,
    key: ApiKey,
}

struct Front {
    gw: Gateway,
    sites: Vec<Linked>,
}

/// Health config for the tests: checks every second.
const FAST_HEALTH: &str =
    "[health]\nenabled = true\ninterval = \"1s\"\nconcurrency = 4\ntimeout = \"5s\"\n";

/// A gateway (with `extra_toml`) and both WordPress sites added with
/// `--auth app-password --username <user> --secret-stdin`, one API key each.
fn front(env: &WpEnv, extra_toml: &str) -> Front {
    let gw = Gateway::start_with(GatewayConfig {
        extra_toml: extra_toml.to_owned(),
        read_timeout: "120s".into(),
        ..GatewayConfig::default()
    });
    let sites = env
        .sites
        .iter()
        .map(|wp| {
            let id = format!("e2e-{}", wp.name);
            gw.add_site(
                &id,
                &wp.url,
                &SiteAuth::app_password(&wp.user, &wp.app_password),
            );
            let key = gw.issue_key(&id, &["--label", "e2e"]);
            Linked {
                wp: wp.clone(),
                id,
                key,
            }
        })
        .collect();
    Front { gw, sites }
}

/// [`front`] over the sites as they are, with the read guard on [`SITES`] to hold for
/// the test (the health test, which breaks them, waits).
async fn shared_front(extra_toml: &str) -> (tokio::sync::RwLockReadGuard<'static, ()>, Front) {
    let shared = SITES.read().await;
    (shared, front(&wp_env(), extra_toml))
}

impl Front {
    /// A request through the gateway for `site` with its API key.
    fn req(&self, site: &Linked, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.gw
            .request(method, path)
            .header(SITE_HEADER, &site.id)
            .header(KEY_HEADER, &site.key.full)
    }

    async fn users_me(&self, site: &Linked) -> Answer {
        self.gw
            .send(self.req(site, Method::GET, "/wp-json/wp/v2/users/me"))
            .await
    }

    /// Polls [`Front::users_me`] (up to 10 s) until it answers `status`; that answer.
    async fn poll_users_me(&self, site: &Linked, status: u16, what: &str) -> Answer {
        poll_until(what, Duration::from_secs(10), || async {
            let a = self.users_me(site).await;
            if a.status == status {
                Ok(a)
            } else {
                Err(a.summary())
            }
        })
        .await
    }
}

/// Poll `/metrics` until `check` accepts the samples.
async fn wait_metrics<T>(
    gw: &Gateway,
    what: &str,
    timeout: Duration,
    check: impl Fn(&[Sample]) -> Result<T, String>,
) -> T {
    poll_until(what, timeout, || async {
        let samples = gw.metric_samples().await;
        check(&samples)
    })
    .await
}

/// `wpgate_site_health{site=<site>}`: the one state at 1 and every other at 0.
fn health_state(samples: &[Sample], site: &str) -> Result<&'static str, String> {
    let mut current = Vec::new();
    for state in HEALTH_STATES {
        match metric_value(
            samples,
            "wpgate_site_health",
            &[("site", site), ("state", state)],
        ) {
            Some(1.0) => current.push(state),
            Some(0.0) => {}
            Some(v) => return Err(format!("state {state} of {site} is {v}, not 0 or 1")),
            None => {
                return Err(format!(
                    "no wpgate_site_health{{site={site:?},state={state:?}}}"
                ))
            }
        }
    }
    match current.as_slice() {
        [one] => Ok(one),
        _ => Err(format!(
            "{site} has {} states at 1: {current:?}",
            current.len()
        )),
    }
}

/// Wait until the gateway's metrics show `site` in `state`.
async fn wait_health(gw: &Gateway, site: &str, state: &str) {
    let started = Instant::now();
    wait_metrics(
        gw,
        &format!("wpgate_site_health{{site=\"{site}\",state=\"{state}\"}} 1"),
        HEALTH_DEADLINE,
        |s| match health_state(s, site)? {
            now if now == state => Ok(()),
            now => Err(format!("{site} is {now}")),
        },
    )
    .await;
    eprintln!(
        "{site} -> {state} after {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// The gateway's log lines announcing that `site` went to `state` (raw text).
fn health_change_lines(gw: &Gateway, site: &str, state: &str) -> Vec<String> {
    gw.logs()
        .lines()
        .filter(|l| {
            l.contains("site health changed")
                && l.contains(&format!("\"{site}\""))
                && l.contains(&format!("\"{state}\""))
        })
        .map(str::to_owned)
        .collect()
}

/// Run promtool on an exposition: errors fail the test; lint problems are printed.
fn assert_promtool_clean_of_errors(text: &str) {
    let report = promtool_check_metrics(text);
    eprintln!(
        "promtool check metrics: exit {}, {} lint line(s){}{}",
        report.code,
        report.lint.len(),
        if report.output.trim().is_empty() {
            ""
        } else {
            ":\n"
        },
        report.output.trim_end()
    );
    assert!(
        report.errors.is_empty() && (report.code == 0 || report.code == 3),
        "promtool check metrics found errors (exit {}):\n{}\n--- exposition ---\n{text}",
        report.code,
        report.output
    );
}

// ---------------------------------------------------------------------------------
// A generated PNG (stored deflate blocks, so random pixels make a few MB)
// ---------------------------------------------------------------------------------

#[test]
fn generated_png_is_well_formed() {
    // Known values: crc32("IEND") and adler32("Wikipedia").
    assert_eq!(crc32(b"IEND"), 0xAE42_6082);
    assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
    let png = random_png(4, 3);
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&png[png.len() - 12..], b"\0\0\0\0IEND\xAE\x42\x60\x82");
    let env = parse_env_file("A='x'\\''y'\n# c\nB=plain\n");
    assert_eq!(env["A"], "x'y");
    assert_eq!(env["B"], "plain");
}

// ---------------------------------------------------------------------------------
// Requests through the gateway
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn users_me_through_wpgate_is_each_sites_admin() {
    let (_shared, f) = shared_front("").await;

    let mut avatars = Vec::new();
    for site in &f.sites {
        let (status, direct) = site
            .wp
            .direct_json(Method::GET, "/wp-json/wp/v2/users/me")
            .await;
        assert_eq!(status, 200, "direct users/me on {}: {direct}", site.wp.url);

        let a = f.users_me(site).await;
        a.assert_ok();
        let me = a
            .json()
            .unwrap_or_else(|| panic!("users/me via wpgate is not JSON: {}", a.summary()));
        assert_eq!(me["id"], json!(site.wp.user_id), "{me}");
        assert_eq!(me["id"], direct["id"], "{me}");
        assert_eq!(me["name"], direct["name"], "{me}");
        assert_eq!(me["slug"], json!(site.wp.user), "{me}");
        // The avatar hashes the admin's e-mail, which differs per site: this is the
        // right site's admin, not just "an admin".
        assert_eq!(me["avatar_urls"], direct["avatar_urls"], "{me}");
        assert_eq!(me["url"], direct["url"], "{me}");
        avatars.push(me["avatar_urls"].clone());
    }
    assert_ne!(
        avatars[0], avatars[1],
        "both sites' admins look alike: the test cannot tell the sites apart"
    );

    // A key is only good for its own site.
    let (one, two) = (&f.sites[0], &f.sites[1]);
    let crossed =
        f.gw.send(
            f.gw.get("/wp-json/wp/v2/users/me")
                .header(SITE_HEADER, &two.id)
                .header(KEY_HEADER, &one.key.full),
        )
        .await;
    crossed.assert_error(401, "auth.invalid_credentials");
}

#[tokio::test]
async fn a_draft_post_lands_on_the_right_site_only() {
    let (_shared, f) = shared_front("").await;
    let mut cleanup = WpCleanup::default();

    for (i, site) in f.sites.iter().enumerate() {
        let other = &f.sites[1 - i];
        let word = marker();
        let title = format!("wpgate e2e draft {word}");
        let a =
            f.gw.send(
                f.req(site, Method::POST, "/wp-json/wp/v2/posts")
                    .json(&json!({
                        "title": title,
                        "content": format!("Created through wpgate for {}.", site.id),
                        "status": "draft",
                    })),
            )
            .await;
        let created = cleanup.created(&a, &site.wp, "/wp-json/wp/v2/posts");
        assert_eq!(a.status, 201, "POST posts via wpgate: {}", a.summary());
        assert_eq!(created["status"], "draft", "{created}");
        assert_eq!(created["title"]["raw"], json!(title), "{created}");
        assert_eq!(created["author"], json!(site.wp.user_id), "{created}");
        let id = created["id"].as_u64().unwrap();

        // Straight to each site with its own Application Password.
        let search = format!(
            "/wp-json/wp/v2/posts?status=draft&context=edit&search={word}&_fields=id,title,status"
        );
        let (status, found) = site.wp.direct_json(Method::GET, &search).await;
        assert_eq!(status, 200, "{found}");
        let found = found.as_array().unwrap();
        assert_eq!(
            found.len(),
            1,
            "{} should hold the draft: {found:?}",
            site.wp.name
        );
        assert_eq!(found[0]["id"], json!(id));
        assert_eq!(found[0]["title"]["raw"], json!(title));
        assert_eq!(found[0]["status"], "draft");

        let (status, elsewhere) = other.wp.direct_json(Method::GET, &search).await;
        assert_eq!(status, 200, "{elsewhere}");
        assert_eq!(
            elsewhere.as_array().map(Vec::len),
            Some(0),
            "the draft for {} also appeared on {}: {elsewhere}",
            site.wp.name,
            other.wp.name
        );
    }

    // The drafts go away (and the guard has nothing left to do).
    cleanup.delete_now().await;
}

#[tokio::test]
async fn a_media_upload_of_a_few_mb_passes_and_downloads_back_identical() {
    let (_shared, f) = shared_front("").await;
    let mut cleanup = WpCleanup::default();
    let site = &f.sites[0];

    let png = random_png(1024, 1024);
    assert!(png.len() > 3_000_000, "{} bytes", png.len());
    let digest = sha256_hex(&png);
    let filename = format!("wpgate-e2e-{}.png", random_string(12).to_ascii_lowercase());

    let started = Instant::now();
    let a =
        f.gw.send(
            f.req(site, Method::POST, "/wp-json/wp/v2/media")
                .header("content-type", "image/png")
                .header(
                    "content-disposition",
                    format!("attachment; filename=\"{filename}\""),
                )
                .body(png.clone()),
        )
        .await;
    let media = cleanup.created(&a, &site.wp, "/wp-json/wp/v2/media");
    eprintln!(
        "upload of {} bytes through wpgate: {} in {:.2}s",
        png.len(),
        a.status,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(a.status, 201, "POST media via wpgate: {}", a.summary());
    assert_eq!(media["mime_type"], "image/png", "{media}");
    assert_eq!(media["media_type"], "image", "{media}");
    assert_eq!(media["media_details"]["width"], 1024, "{media}");
    assert_eq!(media["media_details"]["height"], 1024, "{media}");
    assert_eq!(
        media["media_details"]["filesize"].as_u64(),
        Some(png.len() as u64),
        "{media}"
    );
    let id = media["id"].as_u64().unwrap();

    // The file WordPress stored is the one sent. Its URL is the site's own (loopback).
    let source = media["source_url"].as_str().unwrap().to_owned();
    let url = reqwest::Url::parse(&source).unwrap();
    assert!(
        matches!(url.host_str(), Some("127.0.0.1" | "localhost")),
        "source_url is not on loopback: {source}"
    );
    assert_eq!(url.port(), Some(site.wp.port), "source_url: {source}");
    assert!(url.path().ends_with(".png"), "source_url: {source}");
    let resp = wp_client().get(url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200, "GET {source}");
    let back = resp.bytes().await.unwrap();
    assert_eq!(back.len(), png.len(), "GET {source}: length differs");
    assert_eq!(sha256_hex(&back), digest, "GET {source}: content differs");

    // WordPress knows it as that site's attachment.
    let (status, direct) = site
        .wp
        .direct_json(
            Method::GET,
            &format!("/wp-json/wp/v2/media/{id}?context=edit"),
        )
        .await;
    assert_eq!(status, 200, "{direct}");
    assert_eq!(direct["source_url"], json!(source), "{direct}");

    cleanup.delete_now().await;
}

// ---------------------------------------------------------------------------------
// Health checks against real WordPress
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn health_follows_credential_namespaces_and_reachability() {
    let _exclusive = SITES.write().await;
    let started = Instant::now();
    let env = wp_env();
    let mut restore = RestoreSites::new(&env);
    let f = front(&env, FAST_HEALTH);
    let (one, two) = (&f.sites[0], &f.sites[1]);

    // 1. Correct credentials: healthy.
    wait_health(&f.gw, &one.id, "healthy").await;
    wait_health(&f.gw, &two.id, "healthy").await;

    // 2. The Application Password revoked in WordPress: auth_failed, with a message
    //    saying what to do.
    restore.revoke_app_password(&two.wp.name);
    wait_health(&f.gw, &two.id, "auth_failed").await;
    assert_eq!(
        health_state(&f.gw.metric_samples().await, &one.id),
        Ok("healthy"),
        "the other site is not affected"
    );
    let lines = poll_until(
        "the log line announcing auth_failed",
        Duration::from_secs(5),
        || async {
            let lines = health_change_lines(&f.gw, &two.id, "auth_failed");
            if lines.is_empty() {
                Err("none yet".to_owned())
            } else {
                Ok(lines)
            }
        },
    )
    .await;
    let line = &lines[0];
    assert!(
        line.contains("application password for user")
            && line.contains(&format!("'{}'", two.wp.user))
            && line.contains(&format!("wpgate site set-credential {}", two.id)),
        "the auth_failed message should name the user and the fix: {line}"
    );
    for secret in SiteAuth::app_password(&two.wp.user, &two.wp.app_password).secrets() {
        assert!(
            !f.gw.logs().contains(&secret),
            "a credential reached the log"
        );
    }

    // 3. A fresh Application Password, set in the gateway: healthy again, and requests
    //    through the gateway authenticate with it.
    restore.new_app_password(&two.wp.name);
    let fresh = wp_env();
    let new_password = fresh.sites[1].app_password.clone();
    assert_ne!(
        new_password, two.wp.app_password,
        "setup.sh gave the same password"
    );
    f.gw.set_credential(
        &two.id,
        &SiteAuth::app_password(&two.wp.user, &new_password),
        &[],
    )
    .assert_success();
    wait_health(&f.gw, &two.id, "healthy").await;
    let me = f
        .poll_users_me(two, 200, "users/me through wpgate with the new credential")
        .await;
    assert_eq!(me.json().unwrap()["id"], json!(two.wp.user_id));

    // 4. A required REST namespace that the site lacks: degraded (requests still pass).
    f.gw.cli(
        &[
            "site",
            "set-health",
            &one.id,
            "--require-namespace",
            "nope/v1",
        ],
        None,
    )
    .assert_success();
    wait_health(&f.gw, &one.id, "degraded").await;
    let lines = health_change_lines(&f.gw, &one.id, "degraded");
    assert!(
        lines.iter().any(|l| l.contains("nope/v1")),
        "the degraded message should name the missing namespace: {lines:#?}"
    );
    f.users_me(one).await.assert_ok();

    // 5. No namespace required, fail fast on: healthy; then the web server stopped:
    //    unreachable, and proxy requests get 503 site.unavailable at once.
    f.gw.cli(&["site", "set-health", &one.id, "--fail-fast"], None)
        .assert_success();
    wait_health(&f.gw, &one.id, "healthy").await;
    restore.stop_site(&one.wp.name);
    wait_health(&f.gw, &one.id, "unreachable").await;
    let refused = f
        .poll_users_me(one, 503, "503 site.unavailable from the fail-fast site")
        .await;
    refused.assert_error(503, "site.unavailable");
    f.users_me(two).await.assert_ok();

    // 6. The web server back: healthy, requests pass again.
    restore.start_site(&one.wp.name);
    wait_health(&f.gw, &one.id, "healthy").await;
    let back = f
        .poll_users_me(one, 200, "users/me through wpgate after start-site")
        .await;
    assert_eq!(back.json().unwrap()["id"], json!(one.wp.user_id));

    // Every check was timed.
    let samples = f.gw.metric_samples().await;
    let checks = metric_sum(
        &samples,
        "wpgate_site_health_check_duration_seconds_count",
        &[],
    );
    assert!(checks >= 8.0, "only {checks} health checks timed");
    assert_promtool_clean_of_errors(&f.gw.metrics_text().await);
    eprintln!("health test: {:.1}s", started.elapsed().as_secs_f64());
    drop(restore);
}

// ---------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------

/// Labels of every sample, flattened (for "no such label value anywhere").
fn all_label_values(samples: &[Sample]) -> Vec<&str> {
    samples
        .iter()
        .flat_map(|s| s.labels.iter().map(|(_, v)| v.as_str()))
        .collect()
}

/// Everything a metrics test found wrong, reported together (with the exposition) so one
/// run shows every deviation, not just the first.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.0.push(what());
        }
    }

    #[track_caller]
    fn assert_none(self, exposition: &str) {
        assert!(
            self.0.is_empty(),
            "{} problem(s) with /metrics:\n- {}\n--- exposition ---\n{exposition}",
            self.0.len(),
            self.0.join("\n- ")
        );
    }
}

/// Poll `/metrics` until `ready` holds or `timeout` passes; the last samples either way
/// (the caller reports what is missing).
async fn settle_metrics(
    gw: &Gateway,
    timeout: Duration,
    ready: impl Fn(&[Sample]) -> bool,
) -> Vec<Sample> {
    let deadline = Instant::now() + timeout;
    loop {
        let samples = gw.metric_samples().await;
        if ready(&samples) || Instant::now() >= deadline {
            return samples;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn metrics_after_real_traffic_pass_promtool_and_show_every_family() {
    let (_shared, f) = shared_front(FAST_HEALTH).await;
    let (one, two) = (&f.sites[0], &f.sites[1]);

    // The admin listener's other endpoints.
    let h = f.gw.admin_get("/healthz").await;
    assert_eq!(h.status, 200, "/healthz: {}", h.summary());
    let r = f.gw.admin_get("/readyz").await;
    assert_eq!(r.status, 200, "/readyz: {}", r.summary());
    assert_eq!(r.json().unwrap()["status"], "ready", "{}", r.summary());

    let before = f.gw.metric_samples().await;
    let cache_before = metric_sum(&before, "wpgate_cache_requests_total", &[]);

    // Traffic: successes on both sites (a quick burst, so the caches hit), a wrong key,
    // a missing key, an unknown site.
    for _ in 0..3 {
        f.users_me(one).await.assert_ok();
    }
    f.users_me(two).await.assert_ok();
    let wrong =
        f.gw.send(
            f.gw.get("/wp-json/wp/v2/users/me")
                .header(SITE_HEADER, &one.id)
                .header(KEY_HEADER, one.key.with_wrong_secret()),
        )
        .await;
    wrong.assert_error(401, "auth.invalid_credentials");
    let wrong_reason = f.gw.logged_reason(&wrong).await;
    let missing =
        f.gw.send(
            f.gw.get("/wp-json/wp/v2/users/me")
                .header(SITE_HEADER, &one.id),
        )
        .await;
    missing.assert_error(401, "auth.missing_credentials");
    let missing_reason = f.gw.logged_reason(&missing).await;
    let unknown_id = format!("nosuch-{}", random_string(10).to_ascii_lowercase());
    let unknown = f.gw.get_as(&unknown_id, &one.key.full, "/wp-json/").await;
    unknown.assert_error(401, "auth.invalid_credentials");
    let unknown_reason = f.gw.logged_reason(&unknown).await;

    let requests = |s: &[Sample], site: &str, class: &str| {
        metric_sum(
            s,
            "wpgate_requests_total",
            &[("site", site), ("status_class", class)],
        )
    };
    let samples = settle_metrics(&f.gw, METRIC_DEADLINE, |s| {
        requests(s, &one.id, "2xx") >= 3.0
            && requests(s, &two.id, "2xx") >= 1.0
            && requests(s, &one.id, "4xx") >= 2.0
            && requests(s, "unknown", "4xx") >= 1.0
    })
    .await;
    let text = f.gw.metrics_text().await;
    let mut p = Problems::default();

    // Requests by site and status class; the unknown site under "unknown" only.
    for (site, class, want) in [
        (one.id.as_str(), "2xx", 3.0),
        (two.id.as_str(), "2xx", 1.0),
        (one.id.as_str(), "4xx", 2.0),
        ("unknown", "4xx", 1.0),
    ] {
        let got = requests(&samples, site, class);
        p.check(got >= want, || {
            format!(
                "wpgate_requests_total{{site=\"{site}\",status_class=\"{class}\"}} is {got}, \
                 want >= {want}"
            )
        });
    }
    p.check(!text.contains(&unknown_id), || {
        format!("the unknown site id {unknown_id} appears in /metrics")
    });

    // Auth failures by site and the reason the access log gives.
    for (site, reason) in [
        (one.id.as_str(), wrong_reason.as_str()),
        (one.id.as_str(), missing_reason.as_str()),
        ("unknown", unknown_reason.as_str()),
    ] {
        let got = metric_sum(
            &samples,
            "wpgate_auth_failures_total",
            &[("site", site), ("reason", reason)],
        );
        p.check(got >= 1.0, || {
            format!("wpgate_auth_failures_total{{site=\"{site}\",reason=\"{reason}\"}} is {got}, want >= 1")
        });
    }

    // Latency histograms saw the requests; upstream time only for forwarded ones.
    let timed = metric_sum(&samples, "wpgate_request_duration_seconds_count", &[]);
    p.check(timed >= 7.0, || {
        format!("wpgate_request_duration_seconds_count is {timed}, want >= 7 (7 requests)")
    });
    let upstream = metric_sum(&samples, "wpgate_upstream_duration_seconds_count", &[]);
    p.check(upstream >= 4.0, || {
        format!("wpgate_upstream_duration_seconds_count is {upstream}, want >= 4 (4 forwarded)")
    });

    // Caches: lookups counted, both hits (the burst) and misses (first sight).
    let cache_after = metric_sum(&samples, "wpgate_cache_requests_total", &[]);
    p.check(cache_after > cache_before, || {
        format!("wpgate_cache_requests_total did not move: {cache_before} -> {cache_after}")
    });
    let hits = metric_sum(
        &samples,
        "wpgate_cache_requests_total",
        &[("result", "hit")],
    );
    let misses = metric_sum(
        &samples,
        "wpgate_cache_requests_total",
        &[("result", "miss")],
    );
    p.check(hits >= 1.0 && misses >= 1.0, || {
        format!("wpgate_cache_requests_total: hits {hits}, misses {misses}; want both >= 1")
    });

    // Store errors: none on a healthy store.
    let store_errors = metric_sum(&samples, "wpgate_store_errors_total", &[]);
    p.check(store_errors == 0.0, || {
        format!("wpgate_store_errors_total is {store_errors} on a healthy store")
    });

    // Build info.
    let build = metric_value(
        &samples,
        "wpgate_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
    );
    p.check(build == Some(1.0), || {
        format!(
            "wpgate_build_info{{version=\"{}\"}} is {build:?}, want 1",
            env!("CARGO_PKG_VERSION")
        )
    });

    // Health of both real sites, with the check durations.
    let samples = settle_metrics(&f.gw, HEALTH_DEADLINE, |s| {
        health_state(s, &one.id) == Ok("healthy") && health_state(s, &two.id) == Ok("healthy")
    })
    .await;
    for site in [one, two] {
        let state = health_state(&samples, &site.id);
        p.check(state == Ok("healthy"), || {
            format!("wpgate_site_health of {}: {state:?}, want healthy", site.id)
        });
    }
    let checks = metric_sum(
        &samples,
        "wpgate_site_health_check_duration_seconds_count",
        &[],
    );
    p.check(checks >= 2.0, || {
        format!("wpgate_site_health_check_duration_seconds_count is {checks}, want >= 2")
    });

    // Family types, as Prometheus reads them (a family that is declared but has no
    // samples yet, like a labelled counter never incremented, has no TYPE line).
    let text = f.gw.metrics_text().await;
    for (family, kind) in [
        ("wpgate_requests_total", "counter"),
        ("wpgate_request_duration_seconds", "histogram"),
        ("wpgate_upstream_duration_seconds", "histogram"),
        ("wpgate_auth_failures_total", "counter"),
        ("wpgate_site_health", "gauge"),
        ("wpgate_site_health_check_duration_seconds", "histogram"),
        ("wpgate_cache_requests_total", "counter"),
        ("wpgate_build_info", "gauge"),
    ] {
        p.check(text.contains(&format!("# TYPE {family} {kind}\n")), || {
            format!("no `# TYPE {family} {kind}` in /metrics")
        });
    }

    assert_promtool_clean_of_errors(&text);
    p.assert_none(&text);
}

#[tokio::test]
async fn without_per_site_labels_every_site_counts_under_all() {
    let (_shared, f) = shared_front(&format!(
        "{FAST_HEALTH}\n[metrics]\nper_site_labels = false\n"
    ))
    .await;
    let (one, two) = (&f.sites[0], &f.sites[1]);

    f.users_me(one).await.assert_ok();
    f.users_me(two).await.assert_ok();
    f.gw.send(
        f.gw.get("/wp-json/wp/v2/users/me")
            .header(SITE_HEADER, &two.id)
            .header(KEY_HEADER, two.key.with_wrong_secret()),
    )
    .await
    .assert_error(401, "auth.invalid_credentials");

    let ok = |s: &[Sample]| {
        metric_sum(
            s,
            "wpgate_requests_total",
            &[("site", "_all"), ("status_class", "2xx")],
        )
    };
    let failures = |s: &[Sample]| metric_sum(s, "wpgate_auth_failures_total", &[("site", "_all")]);
    let healthy = |s: &[Sample]| {
        metric_value(
            s,
            "wpgate_site_health",
            &[("site", "_all"), ("state", "healthy")],
        )
    };
    settle_metrics(&f.gw, HEALTH_DEADLINE, |s| healthy(s) == Some(2.0)).await;
    let samples = settle_metrics(&f.gw, METRIC_DEADLINE, |s| {
        ok(s) >= 2.0 && failures(s) >= 1.0 && healthy(s) == Some(2.0)
    })
    .await;
    let text = f.gw.metrics_text().await;
    let mut p = Problems::default();
    let got = ok(&samples);
    p.check(got >= 2.0, || {
        format!("wpgate_requests_total{{site=\"_all\",status_class=\"2xx\"}} is {got}, want >= 2")
    });
    let got = failures(&samples);
    p.check(got >= 1.0, || {
        format!("wpgate_auth_failures_total{{site=\"_all\"}} is {got}, want >= 1")
    });
    let got = healthy(&samples);
    p.check(got == Some(2.0), || {
        format!("wpgate_site_health{{site=\"_all\",state=\"healthy\"}} is {got:?}, want 2 (sites)")
    });
    let values = all_label_values(&samples);
    for site in [one, two] {
        p.check(!values.contains(&site.id.as_str()), || {
            format!(
                "site {} has its own label although per_site_labels = false",
                site.id
            )
        });
    }
    assert_promtool_clean_of_errors(&text);
    p.assert_none(&text);
}

#[test]
fn metrics_parser_reads_labels_escapes_and_specials() {
    let s = parse_metrics(
        "# HELP a x\n# TYPE a counter\na_total{site=\"s\\\"1\",k=\"v\"} 3\nb 1.5\nc_bucket{le=\"+Inf\"} 2\n",
    );
    assert_eq!(metric_value(&s, "a_total", &[("site", "s\"1")]), Some(3.0));
    assert_eq!(metric_value(&s, "b", &[]), Some(1.5));
    assert_eq!(metric_value(&s, "c_bucket", &[("le", "+Inf")]), Some(2.0));
    assert!(parse_metrics("d NaN\n")[0].value.is_nan());
}

// ---------------------------------------------------------------------------------
// Admin API against real WordPress
// ---------------------------------------------------------------------------------

/// The admin API as one caller: with `token` as bearer token, or anonymous.
struct AdminCaller<'a> {
    gw: &'a Gateway,
    token: Option<&'a str>,
}

impl AdminCaller<'_> {
    /// `method path` with `body` as JSON, when given; the answer and its JSON body.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (Answer, Value) {
        let mut req = self.gw.client.request(method, self.gw.admin_url(path));
        if let Some(t) = self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let a = self.gw.send(req).await;
        let v = a.json().unwrap_or(Value::Null);
        (a, v)
    }

    async fn get(&self, path: &str) -> (Answer, Value) {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (Answer, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn put(&self, path: &str, body: Value) -> (Answer, Value) {
        self.call(Method::PUT, path, Some(body)).await
    }
}

#[tokio::test]
async fn admin_api_site_credential_key_use_revoke_audit() {
    let _shared = SITES.read().await;
    let env = wp_env();
    let wp = &env.sites[0];
    let gw = Gateway::start();
    let writer_token = gw.admin_token("write", Some("e2e-admin"));
    let reader_token = gw.admin_token("read", Some("e2e-reader"));
    let caller = |token| AdminCaller { gw: &gw, token };
    let anonymous = caller(None);
    let writer = caller(Some(&writer_token));
    let reader = caller(Some(&reader_token));
    let id = "e2e-api-site";

    // No token, or a read-only one for a change: refused.
    let create = json!({"id": id, "name": "e2e via admin API", "upstream": wp.url});
    let (a, _) = anonymous.post("/admin/v1/sites", create.clone()).await;
    assert_eq!(a.status, 401, "create without a token: {}", a.summary());
    let (a, _) = reader.post("/admin/v1/sites", create.clone()).await;
    assert_eq!(a.status, 403, "create with a read token: {}", a.summary());

    // Create the site (no credential yet), then set its credential.
    let (a, site) = writer.post("/admin/v1/sites", create).await;
    assert_eq!(a.status, 201, "create: {}", a.summary());
    assert_eq!(site["id"], id, "{site}");
    let create_rid = a.request_id().map(str::to_owned);
    let (a, site) = writer
        .put(
            &format!("/admin/v1/sites/{id}/credential"),
            json!({"kind": "app_password", "username": wp.user, "secret": wp.app_password}),
        )
        .await;
    assert_eq!(a.status, 200, "set credential: {}", a.summary());
    assert!(
        !a.all_text().contains(&wp.app_password),
        "the credential came back: {}",
        a.summary()
    );
    assert_eq!(site["id"], id, "{site}");
    let credential_rid = a.request_id().map(str::to_owned);
    let (a, shown) = reader.get(&format!("/admin/v1/sites/{id}")).await;
    assert_eq!(a.status, 200, "show: {}", a.summary());
    assert!(!a.all_text().contains(&wp.app_password), "{shown}");
    assert!(
        shown.to_string().contains("app_password"),
        "the site should show its credential kind: {shown}"
    );

    // Issue a key and use it against the real site.
    let (a, issued) = writer
        .post(
            &format!("/admin/v1/sites/{id}/keys"),
            json!({"label": "e2e"}),
        )
        .await;
    assert_eq!(a.status, 201, "issue key: {}", a.summary());
    let key = ApiKey::parse(issued["key"].as_str().unwrap_or_default());
    assert_eq!(issued["key_id"], json!(key.key_id), "{issued}");
    let issue_rid = a.request_id().map(str::to_owned);
    let me = gw.get_as(id, &key.full, "/wp-json/wp/v2/users/me").await;
    me.assert_ok();
    assert_eq!(
        me.json().unwrap()["id"],
        json!(wp.user_id),
        "{}",
        me.summary()
    );

    // Revoke it: refused from the next request on (this gateway's cache is invalidated).
    let (a, revoked) = writer
        .post(&format!("/admin/v1/keys/{}/revoke", key.key_id), json!({}))
        .await;
    assert_eq!(a.status, 200, "revoke: {}", a.summary());
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    let revoke_rid = a.request_id().map(str::to_owned);
    gw.get_as(id, &key.full, "/wp-json/wp/v2/users/me")
        .await
        .assert_error(401, "auth.invalid_credentials");

    // The audit: every change, by the token's label, with the API call's request id,
    // never a secret.
    let (a, audit) = reader
        .get(&format!("/admin/v1/audit?site={id}&limit=50"))
        .await;
    assert_eq!(a.status, 200, "audit: {}", a.summary());
    assert!(!a.body.contains(&wp.app_password), "a secret in the audit");
    assert!(!a.body.contains(&key.secret), "a key secret in the audit");
    let entries = audit["entries"].as_array().cloned().unwrap_or_default();
    for (action, rid) in [
        ("site.create", &create_rid),
        ("site.set_credential", &credential_rid),
        ("key.issue", &issue_rid),
        ("key.revoke", &revoke_rid),
    ] {
        let entry = entries
            .iter()
            .find(|e| e["action"] == action)
            .unwrap_or_else(|| panic!("no {action} in the audit of {id}: {audit:#}"));
        assert_eq!(entry["actor"], "admin:e2e-admin", "{entry}");
        assert_eq!(entry["site_id"], id, "{entry}");
        assert!(rid.is_some(), "the {action} call had no X-Request-ID");
        assert_eq!(entry["request_id"].as_str(), rid.as_deref(), "{entry}");
    }
}
