//! API keys: `wpg_<key id>_<secret>`. The key id (12 characters, public) finds the record
//! in one lookup; the secret (43 base62 characters, > 256 bits) is stored only as an
//! HMAC-SHA-256 under the gateway's pepper and compared in constant time. Keys are random,
//! not human passwords, so no slow hash is needed on the request path.

use super::AuthFailure;
use crate::secret::Secret;
use crate::store::ApiKeyRecord;
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::Rng;
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub const PREFIX: &str = "wpg_";
pub const KEY_ID_LEN: usize = 12;
pub const SECRET_LEN: usize = 43;

const KEY_ID_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// A presented key split into its parts (borrowed, no allocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedKey<'a> {
    pub key_id: &'a str,
    pub secret: &'a str,
}

/// Splits `wpg_<key id>_<secret>`; `None` if it is not shaped like a key.
pub fn parse(raw: &str) -> Option<ParsedKey<'_>> {
    split_prefixed(raw, PREFIX).map(|(key_id, secret)| ParsedKey { key_id, secret })
}

/// Splits `<prefix><12-character id>_<43-character secret>`: the shape shared by API keys
/// and admin tokens.
pub(crate) fn split_prefixed<'a>(raw: &'a str, prefix: &str) -> Option<(&'a str, &'a str)> {
    let b = raw.as_bytes();
    let len = prefix.len() + KEY_ID_LEN + 1 + SECRET_LEN;
    if b.len() != len || !raw.starts_with(prefix) || b[prefix.len() + KEY_ID_LEN] != b'_' {
        return None;
    }
    let id = &raw[prefix.len()..prefix.len() + KEY_ID_LEN];
    let secret = &raw[prefix.len() + KEY_ID_LEN + 1..];
    // Range comparisons folded without a branch per byte (the compiler does them 16
    // bytes at a time): the same sets as `KEY_ID_ALPHABET` and `SECRET_ALPHABET`.
    let id_ok = id.bytes().fold(true, |ok, c| ok & in_key_id_alphabet(c));
    let secret_ok = secret.bytes().fold(true, |ok, c| {
        ok & (c.is_ascii_lowercase() | c.is_ascii_uppercase() | c.is_ascii_digit())
    });
    (id_ok & secret_ok).then_some((id, secret))
}

/// True if `s` looks like a key id (for CLI input).
pub fn is_key_id(s: &str) -> bool {
    s.len() == KEY_ID_LEN && s.bytes().all(in_key_id_alphabet)
}

/// `KEY_ID_ALPHABET` by comparisons (a test holds them equal).
fn in_key_id_alphabet(c: u8) -> bool {
    c.is_ascii_lowercase() | c.is_ascii_digit()
}

fn random_text(alphabet: &[u8], len: usize) -> String {
    let mut rng = OsRng;
    (0..len)
        .map(|_| char::from(alphabet[rng.gen_range(0..alphabet.len())]))
        .collect()
}

/// A fresh random id and secret in the shape of [`split_prefixed`].
pub(crate) fn random_id_and_secret() -> (String, zeroize::Zeroizing<String>) {
    (
        random_text(KEY_ID_ALPHABET, KEY_ID_LEN),
        zeroize::Zeroizing::new(random_text(SECRET_ALPHABET, SECRET_LEN)),
    )
}

/// A fresh key: its id and the whole key text (shown to the operator exactly once).
pub fn generate() -> (String, Secret) {
    let (key_id, secret) = random_id_and_secret();
    let full = format!("{PREFIX}{key_id}_{}", secret.as_str());
    (key_id, Secret::from_string(full))
}

/// A fresh random pepper (32 bytes).
pub fn new_pepper() -> Secret {
    let mut bytes = vec![0u8; 32];
    OsRng.fill(bytes.as_mut_slice());
    Secret::new(bytes)
}

/// HMAC-SHA-256 under the pepper. The keyed state is prepared once and cloned per use.
#[derive(Clone)]
pub struct KeyHasher {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyHasher([redacted])")
    }
}

impl KeyHasher {
    pub fn new(pepper: &Secret) -> Self {
        // HMAC accepts keys of any length, so this cannot fail; keep a defined fallback.
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(pepper.expose())
            .unwrap_or_else(|_| <Hmac<Sha256> as Mac>::new(&Default::default()));
        Self { mac }
    }

    pub fn hash(&self, secret: &[u8]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(secret);
        mac.finalize().into_bytes().into()
    }

