use super::jwks::JwksSettings;
use super::keys::*;
use super::testing::*;
use super::*;
use jsonwebtoken::{DecodingKey, EncodingKey};
use serde_json::{json, Value};

mod differential;

const NOW: u64 = 1_700_000_000;
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-site-secret";

fn jwks() -> JwksCache {
    JwksCache::new(client(), JwksSettings::default())
}

fn settings(algorithms: Vec<Algorithm>, keys: JwtKeys) -> JwtSettings {
    JwtSettings {
        algorithms,
        keys,
        issuer: None,
        audiences: Vec::new(),
        leeway: DEFAULT_LEEWAY,
        max_lifetime: None,
        kept_claims: Vec::new(),
    }
}

fn hmac_settings(algorithms: Vec<Algorithm>) -> JwtSettings {
    settings(algorithms, JwtKeys::Hmac(Secret::new(SECRET.to_vec())))
}

fn hmac_verifier(algorithms: Vec<Algorithm>) -> JwtVerifier {
    JwtVerifier::new(hmac_settings(algorithms)).unwrap()
}

fn hs(alg: Algorithm, claims: &Value) -> String {
    sign_with(alg, &EncodingKey::from_secret(SECRET), claims, None)
}

fn claims() -> Value {
    json!({"sub": "user-1", "exp": NOW + 300, "iat": NOW, "role": "editor"})
}

fn b64(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(s)
}

async fn check(v: &JwtVerifier, token: &str) -> Result<VerifiedToken, AuthFailure> {
    v.verify(token, &jwks(), NOW).await
}

async fn refused(v: &JwtVerifier, token: &str) -> AuthFailure {
    match check(v, token).await {
        Ok(t) => panic!("accepted: {t:?}"),
        Err(f) => f,
    }
}

#[tokio::test]
async fn valid_tokens_for_every_algorithm() {
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let v = hmac_verifier(vec![alg]);
        let t = check(&v, &hs(alg, &claims())).await.unwrap();
        assert_eq!(t.exp, NOW + 300);
        assert_eq!(t.sub.as_deref(), Some("user-1"));
        // Nothing is kept unless the site copies it into a header.
        assert!(t.claims.is_empty(), "{:?}", t.claims);
    }
    let keys = [
        TestKey::rsa(Algorithm::RS256),
        TestKey::rsa(Algorithm::PS256),
        TestKey::rsa(Algorithm::RS512),
        TestKey::ec(Algorithm::ES256),
        TestKey::ec(Algorithm::ES384),
        TestKey::ed(),
    ];
    for key in &keys {
        let v = JwtVerifier::new(settings(
            vec![key.alg],
            JwtKeys::PublicPems(vec![key.public_pem.clone()]),
        ))
        .unwrap();
        let t = check(&v, &key.sign(&claims(), None)).await;
        assert_eq!(t.unwrap().sub.as_deref(), Some("user-1"), "{:?}", key.alg);
    }
}

#[tokio::test]
async fn valid_tokens_through_a_jwks() {
    let keys = [
        TestKey::rsa(Algorithm::RS256),
        TestKey::rsa(Algorithm::PS256),
        TestKey::ec(Algorithm::ES256),
        TestKey::ec(Algorithm::ES384),
        TestKey::ed(),
    ];
    let jwks_keys = keys
        .iter()
        .enumerate()
        .map(|(i, k)| k.jwk_with_kid(&format!("k{i}")))
        .collect();
    let server = JwksServer::start(jwks_keys).await;
    let cache = jwks();
    let v = JwtVerifier::new(settings(
        keys.iter().map(|k| k.alg).collect(),
        JwtKeys::Jwks {
            url: server.url.clone(),
        },
    ))
    .unwrap();
    for (i, key) in keys.iter().enumerate() {
        let token = key.sign(&claims(), Some(&format!("k{i}")));
        let t = v.verify(&token, &cache, NOW).await;
        assert_eq!(t.unwrap().exp, NOW + 300, "{:?}", key.alg);
    }
    // Without kid, the only EC P-384 key in the set is used.
    let token = keys[3].sign(&claims(), None);
    v.verify(&token, &cache, NOW).await.unwrap();
    assert_eq!(cache.fetch_count(&server.url), 1);

    // A kid from another key's slot: signature does not verify.
    let token = keys[2].sign(&claims(), Some("k3"));
    assert_eq!(
        v.verify(&token, &cache, NOW).await.unwrap_err(),
        AuthFailure::BadSignature
    );
}

