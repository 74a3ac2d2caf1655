//! Health checks shared by replicas on one PostgreSQL store (the machine's real server, a
//! fresh database per test): three `wpgate serve` processes and 300 sites on a real local
//! HTTP upstream that counts each site's checks. Each site is checked once per interval
//! in all (not once per replica); every replica's admin API and metrics show the same
//! state and message; `POST .../test` checks the site as the store holds it now and
//! every replica then shows that result; a replica killed mid-check leaves its sites to
//! the others once its leases run out. On SQLite one gateway holds every lease, and the
//! CLI's `site test` and `site health` share the results with it.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures_util::future::join_all;
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};

use crate::fleet_postgres::{replica, shared_keyring};
use crate::harness::postgres::TestDb;
use crate::harness::{
    log_field, metric_value, parse_metrics, poll_until, Gateway, GatewayConfig, SiteAuth, WpFault,
    WpMimic,
};

/// The bearer token the mimic accepts, and one it refuses (401).
const GOOD: &str = "fleet-health-ok";
const BAD: &str = "fleet-health-refused";
/// health.interval in these tests.
const INTERVAL: Duration = Duration::from_secs(2);

/// `[store]` extras and the `[health]` table of every replica.
fn health_toml(timeout: &str) -> String {
    format!(
        "poll_interval = \"1s\"\n\n[health]\nenabled = true\ninterval = \"{}s\"\n\
         concurrency = 16\ntimeout = \"{timeout}\"\n",
        INTERVAL.as_secs()
    )
}

fn site_ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("s{i:03}")).collect()
}

/// Adds each site through `gw`'s admin API, its upstream `<mimic>/<id>`, with the bearer
/// token `token_of(id)`; ten at a time.
async fn add_sites(
    gw: &Gateway,
    admin: &str,
    wp: &WpMimic,
    ids: &[String],
    token_of: impl Fn(&str) -> &'static str,
) {
    for chunk in ids.chunks(10) {
        let created = join_all(chunk.iter().map(|id| {
            gw.admin_call(
                Method::POST,
                "/admin/v1/sites",
                admin,
                Some(json!({"id": id, "upstream": format!("{}/{id}", wp.url()),
                        "credential": {"kind": "bearer", "secret": token_of(id)}})),
            )
        }))
        .await;
        for a in created {
            assert_eq!(a.status, 201, "{}", a.summary());
        }
    }
}

/// The `users/me` calls the mimic saw per site (every check of a site makes one).
fn checks_per_site(wp: &WpMimic) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for uri in wp.users_me_uris() {
        if let Some(site) = uri.strip_prefix('/').and_then(|p| p.split('/').next()) {
            *counts.entry(site.to_string()).or_default() += 1;
        }
    }
    counts
}

async fn connect(db: &TestDb) -> PgConnection {
    PgConnection::connect(&db.url).await.unwrap()
}

/// `(state, message, checked_by)` of every checked site, as the store holds it.
async fn stored_results(conn: &mut PgConnection) -> BTreeMap<String, (String, String, String)> {
    let rows: Vec<(String, String, String, Option<String>)> = sqlx::query_as(
        "SELECT site_id, state, message, checked_by FROM site_health WHERE checked_at IS NOT NULL",
    )
    .fetch_all(conn)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(site, state, message, by)| (site, (state, message, by.unwrap_or_default())))
        .collect()
}

/// `(site, claimed_at, lease_until)` of the leases `holder` holds.
async fn leases_of(conn: &mut PgConnection, holder: &str) -> Vec<(String, i64, i64)> {
    sqlx::query_as(
        "SELECT site_id, claimed_at, lease_until FROM site_health WHERE holder = $1 \
         ORDER BY site_id",
    )
    .bind(holder)
    .fetch_all(conn)
    .await
    .unwrap()
}

/// The replica id a gateway logged at start (`"wpgate serving"`, field `replica`).
async fn replica_id(gw: &Gateway) -> String {
    poll_until(
        "the replica id in the log",
        Duration::from_secs(10),
        || async {
            gw.log_json()
                .iter()
                .find_map(|l| log_field(l, "replica"))
                .ok_or_else(|| "not logged yet".to_string())
        },
    )
    .await
}

/// Each site's state in `wpgate_site_health` (the state whose gauge is 1).
async fn metric_states(gw: &Gateway) -> BTreeMap<String, String> {
    let samples = parse_metrics(&gw.metrics_text().await);
    samples
        .iter()
        .filter(|s| s.name == "wpgate_site_health" && s.value == 1.0)
        .filter_map(|s| Some((s.label("site")?.to_string(), s.label("state")?.to_string())))
        .collect()
}

