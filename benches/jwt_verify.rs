//! JWT verification cost: HS256, ES256, RS256 verifiers alone, and the full auth path
//! of an HS256 site on a cache hit (site id, limiter, intake, site lookup, verify).
//! Targets: HS256 path <= 3 us, ES256 <= 80 us.
//!
//! Run: cargo bench --bench jwt_verify
// Set-up failures should abort the benchmark loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use pingora::http::RequestHeader;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;
use wpgate::auth::jwt::jwks::{JwksCache, JwksSettings};
use wpgate::auth::jwt::{JwtKeys, JwtSettings, JwtVerifier};
use wpgate::auth::policy::{AuthPolicy, JwtPolicy, JwtVerify, Method};
use wpgate::auth::Authenticator;
use wpgate::config::{self, Config};
use wpgate::fleet::Actor;
use wpgate::health::HealthBoard;
use wpgate::proxy::ctx::RequestCtx;
use wpgate::proxy::Gateway;
use wpgate::secret::Secret;

const RSA_PRIVATE_PEM: &str = include_str!("../tests/fixtures/rsa-test-private.pem");
const RSA_PUBLIC_PEM: &str = include_str!("../tests/fixtures/rsa-test-public.pem");
const HMAC_SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-bench";

fn now() -> u64 {
    wpgate::time::now_unix() as u64
}

fn token(alg: Algorithm, key: &EncodingKey) -> String {
    let claims = serde_json::json!({
        "sub": "user-42", "iss": "bench-issuer", "aud": "wordpress",
        "iat": now(), "exp": now() + 3600,
    });
    jsonwebtoken::encode(&Header::new(alg), &claims, key).unwrap()
}

fn verifier(alg: Algorithm, keys: JwtKeys) -> JwtVerifier {
    JwtVerifier::new(JwtSettings {
        algorithms: vec![alg],
        keys,
        issuer: Some("bench-issuer".into()),
        audiences: vec!["wordpress".into()],
        leeway: Duration::from_secs(60),
        max_lifetime: Some(Duration::from_secs(7200)),
        kept_claims: vec!["sub".into()],
    })
    .unwrap()
}

async fn gateway_with_hs256_site(dir: &std::path::Path) -> (Gateway, Arc<Config>) {
    let (fleet, config) = common::fleet_with_shop(dir).await;
    let policy = AuthPolicy {
        methods: vec![Method::Jwt],
        jwt: Some(JwtPolicy {
            verify: JwtVerify::Local,
            algorithms: vec!["HS256".into()],
            jwks_url: None,
            public_keys: vec![],
            issuer: Some("bench-issuer".into()),
            audiences: vec!["wordpress".into()],
            leeway: Duration::from_secs(60),
            max_lifetime: Some(Duration::from_secs(7200)),
            claim_headers: [("sub".to_string(), "X-Auth-Subject".to_string())].into(),
            act_as: None,
            require_roles: vec![],
        }),
    };
    fleet
        .set_auth_policy(
            &"shop".parse().unwrap(),
            &policy,
            Some(Secret::new(HMAC_SECRET.to_vec())),
            &Actor::new("bench"),
        )
        .await
        .unwrap();
    let fleet = Arc::new(fleet);
    let auth = Authenticator::new(Arc::clone(&fleet), &config).unwrap();
    let live = config::current(config.clone());
    (
        Gateway::new(fleet, live, auth, Arc::new(HealthBoard::new())),
        Arc::new(config),
    )
}

fn jwt(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let jwks = JwksCache::new(reqwest::Client::new(), JwksSettings::default());
    let mut g = c.benchmark_group("jwt");

    let hs = verifier(
        Algorithm::HS256,
        JwtKeys::Hmac(Secret::new(HMAC_SECRET.to_vec())),
    );
    let hs_token = token(Algorithm::HS256, &EncodingKey::from_secret(HMAC_SECRET));
    g.bench_function("hs256_verify", |b| {
        b.to_async(&rt)
            .iter(|| async { hs.verify(black_box(&hs_token), &jwks, now()).await.unwrap() })
    });

    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let es = verifier(
        Algorithm::ES256,
        JwtKeys::PublicPems(vec![ec.public_key_pem()]),
    );
    let es_token = token(
        Algorithm::ES256,
        &EncodingKey::from_ec_pem(ec.serialize_pem().as_bytes()).unwrap(),
    );
    g.bench_function("es256_verify", |b| {
        b.to_async(&rt)
            .iter(|| async { es.verify(black_box(&es_token), &jwks, now()).await.unwrap() })
    });

    let rs = verifier(
        Algorithm::RS256,
        JwtKeys::PublicPems(vec![RSA_PUBLIC_PEM.to_string()]),
    );
    let rs_token = token(
        Algorithm::RS256,
        &EncodingKey::from_rsa_pem(RSA_PRIVATE_PEM.as_bytes()).unwrap(),
    );
    g.bench_function("rs256_verify", |b| {
        b.to_async(&rt)
            .iter(|| async { rs.verify(black_box(&rs_token), &jwks, now()).await.unwrap() })
    });

    // The whole auth path of an HS256 site, warm caches.
    let dir = tempfile::tempdir().unwrap();
    let (gateway, config) = rt.block_on(gateway_with_hs256_site(dir.path()));
    let mut request = RequestHeader::build("GET", b"/wp-json/wp/v2/posts", None).unwrap();
    request.insert_header("X-Website-ID", "shop").unwrap();
    request
        .insert_header("Authorization", format!("Bearer {hs_token}"))
        .unwrap();
    let peer = std::net::IpAddr::from([127, 0, 0, 1]);
    rt.block_on(async {
        let mut ctx = RequestCtx::new(Arc::clone(&config));
        gateway.admit(&request, Some(peer), &mut ctx).await.unwrap();
    });
    g.bench_function("hs256_admit_cache_hit", |b| {
        b.to_async(&rt).iter(|| async {
            let mut ctx = RequestCtx::new(Arc::clone(&config));
            gateway
                .admit(black_box(&request), Some(peer), &mut ctx)
                .await
                .unwrap();
            ctx
        })
    });
    g.finish();
}

criterion_group!(benches, jwt);
criterion_main!(benches);