/// An ES256 key served as `k1` by a JWKS, and a verifier of that JWKS.
async fn es256_jwks() -> (TestKey, JwksServer, JwtVerifier) {
    let ec = TestKey::ec(Algorithm::ES256);
    let server = JwksServer::start(vec![ec.jwk_with_kid("k1")]).await;
    let v = JwtVerifier::new(settings(
        vec![Algorithm::ES256],
        JwtKeys::Jwks {
            url: server.url.clone(),
        },
    ))
    .unwrap();
    (ec, server, v)
}

#[tokio::test]
async fn unknown_kid_and_unreachable_jwks() {
    let (ec, server, v) = es256_jwks().await;
    let cache = jwks();
    v.verify(&ec.sign(&claims(), Some("k1")), &cache, NOW)
        .await
        .unwrap();
    let forged = ec.sign(&claims(), Some("unknown"));
    assert_eq!(
        v.verify(&forged, &cache, NOW).await.unwrap_err(),
        AuthFailure::BadSignature
    );
    assert_eq!(cache.fetch_count(&server.url), 2);
    assert_eq!(
        v.verify(&forged, &cache, NOW).await.unwrap_err(),
        AuthFailure::BadSignature
    );
    assert_eq!(cache.fetch_count(&server.url), 2);

    let down = JwtVerifier::new(settings(
        vec![Algorithm::ES256],
        JwtKeys::Jwks {
            url: closed_url().await,
        },
    ))
    .unwrap();
    assert_eq!(
        down.verify(&ec.sign(&claims(), Some("k1")), &cache, NOW)
            .await
            .unwrap_err(),
        AuthFailure::JwksUnavailable
    );
}

#[tokio::test]
async fn oversized_tokens_are_refused_before_parsing() {
    let v = hmac_verifier(vec![Algorithm::HS256]);
    let mut c = claims();
    c["pad"] = json!("x".repeat(MAX_TOKEN_BYTES));
    let big = hs(Algorithm::HS256, &c);
    assert!(big.len() > MAX_TOKEN_BYTES);
    assert_eq!(refused(&v, &big).await, AuthFailure::Malformed);
    // Not even the shape is looked at: MAX_TOKEN_BYTES + 1 bytes of anything.
    assert_eq!(
        refused(&v, &"a".repeat(MAX_TOKEN_BYTES + 1)).await,
        AuthFailure::Malformed
    );
    // Just under the limit is fine.
    c["pad"] = json!("x".repeat(MAX_TOKEN_BYTES / 2));
    check(&v, &hs(Algorithm::HS256, &c)).await.unwrap();
}

