//! Key material: public keys in the form `ring` verifies with (from PEM or from a JWK),
//! a site's keyed HMAC states, which algorithm fits which key, and the signature check.

use crate::auth::AuthFailure;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::{DecodeSliceError, Engine};
use hmac::{Hmac, Mac};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve};
use jsonwebtoken::{Algorithm, DecodingKey};
use ring::signature::{self as ring_sig, RsaPublicKeyComponents, UnparsedPublicKey};
use sha2::{Sha256, Sha384, Sha512};
use std::fmt;

/// The longest signature any accepted key makes (RSA-8192).
const MAX_SIGNATURE_BYTES: usize = 1024;
/// RSA moduli `ring` verifies with, in bits.
const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

/// The shape of an asymmetric public key: which algorithms it can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyShape {
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

impl KeyShape {
    pub(super) fn fits(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        matches!(
            (self, alg),
            (KeyShape::Rsa, RS256 | RS384 | RS512 | PS256 | PS384 | PS512)
                | (KeyShape::EcP256, ES256)
                | (KeyShape::EcP384, ES384)
                | (KeyShape::Ed25519, EdDSA)
        )
    }
}

/// A public key in the form `ring` verifies with, converted once when a site's PEM keys
/// or a JWKS are loaded (never per request).
pub struct VerifyingKey(KeyMaterial);

enum KeyMaterial {
    /// Modulus and exponent, big-endian without leading zeros.
    Rsa(RsaPublicKeyComponents<Vec<u8>>),
    /// Uncompressed SEC1 point: `04 || x || y`.
    EcP256(Vec<u8>),
    EcP384(Vec<u8>),
    /// The 32-byte public key.
    Ed25519(Vec<u8>),
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            KeyMaterial::Rsa(k) => write!(f, "VerifyingKey(RSA-{})", bit_len(&k.n)),
            _ => write!(f, "VerifyingKey({:?})", self.shape()),
        }
    }
}

impl VerifyingKey {
    /// An RSA key from its modulus and exponent (big-endian). `ring` verifies moduli of
    /// 2048 to 8192 bits and odd exponents from 3 to 2^33 - 1: anything else is refused
    /// here rather than failing every token later.
    pub(super) fn rsa(n: &[u8], e: &[u8]) -> Result<Self, &'static str> {
        let n = strip_leading_zeros(n);
        let e = strip_leading_zeros(e);
        if !RSA_BITS.contains(&bit_len(n)) {
            return Err("is an RSA key outside 2048 to 8192 bits");
        }
        let exponent = match e.len() {
            0..=5 => e.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)),
            _ => u64::MAX,
        };
        if !(3..(1u64 << 33)).contains(&exponent) || exponent % 2 == 0 {
            return Err("has an RSA public exponent that is not odd and between 3 and 2^33");
        }
        Ok(Self(KeyMaterial::Rsa(RsaPublicKeyComponents {
            n: n.to_vec(),
            e: e.to_vec(),
        })))
    }

    /// An RSA key from a DER `RSAPublicKey` (PKCS #1).
    pub(super) fn rsa_der(der: &[u8]) -> Result<Self, &'static str> {
        let key =
            pkcs1::RsaPublicKey::try_from(der).map_err(|_| "is not a valid RSA public key")?;
        Self::rsa(key.modulus.as_bytes(), key.public_exponent.as_bytes())
    }

    /// An EC key from a SEC1 point; its length tells the curve.
    pub(super) fn ec_point(point: &[u8]) -> Result<Self, &'static str> {
        match (point.first(), point.len()) {
            (Some(4), 65) => Ok(Self(KeyMaterial::EcP256(point.to_vec()))),
            (Some(4), 97) => Ok(Self(KeyMaterial::EcP384(point.to_vec()))),
            (Some(2 | 3), 33 | 49) => {
                Err("is an EC key with a compressed point: give it with an uncompressed point")
            }
            _ => Err("is an EC key on an unsupported curve (only P-256 and P-384)"),
        }
    }

    /// An EC key from its JWK coordinates (each exactly the curve's field size).
    pub(super) fn ec_coordinates(
        shape: KeyShape,
        x: &[u8],
        y: &[u8],
    ) -> Result<Self, &'static str> {
        let size = match shape {
            KeyShape::EcP256 => 32,
            KeyShape::EcP384 => 48,
            KeyShape::Rsa | KeyShape::Ed25519 => return Err("is not an EC key"),
        };
        if x.len() != size || y.len() != size {
            return Err("its x and y do not fit its curve");
        }
        let mut point = Vec::with_capacity(1 + 2 * size);
        point.push(4);
        point.extend_from_slice(x);
        point.extend_from_slice(y);
        Self::ec_point(&point)
    }

    /// An Ed25519 key from its 32 bytes.
    pub(super) fn ed25519(x: &[u8]) -> Result<Self, &'static str> {
        if x.len() != ring_sig::ED25519_PUBLIC_KEY_LEN {
            return Err("is an Edwards key that is not Ed25519");
        }
        Ok(Self(KeyMaterial::Ed25519(x.to_vec())))
    }

    pub(super) fn shape(&self) -> KeyShape {
        match &self.0 {
            KeyMaterial::Rsa(_) => KeyShape::Rsa,
            KeyMaterial::EcP256(_) => KeyShape::EcP256,
            KeyMaterial::EcP384(_) => KeyShape::EcP384,
            KeyMaterial::Ed25519(_) => KeyShape::Ed25519,
        }
    }

    /// Whether `signature` is `alg`'s signature of `message` under this key. An
    /// algorithm that does not fit the key never verifies.
    pub(super) fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        use Algorithm::*;
        let rsa =
            |k: &RsaPublicKeyComponents<Vec<u8>>, params| k.verify(params, message, signature);
        let unparsed = |params: &'static dyn ring_sig::VerificationAlgorithm, key: &[u8]| {
            UnparsedPublicKey::new(params, key).verify(message, signature)
        };
        let result = match (&self.0, alg) {
            (KeyMaterial::Rsa(k), RS256) => rsa(k, &ring_sig::RSA_PKCS1_2048_8192_SHA256),
            (KeyMaterial::Rsa(k), RS384) => rsa(k, &ring_sig::RSA_PKCS1_2048_8192_SHA384),
            (KeyMaterial::Rsa(k), RS512) => rsa(k, &ring_sig::RSA_PKCS1_2048_8192_SHA512),
            (KeyMaterial::Rsa(k), PS256) => rsa(k, &ring_sig::RSA_PSS_2048_8192_SHA256),
            (KeyMaterial::Rsa(k), PS384) => rsa(k, &ring_sig::RSA_PSS_2048_8192_SHA384),
            (KeyMaterial::Rsa(k), PS512) => rsa(k, &ring_sig::RSA_PSS_2048_8192_SHA512),
            (KeyMaterial::EcP256(p), ES256) => unparsed(&ring_sig::ECDSA_P256_SHA256_FIXED, p),
            (KeyMaterial::EcP384(p), ES384) => unparsed(&ring_sig::ECDSA_P384_SHA384_FIXED, p),
            (KeyMaterial::Ed25519(x), EdDSA) => unparsed(&ring_sig::ED25519, x),
            _ => return false,
        };
        result.is_ok()
    }
}

