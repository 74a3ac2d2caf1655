//! The checks of one site, in the order a request meets them: its stored record (the
//! credential opened for its origin, as the proxy opens it), DNS, TCP, TLS, then the
//! health check's steps with the credential injected as the proxy injects it, and the
//! site's clock.

use super::tls::{self, Peer, Trust};
use super::{Check, CheckName, Settings, SiteReport, Status};
use crate::crypto::{sealed_key_id, Keyring};
use crate::fleet::{FleetError, ResolvedSite};
use crate::health::{self, ProbeTarget, ServerDate, Step, Steps};
use crate::site::{CredentialKind, SiteId, UpstreamTarget};
use crate::store::SiteRecord;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What every site's check shares.
pub(super) struct Context {
    keyring: Arc<Keyring>,
    /// The health checks' client, or why it cannot be built (a bad `upstream.ca_file`).
    client: Result<reqwest::Client, String>,
    trust: Trust,
    timeout: Duration,
    clock_skew_warn: Duration,
    certificate_warn: Duration,
    /// The site was named on the command line: checked even when disabled.
    named: bool,
}

impl Context {
    pub(super) fn new(keyring: Arc<Keyring>, settings: &Settings, named: bool) -> Self {
        let ca_file = settings.ca_file.as_deref();
        Context {
            keyring,
            client: health::client(ca_file, settings.timeout).map_err(|e| e.to_string()),
            trust: Trust::new(ca_file),
            timeout: settings.timeout,
            clock_skew_warn: settings.clock_skew_warn,
            certificate_warn: settings.certificate_warn,
            named,
        }
    }
}

/// Checks one site; every check is in the report, skipped ones saying why.
pub(super) async fn check(record: SiteRecord, ctx: &Context) -> SiteReport {
    let started = Instant::now();
    let mut report = SiteReport {
        site_id: record.id.clone(),
        upstream: record.upstream_url.clone(),
        enabled: record.enabled,
        status: Status::Pass,
        duration_ms: 0,
        wordpress_user: None,
        checks: Vec::new(),
    };
    if !record.enabled && !ctx.named {
        let id = &record.id;
        report.checks.push(Check::skip(
            CheckName::Record,
            format!(
                "the site is disabled, so it is not checked (`wpgate doctor {id}` checks it \
                 anyway; `wpgate site enable {id}` enables it)"
            ),
        ));
        return finish(report, started);
    }
    let checks = &mut report.checks;
    let resolved = crate::fleet::resolve(&record, &ctx.keyring).await;
    let target = match &resolved {
        Ok(site) => {
            checks.push(record_passed(&record, site));
            health::targets::probe_target(site)
        }
        Err(e) => {
            let target = unusable_target(&record, e);
            checks.push(record_failed(&record, &target, e, &ctx.keyring));
            target
        }
    };
    let Ok(upstream) = UpstreamTarget::parse(&record.upstream_url) else {
        skip_from(
            checks,
            CheckName::Dns,
            "the upstream URL does not parse (see record)",
        );
        return finish(report, started);
    };
    let Some(addr) = dns(&upstream, &target, ctx, checks).await else {
        skip_from(
            checks,
            CheckName::Tcp,
            "the host does not resolve (see dns)",
        );
        return finish(report, started);
    };
    if !tcp(addr, &target, ctx, checks).await {
        skip_from(checks, CheckName::Tls, "no TCP connection (see tcp)");
        return finish(report, started);
    }
    if upstream.tls {
        let peer = Peer {
            addr,
            host: &upstream.host,
            target: &target,
        };
        let c = tls::check(&ctx.trust, &peer, ctx.timeout, ctx.certificate_warn).await;
        let failed = c.status == Status::Fail;
        checks.push(c);
        if failed {
            skip_from(checks, CheckName::RestIndex, "TLS failed (see tls)");
            return finish(report, started);
        }
    } else {
        checks.push(Check::skip(
            CheckName::Tls,
            "an http:// upstream: no TLS to check",
        ));
    }
    if resolved.is_err() {
        skip_from(
            checks,
            CheckName::RestIndex,
            "the site's record cannot be used (see record)",
        );
        return finish(report, started);
    }
    let client = match &ctx.client {
        Ok(c) => c,
        Err(why) => {
            checks.push(Check::fail(
                CheckName::RestIndex,
                format!("the HTTP client cannot be built: {why}"),
                Some("fix `upstream.ca_file` in the configuration".into()),
            ));
            skip_from(checks, CheckName::Credential, "see rest_index");
            return finish(report, started);
        }
    };
    let mut probed = target.clone();
    probed.enabled = true;
    let (health_report, steps) = health::probe_steps(client, &probed, ctx.timeout).await;
    report.wordpress_user = health_report.wordpress_user;
    http_checks(&record, &steps, ctx, &mut report.checks);
    finish(report, started)
}

