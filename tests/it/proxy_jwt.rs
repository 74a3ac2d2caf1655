//! JWT authentication through the real gateway: per-site policies set with
//! `wpgate site set-auth`, tokens signed in the test (HMAC secrets, static PEM keys, a
//! local JWKS endpoint), delegated verification against a WordPress mimic, the failure
//! rate limit, claim headers. Every refusal is checked for its public answer and for the
//! exact reason in the gateway's access log.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::harness::{
    marker, random_string, Answer, CliOutput, Gateway, GatewayConfig, JwksServer, SiteAuth,
    Upstream, WpMimic, CHANGE_DEADLINE, KEY_HEADER, SITE_HEADER,
};

// ---------------------------------------------------------------------------------
// Keys and tokens
// ---------------------------------------------------------------------------------

/// A 2048-bit RSA key pair made for these tests with `openssl genpkey` (RSA key
/// generation is too slow in a debug build to do per test). Test material only.
const RSA_PRIVATE_PEM: &str = include_str!("../fixtures/rsa-test-private.pem");
const RSA_PUBLIC_PEM: &str = include_str!("../fixtures/rsa-test-public.pem");

/// A signing key, with its public half as PEM and as a JWK (asymmetric keys only).
struct TestKey {
    alg: Algorithm,
    encoding: EncodingKey,
    public_pem: String,
    jwk: Value,
}

impl TestKey {
    /// HMAC with `secret`.
    fn hmac(alg: Algorithm, secret: &str) -> Self {
        let encoding = EncodingKey::from_secret(secret.as_bytes());
        Self::new(alg, encoding, String::new(), Value::Null)
    }

    /// The fixed RSA key, for RS* or PS*.
    fn rsa(alg: Algorithm) -> Self {
        let encoding = EncodingKey::from_rsa_pem(RSA_PRIVATE_PEM.as_bytes()).unwrap();
        let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding, alg).unwrap();
        let mut jwk = serde_json::to_value(jwk).unwrap();
        // No `alg` on the JWK: the one RSA key serves RS* and PS*.
        jwk.as_object_mut().unwrap().remove("alg");
        Self::new(alg, encoding, RSA_PUBLIC_PEM.to_owned(), jwk)
    }

    /// A fresh P-256 key (ES256).
    fn es256() -> Self {
        Self::generate(Algorithm::ES256, &rcgen::PKCS_ECDSA_P256_SHA256, |raw| {
            assert_eq!(raw.len(), 65, "uncompressed P-256 point");
            json!({"kty": "EC", "crv": "P-256", "x": b64(&raw[1..33]), "y": b64(&raw[33..])})
        })
    }

    /// A fresh Ed25519 key (EdDSA).
    fn ed25519() -> Self {
        Self::generate(
            Algorithm::EdDSA,
            &rcgen::PKCS_ED25519,
            |raw| json!({"kty": "OKP", "crv": "Ed25519", "x": b64(raw)}),
        )
    }

    /// A fresh key pair of `rc_alg` (EC or Ed25519), its JWK made from the raw public
    /// key by `jwk`.
    fn generate(
        alg: Algorithm,
        rc_alg: &'static rcgen::SignatureAlgorithm,
        jwk: impl FnOnce(&[u8]) -> Value,
    ) -> Self {
        let pair = rcgen::KeyPair::generate_for(rc_alg).unwrap();
        let private_pem = pair.serialize_pem();
        let encoding = match alg {
            Algorithm::EdDSA => EncodingKey::from_ed_pem(private_pem.as_bytes()),
            _ => EncodingKey::from_ec_pem(private_pem.as_bytes()),
        };
        let jwk = jwk(pair.public_key_raw());
        Self::new(alg, encoding.unwrap(), pair.public_key_pem(), jwk)
    }

    fn new(alg: Algorithm, encoding: EncodingKey, public_pem: String, jwk: Value) -> Self {
        TestKey {
            alg,
            encoding,
            public_pem,
            jwk,
        }
    }

    fn jwk_with_kid(&self, kid: &str) -> Value {
        let mut jwk = self.jwk.clone();
        jwk["kid"] = json!(kid);
        jwk
    }

    fn sign(&self, claims: &Value) -> String {
        sign_with(self.alg, &self.encoding, claims, None)
    }

    fn sign_kid(&self, claims: &Value, kid: &str) -> String {
        sign_with(self.alg, &self.encoding, claims, Some(kid))
    }
}

