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

/// The latest time RFC 3339 can write: 9999-12-31T23:59:59Z.
pub const MAX_RFC3339: i64 = 253_402_300_799;

/// RFC 3339 text for a Unix time, for people and JSON output (clamped to 1970-9999).
pub fn rfc3339(unix: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(u64::try_from(unix.min(MAX_RFC3339)).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A point in time as an operator writes it: RFC 3339 (`2026-12-01T00:00:00Z`) or a
/// duration before `now` (`24h`, `7d`). Unix seconds.
pub fn parse_since(raw: &str, now: i64) -> Result<i64, String> {
    let raw = raw.trim();
    if let Ok(t) = humantime::parse_rfc3339_weak(raw) {
        return t
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .map_err(|_| "a time before 1970".to_string());
    }
    match humantime::parse_duration(raw) {
        Ok(ago) => Ok(now.saturating_sub(i64::try_from(ago.as_secs()).unwrap_or(i64::MAX))),
        Err(_) => Err(format!(
            "{raw:?} is neither an RFC 3339 time (2026-12-01T00:00:00Z) nor a duration ago (24h, 7d)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_past_year_9999_are_written_as_its_last_second() {
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(-5), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn since_takes_a_time_or_a_duration_ago() {
        assert_eq!(parse_since("1970-01-02T00:00:00Z", 0), Ok(86_400));
        assert_eq!(parse_since("1h", 10_000), Ok(6_400));
        assert_eq!(parse_since(" 2d ", 200_000), Ok(200_000 - 172_800));
        assert!(parse_since("yesterday", 0)
            .unwrap_err()
            .contains("RFC 3339"));
        assert!(parse_since("", 0).is_err());
    }

    #[test]
    fn unix_after_never_rounds_down() {
        let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let t = unix_after(Duration::from_secs(3));
        assert!(Duration::from_secs(t as u64) >= before + Duration::from_secs(3));
        assert!(t <= now_unix() + 4);
    }
}