fn finish(mut report: SiteReport, started: Instant) -> SiteReport {
    report.status = Status::worst(report.checks.iter().map(|c| c.status));
    report.duration_ms = super::elapsed_ms(started);
    report
}

/// The site checks in order, after the record.
const ORDER: [CheckName; 7] = [
    CheckName::Dns,
    CheckName::Tcp,
    CheckName::Tls,
    CheckName::RestIndex,
    CheckName::Credential,
    CheckName::Namespaces,
    CheckName::Clock,
];

/// Skips `from` and every check after it, saying why.
fn skip_from(checks: &mut Vec<Check>, from: CheckName, why: &str) {
    let mut seen = false;
    for name in &ORDER {
        seen |= *name == from;
        if seen {
            checks.push(Check::skip(*name, format!("not checked: {why}")));
        }
    }
}

/// The report of a site named on the command line that the store does not hold.
pub(super) fn unknown(id: &SiteId) -> SiteReport {
    SiteReport {
        site_id: id.to_string(),
        upstream: String::new(),
        enabled: false,
        status: Status::Fail,
        duration_ms: 0,
        wordpress_user: None,
        checks: vec![Check::fail(
            CheckName::Record,
            format!("there is no site {id} in the store"),
            Some("`wpgate site list` lists the sites; `wpgate site add` registers one".into()),
        )],
    }
}

/// The report of a site whose check stopped (a panic; a bug).
pub(super) fn crashed(id: String, upstream: String, enabled: bool) -> SiteReport {
    SiteReport {
        site_id: id,
        upstream,
        enabled,
        status: Status::Fail,
        duration_ms: 0,
        wordpress_user: None,
        checks: vec![Check::fail(
            CheckName::Record,
            "the check of this site stopped unexpectedly (a bug in wpgate: see the log)",
            None,
        )],
    }
}

/// What the health check knows of a site whose record does not resolve.
fn unusable_target(record: &SiteRecord, e: &FleetError) -> ProbeTarget {
    ProbeTarget {
        site_id: record.id.clone(),
        base_url: record.upstream_url.trim_end_matches('/').to_string(),
        credential: None,
        credential_kind: record.credential.kind,
        username: record.credential.username.clone(),
        required_namespaces: record.required_namespaces.clone(),
        enabled: true,
        unusable: Some(e.to_string()),
    }
}

fn record_passed(record: &SiteRecord, site: &ResolvedSite) -> Check {
    let mut message = match (&record.credential.sealed_secret, record.credential.kind) {
        (Some(sealed), kind) if kind != CredentialKind::None => format!(
            "the upstream credential ({}{}) opens with key {} for {}",
            kind.as_str(),
            record
                .credential
                .username
                .as_deref()
                .map(|u| format!(", {u}"))
                .unwrap_or_default(),
            sealed_key_id(sealed).unwrap_or("?"),
            site.upstream.origin
        ),
        _ => "no upstream credential (kind none): requests reach the site anonymously".into(),
    };
    if record.jwt_secret_sealed.is_some() {
        message.push_str("; the JWT secret opens");
    }
    Check::pass(CheckName::Record, message)
}

fn record_failed(
    record: &SiteRecord,
    target: &ProbeTarget,
    e: &FleetError,
    keyring: &Keyring,
) -> Check {
    let id = &record.id;
    let command = health::set_credential_command(target);
    let lost_key = |sealed: Option<&String>| {
        sealed
            .and_then(|s| sealed_key_id(s))
            .filter(|k| !keyring.contains(k))
            .map(str::to_string)
    };
    let fix = match e {
        FleetError::CredentialUnusable { .. } => {
            Some(match lost_key(record.credential.sealed_secret.as_ref()) {
                Some(key) => format!(
                    "put key {key} back into the keyring from its backup, or set the \
                     credential again: {command}"
                ),
                None => format!("set the credential again: {command}"),
            })
        }
        FleetError::Crypto(_) => Some(match lost_key(record.jwt_secret_sealed.as_ref()) {
            Some(key) => format!(
                "the site's JWT secret is sealed with key {key}, which the keyring lacks: \
                     put it back from the keyring's backup, or set the secret again with \
                     `wpgate site set-auth {id} ... --jwt-secret-stdin`"
            ),
            None => format!(
                "set the site's JWT secret again: `wpgate site set-auth {id} ... \
                     --jwt-secret-stdin`"
            ),
        }),
        FleetError::Invalid(_) | FleetError::Credential(_) => {
            Some(format!("set the credential again: {command}"))
        }
        FleetError::Upstream(_) => Some(health::update_upstream_command(target, "<URL>")),
        _ => None,
    };
    let message = match e {
        FleetError::Crypto(c) => format!("the site's JWT secret does not open: {c}"),
        other => other.to_string(),
    };
    Check::fail(CheckName::Record, message, fix)
}

