//! JWT verification: arbitrary text as a token (`jwt_token`), tokens built from the input
//! with a chosen header, claims, signing key and tampering (`jwt_parts`), and what a JWKS
//! document or a PEM key yields (`jwks`).
//!
//! Three sites with fixed keys: HS256/384/512 with a shared secret, RS256/PS256/RS512
//! with the RSA test key, ES256 with the P-256 test key. A token verifies only if it was
//! signed with the site's key (checked again with `jsonwebtoken`'s own crypto, not
//! `ring`) and its claims pass the rules, computed here from the payload on their own.

use super::input::Input;
use crate::auth::jwt::jwks::{JwksCache, JwksSettings};
use crate::auth::jwt::{
    looks_like_jws, JwtKeys, JwtSettings, JwtVerifier, VerifiedToken, MAX_TOKEN_BYTES,
};
use crate::auth::AuthFailure;
use crate::secret::Secret;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey};
use serde_json::{json, Map, Value};
use std::future::Future;
use std::pin::pin;
use std::str::FromStr;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// The verifiers' clock (Unix seconds).
pub(crate) const NOW: u64 = 1_750_000_000;
const HMAC_SECRET: &[u8] = b"fuzz: the HS* sites' shared secret, 32+ bytes";
const WRONG_HMAC_SECRET: &[u8] = b"fuzz: another secret of 32+ bytes, not the site's";
pub(crate) const RSA_PRIVATE_PEM: &str = include_str!("../../tests/fixtures/rsa-test-private.pem");
pub(crate) const RSA_PUBLIC_PEM: &str = include_str!("../../tests/fixtures/rsa-test-public.pem");
pub(crate) const EC_PRIVATE_PEM: &str =
    include_str!("../../tests/fixtures/ec-p256-test-private.pem");
pub(crate) const EC_PUBLIC_PEM: &str = include_str!("../../tests/fixtures/ec-p256-test-public.pem");
const ISSUER: &str = "https://issuer.example";
const KEPT_CLAIMS: &[&str] = &["sub", "role", "exp", "aud", "tenant"];

/// A site's claim rules, as configured (kept here to compute the expected outcome).
struct Rules {
    issuer: Option<&'static str>,
    audiences: &'static [&'static str],
    leeway: u64,
    max_lifetime: Option<u64>,
}

pub(crate) struct Site {
    pub(crate) name: &'static str,
    pub(crate) verifier: JwtVerifier,
    pub(crate) algorithms: Vec<Algorithm>,
    rules: Rules,
    /// Signs for the site (the real key).
    signer: EncodingKey,
    /// Checks signatures with `jsonwebtoken`'s crypto (RustCrypto), not the verifier's.
    pub(crate) decoding: DecodingKey,
}

pub(crate) struct Fixtures {
    pub(crate) sites: Vec<Site>,
    pub(crate) jwks: JwksCache,
    wrong_hmac: EncodingKey,
    /// The sites' public keys as HMAC secrets: the algorithm-confusion forgery.
    confused_rsa: EncodingKey,
    confused_ec: EncodingKey,
    rsa: EncodingKey,
    ec: EncodingKey,
}

fn ok<T, E: std::fmt::Debug>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("fuzz fixture {what}: {e:?}"),
    }
}

