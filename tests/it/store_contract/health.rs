//! The health contract: each site's check results and the lease that lets one replica of
//! many check it (`site_health`), on both backends.

use std::time::Duration;

use super::{audit, create, Fresh};
use crate::harness::poll_until;
use crate::harness::records::site;
use wpgate::store::{HealthClaim, HealthResult, ImportBatch, NextCheck, SiteFilter, Store};

/// A result as replica `by` writes it.
fn result<'a>(state: &'a str, message: &'a str, by: &'a str) -> HealthResult<'a> {
    HealthResult {
        state,
        message,
        checked_at: 1_700_000_000,
        duration_ms: 12,
        failed: state != "healthy",
        wordpress_user: (state == "healthy").then_some("admin"),
        checked_by: by,
    }
}

/// Due at `due`, whenever the result is written.
fn at(due: i64) -> NextCheck {
    NextCheck {
        at: due,
        min_wait_ms: 0,
    }
}

fn ids(claims: &[HealthClaim]) -> Vec<String> {
    let mut ids: Vec<String> = claims.iter().map(|c| c.site_id.clone()).collect();
    ids.sort();
    ids
}

/// Claims and results between replicas: every site has a record from its creation; two
/// replicas claiming at once take different sites, and nothing while leases run; only
/// the lease's holder writes its result; a result on demand counts failures on; a lease
/// that runs out, a site that changes, and a site deleted.
pub(super) async fn health_leases_and_results(b: super::Backend) {
    let f = Fresh::new(b).await;
    let s = f.store.as_ref();
    let other = f.another().await;
    for id in ["a", "b", "c"] {
        create(s, &site(id)).await.unwrap();
    }
    // An imported site gets its record too.
    s.import(&ImportBatch {
        sites: vec![site("d")],
        ..ImportBatch::default()
    })
    .await
    .unwrap();
    let fresh = s.get_site_health("d").await.unwrap().unwrap();
    assert_eq!(
        (
            fresh.state.as_str(),
            fresh.checked_at,
            fresh.holder,
            fresh.seq
        ),
        ("unknown", None, None, 0)
    );
    assert!(s.get_site_health("nope").await.unwrap().is_none());

    // Two replicas claim at once, 3 sites each at most: every site once, none twice.
    let (one, two) = tokio::join!(
        s.claim_health_checks("r1", 3, 60_000),
        other.claim_health_checks("r2", 3, 60_000)
    );
    let (one, two) = (one.unwrap(), two.unwrap());
    let mut all = ids(&one.claimed);
    all.extend(ids(&two.claimed));
    all.sort();
    assert_eq!(all, ["a", "b", "c", "d"], "{one:?} {two:?}");
    // While the leases run nothing is due, for anyone; the earliest ends in about 60 s.
    let none = s.claim_health_checks("r3", 10, 60_000).await.unwrap();
    assert!(none.claimed.is_empty());
    let next = none.next_due_in_ms.unwrap();
    assert!((55_000..=60_000).contains(&next), "{next}");
    let held = s.get_site_health("a").await.unwrap().unwrap();
    let (holder, claim) = match one.claimed.iter().find(|c| c.site_id == "a") {
        Some(c) => ("r1", c.clone()),
        None => (
            "r2",
            two.claimed
                .iter()
                .find(|c| c.site_id == "a")
                .unwrap()
                .clone(),
        ),
    };
    assert_eq!(held.holder.as_deref(), Some(holder));
    assert_eq!(held.claimed_at, Some(claim.claimed_at));
    assert_eq!(held.lease_until, Some(claim.claimed_at + 60_000));
    assert_eq!(
        (held.due_at, claim.due_at, claim.consecutive_failures),
        (0, 0, 0)
    );

    // Only the holder of the lease writes its result.
    let r = result("healthy", "fine", holder);
    let due = claim.claimed_at + 600_000;
    assert_eq!(
        s.finish_health_check("r9", &claim, &r, at(due))
            .await
            .unwrap(),
        None
    );
    let written = s
        .finish_health_check(holder, &claim, &r, at(due))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            written.state.as_str(),
            written.message.as_str(),
            written.checked_at,
            written.duration_ms,
            written.wordpress_user.as_deref(),
            written.checked_by.as_deref(),
            written.holder.as_deref(),
            written.lease_until,
            written.due_at,
            written.consecutive_failures,
        ),
        (
            "healthy",
            "fine",
            Some(1_700_000_000),
            12,
            Some("admin"),
            Some(holder),
            None,
            None,
            due,
            0
        )
    );
    assert!(written.seq > 0);
    // Read back the same from any replica; the lease is over, a second write of it fails.
    assert_eq!(
        other.get_site_health("a").await.unwrap(),
        Some(written.clone())
    );
    assert_eq!(
        s.finish_health_check(holder, &claim, &r, at(due))
            .await
            .unwrap(),
        None
    );

    // A check on demand counts failures on and leaves the schedule as it is.
    let bad = result("auth_failed", "refused", "cli");
    let first = s.record_health_check("a", &bad).await.unwrap().unwrap();
    let second = other.record_health_check("a", &bad).await.unwrap().unwrap();
    assert_eq!(
        (first.consecutive_failures, second.consecutive_failures),
        (1, 2)
    );
    assert!(first.seq > written.seq && second.seq > first.seq);
    assert_eq!((second.due_at, second.holder.clone()), (due, None));
    assert_eq!(second.checked_by.as_deref(), Some("cli"));
    assert!(s.record_health_check("nope", &bad).await.unwrap().is_none());

    // Reads: what changed after a seq, in seq order; every record by site id.
    let since: Vec<(String, i64)> = s
        .site_health_since(written.seq, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.site_id, r.seq))
        .collect();
    assert_eq!(since, [("a".to_string(), second.seq)]);
    assert!(s
        .site_health_since(second.seq, 10)
        .await
        .unwrap()
        .is_empty());
    let page: Vec<String> = s
        .list_site_health(None, 2)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.site_id)
        .collect();
    assert_eq!(page, ["a", "b"]);
    let rest: Vec<String> = s
        .list_site_health(Some("b"), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.site_id)
        .collect();
    assert_eq!(rest, ["c", "d"]);

    // a is not due (its next check is in 10 minutes), nor are the leased sites.
    assert!(s
        .claim_health_checks("r3", 10, 60_000)
        .await
        .unwrap()
        .claimed
        .is_empty());

    // A site changed in the store is due at once, and the check of it still running is
    // not written (it was about the old site).
    let b_claim = one
        .claimed
        .iter()
        .chain(&two.claimed)
        .find(|c| c.site_id == "b")
        .unwrap()
        .clone();
    let b_holder = if one.claimed.contains(&b_claim) {
        "r1"
    } else {
        "r2"
    };
    s.update_site(&site("b"), &audit("site.update", "site:b"))
        .await
        .unwrap();
    let again = other.claim_health_checks("r2", 10, 60_000).await.unwrap();
    assert_eq!(ids(&again.claimed), ["b"]);
    let stale = result("healthy", "old", b_holder);
    assert_eq!(
        s.finish_health_check(b_holder, &b_claim, &stale, at(due))
            .await
            .unwrap(),
        None
    );

    // A lease that runs out (its replica died mid-check): another replica claims the
    // site; the dead one's late result is not written.
    s.health_due_now("c").await.unwrap();
    let short = s.claim_health_checks("r1", 1, 200).await.unwrap();
    assert_eq!(ids(&short.claimed), ["c"]);
    let taken = poll_until(
        "the 200 ms lease on c to run out",
        Duration::from_secs(10),
        || {
            let other = &other;
            async move {
                let c = other.claim_health_checks("r2", 10, 60_000).await.unwrap();
                if c.claimed.is_empty() {
                    Err("nothing due yet".to_string())
                } else {
                    Ok(c)
                }
            }
        },
    )
    .await;
    assert_eq!(ids(&taken.claimed), ["c"]);
    assert!(taken.claimed[0].claimed_at >= short.claimed[0].claimed_at + 200);
    let late = result("unreachable", "late", "r1");
    assert_eq!(
        s.finish_health_check("r1", &short.claimed[0], &late, at(due))
            .await
            .unwrap(),
        None
    );
    let now_r2 = result("unreachable", "down", "r2");
    let stored = other
        .finish_health_check("r2", &taken.claimed[0], &now_r2, at(due))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.message.as_str(), stored.consecutive_failures),
        ("down", 1)
    );

    // A deleted site's record goes with it.
    s.delete_site("a", &audit("site.delete", "site:a"))
        .await
        .unwrap();
    assert!(other.get_site_health("a").await.unwrap().is_none());
}

