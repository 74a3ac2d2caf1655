//! The per-request auth path on a cache hit: parse the key, look up site and key in the
//! caches, verify the HMAC, check lifetime and site. Target: <= 1 us.
//!
//! Run: cargo bench --bench auth_path
// Set-up failures should abort the benchmark loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use pingora::http::RequestHeader;
use std::hint::black_box;
use std::sync::Arc;
use wpgate::auth::api_key::{self, KeyHasher};
use wpgate::auth::Authenticator;
use wpgate::config::{self, Config};
use wpgate::fleet::{Actor, Fleet};
use wpgate::health::HealthBoard;
use wpgate::proxy::ctx::RequestCtx;
use wpgate::proxy::Gateway;
use wpgate::secret::Secret;

struct Setup {
    _dir: tempfile::TempDir,
    gateway: Gateway,
    fleet: Arc<Fleet>,
    config: Arc<Config>,
    request: RequestHeader,
    key: Secret,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (fleet, config) = common::fleet_with_shop(dir.path()).await;
    let (_, key) = fleet
        .issue_key(&"shop".parse().unwrap(), None, None, &Actor::new("bench"))
        .await
        .unwrap();
    let mut request = RequestHeader::build("GET", b"/wp-json/wp/v2/posts", None).unwrap();
    request.insert_header("X-Website-ID", "shop").unwrap();
    request
        .insert_header("X-API-Key", key.expose_str().unwrap())
        .unwrap();
    let fleet = Arc::new(fleet);
    let live = config::current(config.clone());
    let auth = Authenticator::new(Arc::clone(&fleet), &config).unwrap();
    let gateway = Gateway::new(Arc::clone(&fleet), live, auth, Arc::new(HealthBoard::new()));
    Setup {
        _dir: dir,
        gateway,
        fleet,
        config: Arc::new(config),
        request,
        key,
    }
}

fn auth_path(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s = rt.block_on(setup());
    // Warm the caches: the benchmark is the cache-hit path.
    rt.block_on(async {
        let mut ctx = RequestCtx::new(Arc::clone(&s.config));
        s.gateway.admit(&s.request, None, &mut ctx).await.unwrap();
    });

    // A client address, so the failure-limit check runs as in production.
    let peer = std::net::IpAddr::from([127, 0, 0, 1]);
    let mut g = c.benchmark_group("auth_path");
    g.bench_function("admit_cache_hit", |b| {
        b.to_async(&rt).iter(|| async {
            let mut ctx = RequestCtx::new(Arc::clone(&s.config));
            s.gateway
                .admit(black_box(&s.request), Some(peer), &mut ctx)
                .await
                .unwrap();
            ctx
        })
    });

    // The parts, to account for the whole.
    let text = s.key.expose_str().unwrap();
    g.bench_function("parse_key", |b| b.iter(|| api_key::parse(black_box(text))));
    let hasher = KeyHasher::new(&api_key::new_pepper());
    let stored = hasher.hash(b"x");
    g.bench_function("hmac_verify", |b| {
        b.iter(|| {
            hasher.verify(
                black_box(b"0123456789012345678901234567890123456789012"),
                &stored,
            )
        })
    });
    let key_id = api_key::parse(text).unwrap().key_id.to_string();
    g.bench_function("key_cache_hit", |b| {
        b.to_async(&rt)
            .iter(|| s.fleet.find_key(black_box(&key_id)))
    });
    g.bench_function("site_cache_hit", |b| {
        b.to_async(&rt)
            .iter(|| s.fleet.resolve_site(black_box("shop")))
    });
    g.finish();
}

criterion_group!(benches, auth_path);
criterion_main!(benches);