    /// Constant-time check of a presented secret against a stored hash (compared as four
    /// 64-bit words: `subtle` shields each element from the optimiser, one per word
    /// instead of one per byte). A stored hash of another length never matches.
    pub fn verify(&self, secret: &[u8], stored: &[u8]) -> bool {
        let Ok(stored) = <&[u8; 32]>::try_from(stored) else {
            return false;
        };
        words(&self.hash(secret))[..]
            .ct_eq(&words(stored)[..])
            .into()
    }
}

fn words(digest: &[u8; 32]) -> [u64; 4] {
    let mut words = [0u64; 4];
    for (word, bytes) in words.iter_mut().zip(digest.chunks_exact(8)) {
        *word = u64::from_le_bytes(bytes.try_into().unwrap_or([0; 8]));
    }
    words
}

/// Whether `secret` is the key's: once a cached record has accepted a secret, the same
/// secret is recognised by a constant-time comparison with it, not by an HMAC per
/// request; any other secret still gets the HMAC check (and is not remembered).
fn secret_matches(hasher: &KeyHasher, secret: &[u8], record: &ApiKeyRecord) -> bool {
    if record.verified.matches(secret) {
        return true;
    }
    let ok = hasher.verify(secret, &record.secret_hash);
    if ok {
        record.verified.remember(secret);
    }
    ok
}

/// Checks a found key against the request: right secret, right site, in its lifetime.
/// `now` (Unix seconds) is read only for a key that can expire or was revoked.
pub fn check(
    hasher: &KeyHasher,
    presented: ParsedKey<'_>,
    record: &ApiKeyRecord,
    site_id: &str,
    now: impl FnOnce() -> i64,
) -> Result<(), AuthFailure> {
    if !secret_matches(hasher, presented.secret.as_bytes(), record) {
        return Err(AuthFailure::InvalidKey);
    }
    if record.site_id != site_id {
        return Err(AuthFailure::WrongSite);
    }
    if record.expires_at.is_none() && record.revoked_at.is_none() {
        return Ok(());
    }
    let now = now();
    if record.expires_at.is_some_and(|exp| now >= exp) {
        return Err(AuthFailure::Expired);
    }
    if record.revoked_at.is_some() && record.grace_until.is_none_or(|g| now >= g) {
        return Err(AuthFailure::Revoked);
    }
    Ok(())
}

#[cfg(test)]
mod tests {

    /// The shape check takes exactly the two alphabets, byte by byte.
    #[test]
    fn the_shape_check_takes_exactly_the_alphabets() {
        let id = "a".repeat(KEY_ID_LEN);
        let secret = "A".repeat(SECRET_LEN);
        for b in 0..=127u8 {
            let c = char::from(b).to_string();
            let with_id = format!("{PREFIX}{c}{}_{secret}", &id[1..]);
            let with_secret = format!("{PREFIX}{id}_{}{c}", &secret[1..]);
            assert_eq!(
                parse(&with_id).is_some(),
                KEY_ID_ALPHABET.contains(&b),
                "{b:#x}"
            );
            assert_eq!(
                parse(&with_secret).is_some(),
                SECRET_ALPHABET.contains(&b),
                "{b:#x}"
            );
        }
    }

    use super::*;

    fn record(hasher: &KeyHasher, key: &Secret) -> ApiKeyRecord {
        let parsed = parse(key.expose_str().unwrap()).unwrap();
        ApiKeyRecord {
            key_id: parsed.key_id.into(),
            site_id: "shop".into(),
            label: None,
            secret_hash: hasher.hash(parsed.secret.as_bytes()).to_vec(),
            created_at: 0,
            expires_at: None,
            revoked_at: None,
            grace_until: None,
            last_used_at: None,
            verified: Default::default(),
            marked: Default::default(),
        }
    }

    #[test]
    fn generated_keys_parse_and_carry_256_bits() {
        let (id, key) = generate();
        let text = key.expose_str().unwrap();
        let p = parse(text).unwrap();
        assert_eq!(p.key_id, id);
        assert_eq!(p.secret.len(), SECRET_LEN);
        // 43 characters of a 62-letter alphabet: log2(62) * 43 > 256.
        assert!((62f64).log2() * SECRET_LEN as f64 >= 256.0);
        assert_ne!(generate().1.expose(), key.expose());
    }

    #[test]
    fn malformed_keys_do_not_parse() {
        let (_, key) = generate();
        let text = key.expose_str().unwrap();
        assert!(parse(&text[..text.len() - 1]).is_none());
        assert!(parse(&format!("{text}x")).is_none());
        assert!(parse(&text.replacen("wpg_", "wpx_", 1)).is_none());
        assert!(parse(&format!("{}-{}", &text[..16], &text[17..])).is_none());
        assert!(parse("").is_none());
        assert!(parse(&format!("wpg_{}_{}", "A".repeat(12), "a".repeat(43))).is_none());
    }

