//! TLS on the proxy listener (and the admin listener), through the real gateway:
//! HTTPS and HTTP/2 (ALPN) with the same authentication; X-Forwarded-Proto `https`;
//! certificates reloaded by SIGHUP, the admin API and a file change under a request
//! loop with no failed request and no dropped connection; bad certificates refused
//! while the old one keeps serving; TLS instead of plain HTTP; the admin API over TLS.

use crate::harness::{
    http_answers, marker, metric_sum, parse_metrics, poll_until, served_serial, AdminTls, Answer,
    CertOnDisk, GatewayConfig, H2Connection, OneSite, SiteAuth, TestCa, TlsListen, KEY_HEADER,
    SITE_HEADER,
};
use reqwest::Method;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn site_auth() -> SiteAuth {
    SiteAuth::app_password("api", "pw one")
}

/// A gateway serving HTTPS (certificate `CN=gateway 1`, serial 01) beside plain HTTP,
/// changed by `tweak`, with one site on a recording upstream and a key for it.
fn tls_site(ca: &TestCa, tweak: impl FnOnce(&mut TlsListen)) -> (CertOnDisk, OneSite) {
    let cert = CertOnDisk::write(&ca.issue("gateway 1", 1));
    let mut tls = TlsListen::new(&cert);
    tweak(&mut tls);
    let config = GatewayConfig {
        tls: Some(tls),
        ..Default::default()
    };
    (cert, OneSite::start_with(config, "shop", "", &site_auth()))
}

/// GET `path` over HTTPS for the site, with its key.
async fn https_get(s: &OneSite, client: &reqwest::Client, path: &str) -> reqwest::Response {
    client
        .get(s.gw.https_url(path))
        .header(SITE_HEADER, &s.site)
        .header(KEY_HEADER, &s.key.full)
        .send()
        .await
        .unwrap()
}

/// The serial a full handshake is served now (a new client: no session to resume),
/// asserting the request succeeds.
async fn fresh_serial(s: &OneSite, ca: &TestCa) -> String {
    let r = https_get(s, &ca.https_client(true), "/wp-json/serial").await;
    let serial = served_serial(&r);
    Answer::read(r).await.assert_ok();
    serial
}

async fn reload(s: &OneSite, token: &str) -> Answer {
    s.gw.send(s.gw.admin_request(Method::POST, "/admin/v1/reload", token))
        .await
}

async fn reloads(s: &OneSite, result: &str) -> f64 {
    let samples = s.gw.metric_samples().await;
    metric_sum(
        &samples,
        "wpgate_config_reloads_total",
        &[("result", result)],
    )
}

/// Waits for a successful reload by `trigger` in the log (the swap comes before the
/// log line).
async fn logged(s: &OneSite, trigger: &str) {
    poll_until(
        &format!("a {trigger} reload in the log"),
        Duration::from_secs(10),
        || async {
            let logs = s.gw.logs();
            logs.lines()
                .any(|l| l.contains("configuration reloaded") && l.contains(trigger))
                .then_some(())
                .ok_or_else(|| "not yet".to_string())
        },
    )
    .await;
}

