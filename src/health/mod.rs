//! Site health: is each WordPress reachable, does it accept the credential wpgate injects,
//! and are the REST namespaces it needs there. One check is [`probe`]; the latest report
//! per site lives on the [`HealthBoard`], which the proxy (fail-fast), the admin API and
//! the metrics read; [`run_prober`] keeps the board fresh in the background.
//!
//! A check makes at most three requests to the site, none of which change anything:
//! 1. `GET {base}/wp-json/` must answer 200 with a JSON index that lists `namespaces`
//!    (asked with `_fields=`, so WordPress leaves out the route table, which is easily
//!    hundreds of KB). On a 404 it also tries `{base}/?rest_route=/` to tell "WordPress
//!    without pretty permalinks" and "wrong path prefix" from "not WordPress at all".
//! 2. `GET {base}/wp-json/wp/v2/users/me` with the site's credential must answer 200:
//!    WordPress ignores bad credentials on public routes such as the index, so only an
//!    authenticated route proves the credential works.
//! 3. Every namespace the site requires must be in the index.
//!
//! The credential header is sent on the index request too, as the proxy would send it:
//! a site that closes its REST API to anonymous visitors still passes step 1.
//!
//! Several replicas on one store share the work and the results: each site is checked
//! by one process at a time (a lease in the store), every result is written to the
//! store, and every process reads every result into its board (see `prober`).
//!
//! Where things live: `check` (the requests and the state they add up to), `diagnose`
//! (what each failure means and how to fix it), `board` (the latest report per site),
//! `ledger` (the results and leases in the store), `prober` (the background schedule),
//! `targets` (a site as stored, as the prober checks it, the metrics hook, checking a
//! site on demand, and checking a new credential before it is stored).

mod board;
mod check;
mod client;
mod diagnose;
mod ledger;
#[cfg(test)]
mod mimic;
mod prober;
pub mod targets;

pub use board::HealthBoard;
pub use check::{probe, probe_steps};
pub use client::{client, ClientError};
pub use diagnose::{set_credential_command, tls_fix, update_upstream_command};
pub use ledger::{new_replica_id, Ledger, StoredReport};
pub use prober::{run_prober, ProberSettings, ReportHook, ReportOrigin, TargetSource};

use http::{HeaderName, HeaderValue};
use std::fmt;

use crate::site::CredentialKind;

/// What wpgate knows of a site's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    /// Not checked yet.
    Unknown,
    /// Reachable, the credential works and every required namespace is there.
    Healthy,
    /// Reachable and authenticated, but something the site needs is missing (a plugin's
    /// REST namespace) or the credential could not be confirmed.
    Degraded,
    /// WordPress (or something in front of it) refuses the credential wpgate injects.
    AuthFailed,
    /// No usable WordPress REST API answered: connection error, timeout, error status,
    /// or an answer that is not a WordPress REST index.
    Unreachable,
    /// The site is disabled in wpgate; it is not checked.
    Disabled,
    /// wpgate cannot use the site's stored record (e.g. its upstream credential does not
    /// open for the origin of its upstream); the site is not contacted.
    Unusable,
}

impl HealthState {
    pub const ALL: [HealthState; 7] = [
        HealthState::Unknown,
        HealthState::Healthy,
        HealthState::Degraded,
        HealthState::AuthFailed,
        HealthState::Unreachable,
        HealthState::Disabled,
        HealthState::Unusable,
    ];

    /// The state named `name` (as [`HealthState::as_str`] writes it).
    pub fn parse(name: &str) -> Option<HealthState> {
        HealthState::ALL.into_iter().find(|s| s.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Unknown => "unknown",
            HealthState::Healthy => "healthy",
            HealthState::Degraded => "degraded",
            HealthState::AuthFailed => "auth_failed",
            HealthState::Unreachable => "unreachable",
            HealthState::Disabled => "disabled",
            HealthState::Unusable => "unusable",
        }
    }

    /// A result that counts toward `consecutive_failures`: checked, and not healthy.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            HealthState::Degraded
                | HealthState::AuthFailed
                | HealthState::Unreachable
                | HealthState::Unusable
        )
    }

    /// States in which requests through the proxy cannot succeed, so the prober backs off
    /// (and the proxy may fail fast).
    pub fn is_down(self) -> bool {
        matches!(
            self,
            HealthState::AuthFailed | HealthState::Unreachable | HealthState::Unusable
        )
    }
}

