//! Hardening of the admin listener and of the client address, through the real binary:
//! failed admin token checks limited per client and audited without secrets, unknown
//! token ids refused without argon2, slow or idle connections cut off; X-Forwarded-For
//! entries with ports, and IPv6 clients counted per /64 by the failure limit.

use crate::harness::{
    log_field, marker, metric_value, poll_until, Answer, Gateway, GatewayConfig, OneSite, SiteAuth,
    KEY_HEADER, SITE_HEADER,
};
use reqwest::Method;
use serde_json::Value;
use std::net::IpAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A client whose connections come from `local` (127.0.0.2, ...: on Linux the whole
/// 127/8 is loopback, so each is a distinct client address to the gateway).
fn client_from(local: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .local_address(local.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

fn admin_gateway(admin_toml: &str) -> Gateway {
    Gateway::start_with(GatewayConfig {
        // The token module's debug line marks each argon2 verification.
        log_level: "info,wpgate::admin::token=debug".into(),
        extra_toml: format!("[admin]\n{admin_toml}"),
        ..GatewayConfig::default()
    })
}

/// GET /admin/v1/sites from `client` with `token`.
async fn sites_as(gw: &Gateway, client: &reqwest::Client, token: &str) -> Answer {
    gw.send(
        client
            .get(gw.admin_url("/admin/v1/sites"))
            .bearer_auth(token),
    )
    .await
}

/// The token's id and secret (`wpgat_<12>_<43>`).
fn parts(token: &str) -> (&str, &str) {
    (&token[6..18], &token[19..])
}

/// A token for `id` with a wrong secret of the right shape.
fn wrong_secret(token: &str) -> String {
    let (id, secret) = parts(token);
    let other = if secret.starts_with('A') { "B" } else { "A" };
    format!("wpgat_{id}_{}{}", other, &secret[1..])
}

/// The `admin.auth_failed` audit entries, newest first, once there are `n`.
async fn failures_audited(gw: &Gateway, token: &str, n: usize) -> Vec<Value> {
    poll_until(
        &format!("{n} admin.auth_failed audit entries"),
        Duration::from_secs(10),
        || async {
            let a = gw
                .admin_call(Method::GET, "/admin/v1/audit?limit=100", token, None)
                .await;
            a.assert_ok();
            let entries: Vec<Value> = a.json().unwrap()["entries"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["action"] == "admin.auth_failed")
                .cloned()
                .collect();
            if entries.len() >= n {
                Ok(entries)
            } else {
                Err(format!("{} so far", entries.len()))
            }
        },
    )
    .await
}

/// Log lines (JSON) whose message is `message`.
fn log_lines(gw: &Gateway, message: &str) -> usize {
    gw.log_json()
        .iter()
        .filter(|l| log_field(l, "message").as_deref() == Some(message))
        .count()
}

const ARGON2: &str = "argon2 verification of an admin token";

async fn admin_failures(gw: &Gateway, reason: &str) -> f64 {
    let samples = gw.metric_samples().await;
    metric_value(
        &samples,
        "wpgate_admin_auth_failures_total",
        &[("reason", reason)],
    )
    .unwrap_or_else(|| panic!("no wpgate_admin_auth_failures_total{{reason={reason:?}}}"))
}

#[tokio::test]
async fn token_guessing_is_limited_per_client_and_others_still_get_in() {
    let gw = admin_gateway("max_failures = 3\nfailure_window = \"1m\"\n");
    let good = gw.admin_token("write", Some("ops"));
    let (id, secret) = parts(&good);
    let guesser = client_from("127.0.0.2");
    let operator = client_from("127.0.0.1");

    // Three failures from the guesser: a wrong secret, an unknown id (with the real
    // secret), a malformed token. Each a plain 401.
    let wrong = wrong_secret(&good);
    let unknown = format!("wpgat_zzzzzzzzzzzz_{secret}");
    let mut refused_ids = Vec::new();
    for bad in [wrong.as_str(), &unknown, "wpgat_garbage"] {
        let a = sites_as(&gw, &guesser, bad).await;
        a.assert_error(401, "admin.unauthorized");
        refused_ids.push(a.request_id().unwrap().to_owned());
    }
    // Over the limit: 429 with Retry-After, even with the good token (never verified
    // yet, so it would need a check).
    let mut limited = 0;
    for token in [wrong.as_str(), &good] {
        let a = sites_as(&gw, &guesser, token).await;
        a.assert_error(429, "admin.rate_limited");
        let retry: u64 = a
            .header("retry-after")
            .unwrap_or_else(|| panic!("429 without Retry-After: {}", a.summary()))
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry), "Retry-After {retry}");
        limited += 1;
    }
    // The operator, from another address, gets in while the guesser is limited; a
    // failure of its own is a 401, not a 429.
    sites_as(&gw, &operator, &good).await.assert_ok();
    sites_as(&gw, &operator, &wrong)
        .await
        .assert_error(401, "admin.unauthorized");
    // A token verified a moment ago passes even from the limited address (only the
    // exact valid token is remembered); a guess still does not.
    sites_as(&gw, &guesser, &good).await.assert_ok();
    sites_as(&gw, &guesser, &unknown)
        .await
        .assert_error(429, "admin.rate_limited");
    limited += 1;

    // Audited: who, which token id, why, which request; never a secret.
    let entries = failures_audited(&gw, &good, 4).await;
    assert_eq!(entries.len(), 4, "{entries:#?}");
    let from_guesser: Vec<&Value> = entries
        .iter()
        .filter(|e| e["actor"] == "client:127.0.0.2")
        .collect();
    assert_eq!(from_guesser.len(), 3, "{entries:#?}");
    let expect = [
        (format!("admin_token:{id}"), "reason=wrong_secret"),
        (
            "admin_token:zzzzzzzzzzzz".to_owned(),
            "reason=unknown_token",
        ),
        ("admin_token:-".to_owned(), "reason=malformed"),
    ];
    for ((target, detail), rid) in expect.iter().zip(&refused_ids) {
        let e = from_guesser
            .iter()
            .find(|e| e["request_id"] == rid.as_str())
            .unwrap_or_else(|| panic!("no audit entry for request {rid}: {entries:#?}"));
        assert_eq!(e["target"], target.as_str(), "{e}");
        assert_eq!(e["detail"], *detail, "{e}");
    }
    assert!(entries.iter().any(|e| e["actor"] == "client:127.0.0.1"));

    // Counted, with one `refused` for a wrong secret and an unknown id alike.
    assert_eq!(admin_failures(&gw, "refused").await, 3.0);
    assert_eq!(admin_failures(&gw, "malformed").await, 1.0);
    assert_eq!(
        admin_failures(&gw, "rate_limited").await,
        f64::from(limited)
    );

    // The secret is nowhere: audit log, gateway log, metrics.
    let audit = gw
        .admin_call(Method::GET, "/admin/v1/audit?limit=100", &good, None)
        .await;
    let metrics = gw.metrics_text().await;
    let wrong_part = parts(&wrong).1;
    for (what, text) in [
        ("the audit log", audit.body.as_str()),
        ("the gateway log", &gw.logs()),
        ("/metrics", &metrics),
    ] {
        assert!(!text.contains(secret), "the token's secret is in {what}");
        assert!(!text.contains(wrong_part), "a guessed secret is in {what}");
    }
}

/// Waits for the start-up calibration (one argon2 verification) to be done, so that
/// counting verifications afterwards counts only the requests'.
async fn calibrated(gw: &Gateway) {
    poll_until(
        "the admin token refusal floor to be measured",
        Duration::from_secs(10),
        || async {
            if log_lines(gw, "admin token refusal floor set") == 1 {
                Ok(())
            } else {
                Err(gw.logs())
            }
        },
    )
    .await;
}

#[tokio::test]
async fn a_burst_with_a_new_token_passes_and_verifies_once() {
    let gw = admin_gateway("max_failures = 2\n");
    calibrated(&gw).await;
    let good = gw.admin_token("read", None);
    let before = log_lines(&gw, ARGON2);
    // Thirty parallel calls with a token never used before, from one address with a
    // limit of 2: the client's checks take turns, the first verifies, the rest find
    // the token remembered.
    let burst = (0..30).map(|_| gw.admin_call(Method::GET, "/admin/v1/sites", &good, None));
    for a in futures_util::future::join_all(burst).await {
        a.assert_ok();
    }
    assert_eq!(log_lines(&gw, ARGON2), before + 1);
    // Parallel guesses from one address stop at the limit: two 401s, the rest 429.
    let wrong = wrong_secret(&good);
    let guesses = (0..8).map(|_| gw.admin_call(Method::GET, "/admin/v1/sites", &wrong, None));
    let statuses: Vec<u16> = futures_util::future::join_all(guesses)
        .await
        .iter()
        .map(|a| a.status)
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        6,
        "{statuses:?}"
    );
    assert_eq!(log_lines(&gw, ARGON2), before + 3);
}

