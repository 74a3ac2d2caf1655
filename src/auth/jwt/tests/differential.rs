//! Our signature checks against jsonwebtoken's own, on valid and tampered tokens.

use super::*;

/// A signature check as a function of (header alg, signed bytes, signature).
type Check<'a> = &'a dyn Fn(Algorithm, &[u8], &[u8]) -> bool;

/// The token variants of the differential test: (what, token, should verify).
fn variants(
    good: &str,
    wrong_key: Option<&str>,
    swapped_algs: &[Algorithm],
) -> Vec<(String, String, bool)> {
    let (hp, s) = good.rsplit_once('.').unwrap();
    let (_, p) = hp.split_once('.').unwrap();
    let mut out = vec![("valid".to_string(), good.to_string(), true)];
    if let Some(token) = wrong_key {
        out.push(("wrong key".to_string(), token.to_string(), false));
    }
    let sig = URL_SAFE_NO_PAD.decode(s).unwrap();
    for (byte, bit) in [(0, 0), (sig.len() / 2, 3), (sig.len() - 1, 7)] {
        let mut flipped = sig.clone();
        flipped[byte] ^= 1 << bit;
        out.push((
            format!("bit {bit} of byte {byte} flipped"),
            format!("{hp}.{}", URL_SAFE_NO_PAD.encode(flipped)),
            false,
        ));
    }
    for alg in swapped_algs {
        let h = b64(&format!(r#"{{"typ":"JWT","alg":"{alg:?}"}}"#));
        out.push((
            format!("alg swapped to {alg:?}"),
            format!("{h}.{p}.{s}"),
            false,
        ));
    }
    out
}

/// Our verifier (the bare keys and the whole `JwtVerifier`) must agree with
/// jsonwebtoken's own RustCrypto check on every variant.
async fn agree(
    family: &str,
    verifier: &JwtVerifier,
    ours: &[Check<'_>],
    reference: &DecodingKey,
    cases: Vec<(String, String, bool)>,
) {
    for (what, token, expected) in cases {
        let alg = jsonwebtoken::decode_header(&token).unwrap().alg;
        let (message, s) = token.rsplit_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(s).unwrap();
        let theirs =
            jsonwebtoken::crypto::verify(s, message.as_bytes(), reference, alg).unwrap_or(false);
        assert_eq!(theirs, expected, "{family}, {what}: jsonwebtoken");
        for (i, check) in ours.iter().enumerate() {
            assert_eq!(
                check(alg, message.as_bytes(), &sig),
                expected,
                "{family}, {what}: our key #{i}"
            );
        }
        match verifier.verify(&token, &jwks(), NOW).await {
            Ok(t) => assert!(expected, "{family}, {what}: accepted {t:?}"),
            Err(e) => {
                assert!(!expected, "{family}, {what}: refused with {e:?}");
                assert!(
                    matches!(e, AuthFailure::BadSignature | AuthFailure::AlgNotAllowed),
                    "{family}, {what}: {e:?}"
                );
            }
        }
    }
}

#[tokio::test]
async fn differential_against_jsonwebtoken() {
    use Algorithm::*;
    let jwk_key = |jwk: &Value| {
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).unwrap();
        verifying_key(&jwk.algorithm).unwrap()
    };

    // HMAC.
    let hmac = HmacKeys::new(SECRET).unwrap();
    let all_hs = vec![HS256, HS384, HS512];
    let v = hmac_verifier(all_hs.clone());
    let other = EncodingKey::from_secret(b"another-secret-another-secret-xx");
    for &alg in &all_hs {
        let good = hs(alg, &claims());
        let wrong = sign_with(alg, &other, &claims(), None);
        let swapped: Vec<_> = [HS256, HS384, HS512, RS256, ES256]
            .into_iter()
            .filter(|&a| a != alg)
            .collect();
        let ours = |a, m: &[u8], s: &[u8]| hmac.verify(a, m, s);
        agree(
            &format!("{alg:?}"),
            &v,
            &[&ours],
            &DecodingKey::from_secret(SECRET),
            variants(&good, Some(&wrong), &swapped),
        )
        .await;
    }

    // RSA: the PEM fixture and its JWK; the wrong key is the same modulus with one
    // bit changed (still odd, still 2048 bits).
    let all_rsa = vec![RS256, RS384, RS512, PS256, PS384, PS512];
    let v = JwtVerifier::new(settings(
        all_rsa.clone(),
        JwtKeys::PublicPems(vec![RSA_PUBLIC_PEM.to_string()]),
    ))
    .unwrap();
    let from_pem = parse_public_pem(RSA_PUBLIC_PEM).unwrap();
    let rsa = TestKey::rsa(RS256);
    let from_jwk = jwk_key(&rsa.jwk);
    let n = URL_SAFE_NO_PAD
        .decode(rsa.jwk["n"].as_str().unwrap())
        .unwrap();
    let e = URL_SAFE_NO_PAD
        .decode(rsa.jwk["e"].as_str().unwrap())
        .unwrap();
    let mut other_n = n.clone();
    other_n[100] ^= 0x10;
    let wrong_ours = VerifyingKey::rsa(&other_n, &e).unwrap();
    let wrong_theirs = DecodingKey::from_rsa_raw_components(&other_n, &e);
    let reference = DecodingKey::from_rsa_pem(RSA_PUBLIC_PEM.as_bytes()).unwrap();
    for &alg in &all_rsa {
        let good = TestKey::rsa(alg).sign(&claims(), None);
        let swapped = all_but(
            &[RS256, RS384, RS512, PS256, PS384, PS512, HS256, ES256],
            alg,
        );
        // One RSA fixture: the wrong key is checked below, on the key side.
        let cases = variants(&good, None, &swapped);
        agree_pem_and_jwk(alg, &v, [&from_pem, &from_jwk], &reference, cases).await;
        let (message, s) = good.rsplit_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(s).unwrap();
        assert!(!wrong_ours.verify(alg, message.as_bytes(), &sig), "{alg:?}");
        assert!(
            !jsonwebtoken::crypto::verify(s, message.as_bytes(), &wrong_theirs, alg)
                .unwrap_or(false),
            "{alg:?}"
        );
        assert!(from_pem.verify(alg, message.as_bytes(), &sig), "{alg:?}");
    }

    // EC and Ed25519: fresh keys, PEM and JWK forms of each.
    for alg in [ES256, ES384, EdDSA] {
        let key = match alg {
            EdDSA => TestKey::ed(),
            ec => TestKey::ec(ec),
        };
        let stranger = match alg {
            EdDSA => TestKey::ed(),
            ec => TestKey::ec(ec),
        };
        let v = JwtVerifier::new(settings(
            vec![alg],
            JwtKeys::PublicPems(vec![key.public_pem.clone()]),
        ))
        .unwrap();
        let from_pem = parse_public_pem(&key.public_pem).unwrap();
        let from_jwk = jwk_key(&key.jwk);
        let reference = match alg {
            EdDSA => DecodingKey::from_ed_pem(key.public_pem.as_bytes()).unwrap(),
            _ => DecodingKey::from_ec_pem(key.public_pem.as_bytes()).unwrap(),
        };
        let swapped = all_but(&[ES256, ES384, EdDSA, RS256, HS256], alg);
        let cases = variants(
            &key.sign(&claims(), None),
            Some(&stranger.sign(&claims(), None)),
            &swapped,
        );
        agree_pem_and_jwk(alg, &v, [&from_pem, &from_jwk], &reference, cases).await;
    }
}

/// `algs` without `alg`: the algorithms a valid token is re-labelled with.
fn all_but(algs: &[Algorithm], alg: Algorithm) -> Vec<Algorithm> {
    algs.iter().copied().filter(|&a| a != alg).collect()
}

/// [`agree`] for one public key loaded from its PEM and from its JWK.
async fn agree_pem_and_jwk(
    alg: Algorithm,
    verifier: &JwtVerifier,
    [from_pem, from_jwk]: [&VerifyingKey; 2],
    reference: &DecodingKey,
    cases: Vec<(String, String, bool)>,
) {
    let pem = |a, m: &[u8], s: &[u8]| from_pem.verify(a, m, s);
    let jwk = |a, m: &[u8], s: &[u8]| from_jwk.verify(a, m, s);
    agree(
        &format!("{alg:?}"),
        verifier,
        &[&pem, &jwk],
        reference,
        cases,
    )
    .await;
}
