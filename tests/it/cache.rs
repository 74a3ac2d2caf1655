//! The site/key cache in front of the store: single-flight loads for a burst of
//! requests to a cold site, and negative entries for unknown sites. Store queries are
//! counted from the gateway's `wpgate::store` debug events.

use std::time::Duration;

use crate::harness::{Gateway, GatewayConfig, SiteAuth, Upstream, KEY_HEADER, SITE_HEADER};

fn gateway_with_store_debug() -> Gateway {
    Gateway::start_with(GatewayConfig {
        // Long enough that nothing expires during a test.
        ttl: "30s".into(),
        negative_ttl: "30s".into(),
        log_level: "info,wpgate::store=debug".into(),
        // These tests send bursts of failing requests on purpose: no failure limit.
        extra_toml: "[auth]\nmax_failures = 0\n".into(),
        ..GatewayConfig::default()
    })
}

/// The `store query` debug events for `op` and `id` in the gateway's JSON log.
/// (tracing's JSON format nests event fields under `fields`; a flattened event is
/// accepted too.)
fn store_queries(gw: &Gateway, op: &str, id: &str) -> usize {
    gw.log_json()
        .iter()
        .filter(|line| {
            let fields = line.get("fields").unwrap_or(line);
            fields.get("message").and_then(|m| m.as_str()) == Some("store query")
                && fields.get("op").and_then(|m| m.as_str()) == Some(op)
                && fields.get("id").and_then(|m| m.as_str()) == Some(id)
        })
        .count()
}

/// Send `n` requests at once; each carries its own X-Request-ID. Returns statuses.
async fn burst(gw: &Gateway, site: &str, key: &str, n: usize, tag: &str) -> Vec<u16> {
    let reqs = (0..n).map(|i| {
        let req = gw
            .get("/wp-json/wp/v2/posts")
            .header(SITE_HEADER, site)
            .header(KEY_HEADER, key)
            .header("X-Request-ID", format!("{tag}-{i}"));
        async move { req.send().await.unwrap().status().as_u16() }
    });
    futures_util::future::join_all(reqs).await
}

/// Wait until the request log lines of a burst are written, so every store event
/// that belongs to it is in the file too.
async fn wait_for_request_logs(gw: &Gateway, tag: &str, n: usize) {
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let logs = gw.logs();
            if (0..n).all(|i| logs.contains(&format!("\"{tag}-{i}\""))) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_to_a_cold_site_makes_one_store_query() {
    let up = Upstream::start();
    let gw = gateway_with_store_debug();
    // Added while the gateway runs and never requested: the site is cold.
    gw.add_site("cold", &up.url(), &SiteAuth::None);
    let key = gw.issue_key("cold", &[]);
    // The gateway follows both writes (and drops any cached copy) before the burst:
    // a change arriving while the burst's load is in flight would rightly discard that
    // load (an invalidation is never undone) and cost a second query.
    crate::harness::poll_until("both changes applied", Duration::from_secs(10), || async {
        let samples = crate::harness::parse_metrics(&gw.metrics_text().await);
        let n = crate::harness::metric_sum(&samples, "wpgate_store_changes_applied_total", &[]);
        if n >= 2.0 {
            Ok(())
        } else {
            Err(format!("{n} applied"))
        }
    })
    .await;
    assert_eq!(store_queries(&gw, "get_site", "cold"), 0);

    let statuses = burst(&gw, "cold", &key.full, 20, "burst").await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    wait_for_request_logs(&gw, "burst", 20).await;
    let n = store_queries(&gw, "get_site", "cold");
    assert_eq!(
        n, 1,
        "20 concurrent requests to a cold site made {n} get_site store queries (want 1); store events:\n{}",
        gw.logs()
            .lines()
            .filter(|l| l.contains("store query"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // Warm now: more requests within the TTL do not query the store again.
    let statuses = burst(&gw, "cold", &key.full, 5, "warm").await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    wait_for_request_logs(&gw, "warm", 5).await;
    assert_eq!(store_queries(&gw, "get_site", "cold"), 1);
    assert_eq!(up.requests().len(), 25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_site_lookups_are_coalesced_and_remembered() {
    let gw = gateway_with_store_debug();
    let key = &format!("wpg_{}_{}", "A".repeat(12), "A".repeat(43));
    let statuses = burst(&gw, "ghost", key, 20, "ghost").await;
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    let statuses = burst(&gw, "ghost", key, 5, "ghost2").await;
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    wait_for_request_logs(&gw, "ghost2", 5).await;
    let n = store_queries(&gw, "get_site", "ghost");
    assert_eq!(
        n, 1,
        "25 requests to an unknown site within negative_ttl made {n} get_site queries (want 1)"
    );
}
