//! X-Request-ID: keep a sane one from the client, otherwise mint one.

use aes::cipher::{BlockEncrypt, KeyInit};
use http::{HeaderMap, HeaderName, HeaderValue};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;

pub const HEADER: &str = "x-request-id";
/// `HEADER` pre-parsed, for the lookup and the insert on every request.
pub const NAME: HeaderName = HeaderName::from_static(HEADER);

/// A client's id is kept if it is 1-128 characters of `[A-Za-z0-9._:-]`: safe to log and
/// to forward, and enough for UUIDs, ULIDs and trace ids.
fn is_sane(v: &[u8]) -> bool {
    (1..=128).contains(&v.len())
        && v.iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// The request's id as a header value: the client's own (sharing the request's buffer),
/// or a new one.
pub fn take_or_mint_value(headers: &HeaderMap) -> HeaderValue {
    let mut values = headers.get_all(&NAME).iter();
    match (values.next(), values.next()) {
        (Some(v), None) if is_sane(v.as_bytes()) => v.clone(),
        _ => MINTER.mint(),
    }
}

/// Mints ids: a counter enciphered with AES-128 under a key drawn at start-up, written
/// as 32 lowercase hex digits (the shape of a UUID without dashes). The cipher is a
/// permutation, so a process never mints the same id twice (for 2^64 requests), and
/// processes with their own keys collide with odds of 2^-128 a pair. Without the key, an
/// id tells nothing of the others: not their order, nor how many requests passed in
/// between, which a plain counter would tell every client. One block of AES and no
/// random numbers per request: a few times cheaper than a random UUID.
struct Minter {
    cipher: aes::Aes128,
    next: AtomicU64,
}

static MINTER: LazyLock<Minter> = LazyLock::new(|| {
    let mut key = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
    Minter {
        cipher: aes::Aes128::new(&key.into()),
        next: AtomicU64::new(0),
    }
});

impl Minter {
    fn mint(&self) -> HeaderValue {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut block = aes::Block::from(u128::from(n).to_le_bytes());
        self.cipher.encrypt_block(&mut block);
        let mut text = [0u8; uuid::fmt::Simple::LENGTH];
        uuid::Uuid::from_bytes(block.into())
            .simple()
            .encode_lower(&mut text);
        // Owned by the value from the start: the copies sent upstream and back to the
        // client share it (one allocation, no copy when first shared).
        HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(text))
            .unwrap_or_else(|_| HeaderValue::from_static("-"))
    }
}

/// An id from `take_or_mint_value` as text: sane client ids and minted ones are visible
/// ASCII, so the fallback is never seen in practice.
pub fn text(id: &HeaderValue) -> &str {
    id.to_str().unwrap_or("-")
}

/// The request's id as text (admin API).
pub fn take_or_mint(headers: &HeaderMap) -> String {
    text(&take_or_mint_value(headers)).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_value_form_agrees() {
        let mut h = HeaderMap::new();
        assert_eq!(take_or_mint_value(&h).len(), 32);
        assert_ne!(take_or_mint_value(&h), take_or_mint_value(&h));
        h.insert(HEADER, "abc-123".parse().unwrap());
        assert_eq!(take_or_mint_value(&h), "abc-123");
        h.insert(HEADER, "has space".parse().unwrap());
        assert_eq!(take_or_mint_value(&h).len(), 32);
    }

    #[test]
    fn minted_ids_are_distinct_hex_and_not_a_counter() {
        let ids: Vec<String> = (0..1000).map(|_| text(&MINTER.mint()).to_owned()).collect();
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        for id in &ids {
            assert_eq!(id.len(), 32, "{id}");
            assert!(id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        }
        // Consecutive ids share no visible structure: about half their bits differ.
        let bits = |a: &str, b: &str| {
            let (a, b) = (
                u128::from_str_radix(a, 16).unwrap(),
                u128::from_str_radix(b, 16).unwrap(),
            );
            (a ^ b).count_ones()
        };
        let mean = ids.windows(2).map(|w| bits(&w[0], &w[1])).sum::<u32>() / 999;
        assert!((54..=74).contains(&mean), "{mean}");
    }

    #[test]
    fn keeps_sane_ids_and_mints_others() {
        let mut h = HeaderMap::new();
        assert_eq!(take_or_mint(&h).len(), 32);
        h.insert(HEADER, "abc-123:x.y_z".parse().unwrap());
        assert_eq!(take_or_mint(&h), "abc-123:x.y_z");
        h.insert(HEADER, "has space".parse().unwrap());
        assert_ne!(take_or_mint(&h), "has space");
        h.insert(HEADER, "x".repeat(129).parse().unwrap());
        assert_eq!(take_or_mint(&h).len(), 32);
        h.insert(HEADER, "a".parse().unwrap());
        h.append(HEADER, "b".parse().unwrap());
        assert_eq!(take_or_mint(&h).len(), 32);
    }
}