pub(crate) fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let site = |name, algorithms: Vec<Algorithm>, keys, rules: Rules, signer, decoding| {
            let verifier = ok(
                JwtVerifier::new(JwtSettings {
                    algorithms: algorithms.clone(),
                    keys,
                    issuer: rules.issuer.map(str::to_string),
                    audiences: rules.audiences.iter().map(|a| a.to_string()).collect(),
                    leeway: Duration::from_secs(rules.leeway),
                    max_lifetime: rules.max_lifetime.map(Duration::from_secs),
                    kept_claims: KEPT_CLAIMS.iter().map(|c| c.to_string()).collect(),
                }),
                name,
            );
            Site {
                name,
                verifier,
                algorithms,
                rules,
                signer,
                decoding,
            }
        };
        let rsa = || ok(EncodingKey::from_rsa_pem(RSA_PRIVATE_PEM.as_bytes()), "rsa");
        let ec = || ok(EncodingKey::from_ec_pem(EC_PRIVATE_PEM.as_bytes()), "ec");
        Fixtures {
            sites: vec![
                site(
                    "hs",
                    vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512],
                    JwtKeys::Hmac(Secret::new(HMAC_SECRET.to_vec())),
                    Rules {
                        issuer: Some(ISSUER),
                        audiences: &["wordpress", "api"],
                        leeway: 60,
                        max_lifetime: Some(3600),
                    },
                    EncodingKey::from_secret(HMAC_SECRET),
                    DecodingKey::from_secret(HMAC_SECRET),
                ),
                site(
                    "rs",
                    vec![Algorithm::RS256, Algorithm::PS256, Algorithm::RS512],
                    JwtKeys::PublicPems(vec![RSA_PUBLIC_PEM.to_string()]),
                    Rules {
                        issuer: None,
                        audiences: &["wordpress"],
                        leeway: 0,
                        max_lifetime: None,
                    },
                    rsa(),
                    ok(DecodingKey::from_rsa_pem(RSA_PUBLIC_PEM.as_bytes()), "rsa"),
                ),
                site(
                    "es",
                    vec![Algorithm::ES256],
                    JwtKeys::PublicPems(vec![EC_PUBLIC_PEM.to_string()]),
                    Rules {
                        issuer: Some(ISSUER),
                        audiences: &[],
                        leeway: 300,
                        max_lifetime: Some(86_400),
                    },
                    ec(),
                    ok(DecodingKey::from_ec_pem(EC_PUBLIC_PEM.as_bytes()), "ec"),
                ),
            ],
            jwks: JwksCache::new(reqwest::Client::new(), JwksSettings::default()),
            wrong_hmac: EncodingKey::from_secret(WRONG_HMAC_SECRET),
            confused_rsa: EncodingKey::from_secret(RSA_PUBLIC_PEM.as_bytes()),
            confused_ec: EncodingKey::from_secret(EC_PUBLIC_PEM.as_bytes()),
            rsa: rsa(),
            ec: ec(),
        }
    })
}

/// Runs `verify` to completion: with local keys (HMAC, PEM) it never waits, so one poll
/// must finish it.
pub(crate) fn verify(site: &Site, token: &str) -> Result<VerifiedToken, AuthFailure> {
    let future = pin!(site.verifier.verify(token, &fixtures().jwks, NOW));
    match future.poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(result) => result,
        Poll::Pending => panic!("verifying with local keys waited"),
    }
}

/// A NumericDate as RFC 7519 has it, fractions dropped; anything else is `Malformed`.
fn numeric_date(v: &Value) -> Result<u64, AuthFailure> {
    let Value::Number(n) = v else {
        return Err(AuthFailure::Malformed);
    };
    if let Some(u) = n.as_u64() {
        return Ok(u);
    }
    match n.as_f64() {
        Some(f) if (0.0..18_446_744_073_709_551_616.0).contains(&f) => Ok(f as u64),
        _ => Err(AuthFailure::Malformed),
    }
}

/// What verifying a genuinely signed token with `payload` must give: the claim rules of
/// the module documentation, applied to the payload read as plain JSON.
fn expected_claims(rules: &Rules, payload: &[u8]) -> Result<VerifiedToken, AuthFailure> {
    let Ok(Value::Object(claims)) = serde_json::from_slice::<Value>(payload) else {
        return Err(AuthFailure::Malformed);
    };
    let date = |name| claims.get(name).map(numeric_date).transpose();
    let exp = date("exp")?.ok_or(AuthFailure::Malformed)?;
    let nbf = date("nbf")?;
    let iat = date("iat")?;
    if NOW >= exp.saturating_add(rules.leeway) {
        return Err(AuthFailure::Expired);
    }
    let latest = NOW.saturating_add(rules.leeway);
    if nbf.is_some_and(|t| t > latest) || iat.is_some_and(|t| t > latest) {
        return Err(AuthFailure::NotYetValid);
    }
    if rules
        .max_lifetime
        .is_some_and(|max| exp.saturating_sub(iat.unwrap_or(NOW)) > max)
    {
        return Err(AuthFailure::LifetimeExceeded);
    }
    if let Some(issuer) = rules.issuer {
        if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
            return Err(AuthFailure::WrongIssuer);
        }
    }
    if !rules.audiences.is_empty() {
        let named = |v: &Value| v.as_str().is_some_and(|a| rules.audiences.contains(&a));
        let ok = match claims.get("aud") {
            Some(Value::Array(auds)) => auds.iter().any(named),
            Some(aud) => named(aud),
            None => false,
        };
        if !ok {
            return Err(AuthFailure::WrongAudience);
        }
    }
    let sub = match claims.get("sub") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(AuthFailure::Malformed),
    };
    let kept: Map<String, Value> = KEPT_CLAIMS
        .iter()
        .filter_map(|&name| Some((name.to_string(), claims.get(name)?.clone())))
        .collect();
    Ok(VerifiedToken {
        claims: kept,
        exp,
        sub,
    })
}