/// Many replicas claiming in a tight loop: each site is claimed exactly once per lease.
pub(super) async fn health_claims_never_overlap(b: super::Backend) {
    let f = Fresh::new(b).await;
    let s = f.store.as_ref();
    let ids: Vec<String> = (0..40).map(|i| format!("s{i:02}")).collect();
    for id in &ids {
        create(s, &site(id)).await.unwrap();
    }
    let mut stores: Vec<std::sync::Arc<dyn Store>> = vec![f.store.clone()];
    for _ in 0..3 {
        stores.push(f.another().await);
    }
    let claimers = stores.into_iter().enumerate().map(|(n, store)| {
        tokio::spawn(async move {
            let holder = format!("r{n}");
            let mut got = Vec::new();
            for _ in 0..30 {
                let c = store
                    .claim_health_checks(&holder, 3, 600_000)
                    .await
                    .unwrap();
                got.extend(c.claimed.into_iter().map(|c| c.site_id));
            }
            got
        })
    });
    let mut all = Vec::new();
    for c in claimers {
        all.extend(c.await.unwrap());
    }
    all.sort();
    assert_eq!(all, ids, "every site claimed exactly once");
}

/// The sites list filtered by text in the id or name (ASCII letters in either case,
/// `%`, `_` and `\` taken literally) and by stored health state, paged by id.
pub(super) async fn sites_found_by_text_and_health_state(b: super::Backend) {
    let f = Fresh::new(b).await;
    let s = f.store.as_ref();
    for (id, name) in [
        ("shop-eu", "Shop Europe"),
        ("shop-us", "Shop 100%_Real"),
        ("blog", "The Blog"),
        ("news", "Daily SHOP news"),
        ("docs", ""),
    ] {
        let mut site = site(id);
        site.name = name.to_string();
        create(s, &site).await.unwrap();
    }
    let found = |text: Option<&str>, state: Option<&str>| {
        let filter = SiteFilter {
            text: text.map(str::to_string),
            state: state.map(str::to_string),
        };
        async move {
            let mut ids = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let page = s.find_sites(after.as_deref(), 2, &filter).await.unwrap();
                let Some(last) = page.last() else { break };
                after = Some(last.id.clone());
                ids.extend(page.into_iter().map(|r| r.id));
            }
            ids
        }
    };
    assert_eq!(
        found(Some("shop"), None).await,
        ["news", "shop-eu", "shop-us"]
    );
    assert_eq!(found(Some("SHOP-E"), None).await, ["shop-eu"]);
    assert_eq!(found(Some("100%_"), None).await, ["shop-us"]);
    assert_eq!(found(Some("%"), None).await, ["shop-us"]);
    assert_eq!(found(Some("_"), None).await, ["shop-us"]);
    assert!(found(Some("\\"), None).await.is_empty());
    assert!(found(Some("nothing"), None).await.is_empty());
    assert_eq!(found(None, None).await.len(), 5);
    // Health: every site starts unknown; results move them.
    assert_eq!(found(None, Some("unknown")).await.len(), 5);
    let bad = result("auth_failed", "refused", "cli");
    s.record_health_check("shop-us", &bad)
        .await
        .unwrap()
        .unwrap();
    s.record_health_check("blog", &bad).await.unwrap().unwrap();
    let good = result("healthy", "ok", "cli");
    s.record_health_check("shop-eu", &good)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found(None, Some("auth_failed")).await, ["blog", "shop-us"]);
    assert_eq!(found(Some("shop"), Some("auth_failed")).await, ["shop-us"]);
    assert_eq!(found(None, Some("healthy")).await, ["shop-eu"]);
    assert_eq!(found(None, Some("unknown")).await, ["docs", "news"]);
    assert!(found(None, Some("degraded")).await.is_empty());
}