fn strip_leading_zeros(mut b: &[u8]) -> &[u8] {
    while let [0, rest @ ..] = b {
        b = rest;
    }
    b
}

/// Bits in a big-endian number without leading zero bytes.
fn bit_len(b: &[u8]) -> usize {
    match b.first() {
        None => 0,
        Some(&top) => (b.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
    }
}

/// A site's HMAC secret, keyed once per hash; a request clones the keyed state.
pub(super) struct HmacKeys {
    hs256: Hmac<Sha256>,
    hs384: Hmac<Sha384>,
    hs512: Hmac<Sha512>,
}

impl HmacKeys {
    pub(super) fn new(secret: &[u8]) -> Option<Self> {
        Some(Self {
            hs256: Mac::new_from_slice(secret).ok()?,
            hs384: Mac::new_from_slice(secret).ok()?,
            hs512: Mac::new_from_slice(secret).ok()?,
        })
    }

    /// Constant-time check of `signature` against `alg`'s MAC of `message`.
    pub(super) fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        fn check<M: Mac + Clone>(keyed: &M, message: &[u8], signature: &[u8]) -> bool {
            let mut mac = keyed.clone();
            mac.update(message);
            mac.verify_slice(signature).is_ok()
        }
        match alg {
            Algorithm::HS256 => check(&self.hs256, message, signature),
            Algorithm::HS384 => check(&self.hs384, message, signature),
            Algorithm::HS512 => check(&self.hs512, message, signature),
            _ => false,
        }
    }
}

/// Parses one PEM public key (RSA, EC P-256/P-384 or Ed25519) into the form `ring` uses.
pub(super) fn parse_public_pem(pem: &str) -> Result<VerifyingKey, &'static str> {
    let blocks: Vec<&str> = pem
        .match_indices("-----BEGIN ")
        .map(|(i, _)| {
            let label = &pem[i + "-----BEGIN ".len()..];
            label.split("-----").next().unwrap_or("")
        })
        .collect();
    match blocks.as_slice() {
        [] => return Err("is not PEM text (no -----BEGIN line)"),
        [label] if label.contains("PRIVATE") => {
            return Err("is a private key: give the public key (-----BEGIN PUBLIC KEY-----)")
        }
        [label] if *label != "PUBLIC KEY" && *label != "RSA PUBLIC KEY" => {
            return Err("is not a public key: expected -----BEGIN PUBLIC KEY-----")
        }
        [_] => {}
        _ => return Err("holds several PEM blocks: give one key per entry"),
    }
    // jsonwebtoken unwraps the PEM and the SubjectPublicKeyInfo; ring gets the key.
    let bytes = pem.as_bytes();
    if let Ok(key) = DecodingKey::from_rsa_pem(bytes) {
        return VerifyingKey::rsa_der(key.as_bytes());
    }
    if let Ok(key) = DecodingKey::from_ec_pem(bytes) {
        return VerifyingKey::ec_point(key.as_bytes());
    }
    if let Ok(key) = DecodingKey::from_ed_pem(bytes) {
        return VerifyingKey::ed25519(key.as_bytes());
    }
    Err("is not an RSA, EC (P-256/P-384) or Ed25519 public key")
}