/// The three segments of a compact JWS, if it has exactly three.
fn segments(token: &str) -> Option<(&str, &str, &str)> {
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) => Some((h, p, s)),
        _ => None,
    }
}

/// What must hold of any token a site accepted.
fn accepted_token_is_genuine(site: &Site, token: &str, verified: &VerifiedToken) {
    assert!(looks_like_jws(token), "{}: accepted {token:?}", site.name);
    let Some((header, payload, signature)) = segments(token) else {
        panic!("{}: accepted {token:?} without three segments", site.name)
    };
    let header: Value = match B64.decode(header).map(|h| serde_json::from_slice(&h)) {
        Ok(Ok(h)) => h,
        _ => panic!(
            "{}: accepted {token:?} with an unreadable header",
            site.name
        ),
    };
    let alg = header["alg"]
        .as_str()
        .and_then(|a| Algorithm::from_str(a).ok());
    let Some(alg) = alg.filter(|a| site.algorithms.contains(a)) else {
        panic!(
            "{}: accepted {token:?} with alg {:?}",
            site.name, header["alg"]
        )
    };
    let message = &token[..token.len() - signature.len() - 1];
    assert!(
        matches!(
            jsonwebtoken::crypto::verify(signature, message.as_bytes(), &site.decoding, alg),
            Ok(true)
        ),
        "{}: accepted {token:?}, whose signature jsonwebtoken refuses",
        site.name
    );
    let Ok(payload) = B64.decode(payload) else {
        panic!(
            "{}: accepted {token:?} with an undecodable payload",
            site.name
        )
    };
    assert_eq!(
        Ok(verified),
        expected_claims(&site.rules, &payload).as_ref(),
        "{}: {token:?}",
        site.name
    );
}

/// Arbitrary text as a bearer token, to every site.
pub fn jwt_token(data: &[u8]) {
    let token = String::from_utf8_lossy(data);
    for site in &fixtures().sites {
        let result = verify(site, &token);
        if token.len() > MAX_TOKEN_BYTES {
            assert_eq!(result, Err(AuthFailure::Malformed));
        }
        if let Ok(verified) = &result {
            accepted_token_is_genuine(site, &token, verified);
        }
    }
}

const ALG_NAMES: &[&str] = &[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA", "none", "None", "NONE", "hs256", "", "HS256 ",
];

/// A claim value for a NumericDate claim.
fn date_value(input: &mut Input<'_>) -> Option<Value> {
    let offset = i64::from(input.u16() as i16);
    let near = (NOW as i64).saturating_add(offset * i64::from(input.pick(&[1u8, 7, 60])));
    Some(match input.choice(9) {
        0 => return None,
        1..=3 => json!(near),
        4 => json!(near as f64 + 0.75),
        5 => json!(-offset.abs() - 1),
        6 => json!(near.to_string()),
        7 => json!(input.pick(&[1e20, u64::MAX as f64, f64::MAX, 1.8446744073709552e19])),
        _ => json!(u64::MAX - u64::from(input.byte())),
    })
}

fn string_or_other(input: &mut Input<'_>, good: &[&str]) -> Option<Value> {
    Some(match input.choice(7) {
        0 => return None,
        1 | 2 => json!(input.pick(good)),
        3 => json!(input.text(12)),
        4 => json!([input.text(6), input.pick(good)]),
        5 => json!([input.text(6)]),
        _ => json!(input.byte()),
    })
}