impl fmt::Display for HealthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HealthReport {
    pub state: HealthState,
    /// For operators: what is wrong and what to do about it (or what was confirmed).
    pub message: String,
    /// Unix seconds when the check started.
    pub checked_at: i64,
    pub duration_ms: u64,
    /// Non-healthy results in a row, this one included (0 when healthy or disabled).
    /// Counted by the store when the result is written; a bare [`probe`] leaves it 0.
    pub consecutive_failures: u32,
    /// The WordPress user's display name from `users/me`, when authenticated.
    pub wordpress_user: Option<String>,
    /// The replica (or `cli`) that ran the check, once the result is stored.
    pub checked_by: Option<String>,
}

/// What one step of a check found. `wpgate doctor` reports the steps one by one; the
/// health board keeps only their sum, the [`HealthReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Not run: an earlier step failed, or there is nothing to check (says why).
    Skipped(String),
    Passed(String),
    /// Passed, but with something the operator should look at.
    Warned(String),
    /// Failed: what it means, and the exact fix (a command with the site's id, or the
    /// WordPress screen) when there is one.
    Failed {
        message: String,
        fix: Option<String>,
    },
}

/// The steps of one check (see [`probe_steps`]), and what the site's answers told
/// besides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Steps {
    /// `GET /wp-json/` answers 200 with a WordPress REST index.
    pub index: Step,
    /// `GET /wp-json/wp/v2/users/me` with the site's credential answers with a user.
    pub credential: Step,
    /// The REST namespaces the site requires are in the index.
    pub namespaces: Step,
    /// The namespaces the index offers (empty when it did not answer).
    pub offered_namespaces: Vec<String>,
    /// The index answer's `Date` header and when the answer arrived (Unix seconds), to
    /// compare the site's clock with this machine's.
    pub server_date: Option<ServerDate>,
}

/// A site's `Date` header and this machine's time when it arrived, in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerDate {
    pub date: i64,
    pub received_at: i64,
}

impl ServerDate {
    /// How far the site's clock is ahead of this machine's (negative: behind), to the
    /// second the `Date` header carries.
    pub fn skew_seconds(&self) -> i64 {
        self.date - self.received_at
    }
}

impl Steps {
    fn not_run() -> Self {
        let not_run = || Step::Skipped("not checked".into());
        Steps {
            index: not_run(),
            credential: not_run(),
            namespaces: not_run(),
            offered_namespaces: Vec::new(),
            server_date: None,
        }
    }
}

/// What a check needs to know of a site.
#[derive(Clone)]
pub struct ProbeTarget {
    pub site_id: String,
    /// The site's upstream URL including its path prefix, no trailing slash.
    pub base_url: String,
    /// The header wpgate injects, already built.
    pub credential: Option<(HeaderName, HeaderValue)>,
    pub credential_kind: CredentialKind,
    /// The application-password user or the header name, for messages.
    pub username: Option<String>,
    /// REST namespaces the site must offer, e.g. `myplugin/v1`.
    pub required_namespaces: Vec<String>,
    pub enabled: bool,
    /// Why wpgate cannot use the site (its record does not resolve): the check reports
    /// `unusable` with this, without contacting the site.
    pub unusable: Option<String>,
}

impl fmt::Debug for ProbeTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProbeTarget")
            .field("site_id", &self.site_id)
            .field("base_url", &self.base_url)
            .field("credential", &self.credential.as_ref().map(|(n, _)| n))
            .field("credential_kind", &self.credential_kind)
            .field("username", &self.username)
            .field("required_namespaces", &self.required_namespaces)
            .field("enabled", &self.enabled)
            .field("unusable", &self.unusable)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::mimic::target;

    #[test]
    fn debug_hides_the_credential() {
        let t = target("shop", "http://127.0.0.1:1");
        let text = format!("{t:?}");
        assert!(text.contains("authorization"), "{text}");
        assert!(!text.contains("Basic"), "{text}");
    }

    #[test]
    fn states_have_stable_names() {
        let names: Vec<_> = HealthState::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            [
                "unknown",
                "healthy",
                "degraded",
                "auth_failed",
                "unreachable",
                "disabled",
                "unusable"
            ]
        );
        for s in HealthState::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert_eq!(HealthState::parse(s.as_str()), Some(s));
        }
        assert_eq!(HealthState::parse("sleepy"), None);
    }
}
