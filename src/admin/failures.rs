//! Failed admin token checks: the per-client limit, the audit record, the metric and
//! the log line.
//!
//! - The limit: `admin.max_failures` failed checks per client (IPv4 address, IPv6 /64;
//!   the client is the TCP peer) per `admin.failure_window`, then 429
//!   `admin.rate_limited` with `Retry-After`; other clients keep their own budget.
//! - One check at a time per client ([`AdminFailures::turn`]): a burst of parallel
//!   guesses cannot all start before the first of them has failed and been counted, and
//!   a burst of calls with one new valid token runs argon2 once (the others, waiting
//!   their turn, find it remembered).
//! - The audit log gets one `admin.auth_failed` record per failure (client address,
//!   token id when the token was well-formed, reason, request id; never the secret), at
//!   most [`AUDIT_ROWS_PER_CLIENT`] per client and [`AUDIT_ROWS_OVERALL`] in all per
//!   minute, so that a flood cannot grow the store without bound. Failures left out are
//!   counted (`wpgate_admin_auth_failures_unaudited_total`) and the client's next record
//!   says how many of its own were left out (`suppressed=N`).

use super::token::Refusal;
use crate::auth::ratelimit::{client_key, retry_after_secs, FailureLimiter};
use crate::config::model::AdminSettings;
use crate::fleet::{Actor, Fleet};
use moka::sync::Cache;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Audit records of failures per client (IPv4 address, IPv6 /64) per minute.
pub const AUDIT_ROWS_PER_CLIENT: u32 = 10;
/// Audit records of failures from all clients together per minute.
pub const AUDIT_ROWS_OVERALL: u32 = 100;
/// How many clients' failure counts are tracked at once (each limit).
const TRACKED_CLIENTS: u64 = 100_000;

/// The admin listener's record of failed token checks.
pub struct AdminFailures {
    limiter: FailureLimiter,
    /// Each client's one slot for a token check.
    turns: Cache<IpAddr, Arc<Semaphore>>,
    audit: AuditBudget,
}

impl AdminFailures {
    pub fn new(settings: &AdminSettings) -> Self {
        AdminFailures {
            limiter: FailureLimiter::new(
                settings.max_failures,
                settings.failure_window,
                TRACKED_CLIENTS,
            ),
            turns: Cache::builder()
                .max_capacity(TRACKED_CLIENTS)
                .time_to_idle(Duration::from_secs(600))
                .build(),
            audit: AuditBudget::new(
                AUDIT_ROWS_PER_CLIENT,
                AUDIT_ROWS_OVERALL,
                Duration::from_secs(60),
            ),
        }
    }

    /// Seconds until `client` may try again (for `Retry-After`), while it is over the
    /// limit.
    pub fn retry_after(&self, client: IpAddr) -> Option<u64> {
        self.limiter.blocked(client).map(retry_after_secs)
    }

    /// Waits for `client`'s turn to have a token checked (first come, first served);
    /// the turn lasts as long as the returned permit.
    pub async fn turn(&self, client: IpAddr) -> Option<OwnedSemaphorePermit> {
        let slot = self
            .turns
            .get_with(client_key(client), || Arc::new(Semaphore::new(1)));
        // The semaphore is never closed: acquiring fails never.
        slot.acquire_owned().await.ok()
    }

    /// A check refused by the limit, before it ran.
    pub fn limited(&self, fleet: &Fleet) {
        fleet
            .metrics()
            .admin_auth_failures
            .with_label_values(&["rate_limited"])
            .inc();
    }

    /// A refused token: counted against the client, logged and audited within the bound.
    /// The audit record is written in the background: the refusal's answer does not
    /// wait for the store (nor tell by its timing whether it was written).
    pub fn failed(
        &self,
        fleet: &Arc<Fleet>,
        client: IpAddr,
        reason: Refusal,
        token_id: Option<&str>,
        request_id: Option<&str>,
    ) {
        self.limiter.record_failure(client);
        let metrics = fleet.metrics();
        let label = match reason {
            Refusal::Malformed => "malformed",
            Refusal::UnknownId | Refusal::Revoked | Refusal::WrongSecret => "refused",
        };
        metrics
            .admin_auth_failures
            .with_label_values(&[label])
            .inc();
        let Some(suppressed) = self.audit.admit(client_key(client)) else {
            metrics.admin_auth_failures_unaudited.inc();
            return;
        };
        tracing::warn!(
            target: "wpgate::admin",
            client = %client,
            token = token_id.unwrap_or("-"),
            reason = reason.as_str(),
            suppressed,
            request_id = request_id.unwrap_or("-"),
            "admin token refused"
        );
        let actor = Actor {
            name: format!("client:{client}"),
            request_id: request_id.map(str::to_owned),
        };
        let mut detail = format!("reason={}", reason.as_str());
        if suppressed > 0 {
            detail.push_str(&format!(" suppressed={suppressed}"));
        }
        let entry = actor.audit(
            "admin.auth_failed",
            format!("admin_token:{}", token_id.unwrap_or("-")),
            None,
            Some(detail),
        );
        let fleet = Arc::clone(fleet);
        tokio::spawn(async move {
            if let Err(e) = fleet.store().append_audit(&entry).await {
                tracing::warn!(target: "wpgate::admin", error = %e, "cannot audit a refused admin token");
            }
        });
    }
}

