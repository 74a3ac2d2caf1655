//! Keys, tokens and a local JWKS server for the JWT and JWKS tests.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::get;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A 2048-bit RSA test key pair (generated once with `openssl genpkey`; test only).
pub const RSA_PRIVATE_PEM: &str = include_str!("../../../tests/fixtures/rsa-test-private.pem");
pub const RSA_PUBLIC_PEM: &str = include_str!("../../../tests/fixtures/rsa-test-public.pem");

/// A signing key with its public half as PEM and as a JWK (without `kid`).
pub struct TestKey {
    pub alg: Algorithm,
    pub encoding: EncodingKey,
    pub public_pem: String,
    pub jwk: Value,
}

impl TestKey {
    pub fn rsa(alg: Algorithm) -> Self {
        let encoding = EncodingKey::from_rsa_pem(RSA_PRIVATE_PEM.as_bytes()).unwrap();
        let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding, alg).unwrap();
        let mut jwk = serde_json::to_value(jwk).unwrap();
        // No `alg` on the JWK: the one RSA key serves RS* and PS* tests.
        jwk.as_object_mut().unwrap().remove("alg");
        Self {
            alg,
            encoding,
            public_pem: RSA_PUBLIC_PEM.to_string(),
            jwk,
        }
    }

    pub fn ec(alg: Algorithm) -> Self {
        let (rc_alg, crv, n) = match alg {
            Algorithm::ES256 => (&rcgen::PKCS_ECDSA_P256_SHA256, "P-256", 32),
            Algorithm::ES384 => (&rcgen::PKCS_ECDSA_P384_SHA384, "P-384", 48),
            other => panic!("not an EC alg: {other:?}"),
        };
        let pair = rcgen::KeyPair::generate_for(rc_alg).unwrap();
        let raw = pair.public_key_raw();
        assert_eq!(raw.len(), 1 + 2 * n);
        Self {
            alg,
            encoding: EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap(),
            public_pem: pair.public_key_pem(),
            jwk: json!({
                "kty": "EC",
                "crv": crv,
                "x": URL_SAFE_NO_PAD.encode(&raw[1..1 + n]),
                "y": URL_SAFE_NO_PAD.encode(&raw[1 + n..]),
            }),
        }
    }

    pub fn ed() -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        Self {
            alg: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_pem(pair.serialize_pem().as_bytes()).unwrap(),
            public_pem: pair.public_key_pem(),
            jwk: json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": URL_SAFE_NO_PAD.encode(pair.public_key_raw()),
            }),
        }
    }

    pub fn jwk_with_kid(&self, kid: &str) -> Value {
        let mut jwk = self.jwk.clone();
        jwk["kid"] = json!(kid);
        jwk
    }

    pub fn sign(&self, claims: &Value, kid: Option<&str>) -> String {
        sign_with(self.alg, &self.encoding, claims, kid)
    }
}

pub fn sign_with(alg: Algorithm, key: &EncodingKey, claims: &Value, kid: Option<&str>) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

/// A client that never goes through a proxy: tests talk to loopback only.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

struct Served {
    keys: Vec<Value>,
    status: u16,
    cache_control: Option<String>,
    delay: Duration,
    body_override: Option<String>,
}

/// A JWKS endpoint on 127.0.0.1 that counts requests and can fail or rotate keys.
#[derive(Clone)]
pub struct JwksServer {
    pub url: String,
    served: Arc<Mutex<Served>>,
    hits: Arc<AtomicU64>,
}

type ServerState = (Arc<Mutex<Served>>, Arc<AtomicU64>);

async fn serve_jwks(State((served, hits)): State<ServerState>) -> (StatusCode, HeaderMap, String) {
    hits.fetch_add(1, Ordering::SeqCst);
    let (status, cache_control, delay, body) = {
        let s = served.lock().unwrap();
        let body = s
            .body_override
            .clone()
            .unwrap_or_else(|| json!({ "keys": s.keys }).to_string());
        (s.status, s.cache_control.clone(), s.delay, body)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    if let Some(cc) = cache_control {
        headers.insert("cache-control", HeaderValue::from_str(&cc).unwrap());
    }
    (StatusCode::from_u16(status).unwrap(), headers, body)
}

impl JwksServer {
    pub async fn start(keys: Vec<Value>) -> Self {
        let served = Arc::new(Mutex::new(Served {
            keys,
            status: 200,
            cache_control: None,
            delay: Duration::ZERO,
            body_override: None,
        }));
        let hits = Arc::new(AtomicU64::new(0));
        let app = axum::Router::new()
            .route("/jwks.json", get(serve_jwks))
            .with_state((served.clone(), hits.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            url: format!("http://{addr}/jwks.json"),
            served,
            hits,
        }
    }

    pub fn set_keys(&self, keys: Vec<Value>) {
        self.served.lock().unwrap().keys = keys;
    }
    pub fn set_status(&self, status: u16) {
        self.served.lock().unwrap().status = status;
    }
    pub fn set_cache_control(&self, value: Option<&str>) {
        self.served.lock().unwrap().cache_control = value.map(str::to_string);
    }
    pub fn set_delay(&self, delay: Duration) {
        self.served.lock().unwrap().delay = delay;
    }
    pub fn set_body(&self, body: Option<String>) {
        self.served.lock().unwrap().body_override = body;
    }
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}

/// A loopback URL where nothing listens.
pub async fn closed_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/jwks.json")
}