/// The base64 body of a PEM (what must never reach a log line).
fn pem_body(pem: &str) -> String {
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

#[tokio::test]
async fn https_is_authenticated_proxied_and_forwarded_as_https() {
    let ca = TestCa::generate();
    let (_cert, s) = tls_site(&ca, |_| {});
    let client = ca.https_client(false);

    let m = marker();
    let r = https_get(&s, &client, &format!("/wp-json/wp/v2/posts?m={m}")).await;
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    assert_eq!(served_serial(&r), "01");
    Answer::read(r).await.assert_ok();
    let seen = s.up.one_with(&m);
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"), "{seen:#?}");
    seen.assert_credential(&site_auth());
    assert_eq!(seen.header("x-api-key"), None);

    // The same authentication as over plain HTTP.
    let no_key = client
        .get(s.gw.https_url("/wp-json/wp/v2/posts"))
        .header(SITE_HEADER, &s.site);
    Answer::read(no_key.send().await.unwrap())
        .await
        .assert_error(401, "auth.missing_credentials");
    let wrong_key = client
        .get(s.gw.https_url("/wp-json/wp/v2/posts"))
        .header(SITE_HEADER, &s.site)
        .header(KEY_HEADER, s.key.with_wrong_secret());
    Answer::read(wrong_key.send().await.unwrap())
        .await
        .assert_error(401, "auth.invalid_credentials");
    // Only the REST API is forwarded, over TLS as well.
    Answer::read(https_get(&s, &client, "/wp-login.php").await)
        .await
        .assert_error(403, "route.not_allowed");

    // TLS 1.2 is served too (TLS 1.3 is what the client above negotiated).
    let tls12 = reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.ca_pem.as_bytes()).unwrap())
        .max_tls_version(reqwest::tls::Version::TLS_1_2)
        .build()
        .unwrap();
    Answer::read(https_get(&s, &tls12, "/wp-json/tls12").await)
        .await
        .assert_ok();

    // The plain listener still says http.
    let m = marker();
    let seen = s
        .get_recorded(&format!("/wp-json/wp/v2/posts?m={m}"), &m)
        .await;
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
}

#[tokio::test]
async fn http2_over_tls_is_chosen_by_alpn_with_the_same_auth() {
    let ca = TestCa::generate();
    let (_cert, s) = tls_site(&ca, |_| {});
    let mut h2 = H2Connection::connect(&ca, s.gw.tls_addr.unwrap()).await;
    assert_eq!(h2.alpn.as_deref(), Some(&b"h2"[..]));

    let m = marker();
    let authed = [
        (SITE_HEADER, s.site.as_str()),
        (KEY_HEADER, s.key.full.as_str()),
    ];
    let a = h2.get(&format!("/wp-json/h2?m={m}"), &authed).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.version, http::Version::HTTP_2);
    let seen = s.up.one_with(&m);
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    seen.assert_credential(&site_auth());
    assert_eq!(seen.header("x-api-key"), None);

    // More streams on the same connection: refused without a key, or with a wrong one.
    let a = h2.get("/wp-json/h2", &[(SITE_HEADER, &s.site)]).await;
    assert_eq!(a.status, 401, "{}", a.body);
    assert!(a.body.contains("auth.missing_credentials"), "{}", a.body);
    let wrong = s.key.with_wrong_secret();
    let a = h2
        .get(
            "/wp-json/h2",
            &[(SITE_HEADER, &s.site), (KEY_HEADER, &wrong)],
        )
        .await;
    assert_eq!(a.status, 401, "{}", a.body);
    assert!(a.body.contains("auth.invalid_credentials"), "{}", a.body);
    let a = h2.get(&format!("/wp-json/h2?again={m}"), &authed).await;
    assert_eq!(a.status, 200, "{}", a.body);
}

/// Counts of one request loop's outcome.
#[derive(Default)]
struct LoopLog {
    /// The serial each response's connection was served, in order.
    serials: Vec<String>,
    failures: Vec<String>,
}