/// `(state, message, checked_by)` of `GET /admin/v1/sites/{id}/health` on `gw`.
async fn admin_health(gw: &Gateway, token: &str, id: &str) -> (String, String, String) {
    let a = gw
        .admin_call(
            Method::GET,
            &format!("/admin/v1/sites/{id}/health"),
            token,
            None,
        )
        .await;
    let h: Value = a.json().unwrap_or_else(|| panic!("{}", a.summary()));
    let text = |k: &str| h[k].as_str().unwrap_or_default().to_string();
    (text("state"), text("message"), text("checked_by"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_check_each_of_300_sites_once_per_interval_and_agree() {
    let db = TestDb::create();
    let wp = WpMimic::start();
    wp.accept_token(GOOD, 1, "admin");
    let keyring = shared_keyring();
    let extra = health_toml("2s");
    let gws = [
        replica(&db.url, &keyring, &extra),
        replica(&db.url, &keyring, &extra),
        replica(&db.url, &keyring, &extra),
    ];
    let mut ids_of = Vec::new();
    for gw in &gws {
        ids_of.push(replica_id(gw).await);
    }
    let admin = gws[0].admin_token("write", Some("fleet"));
    let ids = site_ids(300);
    let failing = |id: &str| id.ends_with('0');
    add_sites(&gws[0], &admin, &wp, &ids, |id| {
        if failing(id) {
            BAD
        } else {
            GOOD
        }
    })
    .await;
    let expected = |id: &str| {
        if failing(id) {
            "auth_failed"
        } else {
            "healthy"
        }
    };

    // Every site checked (by someone), and each result in every replica's metrics.
    let mut conn = connect(&db).await;
    poll_until("every site checked", Duration::from_secs(60), || async {
        let n = stored_results(&mut connect(&db).await).await.len();
        (n == 300).then_some(()).ok_or(format!("{n} of 300"))
    })
    .await;

    // Count the checks over five intervals. (A measurement window, not a wait for a
    // condition: the rate is what is under test.)
    let rounds = 5;
    let before = checks_per_site(&wp);
    // The checks seen every half second, to tell a stalled machine from a slow schedule.
    let started = std::time::Instant::now();
    let mut timeline = Vec::new();
    while started.elapsed() < INTERVAL * rounds {
        tokio::time::sleep(Duration::from_millis(500)).await;
        timeline.push(wp.users_me_uris().len());
    }
    let after = checks_per_site(&wp);
    let per_half_second: Vec<usize> = timeline.windows(2).map(|w| w[1] - w[0]).collect();
    eprintln!("checks per half second: {per_half_second:?}");
    let in_window =
        |id: &str| after.get(id).copied().unwrap_or(0) - before.get(id).copied().unwrap_or(0);
    let rounds = rounds as usize;
    let mut healthy_total = 0;
    let mut off: Vec<(String, usize)> = Vec::new();
    for id in &ids {
        let n = in_window(id);
        if failing(id) {
            // Down: backed off (5 s, then 10 s, ...), never more than once per 4.5 s.
            assert!(
                n <= 3,
                "{id} (refused) checked {n} times in {rounds} intervals"
            );
            continue;
        }
        healthy_total += n;
        // Never more than once per interval in all (never once per replica). A starved
        // machine (the suite runs 8 tests at once on 2 cores) only makes checks late:
        // fewer, never more; that every site keeps being checked is polled below.
        if n > rounds + 1 {
            off.push((id.clone(), n));
        }
    }
    let expected_total = 270 * rounds;
    eprintln!(
        "checks of the 270 healthy sites in {rounds} intervals: {healthy_total} \
         (one per site per interval: {expected_total}; three replicas each checking: {})",
        3 * expected_total
    );
    assert!(
        off.is_empty(),
        "sites checked more than {} times: {off:?}",
        rounds + 1
    );
    assert!(
        healthy_total <= expected_total * 11 / 10,
        "{healthy_total} checks, at most {expected_total} expected (checks per half \
         second: {per_half_second:?})"
    );
    // No site is left out: each healthy one is checked again and again.
    poll_until(
        "every healthy site checked twice more",
        Duration::from_secs(120),
        || async {
            let now = checks_per_site(&wp);
            let behind: Vec<&String> = ids
                .iter()
                .filter(|id| !failing(id))
                .filter(|id| {
                    now.get(*id).copied().unwrap_or(0) < before.get(*id).copied().unwrap_or(0) + 2
                })
                .collect();
            if behind.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{} sites behind, e.g. {:?}",
                    behind.len(),
                    &behind[..behind.len().min(5)]
                ))
            }
        },
    )
    .await;
    // Every replica took its share.
    for (gw, id) in gws.iter().zip(&ids_of) {
        let samples = parse_metrics(&gw.metrics_text().await);
        let ran = metric_value(
            &samples,
            "wpgate_site_health_check_duration_seconds_count",
            &[],
        )
        .unwrap_or(0.0);
        eprintln!("replica {id}: {ran} checks");
        assert!(ran > 0.0, "replica {id} ran no check");
    }

    // Every replica shows the same state for every site in its metrics, and the same
    // state and message as the store in its admin API (a sample of sites).
    let sample: Vec<&String> = ids.iter().step_by(7).collect();
    poll_until("all replicas to agree", Duration::from_secs(20), || async {
        for gw in &gws {
            let states = metric_states(gw).await;
            for id in &ids {
                let got = states.get(id).map(String::as_str);
                if got != Some(expected(id)) {
                    return Err(format!("{}: {id} is {got:?} in its metrics", gw.admin_addr));
                }
            }
        }
        let store = stored_results(&mut connect(&db).await).await;
        for id in &sample {
            let (state, message, _) = &store[id.as_str()];
            for gw in &gws {
                let (s, m, _) = admin_health(gw, &admin, id).await;
                if (&s, &m) != (state, message) {
                    return Err(format!(
                        "{}: {id} is {s} ({m}), the store {state} ({message})",
                        gw.admin_addr
                    ));
                }
            }
        }
        Ok(())
    })
    .await;
    let store = stored_results(&mut conn).await;
    assert_eq!(store["s001"].0, "healthy");
    assert!(
        store["s001"].1.contains("WordPress user 'admin'"),
        "{:?}",
        store["s001"]
    );
    assert_eq!(store["s010"].0, "auth_failed");

    // Disabled in the store behind every cache's back (no change recorded; the replicas
    // cache sites for an hour): a test through replica B checks the site as stored now,
    // and the result is what every replica shows.
    sqlx::query("UPDATE sites SET enabled = FALSE WHERE id = 's001'")
        .execute(&mut conn)
        .await
        .unwrap();
    let tested = gws[1]
        .admin_call(Method::POST, "/admin/v1/sites/s001/test", &admin, None)
        .await;
    let tested = tested
        .json()
        .unwrap_or_else(|| panic!("{}", tested.summary()));
    assert_eq!(tested["state"], "disabled", "{tested}");
    let stored = stored_results(&mut conn).await["s001"].clone();
    assert_eq!(stored.0, "disabled");
    assert_eq!(tested["message"], stored.1.as_str());
    poll_until(
        "every replica to show the test's result",
        Duration::from_secs(10),
        || async {
            for gw in &gws {
                let (s, m, _) = admin_health(gw, &admin, "s001").await;
                if s != "disabled" || m != stored.1 {
                    return Err(format!("{}: {s} ({m})", gw.admin_addr));
                }
                if metric_states(gw).await.get("s001").map(String::as_str) != Some("disabled") {
                    return Err(format!("{}: metrics not disabled yet", gw.admin_addr));
                }
            }
            Ok(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_check_leaves_its_sites_to_the_others_when_its_leases_run_out() {
    let db = TestDb::create();
    let wp = WpMimic::start();
    wp.accept_token(GOOD, 1, "admin");
    // Each check takes 1.8 s (users/me is slow), so replicas hold leases most of the
    // time; the lease is 3 × 3 s + 5 s = 14 s.
    wp.fault(Some(WpFault::Slow(Duration::from_millis(1800))));
    let keyring = shared_keyring();
    let extra = health_toml("3s");
    let a = replica(&db.url, &keyring, &extra);
    let b = replica(&db.url, &keyring, &extra);
    let mut c = replica(&db.url, &keyring, &extra);
    let (id_a, id_b, id_c) = (
        replica_id(&a).await,
        replica_id(&b).await,
        replica_id(&c).await,
    );
    let admin = a.admin_token("write", Some("fleet"));
    let ids = site_ids(12);
    add_sites(&a, &admin, &wp, &ids, |_| GOOD).await;

    // C holds a lease (a check running): kill it there.
    let mut conn = connect(&db).await;
    poll_until(
        "replica C to hold a lease",
        Duration::from_secs(30),
        || async {
            let n = leases_of(&mut connect(&db).await, &id_c).await.len();
            (n > 0).then_some(()).ok_or(format!("{n} leases"))
        },
    )
    .await;
    c.stop();
    let orphaned = leases_of(&mut conn, &id_c).await;
    assert!(
        !orphaned.is_empty(),
        "C finished its checks between the query and the kill"
    );
    eprintln!("replica C ({id_c}) killed holding {orphaned:?}");
    let checks_at_kill = checks_per_site(&wp);

    // Until each lease runs out nobody else takes the site; then A or B checks it.
    for (site, claimed_at, lease_end) in &orphaned {
        assert_eq!(
            lease_end - claimed_at,
            14_000,
            "the lease: 3 × timeout + 5 s"
        );
        let by = poll_until(
            &format!("{site} to be checked by another replica"),
            Duration::from_secs(40),
            || async {
                let (holder, claimed, now, checked_by): (Option<String>, i64, i64, Option<String>) =
                    sqlx::query_as(
                        "SELECT holder, claimed_at, CAST(EXTRACT(EPOCH FROM now()) * 1000 AS BIGINT), \
                         checked_by FROM site_health WHERE site_id = $1",
                    )
                    .bind(site)
                    .fetch_one(&mut connect(&db).await)
                    .await
                    .unwrap();
                if now < *lease_end {
                    assert_eq!(
                        (holder.as_deref(), claimed),
                        (Some(id_c.as_str()), *claimed_at),
                        "{site} taken before C's lease ran out"
                    );
                    return Err("C's lease still runs".to_string());
                }
                match checked_by {
                    Some(by) if claimed >= *lease_end && by != id_c => Ok(by),
                    other => Err(format!("checked by {other:?}, claimed at {claimed}")),
                }
            },
        )
        .await;
        assert!(by == id_a || by == id_b, "{site} checked by {by}");
        for gw in [&a, &b] {
            poll_until(
                &format!("{} to show the new result", gw.admin_addr),
                Duration::from_secs(10),
                || async {
                    match admin_health(gw, &admin, site).await {
                        (state, _, shown_by) if state == "healthy" && shown_by != id_c => Ok(()),
                        other => Err(format!("{other:?}")),
                    }
                },
            )
            .await;
        }
    }
    let now = checks_per_site(&wp);
    for (site, _, _) in &orphaned {
        let at_kill = checks_at_kill.get(site).copied().unwrap_or(0);
        assert!(now[site] > at_kill, "{site} not checked again");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_the_gateway_checks_every_site_and_the_cli_shares_results_with_it() {
    let wp = WpMimic::start();
    wp.accept_token(GOOD, 1, "admin");
    // An hour-long interval: each site is checked once when it appears, and a refused
    // one not again for 7.5 min; every other check below is the CLI's.
    let gw = Gateway::start_with(GatewayConfig {
        extra_toml: "[health]\nenabled = true\ninterval = \"1h\"\ntimeout = \"5s\"\n".into(),
        ..GatewayConfig::default()
    });
    let replica = replica_id(&gw).await;
    let token = gw.admin_token("read", None);
    for (id, secret) in [("ok", GOOD), ("bad", BAD)] {
        gw.add_site(id, &format!("{}/{id}", wp.url()), &SiteAuth::bearer(secret));
    }
    for (id, state) in [("ok", "healthy"), ("bad", "auth_failed")] {
        let (s, m, by) = poll_until(
            &format!("{id} to be checked"),
            Duration::from_secs(20),
            || async {
                match admin_health(&gw, &token, id).await {
                    h if h.0 != "unknown" => Ok(h),
                    h => Err(format!("{h:?}")),
                }
            },
        )
        .await;
        assert_eq!((s.as_str(), by.as_str()), (state, replica.as_str()), "{m}");
        // `site health` reads the same result from the store.
        let shown = gw.cli_json(&["site", "health", id]);
        let shown = shown.assert_success().json();
        assert_eq!(
            (&shown["state"], &shown["message"], &shown["checked_by"]),
            (&json!(state), &json!(m), &json!(replica))
        );
    }
    assert_eq!(
        checks_per_site(&wp),
        HashMap::from([("ok".into(), 1), ("bad".into(), 1)])
    );

    // The site now accepts the token: `site test` from the CLI finds it healthy, and the
    // running gateway shows that result.
    wp.accept_token(BAD, 2, "ops");
    let tested = gw.cli_json(&["site", "test", "bad"]);
    let tested = tested.assert_success().json();
    assert_eq!(
        (
            &tested["state"],
            &tested["checked_by"],
            &tested["consecutive_failures"]
        ),
        (&json!("healthy"), &json!("cli"), &json!(0))
    );
    poll_until(
        "the gateway to show the CLI's result",
        Duration::from_secs(10),
        || async {
            match admin_health(&gw, &token, "bad").await {
                (s, m, by) if s == "healthy" && by == "cli" && json!(m) == tested["message"] => {
                    Ok(())
                }
                h => Err(format!("{h:?}")),
            }
        },
    )
    .await;
    assert_eq!(checks_per_site(&wp)["bad"], 2);
    let unknown = gw.cli(&["site", "test", "nope"], None);
    unknown.assert_failure();
    assert!(
        unknown.stderr.contains("site nope does not exist"),
        "{}",
        unknown.stderr
    );
}