/// Decodes the signature segment and asks `verifies` about it. Bad base64 is
/// `Malformed`; a signature longer than any accepted key makes cannot verify.
pub(super) fn check_signature(
    signature_b64: &str,
    verifies: impl FnOnce(&[u8]) -> bool,
) -> Result<(), AuthFailure> {
    // Room for base64's decoded-length estimate of the longest signature (rounded up).
    let mut buf = [0u8; MAX_SIGNATURE_BYTES + 3];
    let len = match URL_SAFE_NO_PAD.decode_slice(signature_b64, &mut buf) {
        Ok(len) => len,
        Err(DecodeSliceError::OutputSliceTooSmall) => return Err(AuthFailure::BadSignature),
        Err(DecodeSliceError::DecodeError(_)) => return Err(AuthFailure::Malformed),
    };
    match buf.get(..len) {
        Some(signature) if len <= MAX_SIGNATURE_BYTES && verifies(signature) => Ok(()),
        _ => Err(AuthFailure::BadSignature),
    }
}

/// A JWK's public key in the form ring verifies with (RSA `n`/`e`, EC `x`/`y`, OKP `x`).
pub(super) fn verifying_key(params: &AlgorithmParameters) -> Result<VerifyingKey, &'static str> {
    let decode = |b64: &str| {
        // base64url without padding (RFC 7515); tolerate padding some issuers add.
        URL_SAFE_NO_PAD
            .decode(b64.trim_end_matches('='))
            .map_err(|_| "its key parameters do not decode")
    };
    match params {
        AlgorithmParameters::RSA(p) => VerifyingKey::rsa(&decode(&p.n)?, &decode(&p.e)?),
        AlgorithmParameters::EllipticCurve(p) => {
            let shape = match p.curve {
                EllipticCurve::P256 => KeyShape::EcP256,
                EllipticCurve::P384 => KeyShape::EcP384,
                _ => return Err("unsupported EC curve"),
            };
            VerifyingKey::ec_coordinates(shape, &decode(&p.x)?, &decode(&p.y)?)
        }
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => VerifyingKey::ed25519(&decode(&p.x)?),
            _ => Err("unsupported OKP curve"),
        },
        AlgorithmParameters::OctetKey(_) => Err("symmetric keys are never used"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_ring_cannot_use_are_refused_when_loaded() {
        let ok = |r: Result<VerifyingKey, &'static str>| r.unwrap();
        let n2048 = [&[0x80u8][..], &[0x11; 255]].concat();
        ok(VerifyingKey::rsa(&n2048, &[1, 0, 1]));
        // Leading zeros do not count.
        let padded = [&[0u8, 0][..], &n2048].concat();
        ok(VerifyingKey::rsa(&padded, &[0, 1, 0, 1]));
        let too_short = [0x7fu8; 256];
        assert!(VerifyingKey::rsa(&too_short, &[1, 0, 1])
            .unwrap_err()
            .contains("2048 to 8192"));
        assert!(VerifyingKey::rsa(&[0xff; 1025], &[3]).is_err());
        for e in [&[][..], &[1], &[2], &[1, 0, 0], &[2, 0, 0, 0, 1], &[1; 6]] {
            assert!(
                VerifyingKey::rsa(&n2048, e)
                    .unwrap_err()
                    .contains("exponent"),
                "{e:?}"
            );
        }
        assert!(VerifyingKey::ec_point(&[2; 33])
            .unwrap_err()
            .contains("compressed"));
        assert!(VerifyingKey::ec_point(&[4; 66]).is_err());
        assert!(VerifyingKey::ec_coordinates(KeyShape::EcP256, &[1; 32], &[1; 31]).is_err());
        assert!(VerifyingKey::ec_coordinates(KeyShape::EcP384, &[1; 32], &[1; 32]).is_err());
        assert!(VerifyingKey::ed25519(&[1; 31]).is_err());
        assert_eq!(
            VerifyingKey::ec_coordinates(KeyShape::EcP384, &[1; 48], &[1; 48])
                .unwrap()
                .shape(),
            KeyShape::EcP384
        );
    }
}
