use super::*;
use crate::auth::jwt::testing::*;
use serde_json::json;

fn settings() -> JwksSettings {
    JwksSettings {
        fetch_timeout: Duration::from_secs(2),
        ..JwksSettings::default()
    }
}

fn cache() -> JwksCache {
    JwksCache::new(client(), settings())
}

fn found(r: Result<Arc<VerifyingKey>, JwksError>) -> Arc<VerifyingKey> {
    match r {
        Ok(k) => k,
        Err(e) => panic!("expected a key, got {e:?}"),
    }
}

/// A JWKS server with one ES256 key, kid `k1`.
async fn one_key_server() -> JwksServer {
    JwksServer::start(vec![TestKey::ec(Algorithm::ES256).jwk_with_kid("k1")]).await
}

fn refused(r: Result<Arc<VerifyingKey>, JwksError>) -> JwksError {
    match r {
        Ok(_) => panic!("expected an error, got a key"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn finds_keys_by_kid_and_the_single_fitting_key_without_kid() {
    let rsa = TestKey::rsa(Algorithm::RS256);
    let ec = TestKey::ec(Algorithm::ES256);
    let ed = TestKey::ed();
    let server = JwksServer::start(vec![
        rsa.jwk_with_kid("r1"),
        ec.jwk_with_kid("e1"),
        ed.jwk_with_kid("d1"),
    ])
    .await;
    let cache = cache();
    let url = &server.url;
    found(cache.key(url, Some("r1"), Algorithm::RS256).await);
    found(cache.key(url, Some("r1"), Algorithm::PS256).await);
    found(cache.key(url, Some("e1"), Algorithm::ES256).await);
    found(cache.key(url, Some("d1"), Algorithm::EdDSA).await);
    // Without kid: the only key of the right type.
    found(cache.key(url, None, Algorithm::ES256).await);
    found(cache.key(url, None, Algorithm::EdDSA).await);
    assert_eq!(cache.fetch_count(url), 1);
    assert_eq!(server.hits(), 1);
    // A kid that names a key of another type is not that key.
    assert_eq!(
        refused(cache.key(url, Some("r1"), Algorithm::ES256).await),
        JwksError::UnknownKid
    );
}

#[tokio::test]
async fn several_fitting_keys_without_kid_is_ambiguous() {
    let a = TestKey::ec(Algorithm::ES256);
    let b = TestKey::ec(Algorithm::ES256);
    let server = JwksServer::start(vec![a.jwk_with_kid("a"), b.jwk_with_kid("b")]).await;
    let cache = cache();
    assert_eq!(
        refused(cache.key(&server.url, None, Algorithm::ES256).await),
        JwksError::UnknownKid
    );
    found(cache.key(&server.url, Some("b"), Algorithm::ES256).await);
    assert_eq!(cache.fetch_count(&server.url), 1);
}

#[tokio::test]
async fn unknown_kid_refetches_once_per_interval_then_refuses() {
    let server = one_key_server().await;
    let cache = cache();
    let url = &server.url;
    found(cache.key(url, Some("k1"), Algorithm::ES256).await);
    assert_eq!(cache.fetch_count(url), 1);

    // Unknown kid: exactly one refetch, then refused.
    assert_eq!(
        refused(cache.key(url, Some("nope"), Algorithm::ES256).await),
        JwksError::UnknownKid
    );
    assert_eq!(cache.fetch_count(url), 2);
    // Another unknown kid within the interval: no fetch at all.
    assert_eq!(
        refused(cache.key(url, Some("other"), Algorithm::ES256).await),
        JwksError::UnknownKid
    );
    assert_eq!(cache.fetch_count(url), 2);
    assert_eq!(server.hits(), 2);
    // Known keys are unaffected.
    found(cache.key(url, Some("k1"), Algorithm::ES256).await);

    // After the interval, one more refetch is allowed.
    cache.advance_clock(settings().refetch_interval + Duration::from_secs(1));
    assert!(cache
        .key(url, Some("nope"), Algorithm::ES256)
        .await
        .is_err());
    assert_eq!(cache.fetch_count(url), 3);
}

#[tokio::test]
async fn a_rotated_key_is_found_by_the_unknown_kid_refetch() {
    let old = TestKey::ec(Algorithm::ES256);
    let new = TestKey::ec(Algorithm::ES256);
    let server = JwksServer::start(vec![old.jwk_with_kid("old")]).await;
    let cache = cache();
    let url = &server.url;
    found(cache.key(url, Some("old"), Algorithm::ES256).await);
    server.set_keys(vec![old.jwk_with_kid("old"), new.jwk_with_kid("new")]);
    found(cache.key(url, Some("new"), Algorithm::ES256).await);
    assert_eq!(cache.fetch_count(url), 2);
}

#[tokio::test]
async fn cached_keys_keep_working_while_the_jwks_is_down() {
    let server = one_key_server().await;
    let cache = cache();
    let url = &server.url;
    let s = settings();
    found(cache.key(url, Some("k1"), Algorithm::ES256).await);
    server.set_status(500);

    // Fresh: served from cache without a fetch.
    found(cache.key(url, Some("k1"), Algorithm::ES256).await);
    assert_eq!(cache.fetch_count(url), 1);

    // Expired: the fetch fails, the last good set is served (stale).
    cache.advance_clock(s.default_ttl + Duration::from_secs(1));
    found(cache.key(url, Some("k1"), Algorithm::ES256).await);
    assert_eq!(cache.fetch_count(url), 2);
    // Within the back-off, no new fetch on the request path.
    found(cache.key(url, Some("k1"), Algorithm::ES256).await);
    assert_eq!(cache.fetch_count(url), 2);

    // Past ttl + max_stale: unavailable.
    cache.advance_clock(s.max_stale);
    assert!(matches!(
        cache.key(url, Some("k1"), Algorithm::ES256).await,
        Err(JwksError::Unavailable(_))
    ));

    // The server recovers: after the back-off the next request fetches again.
    server.set_status(200);
    cache.advance_clock(s.refetch_interval);
    found(cache.key(url, Some("k1"), Algorithm::ES256).await);
}

#[tokio::test]
async fn a_cold_url_that_cannot_be_fetched_is_unavailable() {
    let cache = cache();
    let closed = closed_url().await;
    let err = refused(cache.key(&closed, Some("k"), Algorithm::RS256).await);
    assert!(matches!(err, JwksError::Unavailable(_)), "{err:?}");
    assert_eq!(cache.fetch_count(&closed), 1);
    // Backing off: the next request does not hammer the URL.
    assert!(cache
        .key(&closed, Some("k"), Algorithm::RS256)
        .await
        .is_err());
    assert_eq!(cache.fetch_count(&closed), 1);

    let server = JwksServer::start(vec![]).await;
    server.set_status(500);
    let err = refused(cache.key(&server.url, None, Algorithm::RS256).await);
    assert_eq!(
        err,
        JwksError::Unavailable("HTTP 500 Internal Server Error".into())
    );
    // A set with no usable key counts as a failed fetch too.
    server.set_status(200);
    cache.advance_clock(settings().refetch_interval);
    assert!(matches!(
        cache.key(&server.url, None, Algorithm::RS256).await,
        Err(JwksError::Unavailable(_))
    ));
}

#[tokio::test]
async fn concurrent_cold_lookups_share_one_fetch() {
    let server = one_key_server().await;
    server.set_delay(Duration::from_millis(100));
    let cache = Arc::new(cache());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let cache = cache.clone();
        let url = server.url.clone();
        tasks.spawn(async move { cache.key(&url, Some("k1"), Algorithm::ES256).await });
    }
    while let Some(r) = tasks.join_next().await {
        found(r.unwrap());
    }
    assert_eq!(cache.fetch_count(&server.url), 1);
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn concurrent_unknown_kids_share_one_refetch() {
    let server = one_key_server().await;
    let cache = Arc::new(cache());
    found(cache.key(&server.url, Some("k1"), Algorithm::ES256).await);
    server.set_delay(Duration::from_millis(100));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8 {
        let cache = cache.clone();
        let url = server.url.clone();
        tasks.spawn(async move {
            cache
                .key(&url, Some(&format!("x{i}")), Algorithm::ES256)
                .await
        });
    }
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.unwrap().unwrap_err(), JwksError::UnknownKid);
    }
    assert_eq!(cache.fetch_count(&server.url), 2);
}

#[tokio::test]
async fn max_age_is_respected_and_clamped() {
    let server = one_key_server().await;
    let s = settings();
    for (cache_control, want) in [
        (Some("public, max-age=120"), Duration::from_secs(120)),
        (Some("max-age=5"), s.min_ttl),
        (Some("max-age=99999999"), s.max_ttl),
        (Some("no-store"), s.min_ttl),
        (Some("public"), s.default_ttl),
        (None, s.default_ttl),
    ] {
        server.set_cache_control(cache_control);
        let cache = cache();
        found(cache.key(&server.url, Some("k1"), Algorithm::ES256).await);
        assert_eq!(cache.ttl(&server.url), Some(want), "{cache_control:?}");
    }

    // A set is refetched once its (max-age) TTL is over.
    server.set_cache_control(Some("max-age=120"));
    let cache = cache();
    found(cache.key(&server.url, Some("k1"), Algorithm::ES256).await);
    cache.advance_clock(Duration::from_secs(119));
    found(cache.key(&server.url, Some("k1"), Algorithm::ES256).await);
    assert_eq!(cache.fetch_count(&server.url), 1);
    cache.advance_clock(Duration::from_secs(2));
    found(cache.key(&server.url, Some("k1"), Algorithm::ES256).await);
    assert_eq!(cache.fetch_count(&server.url), 2);
}

#[tokio::test]
async fn unusable_keys_are_skipped_and_symmetric_keys_never_used() {
    let ec = TestKey::ec(Algorithm::ES256);
    let server = JwksServer::start(vec![
        json!({"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0", "kid": "hmac"}),
        json!({"kty": "weird", "kid": "weird"}),
        json!({"kty": "EC", "crv": "P-256", "x": "!!", "kid": "broken"}),
        {
            let mut enc = ec.jwk_with_kid("enc");
            enc["use"] = json!("enc");
            enc
        },
        {
            let mut wrong = ec.jwk_with_kid("wrong-alg");
            wrong["alg"] = json!("RS256");
            wrong
        },
        ec.jwk_with_kid("good"),
    ])
    .await;
    let cache = cache();
    let url = &server.url;
    // Only "good" survives, so it is also the single fitting key without kid.
    found(cache.key(url, None, Algorithm::ES256).await);
    found(cache.key(url, Some("good"), Algorithm::ES256).await);
    for kid in ["hmac", "weird", "broken", "enc", "wrong-alg"] {
        assert_eq!(
            refused(cache.key(url, Some(kid), Algorithm::ES256).await),
            JwksError::UnknownKid,
            "{kid}"
        );
    }
    assert_eq!(
        refused(cache.key(url, Some("hmac"), Algorithm::HS256).await),
        JwksError::UnknownKid
    );
}

#[tokio::test]
async fn oversized_and_non_json_responses_fail() {
    let server = JwksServer::start(vec![]).await;
    let cache = JwksCache::new(
        client(),
        JwksSettings {
            refetch_interval: Duration::ZERO,
            ..settings()
        },
    );
    server.set_body(Some("x".repeat(MAX_JWKS_BYTES + 1)));
    let err = refused(cache.key(&server.url, None, Algorithm::ES256).await);
    assert!(
        matches!(&err, JwksError::Unavailable(m) if m.contains("larger")),
        "{err:?}"
    );
    server.set_body(Some("<html>".into()));
    let err = refused(cache.key(&server.url, None, Algorithm::ES256).await);
    assert!(
        matches!(&err, JwksError::Unavailable(m) if m.contains("not a JWKS")),
        "{err:?}"
    );
}

#[tokio::test]
async fn refresh_due_refreshes_near_expiry_sets_and_a_failing_url_blocks_none() {
    let ec = TestKey::ec(Algorithm::ES256);
    let good = JwksServer::start(vec![ec.jwk_with_kid("k1")]).await;
    let slow = JwksServer::start(vec![ec.jwk_with_kid("k1")]).await;
    let s = JwksSettings {
        fetch_timeout: Duration::from_millis(500),
        ..settings()
    };
    let cache = JwksCache::new(client(), s.clone());
    found(cache.key(&good.url, Some("k1"), Algorithm::ES256).await);
    found(cache.key(&slow.url, Some("k1"), Algorithm::ES256).await);

    // Nothing is due right after fetching.
    cache.refresh_due().await;
    assert_eq!(cache.fetch_count(&good.url), 1);

    // Near expiry (within min_ttl of the 5 min default TTL): both are refreshed,
    // concurrently, and the slow one times out without holding up the good one.
    slow.set_delay(Duration::from_secs(5));
    cache.advance_clock(s.default_ttl - s.min_ttl + Duration::from_secs(1));
    let started = std::time::Instant::now();
    cache.refresh_due().await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(cache.fetch_count(&good.url), 2);
    assert_eq!(cache.fetch_count(&slow.url), 2);
    assert_eq!(cache.ttl(&good.url), Some(s.default_ttl));
    // The failed URL keeps its last good set (still within ttl + max_stale).
    slow.set_delay(Duration::ZERO);
    found(cache.key(&slow.url, Some("k1"), Algorithm::ES256).await);
}

#[tokio::test]
async fn the_refresher_runs_in_the_background_and_stops_with_the_cache() {
    let server = one_key_server().await;
    let cache = Arc::new(cache());
    found(cache.key(&server.url, Some("k1"), Algorithm::ES256).await);
    cache.advance_clock(settings().default_ttl);
    let handle = tokio::spawn(cache.refresher(Duration::from_millis(20)));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while cache.fetch_count(&server.url) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "refresher never fetched"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(cache);
    tokio::time::timeout(Duration::from_secs(5), handle)
        .await
        .unwrap()
        .unwrap();
}

/// A client with the gateway's JWKS redirect policy (and no proxy: tests talk to loopback).
fn gateway_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(redirect_policy())
        .build()
        .unwrap()
}