#[tokio::test]
async fn certificates_reload_under_a_request_loop_without_a_failed_request() {
    let ca = Arc::new(TestCa::generate());
    let (cert, s) = tls_site(&ca, |_| {});
    let s = Arc::new(s);
    let token = s.gw.admin_token("write", None);
    let failures_before = reloads(&s, "failure").await;

    // Two loops make a new connection with a full handshake per request (a new client
    // each time: no TLS session to resume), two keep their connection, and one sends
    // HTTP/2 streams on one connection.
    let stop = Arc::new(AtomicBool::new(false));
    let mut loops = Vec::new();
    for fresh in [true, true, false, false] {
        let (s, stop, ca) = (Arc::clone(&s), Arc::clone(&stop), Arc::clone(&ca));
        loops.push((
            fresh,
            tokio::spawn(async move {
                let mut log = LoopLog::default();
                let kept = ca.https_client(false);
                while !stop.load(Ordering::Relaxed) {
                    let client = if fresh {
                        ca.https_client(true)
                    } else {
                        kept.clone()
                    };
                    let sent = client
                        .get(s.gw.https_url("/wp-json/loop"))
                        .header(SITE_HEADER, &s.site)
                        .header(KEY_HEADER, &s.key.full)
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status() == 200 => log.serials.push(served_serial(&r)),
                        Ok(r) => log.failures.push(format!("status {}", r.status())),
                        Err(e) => log.failures.push(format!("{e:?}")),
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                log
            }),
        ));
    }
    let h2_loop = {
        let (s, stop) = (Arc::clone(&s), Arc::clone(&stop));
        let mut h2 = H2Connection::connect(&ca, s.gw.tls_addr.unwrap()).await;
        tokio::spawn(async move {
            let (mut ok, mut failures) = (0u64, Vec::new());
            let authed = [
                (SITE_HEADER, s.site.as_str()),
                (KEY_HEADER, s.key.full.as_str()),
            ];
            while !stop.load(Ordering::Relaxed) {
                let a = h2.get("/wp-json/loop-h2", &authed).await;
                if a.status == 200 {
                    ok += 1;
                } else {
                    failures.push(format!("{} {}", a.status, a.body));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (ok, failures)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;

    // SIGHUP.
    let second = ca.issue("gateway 2", 2);
    cert.replace_with(&second);
    s.gw.signal("HUP");
    poll_until(
        "new handshakes to get serial 02",
        Duration::from_secs(10),
        || async {
            let serial = fresh_serial(&s, &ca).await;
            (serial == second.serial).then_some(()).ok_or(serial)
        },
    )
    .await;
    logged(&s, "sighup").await;

    // The admin API: the answer names the certificate now served.
    let third = ca.issue("gateway 3", 3);
    cert.replace_with(&third);
    let a = reload(&s, &token).await;
    let body = a.assert_ok().json().unwrap();
    let served = &body["certificates"];
    assert_eq!(served.as_array().unwrap().len(), 1, "{body}");
    assert_eq!(served[0]["listener"], "proxy", "{body}");
    assert_eq!(served[0]["serial"], third.serial.as_str(), "{body}");
    assert_eq!(served[0]["subject"], "CN=gateway 3", "{body}");
    assert_eq!(fresh_serial(&s, &ca).await, "03");

    // A changed file alone (the watcher).
    let fourth = ca.issue("gateway 4", 4);
    cert.replace_with(&fourth);
    poll_until(
        "the file watcher to serve serial 04",
        Duration::from_secs(15),
        || async {
            let serial = fresh_serial(&s, &ca).await;
            (serial == fourth.serial).then_some(()).ok_or(serial)
        },
    )
    .await;
    logged(&s, "file_change").await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    stop.store(true, Ordering::Relaxed);
    let order = ["01", "02", "03", "04"];
    for (fresh, task) in loops {
        let log = task.await.unwrap();
        assert!(
            log.failures.is_empty(),
            "{} requests failed (fresh connections: {fresh}): {:?}",
            log.failures.len(),
            &log.failures[..log.failures.len().min(5)]
        );
        assert!(
            log.serials.len() > 10,
            "too few requests: {}",
            log.serials.len()
        );
        if fresh {
            // New handshakes moved through the certificates in order, never back.
            let ranks: Vec<usize> = log
                .serials
                .iter()
                .map(|s| order.iter().position(|o| o == s).unwrap())
                .collect();
            assert!(ranks.windows(2).all(|w| w[0] <= w[1]), "{:?}", log.serials);
            assert_eq!(log.serials.last().map(String::as_str), Some("04"));
        } else {
            // A kept-alive connection is never dropped: it keeps its first certificate.
            assert!(
                log.serials.iter().all(|s| s == "01"),
                "a kept-alive connection was replaced: {:?}",
                log.serials
            );
        }
    }
    let (h2_ok, h2_failures) = h2_loop.await.unwrap();
    assert!(h2_failures.is_empty(), "HTTP/2 failures: {h2_failures:?}");
    assert!(h2_ok > 10, "too few HTTP/2 requests: {h2_ok}");

    assert_eq!(reloads(&s, "failure").await, failures_before);
    let samples = s.gw.metric_samples().await;
    let expiry = metric_sum(
        &samples,
        "wpgate_tls_certificate_expiry_timestamp_seconds",
        &[("listener", "proxy")],
    );
    assert!(expiry > 1.7e9, "{expiry}");
}

#[tokio::test]
async fn a_bad_certificate_is_refused_and_the_old_one_keeps_serving() {
    let ca = TestCa::generate();
    let (cert, s) = tls_site(&ca, |_| {});
    let first_key = std::fs::read_to_string(&cert.key_file).unwrap();
    let token = s.gw.admin_token("write", None);
    let expiry = |samples: &[crate::harness::Sample]| {
        metric_sum(
            samples,
            "wpgate_tls_certificate_expiry_timestamp_seconds",
            &[("listener", "proxy")],
        )
    };
    let expiry_before = expiry(&parse_metrics(&s.gw.metrics_text().await));
    let before = reloads(&s, "failure").await;

    // An unparsable certificate: the watcher refuses it once, counted and logged.
    cert.replace("this is no certificate", &first_key);
    poll_until("the refused reload", Duration::from_secs(10), || async {
        let refused = s.gw.logs().lines().any(|l| {
            l.contains("reload refused") && l.contains("file_change") && l.contains("tls.cert_file")
        });
        let failures = reloads(&s, "failure").await;
        (refused && failures == before + 1.0)
            .then_some(())
            .ok_or(format!("{failures} failed reloads, logged: {refused}"))
    })
    .await;
    assert_eq!(fresh_serial(&s, &ca).await, "01");
    // The admin API says why (the setting and the file), and counts it once.
    let a = reload(&s, &token).await;
    let e = a.assert_error(422, "admin.reload_refused");
    let msg = e["message"].as_str().unwrap();
    let path = cert.cert_file.to_string_lossy();
    assert!(
        msg.contains("tls.cert_file") && msg.contains(&*path),
        "{msg}"
    );
    assert!(msg.contains("no certificate"), "{msg}");
    assert_eq!(reloads(&s, "failure").await, before + 2.0);
    // `wpgate check` refuses it the same way.
    let out = s.gw.cli(&["check"], None);
    out.assert_failure();
    assert!(out.stderr.contains("tls.cert_file"), "{}", out.stderr);

    // A key that is not the certificate's; an expired certificate.
    let (second, third) = (ca.issue("gateway 2", 2), ca.issue("gateway 3", 3));
    let expired = ca.issue_expired("gateway old", 4);
    for (cert_pem, key_pem, reason) in [
        (
            &second.cert_pem,
            &third.key_pem,
            "does not belong to the certificate",
        ),
        (&expired.cert_pem, &expired.key_pem, "expired at 2021-01-01"),
    ] {
        cert.replace(cert_pem, key_pem);
        let a = reload(&s, &token).await;
        let e = a.assert_error(422, "admin.reload_refused");
        let msg = e["message"].as_str().unwrap();
        assert!(msg.contains(reason), "{msg}");
        assert_eq!(fresh_serial(&s, &ca).await, "01");
    }
    let samples = parse_metrics(&s.gw.metrics_text().await);
    assert_eq!(expiry(&samples), expiry_before);
    assert!(
        metric_sum(
            &samples,
            "wpgate_config_reloads_total",
            &[("result", "failure")]
        ) >= before + 4.0
    );

    // No key material in any log line or answer.
    let logs = s.gw.logs();
    for key in [
        &first_key,
        &second.key_pem,
        &third.key_pem,
        &expired.key_pem,
    ] {
        let body = pem_body(key);
        for chunk in body.as_bytes().chunks(24) {
            let chunk = std::str::from_utf8(chunk).unwrap();
            assert!(!logs.contains(chunk), "key material in the log");
        }
    }

    // A good pair is taken again.
    let fifth = ca.issue("gateway 5", 5);
    cert.replace_with(&fifth);
    reload(&s, &token).await.assert_ok();
    assert_eq!(fresh_serial(&s, &ca).await, "05");
}

#[tokio::test]
async fn tls_instead_of_plain_http_with_the_admin_listener_on_the_same_certificate() {
    let ca = TestCa::generate();
    let (_cert, s) = tls_site(&ca, |t| {
        t.plain_too = false;
        t.admin = AdminTls::SameCertificate;
    });
    assert!(!http_answers(s.gw.proxy_addr), "plain HTTP still served");
    let client = ca.https_client(false);
    let m = marker();
    Answer::read(https_get(&s, &client, &format!("/wp-json/only-tls?m={m}")).await)
        .await
        .assert_ok();
    assert_eq!(s.up.one_with(&m).header("x-forwarded-proto"), Some("https"));

    let admin = client
        .get(format!("https://{}/healthz", s.gw.admin_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 200);
    assert_eq!(served_serial(&admin), "01");

    let check = s.gw.cli_json(&["check"]);
    let json = check.assert_success().json();
    assert_eq!(json["listen_proxy"], serde_json::Value::Null, "{json}");
    assert_eq!(
        json["listen_proxy_tls"],
        s.gw.tls_addr.unwrap().to_string(),
        "{json}"
    );
    assert_eq!(json["admin_tls"], true, "{json}");
}

#[tokio::test]
async fn the_admin_listener_over_tls_with_its_own_certificate_reloads_it() {
    let ca = TestCa::generate();
    let admin_cert = CertOnDisk::write(&ca.issue("gateway admin 7", 7));
    let (_cert, s) = tls_site(&ca, |t| {
        t.admin = AdminTls::Own {
            cert_file: admin_cert.cert_file.clone(),
            key_file: admin_cert.key_file.clone(),
        };
    });
    let token = s.gw.admin_token("write", None);
    let admin_url = |path: &str| format!("https://{}{path}", s.gw.admin_addr);
    let r = ca
        .https_client(true)
        .get(admin_url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!((r.status().as_u16(), served_serial(&r)), (200, "07".into()));
    // Plain HTTP gets no answer from it.
    assert!(!http_answers(s.gw.admin_addr));
    // The proxy serves its own certificate.
    assert_eq!(fresh_serial(&s, &ca).await, "01");

    // A reload over TLS swaps the admin certificate.
    admin_cert.replace_with(&ca.issue("gateway admin 8", 8));
    let kept = ca.https_client(false);
    kept.get(admin_url("/healthz")).send().await.unwrap();
    let r = kept
        .post(admin_url("/admin/v1/reload"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(served_serial(&r), "07", "this connection was made before");
    let a = Answer::read(r).await;
    let body = a.assert_ok().json().unwrap();
    let served: Vec<(String, String)> = body["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["listener"].as_str().unwrap().to_string(),
                c["serial"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        served,
        vec![("proxy".into(), "01".into()), ("admin".into(), "08".into())]
    );
    let r = ca
        .https_client(true)
        .get(admin_url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(served_serial(&r), "08");
    let metrics = parse_metrics(&Answer::read(r).await.assert_ok().body);
    for listener in ["proxy", "admin"] {
        let expiry = metric_sum(
            &metrics,
            "wpgate_tls_certificate_expiry_timestamp_seconds",
            &[("listener", listener)],
        );
        assert!(expiry > 1.7e9, "{listener}: {expiry}");
    }
    assert_eq!(fresh_serial(&s, &ca).await, "01");
}
