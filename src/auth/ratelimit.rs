//! Failed-authentication limiting per client: after `max_failures` failures within
//! `window`, the client gets 429 with `Retry-After` before any lookup or crypto, until
//! the window that counted them has passed. While no client has reached the limit in
//! the last window, a request pays one clock read and no lookup.
//!
//! A client is an IPv4 address or an IPv6 /64 ([`client_key`]): one host (or one
//! customer of a provider) holds a whole /64, so counting IPv6 per address would give
//! an attacker 2^64 budgets.

use moka::sync::Cache;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Who a failure is counted against: an IPv4 address as it is, an IPv6 address by its
/// /64 prefix (the rest zeroed), an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) as the
/// IPv4 address it carries.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !u128::from(u64::MAX);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

struct Window {
    started: Instant,
    failures: AtomicU32,
}

pub struct FailureLimiter {
    max_failures: u32,
    window: Duration,
    windows: Cache<IpAddr, Arc<Window>>,
    /// The limiter's time origin, for `last_reached`.
    epoch: Instant,
    /// When (ms after `epoch`, plus one; 0 = never) some client last reached the limit.
    last_reached: AtomicU64,
}

impl FailureLimiter {
    /// `capacity` bounds how many client addresses are tracked at once.
    pub fn new(max_failures: u32, window: Duration, capacity: u64) -> Self {
        Self {
            max_failures,
            window,
            windows: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(window)
                .build(),
            epoch: Instant::now(),
            last_reached: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// `Some(retry_after)` while `ip` is over the limit.
    pub fn blocked(&self, ip: IpAddr) -> Option<Duration> {
        if self.max_failures == 0 {
            return None;
        }
        // Nobody reached the limit within the last window: nobody is blocked.
        let reached = self.last_reached.load(Ordering::Relaxed);
        let window_ms = u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX);
        if reached == 0 || self.now_ms().saturating_add(1).saturating_sub(reached) > window_ms {
            return None;
        }
        let w = self.windows.get(&client_key(ip))?;
        let elapsed = w.started.elapsed();
        if elapsed >= self.window || w.failures.load(Ordering::Relaxed) < self.max_failures {
            return None;
        }
        Some(self.window - elapsed)
    }

    /// Counts one failed authentication from `ip`.
    pub fn record_failure(&self, ip: IpAddr) {
        if self.max_failures == 0 {
            return;
        }
        let ip = client_key(ip);
        let w = self.windows.get_with(ip, || {
            Arc::new(Window {
                started: Instant::now(),
                failures: AtomicU32::new(0),
            })
        });
        if w.started.elapsed() >= self.window {
            // The old window is over (the cache has not evicted it yet): start anew.
            self.windows.insert(
                ip,
                Arc::new(Window {
                    started: Instant::now(),
                    failures: AtomicU32::new(1),
                }),
            );
            if self.max_failures <= 1 {
                self.last_reached
                    .store(self.now_ms() + 1, Ordering::Relaxed);
            }
            return;
        }
        if w.failures.fetch_add(1, Ordering::Relaxed) + 1 >= self.max_failures {
            self.last_reached
                .store(self.now_ms() + 1, Ordering::Relaxed);
        }
    }
}

/// Seconds for a `Retry-After` header: rounded up, at least 1.
pub fn retry_after_secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_per_ip_and_recovers() {
        let l = FailureLimiter::new(3, Duration::from_millis(300), 100);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..2 {
            l.record_failure(a);
        }
        assert!(l.blocked(a).is_none());
        l.record_failure(a);
        let retry = l.blocked(a).unwrap();
        assert!(retry <= Duration::from_millis(300));
        assert!(l.blocked(b).is_none(), "another client is unaffected");
        std::thread::sleep(Duration::from_millis(350));
        assert!(l.blocked(a).is_none(), "the window passed");
        l.record_failure(a);
        assert!(l.blocked(a).is_none(), "a new window counts from zero");
    }

    #[test]
    fn zero_disables() {
        let l = FailureLimiter::new(0, Duration::from_secs(60), 10);
        let a: IpAddr = "::1".parse().unwrap();
        for _ in 0..100 {
            l.record_failure(a);
        }
        assert!(l.blocked(a).is_none());
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_clients_are_counted_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(client_key(ip("203.0.113.7")), ip("203.0.113.7"));
        assert_eq!(client_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(client_key(ip("::ffff:203.0.113.7")), ip("203.0.113.7"));
        let l = FailureLimiter::new(2, Duration::from_secs(60), 100);
        l.record_failure(ip("2001:db8:1:2::1"));
        l.record_failure(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"));
        assert!(l.blocked(ip("2001:db8:1:2::99")).is_some(), "same /64");
        assert!(l.blocked(ip("2001:db8:1:3::1")).is_none(), "another /64");
        l.record_failure(ip("::ffff:10.0.0.1"));
        l.record_failure(ip("10.0.0.1"));
        assert!(l.blocked(ip("10.0.0.1")).is_some(), "mapped counts as IPv4");
        assert!(l.blocked(ip("10.0.0.2")).is_none(), "IPv4 per address");
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(60)), 60);
    }
}
