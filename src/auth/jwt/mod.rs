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

mod claims;
pub mod jwks;
mod keys;
mod memo;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

pub use claims::VerifiedToken;
pub use keys::VerifyingKey;

use crate::auth::AuthFailure;
use crate::secret::Secret;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use claims::ClaimRules;
use jsonwebtoken::{Algorithm, AlgorithmFamily};
use jwks::{JwksCache, JwksError};
use keys::{check_signature, parse_public_pem, HmacKeys};
use serde::Deserialize;
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
    claims: ClaimRules,
    /// Tokens verified with this verifier's own keys (HMAC, PEM), recognised again
    /// without the signature and the payload ([`memo`]). A site whose settings change
    /// gets a new verifier, and so an empty memo.
    memo: memo::TokenMemo,
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
            .field("issuer", &self.claims.issuer)
            .field("audiences", &self.claims.audiences)
            .field("leeway", &self.claims.leeway)
            .field("max_lifetime", &self.claims.max_lifetime)
            .field("kept_claims", &self.claims.kept_claims)
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
            claims: ClaimRules {
                issuer,
                audiences,
                leeway: leeway.as_secs(),
                max_lifetime: max_lifetime.map(|d| d.as_secs()),
                kept_claims,
            },
            memo: memo::TokenMemo::new(),
        })
    }

    /// Verifies a compact JWS. `now` is Unix seconds.
    ///
    /// A token this verifier already accepted with its own keys is recognised by an
    /// exact (constant-time) comparison and accepted while `now` lies where its claims
    /// passed; a JWKS site's tokens are verified every time, so that a key the JWKS
    /// drops stops its tokens at once.
    pub async fn verify(
        &self,
        token: &str,
        jwks: &JwksCache,
        now: u64,
    ) -> Result<VerifiedToken, AuthFailure> {
        if let Some(known) = self.memo.get(token, now) {
            return Ok(known);
        }
        let (verified, valid) = self.verify_fully(token, jwks, now).await?;
        if !matches!(self.keys, Keys::Jwks(_)) {
            self.memo.remember(token, &verified, valid, now);
        }
        Ok(verified)
    }

    /// [`Self::verify`] without the memo: the signature and every claim rule, and the
    /// times at which the claims pass.
    async fn verify_fully(
        &self,
        token: &str,
        jwks: &JwksCache,
        now: u64,
    ) -> Result<(VerifiedToken, std::ops::Range<u64>), AuthFailure> {
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
        let claims = self.claims.read(&b64_segment(payload_b64)?)?;
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
        self.claims.check(claims, now)
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