fn sign_with(alg: Algorithm, key: &EncodingKey, claims: &Value, kid: Option<&str>) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims valid for ten minutes from now.
fn claims(sub: &str) -> Value {
    let t = now();
    json!({"sub": sub, "iat": t, "exp": t + 600})
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A 32+ byte HMAC secret.
fn hmac_secret() -> String {
    random_string(48)
}

/// HS256 over `header_b64.payload_b64` by hand, for tokens `jsonwebtoken` would not
/// produce (a payload that is not JSON).
fn hs256_by_hand(secret: &str, header_b64: &str, payload_b64: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{header_b64}.{payload_b64}").as_bytes());
    format!(
        "{header_b64}.{payload_b64}.{}",
        b64(&mac.finalize().into_bytes())
    )
}

// ---------------------------------------------------------------------------------
// Gateway setup
// ---------------------------------------------------------------------------------

/// `[auth]` for most tests: no failure limit (it has its own test), JWKS sets that
/// stay fresh for the whole test, so the background refresher never fetches.
const AUTH_TOML: &str = "[auth]\nmax_failures = 0\njwks_min_ttl = \"10m\"\n";

/// A recording upstream and a prepared (not yet serving) gateway. Sites are added
/// through the CLI before `serve`, so no cache TTL has to pass.
struct Lab {
    up: Upstream,
    gw: Gateway,
}

impl Lab {
    fn prepare(auth_toml: &str) -> Self {
        Self::prepare_with(GatewayConfig {
            extra_toml: auth_toml.to_owned(),
            ..GatewayConfig::default()
        })
    }

    fn prepare_with(config: GatewayConfig) -> Self {
        Lab {
            up: Upstream::start(),
            gw: Gateway::prepare(config),
        }
    }

    /// Adds `id` in front of the recording upstream with a random upstream bearer
    /// credential, sets its auth policy, and returns that credential.
    fn site(&self, id: &str, policy: &[&str], secret: Option<&str>) -> String {
        let cred = format!("site-cred-{id}-{}", random_string(20));
        self.gw
            .add_site(id, &self.up.url(), &SiteAuth::bearer(&cred));
        set_auth(&self.gw, id, policy, secret).assert_success();
        cred
    }

    /// [`Lab::site`] with HS256 JWTs signed with `secret`, and `more` policy options.
    fn hs256_site(&self, id: &str, secret: &str, more: &[&str]) -> String {
        self.site(id, &jwt_policy("HS256", more), Some(secret))
    }

    /// [`Lab::site`] with JWTs of `alg` checked against the public key in `pem_file`.
    fn public_key_site(&self, id: &str, alg: &str, pem_file: &str) -> String {
        let policy = jwt_policy(alg, &["--jwt-public-key-file", pem_file]);
        self.site(id, &policy, None)
    }

    /// [`Lab::site`] with JWTs of `alg` checked against the JWKS at `url`.
    fn jwks_site(&self, id: &str, alg: &str, url: &str) -> String {
        self.site(id, &jwt_policy(alg, &["--jwt-jwks-url", url]), None)
    }

    /// A PEM file in the gateway's temp dir.
    fn pem_file(&self, name: &str, pem: &str) -> String {
        pem_file(&self.gw, name, pem)
    }

    fn serve(mut self) -> Self {
        self.gw.serve();
        self
    }
}

fn pem_file(gw: &Gateway, name: &str, pem: &str) -> String {
    let path: PathBuf = gw.dir.path().join(name);
    std::fs::write(&path, pem).unwrap();
    path.to_string_lossy().into_owned()
}

/// `set-auth` arguments for JWTs of `alg` (only), then `more`.
fn jwt_policy<'a>(alg: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut policy = vec!["--methods", "jwt", "--jwt-alg", alg];
    policy.extend_from_slice(more);
    policy
}

/// `wpgate site set-auth <id> <args...>`, feeding `secret` on stdin when given (with
/// `--jwt-secret-stdin` added).
fn set_auth(gw: &Gateway, id: &str, policy: &[&str], secret: Option<&str>) -> CliOutput {
    let mut args = vec!["site", "set-auth", id];
    args.extend_from_slice(policy);
    let stdin = secret.map(|s| {
        args.push("--jwt-secret-stdin");
        format!("{s}\n")
    });
    gw.cli(&args, stdin.as_deref())
}

/// GET `path` on `site` with `Authorization: Bearer <token>`.
fn bearer(gw: &Gateway, site: &str, token: &str, path: &str) -> reqwest::RequestBuilder {
    gw.get(path)
        .header(SITE_HEADER, site)
        .header("Authorization", format!("Bearer {token}"))
}

/// Sends a JWT request and asserts it reached the upstream with exactly the site's
/// credential and nothing of the client's token.
#[track_caller]
fn check_forwarded(up: &Upstream, m: &str, token: &str, site_cred: &str) {
    let r = up.one_with(m);
    assert_eq!(
        r.header_values("authorization"),
        vec![format!("Bearer {site_cred}").as_str()],
        "the upstream must get the site's credential, once: {r:#?}"
    );
    assert!(r.header("x-api-key").is_none(), "{r:#?}");
    let sig = token.rsplit('.').next().unwrap();
    for (name, value) in &r.headers {
        assert!(
            !value.contains(token) && !value.contains(sig),
            "the client's token reached the upstream in {name}: {value}"
        );
    }
}

async fn accepted(lab: &Lab, site: &str, token: &str, site_cred: &str) {
    let m = marker();
    let a = lab
        .gw
        .send(bearer(
            &lab.gw,
            site,
            token,
            &format!("/wp-json/wp/v2/posts?{m}"),
        ))
        .await;
    assert_eq!(
        a.status,
        200,
        "site {site}: token should be accepted, got {}",
        a.summary()
    );
    check_forwarded(&lab.up, &m, token, site_cred);
}

/// A 401 `auth.invalid_credentials` (with WWW-Authenticate) whose logged reason is
/// `reason`.
async fn assert_refused(gw: &Gateway, a: &Answer, reason: &str, what: &str) {
    assert_eq!(
        a.status,
        401,
        "{what}: expected 401 ({reason}), got {}",
        a.summary()
    );
    a.assert_error(401, "auth.invalid_credentials");
    let logged = gw.logged_reason(a).await;
    assert_eq!(logged, reason, "{what}: wrong reason in the access log");
}

async fn refused(lab: &Lab, site: &str, token: &str, reason: &str, what: &str) {
    let gw = &lab.gw;
    let a = gw
        .send(bearer(gw, site, token, "/wp-json/wp/v2/posts"))
        .await;
    assert_refused(gw, &a, reason, what).await;
}

/// Off by 20 s: accepted on `blog` (default leeway), refused for `reason` on `strict`
/// (leeway 0).
async fn only_within_leeway(lab: &Lab, token: &str, blog_cred: &str, reason: &str, what: &str) {
    accepted(lab, "blog", token, blog_cred).await;
    refused(lab, "strict", token, reason, &format!("{what}, leeway 0")).await;
}