    #[test]
    fn verify_compares_every_byte_and_the_length() {
        let h = KeyHasher::new(&new_pepper());
        let stored = h.hash(b"secret");
        assert!(h.verify(b"secret", &stored));
        assert!(!h.verify(b"secreT", &stored));
        for i in 0..stored.len() {
            let mut flipped = stored;
            flipped[i] ^= 0x01;
            assert!(!h.verify(b"secret", &flipped), "byte {i}");
        }
        assert!(!h.verify(b"secret", &stored[..31]));
        assert!(!h.verify(b"secret", &[stored.as_slice(), &[0]].concat()));
    }

    /// A hasher, a fresh key and its record (for site `shop`).
    fn hasher_key_record() -> (KeyHasher, Secret, ApiKeyRecord) {
        let h = KeyHasher::new(&new_pepper());
        let (_, key) = generate();
        let rec = record(&h, &key);
        (h, key, rec)
    }

    #[test]
    fn check_covers_every_outcome() {
        let (h, key, rec) = hasher_key_record();
        let p = parse(key.expose_str().unwrap()).unwrap();
        assert_eq!(check(&h, p, &rec, "shop", || 100), Ok(()));
        // A key that cannot expire and is not revoked needs no clock.
        assert_eq!(
            check(&h, p, &rec, "shop", || unreachable!("clock read")),
            Ok(())
        );
        assert_eq!(
            check(&h, p, &rec, "blog", || 100),
            Err(AuthFailure::WrongSite)
        );
        // (A clone: `rec` remembers the secret it accepted, see the next test.)
        let other = KeyHasher::new(&new_pepper());
        assert_eq!(
            check(&other, p, &rec.clone(), "shop", || 100),
            Err(AuthFailure::InvalidKey)
        );
        let expiring = ApiKeyRecord {
            expires_at: Some(100),
            ..rec.clone()
        };
        let revoked = ApiKeyRecord {
            revoked_at: Some(50),
            grace_until: Some(60),
            ..rec.clone()
        };
        // Accepted until the instant before the deadline, refused from it on.
        for (limited, deadline, refused) in [
            (&expiring, 100, AuthFailure::Expired),
            (&revoked, 60, AuthFailure::Revoked),
        ] {
            assert_eq!(check(&h, p, limited, "shop", || deadline - 1), Ok(()));
            assert_eq!(check(&h, p, limited, "shop", || deadline), Err(refused));
        }
    }

    #[test]
    fn an_accepted_secret_is_remembered_by_its_record_and_no_other() {
        let (h, key, rec) = hasher_key_record();
        let p = parse(key.expose_str().unwrap()).unwrap();
        let (_, wrong) = generate();
        let wrong = ParsedKey {
            key_id: p.key_id,
            secret: parse(wrong.expose_str().unwrap()).unwrap().secret,
        };
        // A refused secret is not remembered.
        assert_eq!(
            check(&h, wrong, &rec, "shop", || 0),
            Err(AuthFailure::InvalidKey)
        );
        assert!(!rec.verified.matches(wrong.secret.as_bytes()));
        assert!(!rec.verified.matches(p.secret.as_bytes()));
        // The accepted one is, by this record only (a copy, as from a reload, starts empty).
        assert_eq!(check(&h, p, &rec, "shop", || 0), Ok(()));
        assert!(rec.verified.matches(p.secret.as_bytes()));
        assert!(!rec.clone().verified.matches(p.secret.as_bytes()));
        assert_eq!(rec.clone(), rec);
        assert!(!format!("{rec:?}").contains(p.secret));
        // Remembered, the right secret still passes every other check, a wrong one
        // (even one byte off) still fails.
        assert_eq!(
            check(&h, p, &rec, "blog", || 0),
            Err(AuthFailure::WrongSite)
        );
        assert_eq!(
            check(&h, wrong, &rec, "shop", || 0),
            Err(AuthFailure::InvalidKey)
        );
        let mut off = p.secret.to_string();
        let last = if off.ends_with('A') { "B" } else { "A" };
        off.replace_range(off.len() - 1.., last);
        let off = ParsedKey {
            key_id: p.key_id,
            secret: &off,
        };
        assert_eq!(
            check(&h, off, &rec, "shop", || 0),
            Err(AuthFailure::InvalidKey)
        );
        assert_eq!(check(&h, p, &rec, "shop", || 0), Ok(()));
    }
}
