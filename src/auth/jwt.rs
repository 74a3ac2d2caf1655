//! JWT bearer tokens: per-site verification of compact JWS tokens.
//!
//! A site allows a list of algorithms and holds one kind of key: an HMAC secret (HS*),
//! static public keys (PEM), or a JWKS URL. The algorithm must fit the kind of key
//! whatever the token's header says, so an HMAC token "signed" with a public key is
//! refused before any crypto runs (algorithm confusion), and `alg: none` never
//! matches anything. Signatures are checked by `ring` (RSA, ECDSA, Ed25519) and by
//! `hmac` (HS*, compared in constant time), with keys prepared once when the site or
//! the JWKS is loaded; the claim rules below are ours, explicit and tested:
//!
//! - `exp` is required (a missing or non-numeric `exp` is `Malformed`) and a token is
//!   `Expired` once `now >= exp + leeway`;
//! - `nbf` and `iat`, when present, must not be later than `now + leeway`
//!   (`NotYetValid`);
//! - `iss` must equal the site's issuer when one is set (`WrongIssuer`);
//! - when the site lists audiences, `aud` (a string or an array) must contain one of
//!   them (`WrongAudience`); when it lists none, `aud` is not checked;
//! - with a lifetime cap, `exp - iat` (or `exp - now` without `iat`) must not exceed it
//!   (`LifetimeExceeded`).
//!
//! With several PEM keys, every key whose type fits the token's `alg` is tried (a `kid`
//! is not used); with a JWKS, `kid` picks the key (see [`JwksCache::key`]).
//!
//! The whole token is decoded before the signature is checked (so garbage never costs a
//! JWKS fetch), but no claim is trusted before the signature verifies. The payload is
//! read once, keeping only the registered claims the rules need and the claims the site
//! copies into headers ([`JwtSettings::kept_claims`]).

use super::jwks::{JwksCache, JwksError};
use super::AuthFailure;
use crate::secret::Secret;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::{DecodeSliceError, Engine};
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use ring::signature::{self as ring_sig, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Sha256, Sha384, Sha512};
use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// The shortest HMAC secret a site may use (256 bits).
pub const MIN_HMAC_SECRET_BYTES: usize = 32;
/// The clock leeway a site gets unless it sets its own.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);
/// The longest signature any accepted key makes (RSA-8192).
const MAX_SIGNATURE_BYTES: usize = 1024;
/// RSA moduli `ring` verifies with, in bits.
const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

/// The keys a site verifies its tokens with.
pub enum JwtKeys {
    /// HS256/384/512 shared secret (already opened from the store).
    Hmac(Secret),
    /// One or more PEM public keys (RSA, EC P-256/P-384, Ed25519).
    PublicPems(Vec<String>),
    /// Keys fetched from a JWKS URL through [`JwksCache`].
    Jwks { url: String },
}

impl fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwtKeys::Hmac(_) => f.write_str("Hmac([redacted])"),
            JwtKeys::PublicPems(pems) => write!(f, "PublicPems({} keys)", pems.len()),
            JwtKeys::Jwks { url } => f.debug_struct("Jwks").field("url", url).finish(),
        }
    }
}

