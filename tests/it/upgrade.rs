//! Pingora's graceful upgrade through wpgate: a new `wpgate serve --upgrade` takes over
//! the listening sockets when the old process gets SIGQUIT; the old one finishes its
//! requests and exits. A request loop running across the hand-over loses nothing.
//!
//! One race is HTTP/1.1's own and not the gateway's: at the hand-over the old process
//! closes connections that are idle between requests (as nginx does), so a request
//! written onto such a connection at that instant sees the connection close with no
//! response. The gateway never read it, so it is safe to send again, and clients retry
//! it (RFC 9112 §9.3.1). The loop does the same (up to three times), and the test proves that no
//! request reached the upstream without its answer reaching the client.
//!
//! The same over the HTTPS listener: Pingora hands it over like the plain one, and the
//! new process serves the certificate it loaded itself.

use crate::harness::{
    poll_until, CertOnDisk, Gateway, GatewayConfig, SiteAuth, TestCa, TlsListen, Upstream,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test]
async fn a_graceful_upgrade_loses_no_request() {
    let upstream = Upstream::start();
    let gw = Gateway::start();
    let url = gw.url("/wp-json/upgrade");
    let kept = gw.client.clone();
    let clients = move |fresh_connections: bool| {
        if fresh_connections {
            reqwest::Client::builder()
                .no_proxy()
                .pool_max_idle_per_host(0)
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap()
        } else {
            kept.clone()
        }
    };
    upgrade_under_load(gw, &upstream, url, clients).await;
}

#[tokio::test]
async fn a_graceful_upgrade_hands_the_tls_listener_over() {
    let upstream = Upstream::start();
    let ca = TestCa::generate();
    let cert = CertOnDisk::write(&ca.issue("gateway", 1));
    let gw = Gateway::start_with(GatewayConfig {
        tls: Some(TlsListen::new(&cert)),
        ..Default::default()
    });
    let url = gw.https_url("/wp-json/upgrade");
    upgrade_under_load(gw, &upstream, url, |fresh| ca.https_client(fresh)).await;
}

/// Requests to `url` in a loop (half of them on new connections, from
/// `clients(true)`, half on kept-alive ones) while a new process takes the gateway's
/// sockets over; nothing fails and nothing is lost.
async fn upgrade_under_load(
    mut gw: Gateway,
    upstream: &Upstream,
    url: String,
    clients: impl Fn(bool) -> reqwest::Client,
) {
    gw.add_site("shop", &upstream.url(), &SiteAuth::bearer("tok"));
    let key = gw.issue_key("shop", &[]);

    // A loop of requests, each on a new connection (the hardest case: every request
    // needs the listening socket), and some on kept-alive connections.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(Mutex::new(Vec::<String>::new()));
    let retried = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let client = clients(worker % 2 == 0);
        let url = url.clone();
        let key = key.full.clone();
        let (stop, ok, failed, retried) =
            (stop.clone(), ok.clone(), failed.clone(), retried.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let send = || {
                    client
                        .get(&url)
                        .header("x-website-id", "shop")
                        .header("x-api-key", &key)
                        .send()
                };
                let mut r = send().await;
                for _ in 0..3 {
                    if !matches!(&r, Err(e) if closed_unanswered(e)) {
                        break;
                    }
                    retried.fetch_add(1, Ordering::Relaxed);
                    r = send().await;
                }
                match r {
                    Ok(r) if r.status() == 200 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => failed
                        .lock()
                        .unwrap()
                        .push(format!("status {}", r.status())),
                    Err(e) => failed.lock().unwrap().push(format!("{e:?}")),
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The new process waits for the sockets; SIGQUIT makes the old one hand them over.
    let (mut new, new_log) = gw.spawn_serve(&["--upgrade"], "upgraded");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let old_pid = gw.pid();
    gw.signal("QUIT");
    let mut old = gw.take_child().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while old.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the old process did not exit"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        new.try_wait().unwrap().is_none(),
        "the upgraded process exited: {}",
        std::fs::read_to_string(&new_log).unwrap_or_default()
    );
    // The new process serves the admin listener too once the old one let go of it.
    poll_until(
        "the new admin listener",
        Duration::from_secs(30),
        || async {
            match gw.client.get(gw.admin_url("/healthz")).send().await {
                Ok(r) if r.status() == 200 => Ok(()),
                Ok(r) => Err(format!("status {}", r.status())),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = ok.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let after = ok.load(Ordering::Relaxed);
    let failed = failed.lock().unwrap().clone();
    let _ = new.kill();
    let _ = new.wait();
    assert!(
        failed.is_empty(),
        "{} requests failed across the upgrade (old pid {old_pid}): {:?}\nnew process log:\n{}",
        failed.len(),
        &failed[..failed.len().min(10)],
        std::fs::read_to_string(&new_log).unwrap_or_default()
    );
    assert!(
        after > before,
        "the new process served nothing after the hand-over"
    );
    // Nothing was lost in flight: every request the upstream saw was answered.
    let seen = upstream.requests_with("/wp-json/upgrade").len() as u64;
    assert_eq!(
        seen, after,
        "the upstream saw {seen} requests but clients got {after} answers"
    );
    let retried = retried.load(Ordering::Relaxed);
    eprintln!("graceful upgrade: {after} requests, 0 failed, {retried} sent again after an idle-connection close");
}

/// The connection closed (or was reset for unread data) before any response byte,
/// while the request was being sent: the gateway never read it. Over TLS the same
/// close shows as an unexpected EOF (the old process closes the idle connection without
/// a TLS close_notify). Whether the upstream saw it anyway is what the final count
/// checks.
fn closed_unanswered(e: &reqwest::Error) -> bool {
    let debug = format!("{e:?}");
    e.is_request()
        && debug.contains("SendRequest")
        && (debug.contains("IncompleteMessage")
            || debug.contains("ConnectionReset")
            || debug.contains("UnexpectedEof"))
}