/// Resolves the upstream host as the gateway does (the first address is the one it
/// connects to); `None` when it does not resolve.
async fn dns(
    upstream: &UpstreamTarget,
    target: &ProbeTarget,
    ctx: &Context,
    checks: &mut Vec<Check>,
) -> Option<SocketAddr> {
    let host = upstream.host.as_str();
    if let Ok(ip) = host.parse::<IpAddr>() {
        checks.push(Check::pass(
            CheckName::Dns,
            format!("{host} is an IP address: nothing to resolve"),
        ));
        return Some(SocketAddr::new(ip, upstream.port));
    }
    let fix = || {
        Some(format!(
            "check the host name in the upstream URL {} and its DNS record (`getent hosts \
             {host}` on this machine); to change it: {}",
            target.base_url,
            health::update_upstream_command(target, "<URL>")
        ))
    };
    let lookup = tokio::net::lookup_host((host, upstream.port));
    let found: Vec<SocketAddr> = match tokio::time::timeout(ctx.timeout, lookup).await {
        Ok(Ok(addrs)) => addrs.collect(),
        Ok(Err(e)) => {
            checks.push(Check::fail(
                CheckName::Dns,
                format!("{host} does not resolve ({e})"),
                fix(),
            ));
            return None;
        }
        Err(_) => {
            checks.push(Check::fail(
                CheckName::Dns,
                format!(
                    "no answer for {host} within {}",
                    humantime::format_duration(ctx.timeout)
                ),
                fix(),
            ));
            return None;
        }
    };
    let Some(first) = found.first().copied() else {
        checks.push(Check::fail(
            CheckName::Dns,
            format!("{host} resolves to no address"),
            fix(),
        ));
        return None;
    };
    let list: Vec<String> = found.iter().map(|a| a.ip().to_string()).collect();
    checks.push(Check::pass(
        CheckName::Dns,
        format!(
            "{host} resolves to {} (the gateway connects to {})",
            list.join(", "),
            first.ip()
        ),
    ));
    Some(first)
}

/// Connects to `addr`; whether it worked.
async fn tcp(
    addr: SocketAddr,
    target: &ProbeTarget,
    ctx: &Context,
    checks: &mut Vec<Check>,
) -> bool {
    let started = Instant::now();
    let connect = tokio::net::TcpStream::connect(addr);
    let unreachable_fix = || {
        Some(format!(
            "check that the host is up and that no firewall between this machine and port {} \
             drops the connection",
            addr.port()
        ))
    };
    let check = match tokio::time::timeout(ctx.timeout, connect).await {
        Ok(Ok(_)) => Check::pass(
            CheckName::Tcp,
            format!(
                "connected to {addr} in {:.1} ms",
                started.elapsed().as_secs_f64() * 1000.0
            ),
        ),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Check::fail(
            CheckName::Tcp,
            format!(
                "nothing accepts connections on {addr} (connection refused): the web server \
                 is not running, or listens on another port"
            ),
            Some(format!(
                "start the site's web server, or point the site at the address it listens on: \
                 {}",
                health::update_upstream_command(target, "<URL>")
            )),
        ),
        Ok(Err(e)) => Check::fail(
            CheckName::Tcp,
            format!("cannot connect to {addr} ({e})"),
            unreachable_fix(),
        ),
        Err(_) => Check::fail(
            CheckName::Tcp,
            format!(
                "no connection to {addr} within {}",
                humantime::format_duration(ctx.timeout)
            ),
            unreachable_fix(),
        ),
    };
    let passed = check.status == Status::Pass;
    checks.push(check);
    passed
}

/// The health check's steps as checks, and the clock.
fn http_checks(record: &SiteRecord, steps: &Steps, ctx: &Context, checks: &mut Vec<Check>) {
    checks.push(from_step(CheckName::RestIndex, &steps.index));
    checks.push(from_step(CheckName::Credential, &steps.credential));
    let mut namespaces = from_step(CheckName::Namespaces, &steps.namespaces);
    if namespaces.status == Status::Fail {
        namespaces.fix = Some(namespaces_fix(record, &steps.offered_namespaces));
    }
    checks.push(namespaces);
    checks.push(clock(steps.server_date, ctx.clock_skew_warn));
}