/// A site's JWT policy, as configured.
#[derive(Debug)]
pub struct JwtSettings {
    /// The algorithms a token may use (allowlist).
    pub algorithms: Vec<Algorithm>,
    pub keys: JwtKeys,
    /// Required `iss` when set.
    pub issuer: Option<String>,
    /// When non-empty, `aud` (string or array) must contain one of these.
    pub audiences: Vec<String>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat` (see [`DEFAULT_LEEWAY`]).
    pub leeway: Duration,
    /// `exp - iat` (or `exp - now` without `iat`) must not exceed this.
    pub max_lifetime: Option<Duration>,
    /// The claims returned in [`VerifiedToken::claims`] (those the site copies into
    /// headers); every other claim is skipped while the payload is read.
    pub kept_claims: Vec<String>,
}

/// Why a site's JWT settings cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidJwtSettings {
    #[error("the JWT algorithm allowlist is empty: allow at least one algorithm")]
    NoAlgorithms,
    #[error("algorithm {0:?} is HMAC: it needs a shared secret, not public keys or a JWKS URL")]
    HmacAlgWithPublicKeys(Algorithm),
    #[error("algorithm {0:?} needs public keys (PEM or a JWKS URL), not a shared secret")]
    PublicKeyAlgWithSecret(Algorithm),
    #[error("the HMAC secret is {len} bytes; at least {MIN_HMAC_SECRET_BYTES} are required")]
    ShortSecret { len: usize },
    #[error("no public keys given: add at least one PEM public key")]
    NoPublicKeys,
    #[error("public key #{index}: {reason}")]
    BadPem { index: usize, reason: &'static str },
    #[error("no configured public key fits algorithm {0:?}")]
    NoKeyForAlg(Algorithm),
    #[error("JWKS URL {url:?}: {reason}")]
    BadJwksUrl { url: String, reason: &'static str },
}

/// The shape of an asymmetric public key: which algorithms it can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyShape {
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

impl KeyShape {
    pub(crate) fn fits(self, alg: Algorithm) -> bool {
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
    pub(crate) fn rsa(n: &[u8], e: &[u8]) -> Result<Self, &'static str> {
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
    fn rsa_der(der: &[u8]) -> Result<Self, &'static str> {
        let key =
            pkcs1::RsaPublicKey::try_from(der).map_err(|_| "is not a valid RSA public key")?;
        Self::rsa(key.modulus.as_bytes(), key.public_exponent.as_bytes())
    }

    /// An EC key from a SEC1 point; its length tells the curve.
    fn ec_point(point: &[u8]) -> Result<Self, &'static str> {
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
    pub(crate) fn ec_coordinates(
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
    pub(crate) fn ed25519(x: &[u8]) -> Result<Self, &'static str> {
        if x.len() != ring_sig::ED25519_PUBLIC_KEY_LEN {
            return Err("is an Edwards key that is not Ed25519");
        }
        Ok(Self(KeyMaterial::Ed25519(x.to_vec())))
    }

    pub(crate) fn shape(&self) -> KeyShape {
        match &self.0 {
            KeyMaterial::Rsa(_) => KeyShape::Rsa,
            KeyMaterial::EcP256(_) => KeyShape::EcP256,
            KeyMaterial::EcP384(_) => KeyShape::EcP384,
            KeyMaterial::Ed25519(_) => KeyShape::Ed25519,
        }
    }

    /// Whether `signature` is `alg`'s signature of `message` under this key. An
    /// algorithm that does not fit the key never verifies.
    pub(crate) fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
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
struct HmacKeys {
    hs256: Hmac<Sha256>,
    hs384: Hmac<Sha384>,
    hs512: Hmac<Sha512>,
}

impl HmacKeys {
    fn new(secret: &[u8]) -> Option<Self> {
        Some(Self {
            hs256: Mac::new_from_slice(secret).ok()?,
            hs384: Mac::new_from_slice(secret).ok()?,
            hs512: Mac::new_from_slice(secret).ok()?,
        })
    }

    /// Constant-time check of `signature` against `alg`'s MAC of `message`.
    fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
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

/// A token that verified: its claims, with `exp` and `sub` pulled out.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    /// The site's [`JwtSettings::kept_claims`] that the token carries (no others).
    pub claims: Map<String, Value>,
    pub exp: u64,
    pub sub: Option<String>,
}

enum Keys {
    /// Boxed: the keyed hash states are large and only HMAC sites carry them.
    Hmac(Box<HmacKeys>),
    Pems(Vec<VerifyingKey>),
    Jwks(String),
}

/// A site's validated JWT policy with its keys prepared. Build once, verify many.
pub struct JwtVerifier {
    algorithms: Vec<Algorithm>,
    keys: Keys,
    issuer: Option<String>,
    audiences: Vec<String>,
    leeway: u64,
    max_lifetime: Option<u64>,
    kept_claims: Vec<String>,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = match &self.keys {
            Keys::Hmac(_) => "hmac([redacted])".to_string(),
            Keys::Pems(k) => format!("{} public keys", k.len()),
            Keys::Jwks(url) => format!("jwks {url}"),
        };
        f.debug_struct("JwtVerifier")
            .field("algorithms", &self.algorithms)
            .field("keys", &keys)
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("leeway", &self.leeway)
            .field("max_lifetime", &self.max_lifetime)
            .field("kept_claims", &self.kept_claims)
            .finish()
    }
}

/// The header fields we act on. `jku`, `x5u`, `jwk` and friends are ignored: keys come
/// only from the site's configuration.
#[derive(Deserialize)]
struct RawHeader<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(borrow, default)]
    kid: Option<Cow<'a, str>>,
    /// We understand no critical extension (RFC 7515 §4.1.11), so any `crit` refuses.
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

impl JwtVerifier {
    /// Validates the settings and prepares the keys.
    pub fn new(settings: JwtSettings) -> Result<Self, InvalidJwtSettings> {
        let JwtSettings {
            mut algorithms,
            keys,
            issuer,
            audiences,
            leeway,
            max_lifetime,
            mut kept_claims,
        } = settings;
        algorithms.dedup();
        if algorithms.is_empty() {
            return Err(InvalidJwtSettings::NoAlgorithms);
        }
        kept_claims.sort();
        kept_claims.dedup();
        let keys = match keys {
            JwtKeys::Hmac(secret) => {
                if let Some(&alg) = algorithms
                    .iter()
                    .find(|a| a.family() != AlgorithmFamily::Hmac)
                {
                    return Err(InvalidJwtSettings::PublicKeyAlgWithSecret(alg));
                }
                let len = secret.expose().len();
                if len < MIN_HMAC_SECRET_BYTES {
                    return Err(InvalidJwtSettings::ShortSecret { len });
                }
                // HMAC takes keys of any length: this cannot fail.
                Keys::Hmac(Box::new(
                    HmacKeys::new(secret.expose())
                        .ok_or(InvalidJwtSettings::ShortSecret { len })?,
                ))
            }
            JwtKeys::PublicPems(pems) => {
                refuse_hmac_algs(&algorithms)?;
                if pems.is_empty() {
                    return Err(InvalidJwtSettings::NoPublicKeys);
                }
                let keys = pems
                    .iter()
                    .enumerate()
                    .map(|(i, pem)| {
                        parse_public_pem(pem).map_err(|reason| InvalidJwtSettings::BadPem {
                            index: i + 1,
                            reason,
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if let Some(&alg) = algorithms
                    .iter()
                    .find(|&&a| !keys.iter().any(|k| k.shape().fits(a)))
                {
                    return Err(InvalidJwtSettings::NoKeyForAlg(alg));
                }
                Keys::Pems(keys)
            }
            JwtKeys::Jwks { url } => {
                refuse_hmac_algs(&algorithms)?;
                match url::Url::parse(&url) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                    Ok(_) => {
                        return Err(InvalidJwtSettings::BadJwksUrl {
                            url,
                            reason: "must be an http:// or https:// URL with a host",
                        })
                    }
                    Err(_) => {
                        return Err(InvalidJwtSettings::BadJwksUrl {
                            url,
                            reason: "is not a valid URL",
                        })
                    }
                }
                Keys::Jwks(url)
            }
        };
        Ok(Self {
            algorithms,
            keys,
            issuer,
            audiences,
            leeway: leeway.as_secs(),
            max_lifetime: max_lifetime.map(|d| d.as_secs()),
            kept_claims,
        })
    }

    /// Verifies a compact JWS. `now` is Unix seconds.
    pub async fn verify(
        &self,
        token: &str,
        jwks: &JwksCache,
        now: u64,
    ) -> Result<VerifiedToken, AuthFailure> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthFailure::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthFailure::Malformed);
        };
        let header_json = b64_segment(header_b64)?;
        let header: RawHeader<'_> =
            serde_json::from_slice(&header_json).map_err(|_| AuthFailure::Malformed)?;
        // The algorithm is judged before anything else about the token, so `none`
        // (which usually comes with an empty signature) is named for what it is.
        let alg = self.allowed_alg(&header.alg)?;
        if header.crit.is_some() {
            return Err(AuthFailure::Malformed);
        }
        if !is_b64url_segment(signature_b64) {
            return Err(AuthFailure::Malformed);
        }
        let claims = self.read_claims(payload_b64)?;
        // header '.' payload: the signed bytes, borrowed from the token.
        let message = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];

        match &self.keys {
            Keys::Hmac(keys) => {
                check_signature(signature_b64, |sig| keys.verify(alg, message, sig))?
            }
            Keys::Pems(keys) => check_signature(signature_b64, |sig| {
                keys.iter()
                    .filter(|k| k.shape().fits(alg))
                    .any(|k| k.verify(alg, message, sig))
            })?,
            Keys::Jwks(url) => {
                let key = jwks
                    .key(url, header.kid.as_deref(), alg)
                    .await
                    .map_err(|e| match e {
                        JwksError::Unavailable(_) => AuthFailure::JwksUnavailable,
                        JwksError::UnknownKid => AuthFailure::BadSignature,
                    })?;
                check_signature(signature_b64, |sig| key.verify(alg, message, sig))?;
            }
        }
        self.check_claims(claims, now)
    }

    /// The token's algorithm if the site allows it and it fits the site's key kind.
    fn allowed_alg(&self, name: &str) -> Result<Algorithm, AuthFailure> {
        if name.eq_ignore_ascii_case("none") {
            return Err(AuthFailure::AlgNotAllowed);
        }
        let alg = Algorithm::from_str(name).map_err(|_| AuthFailure::AlgNotAllowed)?;
        if !self.algorithms.contains(&alg) {
            return Err(AuthFailure::AlgNotAllowed);
        }
        // `new` already guarantees this; checked again so that no future change to the
        // settings path can let an HMAC token meet a public key (or the reverse).
        let fits = match &self.keys {
            Keys::Hmac(_) => alg.family() == AlgorithmFamily::Hmac,
            Keys::Pems(_) | Keys::Jwks(_) => alg.family() != AlgorithmFamily::Hmac,
        };
        if !fits {
            return Err(AuthFailure::AlgNotAllowed);
        }
        Ok(alg)
    }

    /// One base64 decode and one pass over the JSON: a payload that is not a JSON object
    /// is `Malformed`; claims are only judged later, by [`Self::check_claims`].
    fn read_claims(&self, payload_b64: &str) -> Result<Claims, AuthFailure> {
        let payload = b64_segment(payload_b64)?;
        let mut de = serde_json::Deserializer::from_slice(&payload);
        let claims = ClaimsSeed(&self.kept_claims)
            .deserialize(&mut de)
            .map_err(|_| AuthFailure::Malformed)?;
        de.end().map_err(|_| AuthFailure::Malformed)?;
        Ok(claims)
    }

    fn check_claims(&self, claims: Claims, now: u64) -> Result<VerifiedToken, AuthFailure> {
        let exp = match &claims.exp {
            Some(v) => numeric_date(v)?,
            None => return Err(AuthFailure::Malformed),
        };
        let nbf = claims.nbf.as_ref().map(numeric_date).transpose()?;
        let iat = claims.iat.as_ref().map(numeric_date).transpose()?;

        if now >= exp.saturating_add(self.leeway) {
            return Err(AuthFailure::Expired);
        }
        let latest_start = now.saturating_add(self.leeway);
        if nbf.is_some_and(|t| t > latest_start) || iat.is_some_and(|t| t > latest_start) {
            return Err(AuthFailure::NotYetValid);
        }
        if let Some(max) = self.max_lifetime {
            if exp.saturating_sub(iat.unwrap_or(now)) > max {
                return Err(AuthFailure::LifetimeExceeded);
            }
        }
        if let Some(issuer) = &self.issuer {
            match &claims.iss {
                Some(Value::String(iss)) if iss == issuer => {}
                _ => return Err(AuthFailure::WrongIssuer),
            }
        }
        if !self.audiences.is_empty() {
            let ok = match &claims.aud {
                Some(Value::String(aud)) => self.audiences.iter().any(|a| a == aud),
                Some(Value::Array(auds)) => auds.iter().any(|v| {
                    v.as_str()
                        .is_some_and(|aud| self.audiences.iter().any(|a| a == aud))
                }),
                _ => false,
            };
            if !ok {
                return Err(AuthFailure::WrongAudience);
            }
        }
        let Claims {
            exp: exp_value,
            nbf: nbf_value,
            iat: iat_value,
            iss,
            aud,
            sub,
            mut kept,
        } = claims;
        // Registered claims the site also copies into headers.
        for name in &self.kept_claims {
            let value = match name.as_str() {
                "exp" => &exp_value,
                "nbf" => &nbf_value,
                "iat" => &iat_value,
                "iss" => &iss,
                "aud" => &aud,
                "sub" => &sub,
                _ => continue,
            };
            if let Some(v) = value {
                kept.insert(name.clone(), v.clone());
            }
        }
        let sub = match sub {
            None => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => return Err(AuthFailure::Malformed),
        };
        Ok(VerifiedToken {
            claims: kept,
            exp,
            sub,
        })
    }
}

/// What the payload says, read in one pass: the registered claims the rules need as
/// they were sent, and the site's kept claims. Nothing here is checked yet.
#[derive(Default)]
struct Claims {
    exp: Option<Value>,
    nbf: Option<Value>,
    iat: Option<Value>,
    iss: Option<Value>,
    aud: Option<Value>,
    sub: Option<Value>,
    /// Kept claims other than the registered ones above.
    kept: Map<String, Value>,
}

/// Reads a claims object, keeping the named claims (a later duplicate wins, as in a
/// JSON map) and skipping every other one without building it.
struct ClaimsSeed<'a>(&'a [String]);

impl<'de> DeserializeSeed<'de> for ClaimsSeed<'_> {
    type Value = Claims;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Claims, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ClaimsSeed<'_> {
    type Value = Claims;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of claims")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Claims, A::Error> {
        let mut c = Claims::default();
        while let Some(field) = map.next_key_seed(ClaimName(self.0))? {
            match field {
                Claim::Exp => c.exp = Some(map.next_value()?),
                Claim::Nbf => c.nbf = Some(map.next_value()?),
                Claim::Iat => c.iat = Some(map.next_value()?),
                Claim::Iss => c.iss = Some(map.next_value()?),
                Claim::Aud => c.aud = Some(map.next_value()?),
                Claim::Sub => c.sub = Some(map.next_value()?),
                Claim::Kept(name) => {
                    let value: Value = map.next_value()?;
                    c.kept.insert(name.to_string(), value);
                }
                Claim::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(c)
    }
}

enum Claim<'a> {
    Exp,
    Nbf,
    Iat,
    Iss,
    Aud,
    Sub,
    Kept(&'a str),
    Other,
}

/// Names a claim without allocating (escaped names are decoded by serde_json first).
struct ClaimName<'a>(&'a [String]);

impl<'de, 'a> DeserializeSeed<'de> for ClaimName<'a> {
    type Value = Claim<'a>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Claim<'a>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, 'a> Visitor<'de> for ClaimName<'a> {
    type Value = Claim<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a claim name")
    }

    fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Claim<'a>, E> {
        Ok(match name {
            "exp" => Claim::Exp,
            "nbf" => Claim::Nbf,
            "iat" => Claim::Iat,
            "iss" => Claim::Iss,
            "aud" => Claim::Aud,
            "sub" => Claim::Sub,
            _ => match self.0.iter().find(|k| *k == name) {
                Some(kept) => Claim::Kept(kept),
                None => Claim::Other,
            },
        })
    }
}

fn refuse_hmac_algs(algorithms: &[Algorithm]) -> Result<(), InvalidJwtSettings> {
    match algorithms
        .iter()
        .find(|a| a.family() == AlgorithmFamily::Hmac)
    {
        Some(&alg) => Err(InvalidJwtSettings::HmacAlgWithPublicKeys(alg)),
        None => Ok(()),
    }
}

/// Parses one PEM public key (RSA, EC P-256/P-384 or Ed25519) into the form `ring` uses.
fn parse_public_pem(pem: &str) -> Result<VerifyingKey, &'static str> {
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
fn check_signature(
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

/// A NumericDate (RFC 7519 §2): non-negative seconds, fractions allowed and dropped.
fn numeric_date(v: &Value) -> Result<u64, AuthFailure> {
    if let Some(n) = v.as_u64() {
        return Ok(n);
    }
    match v.as_f64() {
        Some(f) if f.is_finite() && f >= 0.0 && f < u64::MAX as f64 => Ok(f as u64),
        _ => Err(AuthFailure::Malformed),
    }
}

fn b64_segment(segment: &str) -> Result<Vec<u8>, AuthFailure> {
    if segment.is_empty() {
        return Err(AuthFailure::Malformed);
    }
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| AuthFailure::Malformed)
}

/// Non-empty, only base64url characters, and a length base64 can produce.
fn is_b64url_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() % 4 != 1
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

/// Quick shape check used by token intake: three non-empty base64url segments
/// separated by '.', within [`MAX_TOKEN_BYTES`].
pub fn looks_like_jws(token: &str) -> bool {
    if token.len() > MAX_TOKEN_BYTES {
        return false;
    }
    let mut parts = token.split('.');
    matches!(
        (parts.next(), parts.next(), parts.next(), parts.next()),
        (Some(h), Some(p), Some(s), None)
            if is_b64url_segment(h) && is_b64url_segment(p) && is_b64url_segment(s)
    )
}

#[cfg(test)]
mod tests {
    use super::super::jwks::testing::*;
    use super::super::jwks::JwksSettings;
    use super::*;
    use jsonwebtoken::EncodingKey;
    use serde_json::json;

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

    fn hmac_verifier(algorithms: Vec<Algorithm>) -> JwtVerifier {
        JwtVerifier::new(settings(
            algorithms,
            JwtKeys::Hmac(Secret::new(SECRET.to_vec())),
        ))
        .unwrap()
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

    #[tokio::test]
    async fn unknown_kid_and_unreachable_jwks() {
        let ec = TestKey::ec(Algorithm::ES256);
        let server = JwksServer::start(vec![ec.jwk_with_kid("k1")]).await;
        let cache = jwks();
        let v = JwtVerifier::new(settings(
            vec![Algorithm::ES256],
            JwtKeys::Jwks {
                url: server.url.clone(),
            },
        ))
        .unwrap();
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
            let err = JwtVerifier::new(settings(vec![Algorithm::RS256, Algorithm::HS256], keys))
                .unwrap_err();
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
        let mut s = settings(
            vec![Algorithm::HS256],
            JwtKeys::Hmac(Secret::new(SECRET.to_vec())),
        );
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
        let mut s = settings(
            vec![Algorithm::HS256],
            JwtKeys::Hmac(Secret::new(SECRET.to_vec())),
        );
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
        let mut s = settings(
            vec![Algorithm::HS256],
            JwtKeys::Hmac(Secret::new(SECRET.to_vec())),
        );
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
        let mut s = settings(
            vec![Algorithm::HS256],
            JwtKeys::Hmac(Secret::new(SECRET.to_vec())),
        );
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
            let theirs = jsonwebtoken::crypto::verify(s, message.as_bytes(), reference, alg)
                .unwrap_or(false);
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
            super::super::jwks::verifying_key(&jwk.algorithm).unwrap()
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
            let swapped: Vec<_> = [RS256, RS384, RS512, PS256, PS384, PS512, HS256, ES256]
                .into_iter()
                .filter(|&a| a != alg)
                .collect();
            let pem = |a, m: &[u8], s: &[u8]| from_pem.verify(a, m, s);
            let jwk = |a, m: &[u8], s: &[u8]| from_jwk.verify(a, m, s);
            agree(
                &format!("{alg:?}"),
                &v,
                &[&pem, &jwk],
                &reference,
                // One RSA fixture: the wrong key is checked below, on the key side.
                variants(&good, None, &swapped),
            )
            .await;
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
            let swapped: Vec<_> = [ES256, ES384, EdDSA, RS256, HS256]
                .into_iter()
                .filter(|&a| a != alg)
                .collect();
            let pem = |a, m: &[u8], s: &[u8]| from_pem.verify(a, m, s);
            let jwk = |a, m: &[u8], s: &[u8]| from_jwk.verify(a, m, s);
            agree(
                &format!("{alg:?}"),
                &v,
                &[&pem, &jwk],
                &reference,
                variants(
                    &key.sign(&claims(), None),
                    Some(&stranger.sign(&claims(), None)),
                    &swapped,
                ),
            )
            .await;
        }
    }
}