/// A loopback server that answers every request with `302 Location: <to>`, counting them.
async fn redirecting_to(to: String) -> (String, Arc<AtomicU64>) {
    let hits = Arc::new(AtomicU64::new(0));
    let counted = hits.clone();
    let app = axum::Router::new().fallback(move || {
        let to = to.clone();
        let counted = counted.clone();
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            (
                axum::http::StatusCode::FOUND,
                [(axum::http::header::LOCATION, to)],
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{addr}/jwks.json"), hits)
}

#[test]
fn jwks_urls_and_redirects_follow_the_https_rule() {
    let u = |s: &str| url::Url::parse(s).unwrap();
    for ok in [
        "https://idp.example.com/jwks",
        "http://127.0.0.1:1/jwks",
        "http://127.200.0.1/jwks",
        "http://[::1]/jwks",
        "http://localhost/jwks",
    ] {
        assert_eq!(check_url(&u(ok)), Ok(()), "{ok}");
    }
    for bad in [
        "http://idp.example.com/jwks",
        "http://192.168.1.1/jwks",
        "http://[::2]/jwks",
        "file:///etc/passwd",
    ] {
        assert!(check_url(&u(bad)).is_err(), "{bad}");
    }
    let from = u("https://idp.example.com/jwks");
    assert_eq!(
        check_redirect(&from, &u("https://idp.example.com:8443/keys")),
        Ok(())
    );
    let to_http = check_redirect(&from, &u("http://idp.example.com/jwks")).unwrap_err();
    assert!(to_http.contains("https only"), "{to_http}");
    let elsewhere = check_redirect(&from, &u("https://evil.example.com/jwks")).unwrap_err();
    assert!(elsewhere.contains("evil.example.com"), "{elsewhere}");
    // Even from a loopback http JWKS URL, a redirect never goes to http.
    let local = u("http://127.0.0.1:9/jwks");
    assert!(check_redirect(&local, &u("http://127.0.0.1:9/other")).is_err());
}

#[tokio::test]
async fn a_non_loopback_http_url_is_refused_before_any_request() {
    let cache = JwksCache::new(gateway_client(), settings());
    // TEST-NET-1: nothing answers there; the refusal must come before any connection.
    let url = "http://192.0.2.1/jwks.json";
    let started = std::time::Instant::now();
    let e = refused(cache.key(url, Some("k1"), Algorithm::ES256).await);
    assert!(started.elapsed() < Duration::from_secs(1), "{e:?}");
    match e {
        JwksError::Unavailable(why) => assert!(why.contains("must use https"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn redirects_to_another_host_or_to_http_are_not_followed() {
    let server = one_key_server().await;
    let port = url::Url::parse(&server.url).unwrap().port().unwrap();
    // To another host: the JWKS server under the name `localhost`.
    let (other_host, hits_a) = redirecting_to(format!("http://localhost:{port}/jwks.json")).await;
    // To http on the same host (the JWKS server is on 127.0.0.1 too).
    let (to_http, hits_b) = redirecting_to(server.url.clone()).await;
    let cache = JwksCache::new(gateway_client(), settings());
    for url in [&other_host, &to_http] {
        match refused(cache.key(url, Some("k1"), Algorithm::ES256).await) {
            JwksError::Unavailable(why) => assert!(why.contains("refused"), "{url}: {why}"),
            other => panic!("{url}: {other:?}"),
        }
    }
    assert_eq!(hits_a.load(Ordering::SeqCst), 1);
    assert_eq!(hits_b.load(Ordering::SeqCst), 1);
    assert_eq!(server.hits(), 0, "a refused redirect was followed");
    // The same server fetched directly works: only the redirect was refused.
    found(cache.key(&server.url, Some("k1"), Algorithm::ES256).await);
    assert_eq!(server.hits(), 1);
}