// ---------------------------------------------------------------------------------
// Accepted tokens
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn every_algorithm_family_is_accepted_and_the_credential_swapped() {
    let lab = Lab::prepare(AUTH_TOML);
    let secret = hmac_secret();
    let hs = TestKey::hmac(Algorithm::HS256, &secret);
    let rs = TestKey::rsa(Algorithm::RS256);
    let ps = TestKey::rsa(Algorithm::PS256);
    let es = TestKey::es256();
    let ed = TestKey::ed25519();

    let rsa_pem = lab.pem_file("rsa.pem", RSA_PUBLIC_PEM);
    let es_pem = lab.pem_file("es.pem", &es.public_pem);
    let ed_pem = lab.pem_file("ed.pem", &ed.public_pem);
    // One site per family; the EdDSA site takes API keys too.
    let static_sites: [(&str, &TestKey, &str, Option<&str>); 5] = [
        ("hs", &hs, "HS256", None),
        ("rs", &rs, "RS256", Some(&rsa_pem)),
        ("ps", &ps, "PS256", Some(&rsa_pem)),
        ("es", &es, "ES256", Some(&es_pem)),
        ("ed", &ed, "EdDSA", Some(&ed_pem)),
    ];
    let mut creds = Vec::new();
    for (site, _, alg, pem) in &static_sites {
        let methods = if *site == "ed" { "api_key,jwt" } else { "jwt" };
        let mut policy = vec!["--methods", methods, "--jwt-alg", alg];
        match pem {
            Some(pem) => {
                policy.extend(["--jwt-public-key-file", pem]);
                creds.push(lab.site(site, &policy, None));
            }
            None => creds.push(lab.site(site, &policy, Some(&secret))),
        }
    }

    // The same families through a JWKS, keys picked by kid.
    let es2 = TestKey::es256();
    let ed2 = TestKey::ed25519();
    let jwks = JwksServer::start(vec![
        rs.jwk_with_kid("rsa-1"),
        es2.jwk_with_kid("ec-1"),
        ed2.jwk_with_kid("ed-1"),
    ]);
    let jwks_cred = lab.site(
        "jwks",
        &[
            "--methods",
            "jwt",
            "--jwt-alg",
            "RS256,PS256",
            "--jwt-alg",
            "ES256",
            "--jwt-alg",
            "EdDSA",
            "--jwt-jwks-url",
            &jwks.url(),
        ],
        None,
    );
    let lab = lab.serve();

    for ((site, key, _, _), cred) in static_sites.iter().zip(&creds) {
        let token = key.sign(&claims(&format!("user-{site}")));
        accepted(&lab, site, &token, cred).await;
    }
    for (key, kid) in [
        (&rs, "rsa-1"),
        (&ps, "rsa-1"),
        (&es2, "ec-1"),
        (&ed2, "ed-1"),
    ] {
        let token = key.sign_kid(&claims("jwks-user"), kid);
        accepted(&lab, "jwks", &token, &jwks_cred).await;
    }
    assert_eq!(jwks.hits(), 1, "one JWKS fetch serves every token");

    // An algorithm the site does not allow is refused even with the right key.
    let rs_on_ps = rs.sign(&claims("x"));
    refused(
        &lab,
        "ps",
        &rs_on_ps,
        "alg_not_allowed",
        "RS256 token on a PS256 site",
    )
    .await;
}

// ---------------------------------------------------------------------------------
// Claims
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn exp_nbf_and_iat_are_honoured_with_leeway() {
    let lab = Lab::prepare(AUTH_TOML);
    let secret = hmac_secret();
    let key = TestKey::hmac(Algorithm::HS256, &secret);
    let cred = lab.hs256_site("blog", &secret, &[]);
    let strict_cred = lab.hs256_site("strict", &secret, &["--jwt-leeway", "0s"]);
    let lab = lab.serve();
    let t = now();

    // exp
    let expired = key.sign(&json!({"sub": "a", "iat": t - 600, "exp": t - 120}));
    refused(&lab, "blog", &expired, "expired", "exp 2 min ago").await;
    let just_past = key.sign(&json!({"sub": "a", "iat": t - 600, "exp": t - 20}));
    only_within_leeway(&lab, &just_past, &cred, "expired", "exp 20 s ago").await;
    let missing_exp = key.sign(&json!({"sub": "a", "iat": t}));
    refused(&lab, "blog", &missing_exp, "malformed", "no exp").await;

    // nbf
    let not_yet = key.sign(&json!({"sub": "a", "nbf": t + 300, "exp": t + 900}));
    refused(&lab, "blog", &not_yet, "not_yet_valid", "nbf in 5 min").await;
    let nbf_soon = key.sign(&json!({"sub": "a", "nbf": t + 20, "exp": t + 900}));
    only_within_leeway(&lab, &nbf_soon, &cred, "not_yet_valid", "nbf in 20 s").await;

    // iat
    let issued_later = key.sign(&json!({"sub": "a", "iat": t + 300, "exp": t + 900}));
    refused(&lab, "blog", &issued_later, "not_yet_valid", "iat in 5 min").await;
    let iat_soon = key.sign(&json!({"sub": "a", "iat": t + 20, "exp": t + 900}));
    accepted(&lab, "blog", &iat_soon, &cred).await;

    // A plain valid token works on both.
    accepted(&lab, "strict", &key.sign(&claims("a")), &strict_cred).await;
}

#[tokio::test]
async fn issuer_audience_and_lifetime_cap() {
    let lab = Lab::prepare(AUTH_TOML);
    let secret = hmac_secret();
    let key = TestKey::hmac(Algorithm::HS256, &secret);
    let cred = lab.hs256_site(
        "blog",
        &secret,
        &[
            "--jwt-issuer",
            "https://idp.test",
            "--jwt-audience",
            "blog-api",
            "--jwt-audience",
            "shop-api",
        ],
    );
    let capped_cred = lab.hs256_site("capped", &secret, &["--jwt-max-lifetime", "1h"]);
    let lab = lab.serve();
    let t = now();
    let with = |iss: Value, aud: Value| {
        key.sign(&json!({"sub": "a", "iat": t, "exp": t + 600, "iss": iss, "aud": aud}))
    };

    for aud in [json!("blog-api"), json!(["other", "shop-api"])] {
        accepted(&lab, "blog", &with(json!("https://idp.test"), aud), &cred).await;
    }
    let evil_iss = with(json!("https://evil.test"), json!("blog-api"));
    let no_iss = key.sign(&json!({"sub": "a", "exp": t + 600, "aud": "blog-api"}));
    let other_aud = with(json!("https://idp.test"), json!("mail-api"));
    let others_only = with(json!("https://idp.test"), json!(["mail-api", "chat-api"]));
    for (token, reason, what) in [
        (&evil_iss, "wrong_issuer", "wrong iss"),
        (&no_iss, "wrong_issuer", "missing iss"),
        (&other_aud, "wrong_audience", "wrong aud"),
        (&others_only, "wrong_audience", "aud list without ours"),
    ] {
        refused(&lab, "blog", token, reason, what).await;
    }

    // Lifetime cap of one hour: exp - iat.
    let long = key.sign(&json!({"sub": "a", "iat": t, "exp": t + 2 * 3600}));
    let old_iat = key.sign(&json!({"sub": "a", "iat": t - 3000, "exp": t + 1000}));
    for (token, what) in [
        (&long, "2 h token, 1 h cap"),
        (&old_iat, "iat-to-exp 4000 s"),
    ] {
        refused(&lab, "capped", token, "lifetime_exceeded", what).await;
    }
    let short = key.sign(&json!({"sub": "a", "iat": t - 10, "exp": t + 50 * 60}));
    accepted(&lab, "capped", &short, &capped_cred).await;
    // The same two-hour lifetime is fine on a site without a cap.
    let long_ok = key.sign(&json!({
        "sub": "a", "iat": t, "exp": t + 2 * 3600,
        "iss": "https://idp.test", "aud": "blog-api"
    }));
    accepted(&lab, "blog", &long_ok, &cred).await;
}