/// A claims object built from the input (or, now and then, raw bytes).
fn payload(input: &mut Input<'_>) -> Vec<u8> {
    if input.choice(12) == 0 {
        return input.bytes(64).to_vec();
    }
    let mut claims = Map::new();
    for name in ["exp", "nbf", "iat"] {
        if let Some(v) = date_value(input) {
            claims.insert(name.into(), v);
        }
    }
    let fields: [(&str, &[&str]); 5] = [
        ("iss", &[ISSUER, "https://issuer.example/"]),
        ("aud", &["wordpress", "api", "WordPress"]),
        ("sub", &["user-42", ""]),
        ("role", &["editor"]),
        ("tenant", &["t1"]),
    ];
    for (name, good) in fields {
        if let Some(v) = string_or_other(input, good) {
            claims.insert(name.into(), v);
        }
    }
    if input.flag() {
        let value = input.text(8);
        claims.insert(input.text(8), json!(value));
    }
    let text = Value::Object(claims).to_string();
    // Sometimes a duplicate claim after the object's own (JSON maps keep the last one).
    match input.choice(8) {
        0 => format!(r#"{},"exp":{}}}"#, &text[..text.len() - 1], NOW + 10).into_bytes(),
        1 => format!("{text} ").into_bytes(),
        _ => text.into_bytes(),
    }
}

/// How the token is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signing {
    /// With the key the header's algorithm calls for (the site's own key, if the
    /// algorithm is of the site's kind); RSA and ECDSA tokens come from a pool.
    Right,
    /// HS* with a secret that is not the site's.
    WrongSecret,
    /// HS* with a site's public key text as the secret (algorithm confusion).
    PublicKeyAsSecret,
    /// Bytes from the input.
    Garbage,
}

fn sign(fx: &Fixtures, alg: Option<Algorithm>, how: Signing, message: &str) -> Option<String> {
    let key = match (how, alg?.family()) {
        (Signing::Right, AlgorithmFamily::Hmac) => &fx.sites[0].signer,
        (Signing::WrongSecret, _) => &fx.wrong_hmac,
        (Signing::PublicKeyAsSecret, AlgorithmFamily::Hmac | AlgorithmFamily::Rsa) => {
            &fx.confused_rsa
        }
        (Signing::PublicKeyAsSecret, _) => &fx.confused_ec,
        _ => return None,
    };
    let alg = match how {
        Signing::Right => alg?,
        _ => Algorithm::HS256,
    };
    jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).ok()
}

/// Tokens built from the input: header, claims, key, and maybe one edit of the text.
pub fn jwt_parts(data: &[u8]) {
    let fx = fixtures();
    let mut input = Input::new(data);
    let site = &fx.sites[input.choice(fx.sites.len())];
    let alg_name = match input.choice(ALG_NAMES.len() + 1) {
        n if n < ALG_NAMES.len() => ALG_NAMES[n].to_string(),
        _ => input.text(8),
    };
    let alg = Algorithm::from_str(&alg_name).ok();
    let how = input.pick(&[
        Signing::Right,
        Signing::Right,
        Signing::Right,
        Signing::WrongSecret,
        Signing::PublicKeyAsSecret,
        Signing::Garbage,
    ]);
    let asymmetric = alg.is_some_and(|a| a.family() != AlgorithmFamily::Hmac);
    let mut with_crit = false;
    let mut alg_not_a_string = false;
    let (payload, signed, signed_by_site) = if how == Signing::Right && asymmetric {
        // RSA and ECDSA signing are slow: take one of the tokens signed once.
        let pool: Vec<_> = asymmetric_pool()
            .iter()
            .filter(|t| Some(t.0) == alg)
            .collect();
        if pool.is_empty() {
            return;
        }
        let (alg, payload, token) = pool[input.choice(pool.len())];
        (
            payload.clone(),
            token.clone(),
            site.algorithms.contains(alg),
        )
    } else {
        let mut header = json!({ "alg": alg_name, "typ": "JWT" });
        if input.flag() {
            header["kid"] = json!(input.text(8));
        }
        with_crit = input.choice(10) == 0;
        if with_crit {
            header["crit"] = json!(["exp"]);
        }
        alg_not_a_string = input.choice(16) == 0;
        if alg_not_a_string {
            header["alg"] = json!(256);
        }
        let payload = payload(&mut input);
        let message = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(&payload)
        );
        let (signature, signed_by_site) = match sign(fx, alg, how, &message) {
            Some(sig) => {
                let right_kind = alg.is_some_and(|a| site.algorithms.contains(&a));
                (sig, how == Signing::Right && right_kind)
            }
            None => {
                let mut sig = input.bytes(80).to_vec();
                sig.push(0);
                (B64.encode(sig), false)
            }
        };
        (payload, format!("{message}.{signature}"), signed_by_site)
    };
    let token = tamper(&mut input, &signed);
    let result = verify(site, &token);
    if let Ok(verified) = &result {
        accepted_token_is_genuine(site, &token, verified);
        assert!(
            signed_by_site,
            "{}: accepted a forgery {token:?}",
            site.name
        );
        assert_eq!(token, signed, "{}: accepted a tampered token", site.name);
    }
    if token != signed {
        return;
    }
    // The untampered token gets exactly the answer the documented order of checks gives.
    let allowed = alg.filter(|a| site.algorithms.contains(a));
    let expected = if alg_not_a_string {
        Err(AuthFailure::Malformed)
    } else if allowed.is_none() {
        Err(AuthFailure::AlgNotAllowed)
    } else if with_crit {
        Err(AuthFailure::Malformed)
    } else if !matches!(serde_json::from_slice(&payload), Ok(Value::Object(_))) {
        // The payload is read before the signature is checked.
        Err(AuthFailure::Malformed)
    } else if !signed_by_site {
        Err(AuthFailure::BadSignature)
    } else {
        expected_claims(&site.rules, &payload)
    };
    assert_eq!(result, expected, "{}: {token:?}", site.name);
}

