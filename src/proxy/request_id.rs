//! X-Request-ID: keep a sane one from the client, otherwise mint one.

use http::{HeaderMap, HeaderName, HeaderValue};

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
        _ => {
            let mut text = [0u8; uuid::fmt::Simple::LENGTH];
            uuid::Uuid::new_v4().simple().encode_lower(&mut text);
            // Owned by the value from the start: the copies sent upstream and back to the
            // client share it (one allocation, no copy when first shared).
            HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(text))
                .unwrap_or_else(|_| HeaderValue::from_static("-"))
        }
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