#[tokio::test]
async fn unknown_token_ids_are_refused_without_argon2() {
    let gw = admin_gateway("max_failures = 0\n");
    calibrated(&gw).await;
    let good = gw.admin_token("read", None);
    let (id, secret) = parts(&good);
    let before = log_lines(&gw, ARGON2);

    // Unknown ids (one with the real secret) and malformed tokens: refused, no argon2.
    for bad in [
        format!("wpgat_zzzzzzzzzzzz_{secret}"),
        format!("wpgat_{}_{secret}", "0".repeat(12)),
        "wpgat_garbage".to_owned(),
        format!("wpgat_{id}_{secret}x"),
        format!("wpg_{id}_{secret}"),
    ] {
        gw.admin_call(Method::GET, "/admin/v1/sites", &bad, None)
            .await
            .assert_error(401, "admin.unauthorized");
    }
    assert_eq!(
        log_lines(&gw, ARGON2),
        before,
        "argon2 ran for an unknown id"
    );

    // A known id with a wrong secret: refused the same way, after one verification.
    gw.admin_call(Method::GET, "/admin/v1/sites", &wrong_secret(&good), None)
        .await
        .assert_error(401, "admin.unauthorized");
    assert_eq!(log_lines(&gw, ARGON2), before + 1);
    // The good token: one verification, then remembered.
    for _ in 0..3 {
        gw.admin_call(Method::GET, "/admin/v1/sites", &good, None)
            .await
            .assert_ok();
    }
    assert_eq!(log_lines(&gw, ARGON2), before + 2);

    // The audit log tells the reasons apart; /metrics (not authenticated) does not.
    let entries = failures_audited(&gw, &good, 6).await;
    let details: Vec<&str> = entries
        .iter()
        .map(|e| e["detail"].as_str().unwrap())
        .collect();
    assert_eq!(
        details
            .iter()
            .filter(|d| **d == "reason=unknown_token")
            .count(),
        2,
        "{details:?}"
    );
    assert!(details.contains(&"reason=wrong_secret"), "{details:?}");
    assert_eq!(admin_failures(&gw, "refused").await, 3.0);
    assert_eq!(admin_failures(&gw, "malformed").await, 3.0);
    let metrics = gw.metrics_text().await;
    assert!(!metrics.contains("unknown_token") && !metrics.contains("wrong_secret"));
}