#[tokio::test]
async fn malformed_tokens() {
    let v = hmac_verifier(vec![Algorithm::HS256]);
    let good = hs(Algorithm::HS256, &claims());
    let (h, rest) = good.split_once('.').unwrap();
    let (p, s) = rest.split_once('.').unwrap();
    let hdr = b64(r#"{"alg":"HS256"}"#);
    let cases = [
        String::new(),
        "abc".to_string(),
        format!("{h}.{p}"),
        format!("{h}.{p}."),
        format!("{h}..{s}"),
        format!(".{p}.{s}"),
        format!("{h}.{p}.{s}.{s}"),
        format!("{h}.{}.{s}", &p[..p.len() - 3]),
        good[..good.len() / 2].to_string(),
        format!("{h}.{p}.{s}!"),
        format!("{h}.{p}.{s}xy"), // 45 characters: no base64 text is that long
        format!("{h}+.{p}.{s}"),
        format!("{}.{p}.{s}", b64("not json")),
        format!("{}.{p}.{s}", b64(r#"{"typ":"JWT"}"#)),
        format!("{}.{p}.{s}", b64(r#"{"alg":256}"#)),
        format!(
            "{}.{p}.{s}",
            b64(r#"{"alg":"HS256","crit":["b64"],"b64":false}"#)
        ),
        format!("{hdr}.{}.{s}", b64("not json")),
        format!("{hdr}.{}.{s}", b64("[1,2,3]")),
        format!("{h}.{p}.{s}\n"),
    ];
    for token in &cases {
        assert_eq!(
            refused(&v, token).await,
            AuthFailure::Malformed,
            "{token:?}"
        );
    }
}

#[tokio::test]
async fn alg_none_is_refused_in_any_case() {
    let v = hmac_verifier(vec![Algorithm::HS256]);
    let p = b64(&claims().to_string());
    for alg in ["none", "None", "NONE", "nOnE"] {
        let h = b64(&format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
        for token in [format!("{h}.{p}."), format!("{h}.{p}.c2ln")] {
            assert_eq!(
                refused(&v, &token).await,
                AuthFailure::AlgNotAllowed,
                "{token}"
            );
        }
    }
}

#[tokio::test]
async fn algs_outside_the_allowlist_are_refused() {
    let v = hmac_verifier(vec![Algorithm::HS256]);
    assert_eq!(
        refused(&v, &hs(Algorithm::HS384, &claims())).await,
        AuthFailure::AlgNotAllowed
    );
    let p = b64(&claims().to_string());
    for alg in ["HS1024", "hs256", "RS256", ""] {
        let h = b64(&format!(r#"{{"alg":"{alg}"}}"#));
        assert_eq!(
            refused(&v, &format!("{h}.{p}.c2ln")).await,
            AuthFailure::AlgNotAllowed,
            "{alg}"
        );
    }
    let ec = TestKey::ec(Algorithm::ES256);
    let v = JwtVerifier::new(settings(
        vec![Algorithm::ES256],
        JwtKeys::PublicPems(vec![ec.public_pem.clone()]),
    ))
    .unwrap();
    let es384 = TestKey::ec(Algorithm::ES384);
    assert_eq!(
        refused(&v, &es384.sign(&claims(), None)).await,
        AuthFailure::AlgNotAllowed
    );
}

#[tokio::test]
async fn algorithm_confusion_is_refused() {
    // The classic attack: HS256 "signed" with the site's RSA public key as the secret.
    let confused = sign_with(
        Algorithm::HS256,
        &EncodingKey::from_secret(RSA_PUBLIC_PEM.as_bytes()),
        &claims(),
        None,
    );
    let v = JwtVerifier::new(settings(
        vec![Algorithm::RS256],
        JwtKeys::PublicPems(vec![RSA_PUBLIC_PEM.to_string()]),
    ))
    .unwrap();
    assert_eq!(refused(&v, &confused).await, AuthFailure::AlgNotAllowed);

    // With a JWKS: refused before any fetch.
    let cache = jwks();
    let url = "http://127.0.0.1:9/jwks.json";
    let v = JwtVerifier::new(settings(
        vec![Algorithm::RS256],
        JwtKeys::Jwks { url: url.into() },
    ))
    .unwrap();
    assert_eq!(
        v.verify(&confused, &cache, NOW).await.unwrap_err(),
        AuthFailure::AlgNotAllowed
    );
    assert_eq!(cache.fetch_count(url), 0);

    // And such a policy cannot even be configured.
    for keys in [
        JwtKeys::PublicPems(vec![RSA_PUBLIC_PEM.to_string()]),
        JwtKeys::Jwks { url: url.into() },
    ] {
        let err =
            JwtVerifier::new(settings(vec![Algorithm::RS256, Algorithm::HS256], keys)).unwrap_err();
        assert_eq!(
            err,
            InvalidJwtSettings::HmacAlgWithPublicKeys(Algorithm::HS256)
        );
    }
    // The reverse: an RSA token against an HMAC site.
    let rsa = TestKey::rsa(Algorithm::RS256);
    let v = hmac_verifier(vec![Algorithm::HS256]);
    assert_eq!(
        refused(&v, &rsa.sign(&claims(), None)).await,
        AuthFailure::AlgNotAllowed
    );
}

#[tokio::test]
async fn exp_is_required_and_honoured_with_leeway() {
    let v = hmac_verifier(vec![Algorithm::HS256]);
    let token = |c: Value| hs(Algorithm::HS256, &c);
    assert_eq!(
        refused(&v, &token(json!({"sub": "a"}))).await,
        AuthFailure::Malformed
    );
    for bad in [json!("soon"), json!(-5), json!(null), json!([1])] {
        assert_eq!(
            refused(&v, &token(json!({"exp": bad}))).await,
            AuthFailure::Malformed,
            "{bad}"
        );
    }
    assert_eq!(
        refused(&v, &token(json!({"exp": NOW - 60}))).await,
        AuthFailure::Expired
    );
    assert_eq!(
        refused(&v, &token(json!({"exp": NOW - 3600}))).await,
        AuthFailure::Expired
    );
    check(&v, &token(json!({"exp": NOW - 59}))).await.unwrap();
    check(&v, &token(json!({"exp": NOW}))).await.unwrap();
    let t = check(&v, &token(json!({"exp": (NOW + 10) as f64 + 0.5})))
        .await
        .unwrap();
    assert_eq!(t.exp, NOW + 10);
    assert_eq!(t.sub, None);
}

#[tokio::test]
async fn nbf_and_iat_in_the_future_are_not_yet_valid() {
    let v = hmac_verifier(vec![Algorithm::HS256]);
    let exp = NOW + 3600;
    for claim in ["nbf", "iat"] {
        let token = |t: u64| hs(Algorithm::HS256, &json!({"exp": exp, claim: t}));
        assert_eq!(
            refused(&v, &token(NOW + 61)).await,
            AuthFailure::NotYetValid
        );
        check(&v, &token(NOW + 60)).await.unwrap();
        check(&v, &token(NOW - 100)).await.unwrap();
        let bad = hs(Algorithm::HS256, &json!({"exp": exp, claim: "later"}));
        assert_eq!(refused(&v, &bad).await, AuthFailure::Malformed);
    }
}

#[tokio::test]
async fn issuer_is_checked_when_configured() {
    let mut s = hmac_settings(vec![Algorithm::HS256]);
    s.issuer = Some("https://idp.example".into());
    let v = JwtVerifier::new(s).unwrap();
    let token = |iss: Value| hs(Algorithm::HS256, &json!({"exp": NOW + 60, "iss": iss}));
    check(&v, &token(json!("https://idp.example")))
        .await
        .unwrap();
    for wrong in [
        json!("https://evil.example"),
        json!(["https://idp.example"]),
        json!(null),
    ] {
        assert_eq!(refused(&v, &token(wrong)).await, AuthFailure::WrongIssuer);
    }
    let missing = hs(Algorithm::HS256, &json!({"exp": NOW + 60}));
    assert_eq!(refused(&v, &missing).await, AuthFailure::WrongIssuer);
}

#[tokio::test]
async fn audience_must_contain_a_configured_one() {
    let mut s = hmac_settings(vec![Algorithm::HS256]);
    s.audiences = vec!["shop".into(), "blog".into()];
    let v = JwtVerifier::new(s).unwrap();
    let token = |aud: Value| hs(Algorithm::HS256, &json!({"exp": NOW + 60, "aud": aud}));
    check(&v, &token(json!("blog"))).await.unwrap();
    check(&v, &token(json!(["other", "shop"]))).await.unwrap();
    for wrong in [
        json!("other"),
        json!(["a", "b"]),
        json!([]),
        json!(7),
        json!(["shop "]),
    ] {
        assert_eq!(
            refused(&v, &token(wrong.clone())).await,
            AuthFailure::WrongAudience,
            "{wrong}"
        );
    }
    let missing = hs(Algorithm::HS256, &json!({"exp": NOW + 60}));
    assert_eq!(refused(&v, &missing).await, AuthFailure::WrongAudience);
    // Without configured audiences, aud is not checked.
    let v = hmac_verifier(vec![Algorithm::HS256]);
    check(&v, &token(json!("anything"))).await.unwrap();
}

#[tokio::test]
async fn lifetime_cap() {
    let mut s = hmac_settings(vec![Algorithm::HS256]);
    s.max_lifetime = Some(Duration::from_secs(3600));
    let v = JwtVerifier::new(s).unwrap();
    let token = |c: Value| hs(Algorithm::HS256, &c);
    check(&v, &token(json!({"iat": NOW, "exp": NOW + 3600})))
        .await
        .unwrap();
    assert_eq!(
        refused(&v, &token(json!({"iat": NOW, "exp": NOW + 3601}))).await,
        AuthFailure::LifetimeExceeded
    );
    // An old iat with a far exp is over the cap even though it is valid now.
    assert_eq!(
        refused(&v, &token(json!({"iat": NOW - 3000, "exp": NOW + 1000}))).await,
        AuthFailure::LifetimeExceeded
    );
    // No iat: measured from now.
    check(&v, &token(json!({"exp": NOW + 3600}))).await.unwrap();
    assert_eq!(
        refused(&v, &token(json!({"exp": NOW + 7200}))).await,
        AuthFailure::LifetimeExceeded
    );
}

#[tokio::test]
async fn bad_signatures() {
    let v = hmac_verifier(vec![Algorithm::HS256]);
    let other = sign_with(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"another-secret-another-secret-xx"),
        &claims(),
        None,
    );
    assert_eq!(refused(&v, &other).await, AuthFailure::BadSignature);

    // Tampered payload, original signature.
    let good = hs(Algorithm::HS256, &claims());
    let (h, rest) = good.split_once('.').unwrap();
    let (_, s) = rest.split_once('.').unwrap();
    let mut c = claims();
    c["role"] = json!("administrator");
    let tampered = format!("{h}.{}.{s}", b64(&c.to_string()));
    assert_eq!(refused(&v, &tampered).await, AuthFailure::BadSignature);
    // A signature of the wrong length.
    assert_eq!(
        refused(&v, &format!("{h}.{}.c2ln", rest.split_once('.').unwrap().0)).await,
        AuthFailure::BadSignature
    );

    for key in [
        TestKey::ec(Algorithm::ES256),
        TestKey::ed(),
        TestKey::rsa(Algorithm::PS256),
    ] {
        let v = JwtVerifier::new(settings(
            vec![key.alg],
            JwtKeys::PublicPems(vec![key.public_pem.clone()]),
        ))
        .unwrap();
        let impostor = match key.alg {
            Algorithm::ES256 => TestKey::ec(Algorithm::ES256),
            Algorithm::EdDSA => TestKey::ed(),
            _ => continue, // one RSA fixture only: tamper instead
        };
        assert_eq!(
            refused(&v, &impostor.sign(&claims(), None)).await,
            AuthFailure::BadSignature
        );
    }
    let rsa = TestKey::rsa(Algorithm::PS256);
    let v = JwtVerifier::new(settings(
        vec![Algorithm::PS256],
        JwtKeys::PublicPems(vec![RSA_PUBLIC_PEM.into()]),
    ))
    .unwrap();
    let good = rsa.sign(&claims(), None);
    let (hp, s) = good.rsplit_once('.').unwrap();
    let mut sig = URL_SAFE_NO_PAD.decode(s).unwrap();
    sig[10] ^= 1;
    let flipped = format!("{hp}.{}", URL_SAFE_NO_PAD.encode(sig));
    assert_eq!(refused(&v, &flipped).await, AuthFailure::BadSignature);
}

#[tokio::test]
async fn several_pems_try_those_that_fit() {
    let a = TestKey::ec(Algorithm::ES256);
    let b = TestKey::ec(Algorithm::ES256);
    let c = TestKey::ec(Algorithm::ES384);
    let ed = TestKey::ed();
    let v = JwtVerifier::new(settings(
        vec![
            Algorithm::ES256,
            Algorithm::ES384,
            Algorithm::RS256,
            Algorithm::EdDSA,
        ],
        JwtKeys::PublicPems(vec![
            RSA_PUBLIC_PEM.into(),
            a.public_pem.clone(),
            c.public_pem.clone(),
            b.public_pem.clone(),
            ed.public_pem.clone(),
        ]),
    ))
    .unwrap();
    for key in [&a, &b, &c, &ed] {
        check(&v, &key.sign(&claims(), None)).await.unwrap();
    }
    check(&v, &TestKey::rsa(Algorithm::RS256).sign(&claims(), None))
        .await
        .unwrap();
    let stranger = TestKey::ec(Algorithm::ES256);
    assert_eq!(
        refused(&v, &stranger.sign(&claims(), None)).await,
        AuthFailure::BadSignature
    );
}

#[test]
fn settings_are_validated() {
    let hmac = || JwtKeys::Hmac(Secret::new(SECRET.to_vec()));
    let pems = |p: &[&str]| JwtKeys::PublicPems(p.iter().map(|s| s.to_string()).collect());
    let err = |algs: Vec<Algorithm>, keys| JwtVerifier::new(settings(algs, keys)).unwrap_err();

    assert_eq!(err(vec![], hmac()), InvalidJwtSettings::NoAlgorithms);
    assert_eq!(
        err(vec![Algorithm::HS256, Algorithm::RS256], hmac()),
        InvalidJwtSettings::PublicKeyAlgWithSecret(Algorithm::RS256)
    );
    assert_eq!(
        err(
            vec![Algorithm::HS256],
            JwtKeys::Hmac(Secret::new(vec![7; 31]))
        ),
        InvalidJwtSettings::ShortSecret { len: 31 }
    );
    assert_eq!(
        err(vec![Algorithm::RS256], pems(&[])),
        InvalidJwtSettings::NoPublicKeys
    );
    let ec = TestKey::ec(Algorithm::ES256);
    assert_eq!(
        err(vec![Algorithm::ES384], pems(&[&ec.public_pem])),
        InvalidJwtSettings::NoKeyForAlg(Algorithm::ES384)
    );
    assert_eq!(
        err(
            vec![Algorithm::ES256, Algorithm::EdDSA],
            pems(&[&ec.public_pem])
        ),
        InvalidJwtSettings::NoKeyForAlg(Algorithm::EdDSA)
    );
    let two = format!("{RSA_PUBLIC_PEM}{}", ec.public_pem);
    let cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let garbage_pem = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
    for (pem, needle) in [
        ("ssh-rsa AAAA", "not PEM"),
        (RSA_PRIVATE_PEM, "private key"),
        (cert, "not a public key"),
        (two.as_str(), "several PEM blocks"),
        (garbage_pem, "not an RSA, EC"),
    ] {
        let e = err(vec![Algorithm::RS256], pems(&[RSA_PUBLIC_PEM, pem]));
        assert!(
            matches!(e, InvalidJwtSettings::BadPem { index: 2, .. }),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(
            msg.starts_with("public key #2: ") && msg.contains(needle),
            "{msg}"
        );
    }
    for url in ["ftp://idp.example/jwks", "not a url", "file:///etc/passwd"] {
        let e = err(vec![Algorithm::RS256], JwtKeys::Jwks { url: url.into() });
        assert!(matches!(e, InvalidJwtSettings::BadJwksUrl { .. }), "{e:?}");
        assert!(e.to_string().contains(url));
    }
    // Messages name what is wrong.
    assert!(InvalidJwtSettings::ShortSecret { len: 5 }
        .to_string()
        .contains("at least 32"));
    assert!(InvalidJwtSettings::HmacAlgWithPublicKeys(Algorithm::HS512)
        .to_string()
        .contains("HS512"));
    // Good ones.
    JwtVerifier::new(settings(
        vec![Algorithm::RS256, Algorithm::PS512],
        JwtKeys::PublicPems(vec![RSA_PUBLIC_PEM.into()]),
    ))
    .unwrap();
    JwtVerifier::new(settings(
        vec![Algorithm::RS256],
        JwtKeys::Jwks {
            url: "https://idp.example/.well-known/jwks.json".into(),
        },
    ))
    .unwrap();
}

#[test]
fn debug_never_shows_the_secret() {
    let v = hmac_verifier(vec![Algorithm::HS256]);
    let shown = format!("{v:?}");
    assert!(shown.contains("redacted"), "{shown}");
    assert!(!shown.contains("0123456789abcdef"), "{shown}");
    let keys = JwtKeys::Hmac(Secret::new(SECRET.to_vec()));
    assert_eq!(format!("{keys:?}"), "Hmac([redacted])");
}

#[test]
fn shape_check() {
    let good = hs(Algorithm::HS256, &claims());
    assert!(looks_like_jws(&good));
    for bad in [
        "",
        "a.b",
        "a.b.",
        ".b.c",
        "a..c",
        "a.b.c.d",
        "a+.b.c",
        "a.b.c=",
        "abcde.b.c",
    ] {
        assert!(!looks_like_jws(bad), "{bad}");
    }
    assert!(looks_like_jws("ab.cd.ef"));
    assert!(!looks_like_jws(&format!(
        "{good}{}",
        "A".repeat(MAX_TOKEN_BYTES)
    )));
}

#[test]
fn verify_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let v = hmac_verifier(vec![Algorithm::HS256]);
    let cache = jwks();
    let fut = v.verify("a.b.c", &cache, NOW);
    assert_send(&fut);
    let fut = cache.key("http://127.0.0.1:9/", None, Algorithm::RS256);
    assert_send(&fut);
}

#[tokio::test]
async fn only_kept_claims_are_returned() {
    let mut s = hmac_settings(vec![Algorithm::HS256]);
    s.kept_claims = ["role", "sub", "iat", "missing", "n", "flag", "role"]
        .map(String::from)
        .to_vec();
    let v = JwtVerifier::new(s).unwrap();
    let c = json!({
        "sub": "user-1", "exp": NOW + 300, "iat": NOW, "role": "editor",
        "n": 7, "flag": true, "nested": {"deep": [1, {"x": null}]}, "other": "x",
    });
    let t = check(&v, &hs(Algorithm::HS256, &c)).await.unwrap();
    let want = json!({"role": "editor", "sub": "user-1", "iat": NOW, "n": 7, "flag": true});
    assert_eq!(Value::Object(t.claims), want);
    assert_eq!(t.sub.as_deref(), Some("user-1"));

    // Escaped names are the same claims; a later duplicate wins, as in a JSON map.
    let payload = format!(
        r#"{{"\u0065xp":{},"role":"first","r\u006fle":"second"}}"#,
        NOW + 300
    );
    let h = b64(r#"{"alg":"HS256"}"#);
    let p = b64(&payload);
    let sig = hs256_sig(&format!("{h}.{p}"));
    let t = check(&v, &format!("{h}.{p}.{sig}")).await.unwrap();
    assert_eq!(t.exp, NOW + 300);
    assert_eq!(t.claims["role"], "second");

    // A non-string sub is still malformed, kept or not; so is trailing garbage.
    for payload in [
        format!(r#"{{"exp":{},"sub":5}}"#, NOW + 300),
        format!(r#"{{"exp":{}}} x"#, NOW + 300),
        "[1,2,3]".to_string(),
        "7".to_string(),
    ] {
        let p = b64(&payload);
        let sig = hs256_sig(&format!("{h}.{p}"));
        assert_eq!(
            refused(&v, &format!("{h}.{p}.{sig}")).await,
            AuthFailure::Malformed,
            "{payload}"
        );
    }
}

fn hs256_sig(message: &str) -> String {
    let key = EncodingKey::from_secret(SECRET);
    jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).unwrap()
}

/// A verifier that remembers the tokens it accepted answers exactly as one that never
/// saw them: the same tokens (lifetimes, `nbf`, `iat`, caps) presented at times going
/// forwards, backwards and back again, each answer compared with a fresh verifier's.
#[tokio::test]
async fn remembered_tokens_get_the_answers_a_fresh_verifier_gives() {
    let settings = || JwtSettings {
        max_lifetime: Some(Duration::from_secs(600)),
        issuer: Some("iss-1".into()),
        kept_claims: vec!["role".into()],
        ..hmac_settings(vec![Algorithm::HS256])
    };
    let seasoned = JwtVerifier::new(settings()).unwrap();
    let cache = jwks();
    let tokens: Vec<String> = [
        json!({"sub": "a", "iss": "iss-1", "exp": NOW + 300, "iat": NOW, "role": "editor"}),
        json!({"sub": "b", "iss": "iss-1", "exp": NOW + 300, "nbf": NOW + 100}),
        json!({"sub": "c", "iss": "iss-1", "exp": NOW + 500}),
        json!({"sub": "d", "iss": "iss-1", "exp": NOW + 900}),
        json!({"sub": "e", "iss": "iss-1", "exp": NOW + 30, "iat": NOW - 100, "nbf": NOW - 50}),
        json!({"sub": "f", "iss": "other", "exp": NOW + 300}),
        json!({"sub": 7, "iss": "iss-1", "exp": NOW + 300}),
    ]
    .iter()
    .map(|c| hs(Algorithm::HS256, c))
    .collect();
    let mut times: Vec<u64> = (0..=24).map(|i| NOW - 400 + i * 60).collect();
    let back: Vec<u64> = times.iter().rev().copied().collect();
    times.extend(back);
    times.extend([
        NOW,
        NOW + 299,
        NOW + 300,
        NOW + 359,
        NOW + 360,
        NOW + 40,
        NOW + 39,
    ]);
    let mut hits = 0;
    for &now in &times {
        for token in &tokens {
            let fresh = JwtVerifier::new(settings()).unwrap();
            let want = fresh.verify(token, &cache, now).await;
            let remembered = seasoned.memo.get(token, now).is_some();
            let got = seasoned.verify(token, &cache, now).await;
            assert_eq!(
                got,
                want,
                "token {token} at NOW{:+}",
                now as i64 - NOW as i64
            );
            hits += usize::from(remembered);
        }
    }
    assert!(hits > 50, "the memo answered only {hits} times");
    // A token differing in its signature, or in one byte of it, is never a hit.
    let good = &tokens[0];
    assert!(seasoned.memo.get(good, NOW).is_some());
    let mut forged = good.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    assert!(seasoned.memo.get(&forged, NOW).is_none());
    assert_eq!(
        seasoned.verify(&forged, &cache, NOW).await.unwrap_err(),
        AuthFailure::BadSignature
    );
}

/// A JWKS site's tokens are checked against the JWKS every time (a key it drops stops
/// its tokens at once): nothing is remembered. A PEM site's are.
#[tokio::test]
async fn a_jwks_sites_tokens_are_never_remembered() {
    let (ec, _server, v) = es256_jwks().await;
    let cache = jwks();
    let token = ec.sign(&claims(), Some("k1"));
    v.verify(&token, &cache, NOW).await.unwrap();
    v.verify(&token, &cache, NOW).await.unwrap();
    assert_eq!(v.memo.len(), 0);
    let pem = JwtVerifier::new(settings(
        vec![Algorithm::ES256],
        JwtKeys::PublicPems(vec![ec.public_pem.clone()]),
    ))
    .unwrap();
    pem.verify(&token, &cache, NOW).await.unwrap();
    assert_eq!(pem.memo.len(), 1);
}
