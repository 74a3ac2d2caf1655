//! Several gateway processes on one PostgreSQL store (the machine's real server, a fresh
//! database per test): a key issued through one replica works on the others; revoked
//! through one, the others refuse it within a second (LISTEN/NOTIFY), and the change-log
//! poll converges when the listening connections are killed. A store outage (the
//! connection cut by a relay in between): warm sites keep working, cold ones get 503
//! `store.unavailable`, `/readyz` says degraded, and everything recovers by itself.

use crate::harness::postgres::TestDb;
use crate::harness::{
    metric_sum, parse_metrics, poll_until, Gateway, GatewayConfig, SiteAuth, Upstream,
};
use base64::Engine as _;
use reqwest::Method;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A keyring every replica shares (given in WPGATE_KEYRING, as containers would).
pub(crate) fn shared_keyring() -> String {
    let mut secret = [0u8; 32];
    secret[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    secret[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    format!(
        "primary = \"kfleet\"\n\n[[keys]]\nid = \"kfleet\"\nsecret = \"{}\"\n",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    )
}

pub(crate) fn replica(store_url: &str, keyring: &str, extra: &str) -> Gateway {
    let mut gw = Gateway::prepare(GatewayConfig {
        // A cached key would be used for an hour: whatever takes effect sooner did so
        // because a replica was told.
        ttl: "1h".into(),
        negative_ttl: "1s".into(),
        extra_toml: format!(
            "[store]\nurl = {}\n{extra}\n",
            crate::harness::toml_str(store_url)
        ),
        ..GatewayConfig::default()
    });
    gw.env.push(("WPGATE_KEYRING".into(), keyring.into()));
    gw.serve();
    gw
}

/// Polls `gw` every 20 ms until `key` is refused on `site`; returns how long it took.
async fn refused_after(gw: &Gateway, site: &str, key: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let a = gw.get_as(site, key, "/wp-json/probe").await;
        if a.status == 401 {
            return start.elapsed();
        }
        assert_eq!(a.status, 200, "{}", a.summary());
        assert!(
            start.elapsed() < limit,
            "replica {} still accepts the revoked key after {limit:?}",
            gw.proxy_addr
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn notified(gw: &Gateway) -> f64 {
    let samples = parse_metrics(&gw.metrics_text().await);
    metric_sum(
        &samples,
        "wpgate_store_changes_applied_total",
        &[("source", "notify")],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_one_postgres_see_each_others_changes_within_a_second() {
    let db = TestDb::create();
    let upstream = Upstream::start();
    let keyring = shared_keyring();
    // The poll is slow on purpose: within a second means by notification.
    let a = replica(&db.url, &keyring, "poll_interval = \"3s\"");
    let b = replica(&db.url, &keyring, "poll_interval = \"3s\"");
    let c = replica(&db.url, &keyring, "poll_interval = \"3s\"");
    let token = a.admin_token("write", Some("fleet"));

    // A site and a key made through replica A's admin API...
    let created = a
        .admin_call(
            Method::POST,
            "/admin/v1/sites",
            &token,
            Some(json!({"id": "shop", "upstream": upstream.url(),
                    "credential": {"kind": "bearer", "secret": "fleet-secret"}})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.summary());
    let issued = a
        .admin_call(
            Method::POST,
            "/admin/v1/sites/shop/keys",
            &token,
            Some(json!({"label": "k1"})),
        )
        .await;
    assert_eq!(issued.status, 201, "{}", issued.summary());
    let k1 = issued.json().unwrap();
    let k1_key = k1["key"].as_str().unwrap().to_string();
    let k1_id = k1["key_id"].as_str().unwrap().to_string();
    // ...work on B and C (their caches now hold the key for an hour).
    for gw in [&b, &c] {
        let path = format!("/wp-json/on-{}", gw.proxy_addr.port());
        gw.get_as("shop", &k1_key, &path).await.assert_ok();
        assert_eq!(
            upstream.one_with(&path).header("authorization"),
            Some("Bearer fleet-secret")
        );
    }
    let notified_before = notified(&b).await;

    // Revoked through A: B and C refuse it within a second.
    a.admin_call(
        Method::POST,
        &format!("/admin/v1/keys/{k1_id}/revoke"),
        &token,
        Some(json!({})),
    )
    .await
    .assert_ok();
    for gw in [&b, &c] {
        let took = refused_after(gw, "shop", &k1_key, Duration::from_secs(1)).await;
        eprintln!("replica {}: revocation seen after {took:?}", gw.proxy_addr);
    }
    assert!(notified(&b).await > notified_before);

    // The listening connections die: the change-log poll still converges, and the
    // listeners come back by themselves.
    let k2 = a.issue_key("shop", &[]);
    for gw in [&b, &c] {
        gw.get_as("shop", &k2.full, "/wp-json/warm-k2")
            .await
            .assert_ok();
    }
    let killed = db.terminate_backends("wpgate-listener").await;
    assert_eq!(killed, 3, "one listener per replica");
    a.cli(&["key", "revoke", &k2.key_id], None).assert_success();
    for gw in [&b, &c] {
        let took = refused_after(gw, "shop", &k2.full, Duration::from_secs(10)).await;
        eprintln!(
            "replica {}: revocation seen after {took:?} (listener killed)",
            gw.proxy_addr
        );
    }
    poll_until(
        "the listeners to reconnect",
        Duration::from_secs(15),
        || async {
            let n = db.backends("wpgate-listener").await;
            (n == 3)
                .then_some(())
                .ok_or_else(|| format!("{n} listeners"))
        },
    )
    .await;

    // A site changed on C (disabled) is seen on A and B.
    let out = c.cli(&["site", "disable", "shop"], None);
    out.assert_success();
    let k3 = a.issue_key("shop", &[]);
    for gw in [&a, &b] {
        // The site is disabled on both replicas.
        gw.poll_status_within(
            "shop",
            &k3.full,
            "/wp-json/disabled",
            403,
            Duration::from_secs(2),
        )
        .await;
    }
}

/// A TCP relay to PostgreSQL that the test can cut (every connection dropped, new ones
/// refused) and restore on the same port.
struct Relay {
    addr: SocketAddr,
    state: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
    conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Relay {
    async fn start(target: SocketAddr) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let relay = Relay {
            addr,
            state: Arc::new(Mutex::new(None)),
            conns: Arc::new(Mutex::new(Vec::new())),
        };
        relay.serve(listener, target);
        relay
    }

    fn serve(&self, listener: tokio::net::TcpListener, target: SocketAddr) {
        let conns = self.conns.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let conn = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                conns.lock().unwrap().push(conn);
            }
        });
        *self.state.lock().unwrap() = Some(task);
    }

    fn cut(&self) {
        if let Some(t) = self.state.lock().unwrap().take() {
            t.abort();
        }
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    async fn restore(&self, target: SocketAddr) {
        let listener = poll_until(
            "the relay port to be free",
            Duration::from_secs(10),
            || async {
                tokio::net::TcpListener::bind(self.addr)
                    .await
                    .map_err(|e| e.to_string())
            },
        )
        .await;
        self.serve(listener, target);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_keeps_warm_sites_serving_and_recovers() {
    let db = TestDb::create();
    let upstream = Upstream::start();
    let pg: SocketAddr = {
        let u = url::Url::parse(&db.url).unwrap();
        format!("{}:{}", u.host_str().unwrap(), u.port().unwrap_or(5432))
            .parse()
            .unwrap()
    };
    let relay = Relay::start(pg).await;
    let mut via_relay = url::Url::parse(&db.url).unwrap();
    via_relay.set_port(Some(relay.addr.port())).unwrap();
    let keyring = shared_keyring();
    let mut gw = Gateway::prepare(GatewayConfig {
        ttl: "1s".into(),
        negative_ttl: "1s".into(),
        extra_toml: format!(
            "[store]\nurl = {}\npoll_interval = \"500ms\"\n",
            crate::harness::toml_str(via_relay.as_str())
        ),
        ..GatewayConfig::default()
    });
    gw.env.push(("WPGATE_KEYRING".into(), keyring));
    gw.serve();
    gw.add_site("warm", &upstream.url(), &SiteAuth::bearer("warm-secret"));
    gw.add_site("cold", &upstream.url(), &SiteAuth::bearer("cold-secret"));
    let warm = gw.issue_key("warm", &[]);
    let cold = gw.issue_key("cold", &[]);
    let revoked = gw.issue_key("warm", &[]);
    gw.get_as("warm", &warm.full, "/wp-json/before")
        .await
        .assert_ok();
    gw.get_as("warm", &revoked.full, "/wp-json/before-revoked")
        .await
        .assert_ok();
    gw.cli(&["key", "revoke", &revoked.key_id], None)
        .assert_success();
    gw.poll_status("warm", &revoked.full, "/wp-json/revoked", 401)
        .await;

    relay.cut();
    // Past the cache TTL, the warm site and key keep answering from the cache; the
    // revoked key stays revoked; a site never seen gets 503 store.unavailable.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for i in 0..5 {
        let path = format!("/wp-json/during-{i}");
        gw.get_as("warm", &warm.full, &path).await.assert_ok();
        assert_eq!(
            upstream.one_with(&path).header("authorization"),
            Some("Bearer warm-secret")
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        gw.get_as("warm", &revoked.full, "/wp-json/during-revoked")
            .await
            .status,
        401
    );
    let a = gw.get_as("cold", &cold.full, "/wp-json/during-cold").await;
    a.assert_error(503, "store.unavailable");
    let ready = gw.admin_get("/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.summary());
    assert_eq!(
        ready.json().unwrap()["status"],
        "degraded",
        "{}",
        ready.summary()
    );
    let samples = parse_metrics(&gw.metrics_text().await);
    assert_eq!(metric_sum(&samples, "wpgate_store_up", &[]), 0.0);
    assert!(metric_sum(&samples, "wpgate_store_errors_total", &[]) > 0.0);
    assert!(
        metric_sum(
            &samples,
            "wpgate_cache_requests_total",
            &[("result", "stale")]
        ) > 0.0
    );

    // The store returns: everything recovers without a restart.
    relay.restore(pg).await;
    // The cold site after the outage.
    gw.poll_status_within(
        "cold",
        &cold.full,
        "/wp-json/after-cold",
        200,
        Duration::from_secs(20),
    )
    .await;
    poll_until("wpgate_store_up = 1", Duration::from_secs(10), || async {
        let samples = parse_metrics(&gw.metrics_text().await);
        (metric_sum(&samples, "wpgate_store_up", &[]) == 1.0)
            .then_some(())
            .ok_or_else(|| "still down".to_string())
    })
    .await;
    assert_eq!(
        gw.admin_get("/readyz").await.json().unwrap()["status"],
        "ready"
    );
}