/// Tokens signed once with the RSA and EC test keys: (alg, payload, token), claims
/// chosen to meet each rule of the RSA and EC sites.
fn asymmetric_pool() -> &'static [(Algorithm, Vec<u8>, String)] {
    static POOL: OnceLock<Vec<(Algorithm, Vec<u8>, String)>> = OnceLock::new();
    POOL.get_or_init(|| {
        let fx = fixtures();
        let claims = [
            json!({ "iss": ISSUER, "aud": "wordpress", "exp": NOW + 60, "sub": "s" }),
            json!({ "iss": ISSUER, "aud": ["x", "wordpress"], "exp": NOW, "iat": NOW - 5 }),
            json!({ "iss": "other", "aud": "wordpress", "exp": NOW + 1, "role": "r" }),
            json!({ "iss": ISSUER, "aud": "api", "exp": NOW + 99_999, "nbf": NOW + 200 }),
            json!({ "iss": ISSUER, "exp": NOW + 86_401, "iat": NOW as f64 - 0.5, "sub": 7 }),
            json!({ "aud": "wordpress", "exp": (NOW - 300) as f64 + 0.5, "tenant": [1] }),
            json!({ "iss": ISSUER, "aud": "wordpress", "nbf": NOW }),
        ];
        let mut pool = Vec::new();
        for (alg, key) in [
            (Algorithm::RS256, &fx.rsa),
            (Algorithm::PS256, &fx.rsa),
            (Algorithm::RS512, &fx.rsa),
            (Algorithm::ES256, &fx.ec),
        ] {
            for c in &claims {
                let payload = c.to_string().into_bytes();
                let header = json!({ "alg": format!("{alg:?}"), "typ": "JWT" });
                let message = format!(
                    "{}.{}",
                    B64.encode(header.to_string()),
                    B64.encode(&payload)
                );
                let sig = ok(
                    jsonwebtoken::crypto::sign(message.as_bytes(), key, alg),
                    "pool",
                );
                pool.push((alg, payload, format!("{message}.{sig}")));
            }
        }
        pool
    })
}