#[tokio::test]
async fn audit_records_of_failures_are_bounded() {
    let gw = admin_gateway("max_failures = 0\n");
    let good = gw.admin_token("read", None);
    let wrong = wrong_secret(&good);
    let flood = (0..14).map(|_| gw.admin_call(Method::GET, "/admin/v1/sites", &wrong, None));
    for a in futures_util::future::join_all(flood).await {
        a.assert_error(401, "admin.unauthorized");
    }
    // Ten records per client per minute; the rest counted.
    let entries = failures_audited(&gw, &good, 10).await;
    assert_eq!(entries.len(), 10);
    let samples = gw.metric_samples().await;
    assert_eq!(
        metric_value(&samples, "wpgate_admin_auth_failures_unaudited_total", &[]),
        Some(4.0)
    );
    assert_eq!(admin_failures(&gw, "refused").await, 14.0);
}

/// Reads until the server closes the connection; panics if it is still open after
/// `within`.
async fn read_until_closed(s: &mut TcpStream, within: Duration, what: &str) -> String {
    let mut got = Vec::new();
    let read = tokio::time::timeout(within, s.read_to_end(&mut got)).await;
    assert!(
        read.is_ok(),
        "{what}: still open after {within:?}; got {:?}",
        String::from_utf8_lossy(&got)
    );
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn slow_headers_and_idle_connections_are_cut_off() {
    let gw = admin_gateway("header_read_timeout = \"1s\"\n");
    // Well past the 1 s timeout, well short of "never": the gateway closed it.
    let within = Duration::from_secs(15);
    let mut slow = TcpStream::connect(gw.admin_addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: admin\r\nX-Slow: ")
        .await
        .unwrap();
    let got = read_until_closed(&mut slow, within, "half-sent headers").await;
    assert!(got.is_empty(), "answered half a request: {got:?}");

    let mut silent = TcpStream::connect(gw.admin_addr).await.unwrap();
    read_until_closed(&mut silent, within, "a connection that sends nothing").await;

    let mut idle = TcpStream::connect(gw.admin_addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: admin\r\n\r\n")
        .await
        .unwrap();
    let got = read_until_closed(&mut idle, within, "an idle keep-alive connection").await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got:?}");

    // Prompt clients are served as ever.
    gw.admin_get("/healthz").await.assert_ok();
}

// ---------------------------------------------------------------------------------
// The client address behind a trusted proxy
// ---------------------------------------------------------------------------------

fn behind_proxy(auth_toml: &str) -> OneSite {
    OneSite::start_with(
        GatewayConfig {
            proxy_toml: "trusted_proxies = [\"127.0.0.1\"]".into(),
            extra_toml: auth_toml.into(),
            ..GatewayConfig::default()
        },
        "blog",
        "",
        &SiteAuth::None,
    )
}

#[tokio::test]
async fn forwarded_for_entries_with_ports_name_the_client() {
    let s = behind_proxy("");
    for (xff, client) in [
        ("203.0.113.7:4711", "203.0.113.7"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("198.51.100.1, 203.0.113.8:80", "203.0.113.8"),
        // Garbage is no address: the trusted proxy itself is the client.
        ("203.0.113.7:port", "127.0.0.1"),
        ("[2001:db8::1", "127.0.0.1"),
    ] {
        let m = marker();
        let a =
            s.gw.send(
                s.authed(Method::GET, &format!("/wp-json/?{m}"))
                    .header("X-Forwarded-For", xff),
            )
            .await;
        a.assert_ok();
        let line = s.gw.access_line(a.request_id().unwrap()).await;
        assert_eq!(
            log_field(&line, "client").as_deref(),
            Some(client),
            "X-Forwarded-For {xff:?}: {line}"
        );
        // The chain goes on upstream as received, the proxy appended.
        let up = s.up.one_with(&m);
        assert_eq!(
            up.header_values("x-forwarded-for"),
            vec![format!("{xff}, 127.0.0.1")],
            "{up:#?}"
        );
    }
}

#[tokio::test]
async fn ipv6_clients_share_a_failure_budget_per_64() {
    let s = behind_proxy("[auth]\nmax_failures = 3\nfailure_window = \"1m\"\n");
    let wrong = s.key.with_wrong_secret();
    let from = |xff: &str, key: &str| {
        s.gw.get("/wp-json/")
            .header(SITE_HEADER, "blog")
            .header(KEY_HEADER, key)
            .header("X-Forwarded-For", xff)
    };
    // Three failures from three addresses of 2001:db8:1:2::/64.
    for xff in [
        "[2001:db8:1:2::1]:443",
        "2001:db8:1:2::2",
        "2001:db8:1:2:ffff::3",
    ] {
        s.gw.send(from(xff, &wrong))
            .await
            .assert_error(401, "auth.invalid_credentials");
    }
    // A fourth address of the same /64 is limited, even with the right key.
    for key in [wrong.as_str(), &s.key.full] {
        s.gw.send(from("[2001:db8:1:2::99]:8080", key))
            .await
            .assert_error(429, "auth.rate_limited");
    }
    // Another /64 has its own budget.
    s.gw.send(from("2001:db8:1:3::1", &wrong))
        .await
        .assert_error(401, "auth.invalid_credentials");
    s.gw.send(from("[2001:db8:1:3::1]:1", &s.key.full))
        .await
        .assert_ok();
}