// ---------------------------------------------------------------------------------
// Forged and confused tokens
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn alg_none_is_refused() {
    let lab = Lab::prepare(AUTH_TOML);
    let secret = hmac_secret();
    let rsa_pem = lab.pem_file("rsa.pem", RSA_PUBLIC_PEM);
    lab.hs256_site("hs", &secret, &[]);
    lab.public_key_site("rs", "RS256", &rsa_pem);
    let lab = lab.serve();
    let payload = b64(claims("admin").to_string().as_bytes());
    // Every case is tried before judging, so a failure lists all the wrong reasons.
    let mut wrong = Vec::new();
    for site in ["hs", "rs"] {
        for alg in ["none", "None", "NONE"] {
            let header = b64(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#).as_bytes());
            // The classic unsecured JWS (empty signature), and one with a signature.
            for (shape, token) in [
                ("empty signature", format!("{header}.{payload}.")),
                ("with a signature", format!("{header}.{payload}.c2ln")),
            ] {
                let a = lab
                    .gw
                    .send(bearer(&lab.gw, site, &token, "/wp-json/"))
                    .await;
                a.assert_error(401, "auth.invalid_credentials");
                let reason = lab.gw.logged_reason(&a).await;
                if reason != "alg_not_allowed" {
                    wrong.push(format!(
                        "site {site}, alg {alg:?}, {shape}: reason {reason:?}"
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "alg none must be refused as alg_not_allowed; wrong reasons:\n{}",
        wrong.join("\n")
    );
    assert!(
        lab.up.requests().is_empty(),
        "an unsigned token was proxied"
    );
}

#[tokio::test]
async fn hmac_token_signed_with_the_public_key_is_refused() {
    let lab = Lab::prepare(AUTH_TOML);
    let rsa_pem = lab.pem_file("rsa.pem", RSA_PUBLIC_PEM);
    let cred = lab.public_key_site("rs", "RS256", &rsa_pem);
    let jwks = JwksServer::start(vec![TestKey::rsa(Algorithm::RS256).jwk_with_kid("r1")]);
    lab.jwks_site("rs-jwks", "RS256", &jwks.url());
    let lab = lab.serve();

    // The attacker knows the public key (it is public) and uses its PEM text, byte for
    // byte as the site has it, as an HMAC secret.
    let pem_bytes = std::fs::read(&rsa_pem).unwrap();
    for secret in [pem_bytes.clone(), pem_bytes.trim_ascii_end().to_vec()] {
        let key = EncodingKey::from_secret(&secret);
        for site in ["rs", "rs-jwks"] {
            let kid = (site == "rs-jwks").then_some("r1");
            let confused = sign_with(Algorithm::HS256, &key, &claims("admin"), kid);
            refused(
                &lab,
                site,
                &confused,
                "alg_not_allowed",
                &format!("HS256 on {site}"),
            )
            .await;
        }
    }
    // The site itself works with a real RS256 token.
    accepted(
        &lab,
        "rs",
        &TestKey::rsa(Algorithm::RS256).sign(&claims("a")),
        &cred,
    )
    .await;
    assert_eq!(lab.up.requests().len(), 1);
}

#[tokio::test]
async fn a_token_for_one_site_is_refused_by_another() {
    let lab = Lab::prepare(AUTH_TOML);
    let (secret_a, secret_b) = (hmac_secret(), hmac_secret());
    let (ec_c, ec_d) = (TestKey::es256(), TestKey::es256());
    let pem_c = lab.pem_file("c.pem", &ec_c.public_pem);
    let pem_d = lab.pem_file("d.pem", &ec_d.public_pem);
    let cred_a = lab.hs256_site("a", &secret_a, &[]);
    let cred_b = lab.hs256_site("b", &secret_b, &[]);
    let cred_c = lab.public_key_site("c", "ES256", &pem_c);
    let cred_d = lab.public_key_site("d", "ES256", &pem_d);
    let lab = lab.serve();
    let tok_a = TestKey::hmac(Algorithm::HS256, &secret_a).sign(&claims("a"));
    let tok_b = TestKey::hmac(Algorithm::HS256, &secret_b).sign(&claims("b"));
    let tok_c = ec_c.sign(&claims("c"));
    let tok_d = ec_d.sign(&claims("d"));
    accepted(&lab, "a", &tok_a, &cred_a).await;
    accepted(&lab, "b", &tok_b, &cred_b).await;
    accepted(&lab, "c", &tok_c, &cred_c).await;
    accepted(&lab, "d", &tok_d, &cred_d).await;
    let before = lab.up.requests().len();
    refused(&lab, "b", &tok_a, "bad_signature", "site a's token on b").await;
    refused(&lab, "a", &tok_b, "bad_signature", "site b's token on a").await;
    refused(&lab, "d", &tok_c, "bad_signature", "site c's token on d").await;
    refused(&lab, "c", &tok_d, "bad_signature", "site d's token on c").await;
    // Tampered payload, original signature.
    let (h, rest) = tok_a.split_once('.').unwrap();
    let (_, s) = rest.split_once('.').unwrap();
    let mut c = claims("a");
    c["role"] = json!("administrator");
    let tampered = format!("{h}.{}.{s}", b64(c.to_string().as_bytes()));
    refused(&lab, "a", &tampered, "bad_signature", "tampered payload").await;
    assert_eq!(lab.up.requests().len(), before);
}

// ---------------------------------------------------------------------------------
// JWKS
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn unknown_kid_refetches_the_jwks_once_then_refuses() {
    let lab = Lab::prepare(AUTH_TOML);
    let key = TestKey::es256();
    let jwks = JwksServer::start(vec![key.jwk_with_kid("k1")]);
    let cred = lab.jwks_site("idp", "ES256", &jwks.url());
    let lab = lab.serve();
    assert_eq!(jwks.hits(), 0, "nothing fetched before the first token");

    accepted(&lab, "idp", &key.sign_kid(&claims("a"), "k1"), &cred).await;
    assert_eq!(jwks.hits(), 1);

    let forged = key.sign_kid(&claims("a"), "no-such-kid");
    refused(&lab, "idp", &forged, "bad_signature", "unknown kid").await;
    assert_eq!(
        jwks.hits(),
        2,
        "an unknown kid re-fetches the set exactly once"
    );

    // Within the refetch interval, more unknown kids cost no fetch.
    for kid in ["no-such-kid", "another-kid", "third-kid"] {
        let forged = key.sign_kid(&claims("a"), kid);
        refused(&lab, "idp", &forged, "bad_signature", &format!("kid {kid}")).await;
    }
    assert_eq!(
        jwks.hits(),
        2,
        "unknown kids within the refetch interval fetched again"
    );

    accepted(&lab, "idp", &key.sign_kid(&claims("b"), "k1"), &cred).await;
    assert_eq!(jwks.hits(), 2);
}

#[tokio::test]
async fn a_rotated_key_is_found_with_one_refetch() {
    let lab = Lab::prepare(AUTH_TOML);
    let old = TestKey::es256();
    let new = TestKey::es256();
    let jwks = JwksServer::start(vec![old.jwk_with_kid("2024")]);
    let cred = lab.jwks_site("idp", "ES256", &jwks.url());
    let lab = lab.serve();
    accepted(&lab, "idp", &old.sign_kid(&claims("a"), "2024"), &cred).await;
    assert_eq!(jwks.hits(), 1);

    // The identity provider rotates: the old key is gone, a new one is published.
    jwks.set_keys(vec![new.jwk_with_kid("2025")]);
    accepted(&lab, "idp", &new.sign_kid(&claims("a"), "2025"), &cred).await;
    assert_eq!(jwks.hits(), 2, "the new kid triggered one fetch");
    accepted(&lab, "idp", &new.sign_kid(&claims("b"), "2025"), &cred).await;
    assert_eq!(jwks.hits(), 2);
    // The retired key no longer verifies (and costs no fetch within the interval).
    let retired = old.sign_kid(&claims("a"), "2024");
    refused(&lab, "idp", &retired, "bad_signature", "retired kid").await;
    assert_eq!(jwks.hits(), 2);
}

#[tokio::test]
async fn jwks_outage_cached_site_keeps_working_cold_site_is_503() {
    // A short refetch interval so the cold site's recovery is seen quickly.
    let lab = Lab::prepare(&format!("{AUTH_TOML}jwks_refetch_interval = \"1s\"\n"));
    let warm_key = TestKey::es256();
    let cold_key = TestKey::es256();
    let mut warm_jwks = JwksServer::start(vec![warm_key.jwk_with_kid("w")]);
    let cold_jwks = JwksServer::start(vec![cold_key.jwk_with_kid("c")]);
    let closed = format!("http://127.0.0.1:{}/jwks.json", crate::harness::free_port());
    let warm_cred = lab.jwks_site("warm", "ES256", &warm_jwks.url());
    let cold_cred = lab.jwks_site("cold", "ES256", &cold_jwks.url());
    lab.jwks_site("nowhere", "ES256", &closed);
    let lab = lab.serve();
    let warm = |sub: &str| warm_key.sign_kid(&claims(sub), "w");

    accepted(&lab, "warm", &warm("u1"), &warm_cred).await;
    assert_eq!(warm_jwks.hits(), 1);

    // The warm site's JWKS fails, then goes away entirely: its cached keys serve.
    warm_jwks.set_status(500);
    accepted(&lab, "warm", &warm("u2"), &warm_cred).await;
    warm_jwks.stop();
    accepted(&lab, "warm", &warm("u3"), &warm_cred).await;

    // A site whose JWKS was never fetched: 503, not 401.
    cold_jwks.set_status(500);
    let cold_token = cold_key.sign_kid(&claims("u1"), "c");
    let a = lab
        .gw
        .send(bearer(&lab.gw, "cold", &cold_token, "/wp-json/"))
        .await;
    a.assert_error(503, "auth.jwks_unavailable");
    assert_eq!(lab.gw.logged_reason(&a).await, "jwks_unavailable");
    assert!(
        cold_jwks.hits() >= 1,
        "the cold site's JWKS was never asked"
    );
    let a = lab
        .gw
        .send(bearer(
            &lab.gw,
            "nowhere",
            &cold_key.sign_kid(&claims("u1"), "c"),
            "/wp-json/",
        ))
        .await;
    a.assert_error(503, "auth.jwks_unavailable");
    assert_eq!(lab.gw.logged_reason(&a).await, "jwks_unavailable");

    // The warm site still works while all that fails.
    accepted(&lab, "warm", &warm("u4"), &warm_cred).await;

    // When the cold site's JWKS comes back, the site recovers.
    cold_jwks.set_status(200);
    let up = &lab.up;
    crate::harness::poll_until("the cold site to recover", CHANGE_DEADLINE, || async {
        let m = marker();
        let a = lab
            .gw
            .send(bearer(
                &lab.gw,
                "cold",
                &cold_token,
                &format!("/wp-json/?{m}"),
            ))
            .await;
        if a.status == 200 {
            Ok(m)
        } else {
            Err(a.summary())
        }
    })
    .await;
    let last = up.requests().into_iter().last().unwrap();
    assert_eq!(
        last.header_values("authorization"),
        vec![format!("Bearer {cold_cred}").as_str()]
    );
}

// ---------------------------------------------------------------------------------
// Malformed and ambiguous credentials, methods
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn malformed_tokens_are_401() {
    let lab = Lab::prepare(AUTH_TOML);
    let secret = hmac_secret();
    let cred = lab.hs256_site("hs", &secret, &[]);
    let lab = lab.serve();

    let key = TestKey::hmac(Algorithm::HS256, &secret);
    let good = key.sign(&claims("a"));
    let parts: Vec<&str> = good.split('.').collect();
    let (h, p, s) = (parts[0], parts[1], parts[2]);
    // A 9 KiB token: well-formed, correctly signed, just too big.
    let mut big_claims = claims("a");
    big_claims["pad"] = json!("x".repeat(9 * 1024));
    let big = key.sign(&big_claims);
    assert!(big.len() > 9 * 1024);
    let cases: Vec<(&str, String)> = vec![
        ("payload is not base64url", format!("{h}.e30*!.{s}")),
        (
            "payload of impossible length",
            format!("{h}.{}x.{s}", &p[..p.len() - p.len() % 4]),
        ),
        // Signed correctly, but the payload is not JSON.
        (
            "payload is not JSON",
            hs256_by_hand(&secret, h, &b64(b"hello, world")),
        ),
        ("truncated: two parts", format!("{h}.{p}")),
        ("four parts", format!("{h}.{p}.{s}.{s}")),
        (
            "header is not JSON",
            format!("{}.{p}.{s}", b64(b"not json")),
        ),
        ("9 KiB signed token", big),
        ("9 KiB of anything", "a".repeat(9 * 1024)),
        ("opaque bearer", "opaque-token".to_owned()),
    ];
    for (what, token) in &cases {
        refused(&lab, "hs", token, "malformed", what).await;
    }
    assert!(
        lab.up.requests().is_empty(),
        "a malformed token was proxied"
    );
    accepted(&lab, "hs", &good, &cred).await;
}

#[tokio::test]
async fn api_key_and_jwt_together_are_ambiguous() {
    let lab = Lab::prepare(AUTH_TOML);
    let secret = hmac_secret();
    lab.site(
        "both",
        &["--methods", "api_key,jwt", "--jwt-alg", "HS256"],
        Some(&secret),
    );
    let api_key = lab.gw.issue_key("both", &[]);
    let lab = lab.serve();
    let token = TestKey::hmac(Algorithm::HS256, &secret).sign(&claims("a"));
    let a = lab
        .gw
        .send(bearer(&lab.gw, "both", &token, "/wp-json/").header(KEY_HEADER, &api_key.full))
        .await;
    a.assert_error(400, "request.ambiguous_credentials");
    // Each alone is fine.
    lab.gw
        .get_as("both", &api_key.full, "/wp-json/")
        .await
        .assert_ok();
    lab.gw
        .send(bearer(&lab.gw, "both", &token, "/wp-json/"))
        .await
        .assert_ok();
    assert_eq!(lab.up.requests().len(), 2);
}

#[tokio::test]
async fn a_site_accepts_only_its_methods() {
    let lab = Lab::prepare(AUTH_TOML);
    let secret = hmac_secret();
    let up_url = lab.up.url();
    // Keys are issued while the site still has the default policy.
    lab.gw
        .add_site("jwt-only", &up_url, &SiteAuth::bearer("cred-jwt-only"));
    let jwt_only_key = lab.gw.issue_key("jwt-only", &[]);
    set_auth(
        &lab.gw,
        "jwt-only",
        &["--methods", "jwt", "--jwt-alg", "HS256"],
        Some(&secret),
    )
    .assert_success();
    lab.gw
        .add_site("keys-only", &up_url, &SiteAuth::bearer("cred-keys-only"));
    let keys_only_key = lab.gw.issue_key("keys-only", &[]);
    let lab = lab.serve();
    let token = TestKey::hmac(Algorithm::HS256, &secret).sign(&claims("a"));

    let a = lab
        .gw
        .get_as("jwt-only", &jwt_only_key.full, "/wp-json/")
        .await;
    assert_refused(
        &lab.gw,
        &a,
        "method_not_allowed",
        "API key on a jwt-only site",
    )
    .await;
    let a = lab
        .gw
        .send(bearer(&lab.gw, "jwt-only", &jwt_only_key.full, "/wp-json/"))
        .await;
    assert_refused(
        &lab.gw,
        &a,
        "method_not_allowed",
        "bearer API key on a jwt-only site",
    )
    .await;
    accepted(&lab, "jwt-only", &token, "cred-jwt-only").await;

    refused(
        &lab,
        "keys-only",
        &token,
        "method_not_allowed",
        "JWT on an api_key-only site",
    )
    .await;
    lab.gw
        .get_as("keys-only", &keys_only_key.full, "/wp-json/")
        .await
        .assert_ok();
}

// ---------------------------------------------------------------------------------
// Failure rate limit
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn brute_force_from_one_client_is_rate_limited() {
    let lab = Lab::prepare_with(GatewayConfig {
        extra_toml: "[auth]\nmax_failures = 5\nfailure_window = \"1m\"\n".into(),
        proxy_toml: "trusted_proxies = [\"127.0.0.1\"]".into(),
        ..GatewayConfig::default()
    });
    let secret = hmac_secret();
    let cred = lab.hs256_site("blog", &secret, &[]);
    let lab = lab.serve();
    let key = TestKey::hmac(Algorithm::HS256, &secret);
    let good = key.sign(&claims("a"));
    let forged = TestKey::hmac(Algorithm::HS256, &hmac_secret()).sign(&claims("admin"));
    let attacker = "203.0.113.7";
    let other = "198.51.100.9";
    let from = |ip: &str, token: &str, site: &str| {
        bearer(&lab.gw, site, token, "/wp-json/wp/v2/posts").header("X-Forwarded-For", ip)
    };

    for i in 0..5 {
        let a = lab.gw.send(from(attacker, &forged, "blog")).await;
        assert_refused(
            &lab.gw,
            &a,
            "bad_signature",
            &format!("forged token #{}", i + 1),
        )
        .await;
    }
    // Over the limit: 429, even with a good token, even for an unknown site.
    for (token, site) in [(&forged, "blog"), (&good, "blog"), (&good, "no-such-site")] {
        let a = lab.gw.send(from(attacker, token, site)).await;
        a.assert_error(429, "auth.rate_limited");
        let retry: u64 = a
            .header("retry-after")
            .unwrap_or_else(|| panic!("429 without Retry-After: {}", a.summary()))
            .parse()
            .unwrap_or_else(|_| {
                panic!("Retry-After is not seconds: {:?}", a.header("retry-after"))
            });
        assert!(
            (1..=60).contains(&retry),
            "Retry-After {retry} outside 1..=60"
        );
        assert_eq!(lab.gw.logged_reason(&a).await, "rate_limited");
    }
    let before = lab.up.requests().len();
    assert_eq!(before, 0, "the attacker got through");

    // Another client is unaffected: its good token works, its bad one is a plain 401.
    let m = marker();
    let a = lab
        .gw
        .send(
            bearer(&lab.gw, "blog", &good, &format!("/wp-json/wp/v2/posts?{m}"))
                .header("X-Forwarded-For", other),
        )
        .await;
    assert_eq!(a.status, 200, "another client was blocked: {}", a.summary());
    check_forwarded(&lab.up, &m, &good, &cred);
    let a = lab.gw.send(from(other, &forged, "blog")).await;
    assert_refused(
        &lab.gw,
        &a,
        "bad_signature",
        "one failure from another client",
    )
    .await;
    // And so is the proxy's own address.
    lab.gw
        .send(bearer(&lab.gw, "blog", &good, "/wp-json/"))
        .await
        .assert_ok();
}

// ---------------------------------------------------------------------------------
// Claim headers
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn claims_are_mapped_to_headers_and_cannot_be_spoofed() {
    let lab = Lab::prepare(AUTH_TOML);
    let secret = hmac_secret();
    let cred = lab.site(
        "blog",
        &[
            "--methods",
            "api_key,jwt",
            "--jwt-alg",
            "HS256",
            "--jwt-claim-header",
            "sub=X-Auth-Subject",
            "--jwt-claim-header",
            "email=X-Auth-Email",
        ],
        Some(&secret),
    );
    let api_key = lab.gw.issue_key("blog", &[]);
    let lab = lab.serve();
    let key = TestKey::hmac(Algorithm::HS256, &secret);
    let t = now();

    // Mapped, and the client's own copies are dropped.
    let token = key.sign(&json!({
        "sub": "alice", "email": "alice@example.test", "iat": t, "exp": t + 600
    }));
    // Sends a JWT request that also carries its own claim headers; its marker.
    let gw = &lab.gw;
    let spoofing = |token: &str, email_header: &str| {
        let m = marker();
        let req = bearer(gw, "blog", token, &format!("/wp-json/?{m}"))
            .header("X-Auth-Subject", "admin")
            .header(email_header, "root@example.test");
        async move {
            gw.send(req).await.assert_ok();
            m
        }
    };
    let m = spoofing(&token, "x-auth-email").await;
    check_forwarded(&lab.up, &m, &token, &cred);
    let r = lab.up.one_with(&m);
    assert_eq!(r.header_values("x-auth-subject"), vec!["alice"], "{r:#?}");
    assert_eq!(
        r.header_values("x-auth-email"),
        vec!["alice@example.test"],
        "{r:#?}"
    );

    // A token without those claims: no header at all, spoofed or not.
    let bare = key.sign(&json!({"iat": t, "exp": t + 600}));
    let m = spoofing(&bare, "X-Auth-Email").await;
    let r = lab.up.one_with(&m);
    assert!(r.header("x-auth-subject").is_none(), "{r:#?}");
    assert!(r.header("x-auth-email").is_none(), "{r:#?}");

    // An API-key request to the same site cannot set them either.
    let m = marker();
    lab.gw
        .send(
            lab.gw
                .get(&format!("/wp-json/?{m}"))
                .header(SITE_HEADER, "blog")
                .header(KEY_HEADER, &api_key.full)
                .header("X-Auth-Subject", "admin"),
        )
        .await
        .assert_ok();
    let r = lab.up.one_with(&m);
    assert!(r.header("x-auth-subject").is_none(), "{r:#?}");
}

// ---------------------------------------------------------------------------------
// Delegated verification (the site's WordPress checks its own tokens)
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn wordpress_verifies_its_own_tokens_and_outcomes_are_cached() {
    let wp = WpMimic::start();
    let gw = Gateway::prepare(GatewayConfig {
        extra_toml: AUTH_TOML.into(),
        ..GatewayConfig::default()
    });
    let site_cred = format!("wp-app-{}", random_string(20));
    gw.add_site("wp", &wp.url(), &SiteAuth::bearer(&site_cred));
    set_auth(
        &gw,
        "wp",
        &[
            "--methods",
            "jwt",
            "--jwt-verify",
            "wordpress",
            "--jwt-claim-header",
            "sub=X-Auth-Subject",
            // The site credential for administrators (acting as the user is the
            // default: see hardening_delegated).
            "--jwt-act-as",
            "site",
            "--jwt-require-role",
            "administrator",
        ],
        None,
    )
    .assert_success();
    let mut gw = gw;
    gw.serve();

    // Tokens WordPress issued (signed with a secret only WordPress knows).
    let wp_secret = hmac_secret();
    let wp_key = TestKey::hmac(Algorithm::HS256, &wp_secret);
    let token = wp_key.sign(&claims("wp-user"));
    let unknown = wp_key.sign(&claims("someone-else"));
    wp.accept_user(&token, 7, "alice", &["administrator"]);

    let m = marker();
    let a = gw
        .send(
            bearer(&gw, "wp", &token, &format!("/wp-json/wp/v2/posts?{m}"))
                .header("X-Auth-Subject", "1"),
        )
        .await;
    assert_eq!(
        a.status,
        200,
        "WordPress accepted the token: {}",
        a.summary()
    );
    assert_eq!(
        wp.users_me_calls(),
        vec![format!("Bearer {token}")],
        "one users/me call with the client's token"
    );
    let r = wp.one_with(&m);
    assert_eq!(
        r.header_values("authorization"),
        vec![format!("Bearer {site_cred}").as_str()],
        "{r:#?}"
    );
    assert_eq!(r.header_values("x-auth-subject"), vec!["7"], "{r:#?}");
    for (name, value) in &r.headers {
        assert!(!value.contains(&token), "client token forwarded in {name}");
    }

    // Cached: no second call.
    let m = marker();
    gw.send(bearer(
        &gw,
        "wp",
        &token,
        &format!("/wp-json/wp/v2/posts?{m}"),
    ))
    .await
    .assert_ok();
    assert_eq!(wp.users_me_calls().len(), 1, "the success was not cached");
    assert_eq!(wp.one_with(&m).header_values("x-auth-subject"), vec!["7"]);

    // A token WordPress refuses is refused, and the refusal is cached too.
    let before = wp.requests().len();
    let a = gw
        .send(bearer(&gw, "wp", &unknown, "/wp-json/wp/v2/posts"))
        .await;
    a.assert_error(401, "auth.invalid_credentials");
    assert_eq!(wp.users_me_calls().len(), 2);
    assert_eq!(
        wp.users_me_calls()[1],
        format!("Bearer {unknown}"),
        "users/me was asked about the refused token"
    );
    let a = gw
        .send(bearer(&gw, "wp", &unknown, "/wp-json/wp/v2/posts"))
        .await;
    a.assert_error(401, "auth.invalid_credentials");
    assert_eq!(wp.users_me_calls().len(), 2, "the refusal was not cached");
    assert_eq!(wp.requests().len(), before, "a refused token was proxied");
}

#[tokio::test]
async fn delegated_site_unreachable_is_503() {
    let gw = Gateway::prepare(GatewayConfig {
        extra_toml: AUTH_TOML.into(),
        ..GatewayConfig::default()
    });
    let closed = format!("http://127.0.0.1:{}", crate::harness::free_port());
    gw.add_site("wp-down", &closed, &SiteAuth::bearer("cred"));
    set_auth(
        &gw,
        "wp-down",
        &["--methods", "jwt", "--jwt-verify", "wordpress"],
        None,
    )
    .assert_success();
    let mut gw = gw;
    gw.serve();
    let token = TestKey::hmac(Algorithm::HS256, &hmac_secret()).sign(&claims("a"));
    let a = gw.send(bearer(&gw, "wp-down", &token, "/wp-json/")).await;
    a.assert_error(503, "auth.verifier_unavailable");
    assert_eq!(gw.logged_reason(&a).await, "verifier_unavailable");
}

// ---------------------------------------------------------------------------------
// Policy validation
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn set_auth_refuses_invalid_policies() {
    let lab = Lab::prepare(AUTH_TOML);
    let secret = hmac_secret();
    let cred = lab.hs256_site("blog", &secret, &[]);
    lab.gw.add_site("fresh", &lab.up.url(), &SiteAuth::None);
    let rsa_pem = lab.pem_file("rsa.pem", RSA_PUBLIC_PEM);
    let jwks = "http://127.0.0.1:9/jwks.json";
    let lab = lab.serve();
    let token = TestKey::hmac(Algorithm::HS256, &secret).sign(&claims("a"));
    accepted(&lab, "blog", &token, &cred).await;

    let pem = ["--jwt-public-key-file", rsa_pem.as_str()];
    let cases: Vec<(&str, &str, Vec<&str>, Option<&str>)> = vec![
        (
            "HS256 without a secret",
            "fresh",
            jwt_policy("HS256", &[]),
            None,
        ),
        (
            "a JWKS URL and a public key file",
            "blog",
            jwt_policy("RS256", &[&["--jwt-jwks-url", jwks][..], &pem].concat()),
            None,
        ),
        (
            "a secret shorter than 32 bytes",
            "blog",
            jwt_policy("HS256", &[]),
            Some("only-16-bytes-xx"),
        ),
        (
            "HS256 beside a public key",
            "blog",
            jwt_policy("RS256,HS256", &pem),
            None,
        ),
        (
            "RS256 with no key at all",
            "blog",
            jwt_policy("RS256", &[]),
            None,
        ),
        ("alg none", "blog", jwt_policy("none", &pem), None),
        (
            "no algorithm",
            "blog",
            vec!["--methods", "jwt", "--jwt-jwks-url", jwks],
            None,
        ),
        (
            "a claim copied into Authorization",
            "blog",
            jwt_policy(
                "RS256",
                &[&pem[..], &["--jwt-claim-header", "sub=Authorization"]].concat(),
            ),
            None,
        ),
        (
            "an unknown method",
            "blog",
            vec!["--methods", "password"],
            None,
        ),
    ];
    for (what, site, args, secret) in &cases {
        let out = set_auth(&lab.gw, site, args, *secret);
        assert!(
            !out.success(),
            "`site set-auth` accepted {what}:\nstdout:\n{}\nstderr:\n{}",
            out.stdout,
            out.stderr
        );
        assert!(
            !out.stderr.trim().is_empty(),
            "`site set-auth` refused {what} without a message"
        );
        assert!(
            !out.stderr.contains("panicked"),
            "`site set-auth` panicked on {what}:\n{}",
            out.stderr
        );
    }

    // Nothing changed: the stored policy is the old one and the old token still works
    // once any cached copy has expired (cache ttl 1 s).
    let shown = lab.gw.cli_json(&["site", "show", "blog"]);
    shown.assert_success();
    let shown = shown.json();
    assert_eq!(shown["auth"]["methods"], json!(["jwt"]), "{shown}");
    assert_eq!(
        shown["auth"]["jwt"]["algorithms"],
        json!(["HS256"]),
        "{shown}"
    );
    let fresh = lab.gw.cli_json(&["site", "show", "fresh"]).json();
    assert_eq!(fresh["auth"]["methods"], json!(["api_key"]), "{fresh}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    accepted(&lab, "blog", &token, &cred).await;
}
