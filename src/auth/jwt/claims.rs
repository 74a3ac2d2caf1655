//! The claim rules: `exp`, `nbf`, `iat`, `iss`, `aud` and the lifetime cap, checked
//! after the signature verified, and the one-pass read of the payload that keeps only
//! the claims the rules and the site's headers need.

use crate::auth::AuthFailure;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// A token that verified: its claims, with `exp` and `sub` pulled out.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    /// The site's [`super::JwtSettings::kept_claims`] that the token carries (no others).
    pub claims: Map<String, Value>,
    pub exp: u64,
    pub sub: Option<String>,
}

/// A site's claim rules, times in whole seconds.
pub(super) struct ClaimRules {
    pub(super) issuer: Option<String>,
    pub(super) audiences: Vec<String>,
    pub(super) leeway: u64,
    pub(super) max_lifetime: Option<u64>,
    /// Sorted and without duplicates.
    pub(super) kept_claims: Vec<String>,
}

impl ClaimRules {
    /// One pass over the JSON: a payload that is not a JSON object
    /// is `Malformed`; claims are only judged later, by [`Self::check`].
    pub(super) fn read(&self, payload: &[u8]) -> Result<Claims, AuthFailure> {
        let mut de = serde_json::Deserializer::from_slice(payload);
        let claims = ClaimsSeed(&self.kept_claims)
            .deserialize(&mut de)
            .map_err(|_| AuthFailure::Malformed)?;
        de.end().map_err(|_| AuthFailure::Malformed)?;
        Ok(claims)
    }

    /// Judges the claims at `now`. With the token, the times at which the same claims
    /// pass (`now` in the range): only `exp`, `nbf`, `iat` and the lifetime cap without
    /// `iat` depend on the time, each a bound on it.
    pub(super) fn check(
        &self,
        claims: Claims,
        now: u64,
    ) -> Result<(VerifiedToken, std::ops::Range<u64>), AuthFailure> {
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
        // now < exp + leeway; nbf, iat <= now + leeway; without iat, exp - now <= max.
        let valid_from = [
            nbf.map(|t| t.saturating_sub(self.leeway)),
            iat.map(|t| t.saturating_sub(self.leeway)),
            self.max_lifetime
                .filter(|_| iat.is_none())
                .map(|max| exp.saturating_sub(max)),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(0);
        let valid = valid_from..exp.saturating_add(self.leeway);
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
        Ok((
            VerifiedToken {
                claims: kept,
                exp,
                sub,
            },
            valid,
        ))
    }
}

/// What the payload says, read in one pass: the registered claims the rules need as
/// they were sent, and the site's kept claims. Nothing here is checked yet.
#[derive(Default)]
pub(super) struct Claims {
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
