//! Deterministic payloads for the streaming tests: produced chunk by chunk and
//! hashed without ever holding the whole body.

use bytes::Bytes;
use futures_util::Stream;
use sha2::{Digest, Sha256};

use super::text::hex;

const PATTERN_CHUNK: usize = 64 * 1024;

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

fn pattern_fill(state: &mut u64, n: usize) -> Bytes {
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        *state = xorshift(*state);
        let take = (n - v.len()).min(8);
        v.extend_from_slice(&state.to_le_bytes()[..take]);
    }
    Bytes::from(v)
}

fn pattern_seed(seed: u64) -> u64 {
    // xorshift must not start at 0.
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1
}

/// `total` pseudo-random bytes determined by `seed`, produced chunk by chunk so no
/// copy of the whole payload is ever held.
pub fn pattern_stream(
    total: u64,
    seed: u64,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    futures_util::stream::unfold(
        (0u64, pattern_seed(seed)),
        move |(sent, mut st)| async move {
            if sent >= total {
                return None;
            }
            let n = (total - sent).min(PATTERN_CHUNK as u64) as usize;
            let chunk = pattern_fill(&mut st, n);
            Some((Ok(chunk), (sent + n as u64, st)))
        },
    )
}

/// sha256 (hex) of what [`pattern_stream`] produces for the same arguments.
pub fn pattern_sha256(total: u64, seed: u64) -> String {
    let mut st = pattern_seed(seed);
    let mut hasher = Sha256::new();
    let mut done = 0u64;
    while done < total {
        let n = (total - done).min(PATTERN_CHUNK as u64) as usize;
        hasher.update(pattern_fill(&mut st, n));
        done += n as u64;
    }
    hex(&hasher.finalize())
}
