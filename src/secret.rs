//! A type for secret bytes: never printed, wiped from memory when dropped.

use std::fmt;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Secret bytes (an upstream credential, a key, a pepper). `Debug` prints `[redacted]`
/// and there is deliberately no `Display`, so a secret cannot slip into a log line.
#[derive(Clone)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    pub fn from_string(s: String) -> Self {
        Self::new(s.into_bytes())
    }

    /// The secret's bytes. Call only where the secret is used (sealing, hashing, a header).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The secret as UTF-8 text, if it is.
    pub fn expose_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Constant-time equality: the time taken does not depend on where the bytes differ.
    pub fn ct_eq(&self, other: &[u8]) -> bool {
        self.0.as_slice().ct_eq(other).into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A secret remembered once it was verified the slow way, so that the next check of the
/// same bytes is a constant-time comparison (an API key's secret, kept with the cached
/// key record it was verified against: a record loaded anew starts empty). Set at most
/// once; wiped when dropped. It is not part of the value it sits in: `Clone` gives an
/// empty memo, every memo equals every other, and `Debug` shows nothing of it.
#[derive(Default)]
pub struct VerifiedMemo(std::sync::OnceLock<Zeroizing<Vec<u8>>>);

impl VerifiedMemo {
    /// Whether `presented` is the remembered secret (false while empty; see
    /// [`eq_words`]).
    pub fn matches(&self, presented: &[u8]) -> bool {
        self.0.get().is_some_and(|known| eq_words(known, presented))
    }

    /// Remembers `verified` (only the first call sets it).
    pub fn remember(&self, verified: &[u8]) {
        let _ = self.0.set(Zeroizing::new(verified.to_vec()));
    }
}

/// Constant-time equality for a given length (a length that differs returns at once),
/// eight bytes at a time: the differences are gathered into one word, which `subtle`
/// compares with zero.
pub fn eq_words(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let word = |chunk: &[u8]| {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        u64::from_le_bytes(w)
    };
    let diff = a
        .chunks(8)
        .zip(b.chunks(8))
        .fold(0u64, |d, (x, y)| d | (word(x) ^ word(y)));
    diff.ct_eq(&0).into()
}

impl Clone for VerifiedMemo {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for VerifiedMemo {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for VerifiedMemo {}

impl fmt::Debug for VerifiedMemo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VerifiedMemo")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_bytes() {
        let s = Secret::from_string("hunter2".into());
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(s)), "Some([redacted])");
    }

    #[test]
    fn constant_time_compare() {
        let s = Secret::new(vec![1, 2, 3]);
        assert!(s.ct_eq(&[1, 2, 3]));
        assert!(!s.ct_eq(&[1, 2, 4]));
        assert!(!s.ct_eq(&[1, 2]));
    }

    #[test]
    fn a_memo_matches_its_secret_only_every_byte_and_the_length() {
        let memo = VerifiedMemo::default();
        let secret = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFG";
        assert!(!memo.matches(secret));
        memo.remember(secret);
        assert!(memo.matches(secret));
        // Set once: a later call does not replace it.
        memo.remember(b"other");
        assert!(!memo.matches(b"other"));
        for i in 0..secret.len() {
            let mut off = *secret;
            off[i] ^= 1;
            assert!(!memo.matches(&off), "byte {i}");
        }
        assert!(!memo.matches(&secret[..42]));
        assert!(!memo.matches(&[secret.as_slice(), b"\0"].concat()));
        assert!(!memo.matches(b""));
        assert!(!memo.clone().matches(secret));
        assert_eq!(format!("{memo:?}"), "VerifiedMemo");
    }
}
