//! Wall-clock helpers: the store keeps times as Unix seconds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, now.
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Now plus `d`, rounded up to the next whole second: a key given `d` to live is
/// accepted for at least `d` (times are stored in whole seconds and compared as
/// `now_unix() >= t`).
pub fn unix_after(d: Duration) -> i64 {
    let exact = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_add(d);
    let secs = exact.as_secs() + u64::from(exact.subsec_nanos() > 0);
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// RFC 3339 text for a Unix time, for people and JSON output.
pub fn rfc3339(unix: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_after_never_rounds_down() {
        let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let t = unix_after(Duration::from_secs(3));
        assert!(Duration::from_secs(t as u64) >= before + Duration::from_secs(3));
        assert!(t <= now_unix() + 4);
    }
}
