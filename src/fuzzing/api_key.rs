//! API keys and admin tokens: `parse` against a plain reading of the format, and
//! `api_key::check` (constant-time hash compare, site, lifetime) with a fixed pepper.

use super::input::Input;
use crate::admin::token;
use crate::auth::api_key::{self, KeyHasher};
use crate::auth::AuthFailure;
use crate::secret::Secret;
use crate::store::ApiKeyRecord;
use std::cell::Cell;

const PEPPER: &[u8] = b"fuzz-pepper: fixed, 32 bytes long";
/// The key the record below stores (its id and secret in the key alphabet).
const STORED_KEY: &str = "wpg_k3y1d0fuzz42_Q7xV2mN9pL4sT8wZ1cR6yB3hJ5kD0fG9aE2uW7iO4nM";
const SITES: &[&str] = &["shop", "blog", "Shop", "shop ", ""];

pub fn api_key(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    parse_follows_the_format(&text);
    check_follows_the_rules(&mut Input::new(data));
}

/// `<prefix><12 of a-z0-9>_<43 of A-Za-z0-9>`, read the plain way.
fn by_the_format<'a>(text: &'a str, prefix: &str) -> Option<(&'a str, &'a str)> {
    let (id, secret) = text.strip_prefix(prefix)?.split_once('_')?;
    let id_ok = id.chars().count() == 12
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let secret_ok =
        secret.chars().count() == 43 && secret.chars().all(|c| c.is_ascii_alphanumeric());
    (id_ok && secret_ok).then_some((id, secret))
}

fn parse_follows_the_format(text: &str) {
    let parsed = api_key::parse(text);
    assert_eq!(
        parsed.map(|p| (p.key_id, p.secret)),
        by_the_format(text, api_key::PREFIX),
        "api key {text:?}"
    );
    if let Some(p) = parsed {
        // Parse then format gives the text back, and the parts are what the store uses.
        assert_eq!(
            format!("{}{}_{}", api_key::PREFIX, p.key_id, p.secret),
            text
        );
        assert!(api_key::is_key_id(p.key_id));
    }
    let token = token::parse(text);
    assert_eq!(
        token.map(|t| (t.id, t.secret)),
        by_the_format(text, "wpgat_"),
        "admin token {text:?}"
    );
    // One text is never both (the prefixes differ at their fourth byte).
    assert!(parsed.is_none() || token.is_none());
}

/// What `check` must answer, from the rules in its documentation.
fn expected(
    right_secret: bool,
    record: &ApiKeyRecord,
    site: &str,
    now: i64,
) -> Result<(), AuthFailure> {
    if !right_secret {
        Err(AuthFailure::InvalidKey)
    } else if record.site_id != site {
        Err(AuthFailure::WrongSite)
    } else if record.expires_at.is_some_and(|exp| now >= exp) {
        Err(AuthFailure::Expired)
    } else if record.revoked_at.is_some() && record.grace_until.is_none_or(|g| now >= g) {
        Err(AuthFailure::Revoked)
    } else {
        Ok(())
    }
}

fn optional_time(input: &mut Input<'_>, around: i64) -> Option<i64> {
    match input.choice(4) {
        0 => None,
        1 => Some(around.saturating_add(i64::from(input.byte() as i8))),
        2 => Some(input.i64()),
        _ => Some(around),
    }
}

fn check_follows_the_rules(input: &mut Input<'_>) {
    let hasher = KeyHasher::new(&Secret::new(PEPPER.to_vec()));
    let Some(stored) = api_key::parse(STORED_KEY) else {
        panic!("the stored key does not parse")
    };
    let presented_text = match input.choice(3) {
        0 => STORED_KEY.to_string(),
        1 => {
            // The stored key with one byte changed (often to another valid key).
            let mut bytes = STORED_KEY.as_bytes().to_vec();
            let at = input.choice(bytes.len());
            bytes[at] = input.byte();
            String::from_utf8_lossy(&bytes).into_owned()
        }
        _ => input.text(80),
    };
    let Some(presented) = api_key::parse(&presented_text) else {
        return;
    };
    let now = match input.choice(3) {
        0 => 1_750_000_000,
        1 => 1_750_000_000 + i64::from(input.byte() as i8),
        _ => input.i64(),
    };
    let mut secret_hash = hasher.hash(stored.secret.as_bytes()).to_vec();
    let hash_intact = match input.choice(4) {
        0 => {
            let at = input.choice(secret_hash.len());
            let flip = input.byte().max(1);
            secret_hash[at] ^= flip;
            false
        }
        1 => {
            let extra = input.choice(3);
            if extra == 0 {
                secret_hash.pop();
            } else {
                secret_hash.resize(32 + extra, 0);
            }
            false
        }
        _ => true,
    };
    let revoked_at = optional_time(input, now);
    let record = ApiKeyRecord {
        key_id: stored.key_id.to_string(),
        site_id: input.pick(SITES).to_string(),
        label: None,
        secret_hash,
        created_at: 0,
        expires_at: optional_time(input, now),
        revoked_at,
        grace_until: revoked_at.and_then(|_| optional_time(input, now)),
        last_used_at: None,
        verified: Default::default(),
        marked: Default::default(),
    };
    let site = input.pick(SITES);
    let clock_read = Cell::new(false);
    let answer = api_key::check(&hasher, presented, &record, site, || {
        clock_read.set(true);
        now
    });
    let right_secret = hash_intact && presented.secret == stored.secret;
    assert_eq!(
        answer,
        expected(right_secret, &record, site, now),
        "{presented:?} {record:?} site {site:?} now {now}"
    );
    if record.expires_at.is_none() && record.revoked_at.is_none() {
        assert!(
            !clock_read.get(),
            "the clock was read for a key without limits"
        );
    }
    // `verify` is exactly "the stored hash is the HMAC of the secret".
    let other = input.rest();
    assert_eq!(
        hasher.verify(other, &record.secret_hash),
        record.secret_hash == hasher.hash(other)
    );
}