/// How many failures of one client went into the audit log in its current window, and
/// how many were left out since its last record.
struct ClientAudit {
    started: Instant,
    written: u32,
    suppressed: u64,
}

/// Fixed windows of audit records, per client and overall.
struct AuditBudget {
    per_client: u32,
    overall: u32,
    window: Duration,
    clients: Cache<IpAddr, Arc<Mutex<ClientAudit>>>,
    all: Mutex<(Instant, u32)>,
}

impl AuditBudget {
    fn new(per_client: u32, overall: u32, window: Duration) -> Self {
        AuditBudget {
            per_client,
            overall,
            window,
            // Kept well past a window, so that a client's next record can still say how
            // many of its failures were left out.
            clients: Cache::builder()
                .max_capacity(TRACKED_CLIENTS)
                .time_to_idle(window * 60)
                .build(),
            all: Mutex::new((Instant::now(), 0)),
        }
    }

    /// `Some(failures of this client left out since its last record)` when this failure
    /// gets a record, `None` when it is left out.
    fn admit(&self, client: IpAddr) -> Option<u64> {
        let entry = self.clients.get_with(client, || {
            Arc::new(Mutex::new(ClientAudit {
                started: Instant::now(),
                written: 0,
                suppressed: 0,
            }))
        });
        let mut c = entry.lock().unwrap_or_else(PoisonError::into_inner);
        if c.started.elapsed() >= self.window {
            c.started = Instant::now();
            c.written = 0;
        }
        if c.written >= self.per_client || !self.take_overall() {
            c.suppressed += 1;
            return None;
        }
        c.written += 1;
        Some(std::mem::take(&mut c.suppressed))
    }

    fn take_overall(&self) -> bool {
        let mut all = self.all.lock().unwrap_or_else(PoisonError::into_inner);
        if all.0.elapsed() >= self.window {
            *all = (Instant::now(), 0);
        }
        if all.1 >= self.overall {
            return false;
        }
        all.1 += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        client_key(s.parse().unwrap())
    }

    #[test]
    fn audit_records_are_bounded_per_client_and_overall() {
        let b = AuditBudget::new(2, 3, Duration::from_secs(60));
        let a = ip("192.0.2.1");
        assert_eq!(b.admit(a), Some(0));
        assert_eq!(b.admit(a), Some(0));
        assert_eq!(b.admit(a), None, "over the client's bound");
        assert_eq!(b.admit(a), None);
        assert_eq!(b.admit(ip("192.0.2.2")), Some(0));
        assert_eq!(b.admit(ip("192.0.2.3")), None, "over the overall bound");
    }

    #[test]
    fn the_next_record_after_a_window_counts_what_was_left_out() {
        let b = AuditBudget::new(1, 100, Duration::from_millis(50));
        let a = ip("2001:db8::1");
        assert_eq!(b.admit(a), Some(0));
        assert_eq!(b.admit(ip("2001:db8::2")), None, "same /64, same bound");
        assert_eq!(b.admit(a), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(b.admit(a), Some(2));
        assert_eq!(b.admit(a), None);
    }

    #[test]
    fn one_check_at_a_time_per_client() {
        use futures_util::FutureExt;
        let f = AdminFailures::new(&AdminSettings {
            max_failures: 2,
            failure_window: Duration::from_secs(60),
            header_read_timeout: Duration::from_secs(30),
        });
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let first = f.turn(a).now_or_never().flatten().unwrap();
        let same_64: IpAddr = "2001:db8::2".parse().unwrap();
        assert!(f.turn(same_64).now_or_never().is_none(), "waits its turn");
        let other: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        assert!(f.turn(other).now_or_never().flatten().is_some());
        drop(first);
        assert!(f.turn(same_64).now_or_never().flatten().is_some());
    }
}