/// Maybe one edit of the token text: a character replaced, inserted or removed, or the
/// text cut.
fn tamper(input: &mut Input<'_>, token: &str) -> String {
    const CHARS: &[u8] = b"AQgw_-.=+/ 0\"\\";
    let mut bytes = token.as_bytes().to_vec();
    let at = usize::from(input.u16()) % bytes.len().max(1);
    match input.choice(8) {
        0 => bytes[at] = input.pick(CHARS),
        1 => bytes[at] ^= 1 << input.choice(6),
        2 => bytes.insert(at, input.pick(CHARS)),
        3 => {
            bytes.remove(at);
        }
        4 => bytes.truncate(at),
        _ => {}
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A JWKS document as an issuer serves it, and the same bytes as a PEM public key.
pub fn jwks(data: &[u8]) {
    jwks_document(data);
    pem(&String::from_utf8_lossy(data));
}

/// The sample signers' public key material: the RSA modulus, the EC point's x and y.
fn sample_key_material() -> &'static [Vec<u8>; 3] {
    static MATERIAL: OnceLock<[Vec<u8>; 3]> = OnceLock::new();
    MATERIAL.get_or_init(|| {
        let rsa = ok(DecodingKey::from_rsa_pem(RSA_PUBLIC_PEM.as_bytes()), "rsa");
        let rsa = ok(pkcs1::RsaPublicKey::try_from(rsa.as_bytes()), "rsa der");
        let ec = ok(DecodingKey::from_ec_pem(EC_PUBLIC_PEM.as_bytes()), "ec");
        let point = ec.as_bytes();
        [
            strip_zeros(rsa.modulus.as_bytes()).to_vec(),
            point[1..33].to_vec(),
            point[33..65].to_vec(),
        ]
    })
}

fn strip_zeros(mut b: &[u8]) -> &[u8] {
    while let [0, rest @ ..] = b {
        b = rest;
    }
    b
}

/// Every string in `v` that decodes as base64url (padding tolerated), decoded.
fn decoded_strings(v: &Value, out: &mut Vec<Vec<u8>>) {
    match v {
        Value::String(s) => out.extend(B64.decode(s.trim_end_matches('=')).ok()),
        Value::Array(items) => items.iter().for_each(|i| decoded_strings(i, out)),
        Value::Object(map) => map.values().for_each(|i| decoded_strings(i, out)),
        _ => {}
    }
}

/// A JWKS document: the keys kept fit their declared `alg`, and a key verifies a sample
/// token only if the document carries that signer's public key.
fn jwks_document(body: &[u8]) {
    let Ok(keys) = crate::auth::jwt::jwks::fuzz::parse(body) else {
        return;
    };
    assert!(!keys.is_empty(), "an accepted JWKS without keys");
    let mut strings = Vec::new();
    match serde_json::from_slice::<Value>(body) {
        Ok(doc) => decoded_strings(&doc, &mut strings),
        Err(e) => panic!("an accepted JWKS that is not JSON: {e}"),
    }
    let carried = |material: &[u8]| {
        strings
            .iter()
            .any(|s| s == material || strip_zeros(s) == material)
    };
    let [modulus, x, y] = sample_key_material();
    for key in &keys {
        if let Some(alg) = key.alg() {
            assert!(
                key.fits(alg),
                "a JWKS key kept with an alg it cannot verify"
            );
        }
        for (alg, token) in signed_samples() {
            if key.verifies(*alg, token) {
                let genuine = match alg {
                    Algorithm::RS256 => carried(modulus),
                    _ => carried(x) && carried(y),
                };
                assert!(
                    genuine,
                    "a JWKS key verified the {alg:?} sample without its key"
                );
            }
        }
    }
}

/// Tokens signed with the test keys, for checking what a parsed key verifies.
pub(crate) fn signed_samples() -> &'static [(Algorithm, String)] {
    static SAMPLES: OnceLock<Vec<(Algorithm, String)>> = OnceLock::new();
    SAMPLES.get_or_init(|| {
        let fx = fixtures();
        let claims = json!({ "sub": "sample", "exp": NOW + 60 });
        [(Algorithm::RS256, &fx.rsa), (Algorithm::ES256, &fx.ec)]
            .into_iter()
            .map(|(alg, key)| {
                let header = jsonwebtoken::Header::new(alg);
                (
                    alg,
                    ok(jsonwebtoken::encode(&header, &claims, key), "sample"),
                )
            })
            .collect()
    })
}

/// A PEM public key as an operator gives it: a key it yields verifies a sample token
/// only as `jsonwebtoken` reads the same PEM does.
fn pem(text: &str) {
    for &(alg, ref token) in signed_samples() {
        let Ok(verifier) = JwtVerifier::new(JwtSettings {
            algorithms: vec![alg],
            keys: JwtKeys::PublicPems(vec![text.to_string()]),
            issuer: None,
            audiences: vec![],
            leeway: Duration::ZERO,
            max_lifetime: None,
            kept_claims: vec![],
        }) else {
            continue;
        };
        let Some((header, payload, signature)) = segments(token) else {
            panic!("sample token")
        };
        let site = Site {
            name: "pem",
            verifier,
            algorithms: vec![alg],
            rules: Rules {
                issuer: None,
                audiences: &[],
                leeway: 0,
                max_lifetime: None,
            },
            signer: EncodingKey::from_secret(b"unused"),
            decoding: DecodingKey::from_secret(b"unused"),
        };
        let ours = verify(&site, token).is_ok();
        let decoding = match alg {
            Algorithm::RS256 => DecodingKey::from_rsa_pem(text.as_bytes()),
            _ => DecodingKey::from_ec_pem(text.as_bytes()),
        };
        let theirs = decoding.is_ok_and(|key| {
            let message = format!("{header}.{payload}");
            matches!(
                jsonwebtoken::crypto::verify(signature, message.as_bytes(), &key, alg),
                Ok(true)
            )
        });
        assert_eq!(ours, theirs, "{alg:?} with PEM {text:?}");
    }
}