fn from_step(name: CheckName, step: &Step) -> Check {
    match step {
        Step::Skipped(m) => Check::skip(name, m.clone()),
        Step::Passed(m) => Check::pass(name, m.clone()),
        Step::Warned(m) => Check::warn(name, m.clone(), None),
        Step::Failed { message, fix } => Check::fail(name, message.clone(), fix.clone()),
    }
}

/// Activate the plugin, or stop requiring its namespace: the exact `set-health` that
/// keeps the site's other settings.
fn namespaces_fix(record: &SiteRecord, offered: &[String]) -> String {
    let (present, missing): (Vec<&String>, Vec<&String>) = record
        .required_namespaces
        .iter()
        .partition(|n| offered.contains(n));
    let mut command = format!("wpgate site set-health {}", record.id);
    for n in present {
        command.push_str(&format!(" --require-namespace {n}"));
    }
    if record.health_fail_fast {
        command.push_str(" --fail-fast");
    }
    let missing: Vec<String> = missing.iter().map(|n| format!("'{n}'")).collect();
    format!(
        "install and activate the plugin that provides {} (wp-admin → Plugins); if the site \
         no longer needs it: `{command}`",
        missing.join(", ")
    )
}

fn clock(date: Option<ServerDate>, warn_above: Duration) -> Check {
    let limit = warn_above.as_secs();
    let Some(date) = date else {
        return Check::skip(
            CheckName::Clock,
            "no Date header to compare (the REST index did not answer, or sent none)",
        );
    };
    let skew = date.skew_seconds();
    let off = skew.unsigned_abs();
    if off > limit {
        let side = if skew > 0 { "ahead of" } else { "behind" };
        return Check::warn(
            CheckName::Clock,
            format!(
                "the site's clock is {off} s {side} this machine's (its Date header; warned \
                 above {limit} s)"
            ),
            Some(
                "synchronise both clocks with NTP (e.g. `timedatectl set-ntp true`, or chrony): \
                 token times (exp, nbf, iat) and certificate validity are judged by them"
                    .into(),
            ),
        );
    }
    Check::pass(
        CheckName::Clock,
        format!(
            "the site's clock is within {off} s of this machine's (its Date header; warned \
             above {limit} s)"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipping_names_every_later_check_once() {
        let mut checks = Vec::new();
        skip_from(&mut checks, CheckName::Tls, "no TCP connection");
        let names: Vec<&str> = checks.iter().map(|c| c.check.as_str()).collect();
        assert_eq!(
            names,
            ["tls", "rest_index", "credential", "namespaces", "clock"]
        );
        assert!(checks.iter().all(|c| c.status == Status::Skip));
    }

    #[test]
    fn clock_skew_is_warned_above_the_threshold_only() {
        let at = |skew: i64| {
            clock(
                Some(ServerDate {
                    date: 1_000 + skew,
                    received_at: 1_000,
                }),
                Duration::from_secs(60),
            )
        };
        assert_eq!(at(3).status, Status::Pass);
        assert_eq!(at(-60).status, Status::Pass);
        let c = at(-95);
        assert_eq!(c.status, Status::Warn);
        assert!(c.message.contains("95 s behind"), "{c:?}");
        assert!(c.message.contains("warned above 60 s"), "{c:?}");
        assert_eq!(clock(None, Duration::from_secs(60)).status, Status::Skip);
    }

    #[test]
    fn the_namespace_fix_keeps_the_other_requirements_and_fail_fast() {
        let mut record = crate::store::SiteRecord {
            id: "shop".into(),
            name: "shop".into(),
            upstream_url: "http://127.0.0.1:1".into(),
            enabled: true,
            credential: crate::store::StoredCredential {
                kind: CredentialKind::None,
                username: None,
                sealed_secret: None,
            },
            auth_policy: None,
            jwt_secret_sealed: None,
            required_namespaces: vec!["wp/v2".into(), "shop/v1".into()],
            health_fail_fast: true,
            allowed_paths: vec![],
            allowed_origins: vec![],
            created_at: 0,
            updated_at: 0,
            version: 1,
        };
        let fix = namespaces_fix(&record, &["wp/v2".to_string()]);
        assert!(fix.contains("provides 'shop/v1'"), "{fix}");
        assert!(
            fix.contains("`wpgate site set-health shop --require-namespace wp/v2 --fail-fast`"),
            "{fix}"
        );
        record.health_fail_fast = false;
        let fix = namespaces_fix(&record, &[]);
        assert!(fix.contains("`wpgate site set-health shop`"), "{fix}");
    }
}
