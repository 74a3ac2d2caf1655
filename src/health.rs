//! Site health: is each WordPress reachable, does it accept the credential wpgate injects,
//! and are the REST namespaces it needs there. One check is [`probe`]; the latest report
//! per site lives on the [`HealthBoard`], which the proxy (fail-fast), the admin API and
//! the metrics read; [`spawn_prober`] keeps the board fresh in the background.
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
//! Messages and logs name the credential's kind and user, never its value.

use async_trait::async_trait;
use http::{HeaderName, HeaderValue, StatusCode};
use rand::Rng;
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::site::CredentialKind;

/// The most of a response body a check reads. The namespaces-only index is a few hundred
/// bytes; a site that ignores `_fields` sends its whole route table (MBs with big plugins).
const MAX_BODY: usize = 8 * 1024 * 1024;
/// How much of WordPress's own error message a report quotes.
const MAX_QUOTE: usize = 200;

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
}

impl HealthState {
    pub const ALL: [HealthState; 6] = [
        HealthState::Unknown,
        HealthState::Healthy,
        HealthState::Degraded,
        HealthState::AuthFailed,
        HealthState::Unreachable,
        HealthState::Disabled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Unknown => "unknown",
            HealthState::Healthy => "healthy",
            HealthState::Degraded => "degraded",
            HealthState::AuthFailed => "auth_failed",
            HealthState::Unreachable => "unreachable",
            HealthState::Disabled => "disabled",
        }
    }

    /// A result that counts toward `consecutive_failures`: checked, and not healthy.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            HealthState::Degraded | HealthState::AuthFailed | HealthState::Unreachable
        )
    }

    /// States in which requests through the proxy cannot succeed, so the prober backs off
    /// (and the proxy may fail fast).
    pub fn is_down(self) -> bool {
        matches!(self, HealthState::AuthFailed | HealthState::Unreachable)
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
    /// Non-healthy results in a row, this one included (0 when healthy or disabled). Set
    /// by [`HealthBoard::record`]; a bare [`probe`] leaves it 0.
    pub consecutive_failures: u32,
    /// The WordPress user's display name from `users/me`, when authenticated.
    pub wordpress_user: Option<String>,
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
            .finish()
    }
}

/// The HTTP client for checks: no redirects followed (a redirect is reported, since the
/// proxy does not follow it either), no proxy from the environment (the proxy connects
/// directly too), `timeout` per request. With `ca_file`, only the certificates in that
/// PEM bundle are trusted, as for the proxy's upstream connections.
pub fn client(ca_file: Option<&Path>, timeout: Duration) -> anyhow::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("wpgate-health/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("cannot read CA file {}: {e}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| anyhow::anyhow!("CA file {} is not a PEM bundle: {e}", path.display()))?;
        if certs.is_empty() {
            anyhow::bail!("CA file {} holds no certificate", path.display());
        }
        b = b.tls_built_in_root_certs(false);
        for cert in certs {
            b = b.add_root_certificate(cert);
        }
    }
    Ok(b.build()?)
}

// ---------------------------------------------------------------------------------------
// One check
// ---------------------------------------------------------------------------------------

/// Checks `target` now; `timeout` bounds each request. Disabled sites get a `Disabled`
/// report without any request.
pub async fn probe(
    client: &reqwest::Client,
    target: &ProbeTarget,
    timeout: Duration,
) -> HealthReport {
    let started = std::time::Instant::now();
    let checked_at = crate::time::now_unix();
    let outcome = if target.enabled {
        check(client, target, timeout).await
    } else {
        Outcome::new(
            HealthState::Disabled,
            format!(
                "the site is disabled in wpgate, so it is not checked; enable it with \
                 `wpgate site enable {}`",
                target.site_id
            ),
        )
    };
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    tracing::debug!(
        site = %target.site_id,
        state = outcome.state.as_str(),
        duration_ms,
        "health check"
    );
    HealthReport {
        state: outcome.state,
        message: outcome.message,
        checked_at,
        duration_ms,
        consecutive_failures: 0,
        wordpress_user: outcome.user,
    }
}

struct Outcome {
    state: HealthState,
    message: String,
    user: Option<String>,
}

impl Outcome {
    fn new(state: HealthState, message: String) -> Self {
        Outcome {
            state,
            message,
            user: None,
        }
    }
}

/// The request URL's pieces for messages: the path as the site sees it.
struct Site<'a> {
    target: &'a ProbeTarget,
    base: &'a str,
    prefix: String,
    timeout: Duration,
}

impl Site<'_> {
    fn get(&self, client: &reqwest::Client, path_and_query: &str) -> reqwest::RequestBuilder {
        let mut req = client
            .get(format!("{}{path_and_query}", self.base))
            .timeout(self.timeout);
        if let Some((name, value)) = &self.target.credential {
            req = req.header(name.clone(), value.clone());
        }
        req
    }

    /// `GET /prefix/path` for messages.
    fn shown(&self, path: &str) -> String {
        format!("GET {}{path}", self.prefix)
    }
}

async fn check(client: &reqwest::Client, target: &ProbeTarget, timeout: Duration) -> Outcome {
    let base = target.base_url.trim_end_matches('/');
    let prefix = url::Url::parse(base)
        .map(|u| u.path().trim_end_matches('/').to_string())
        .unwrap_or_default();
    let site = Site {
        target,
        base,
        prefix,
        timeout,
    };
    let index = match check_index(client, &site).await {
        Ok(index) => index,
        Err(outcome) => return outcome,
    };
    let namespaces = &index.namespaces;
    let auth = match check_auth(client, &site, &index).await {
        Ok(auth) => auth,
        Err(outcome) => return outcome,
    };

    let mut problems = Vec::new();
    let missing: Vec<&str> = target
        .required_namespaces
        .iter()
        .map(String::as_str)
        .filter(|need| !namespaces.iter().any(|have| have == need))
        .collect();
    if !missing.is_empty() {
        problems.push(missing_namespaces_message(&missing, namespaces));
    }
    if let Auth::Unconfirmed(why) = &auth {
        problems.push(why.clone());
    }
    let user = match &auth {
        Auth::Confirmed(user) => Some(user.clone()),
        _ => None,
    };
    if !problems.is_empty() {
        return Outcome {
            state: HealthState::Degraded,
            message: problems.join("; "),
            user,
        };
    }

    let mut message = format!("WordPress REST API answers at {base}/wp-json/");
    match &auth {
        Auth::Confirmed(user) => {
            message.push_str(&format!(
                "; {} accepted (WordPress user '{user}')",
                credential_phrase(target)
            ));
        }
        Auth::NotChecked => message.push_str(
            "; authentication not checked: the site has no credential (kind none), so \
             wpgate forwards requests anonymously",
        ),
        Auth::Unconfirmed(_) => {}
    }
    if !target.required_namespaces.is_empty() {
        message.push_str(&format!(
            "; required REST namespaces present: {}",
            target.required_namespaces.join(", ")
        ));
    }
    Outcome {
        state: HealthState::Healthy,
        message,
        user,
    }
}

/// The parts of the REST index a check reads.
const INDEX_FIELDS: &str = "_fields=name,home,namespaces,authentication";

/// Step 1: the REST index.
async fn check_index(client: &reqwest::Client, site: &Site<'_>) -> Result<RestIndex, Outcome> {
    let shown = site.shown("/wp-json/");
    let resp = site
        .get(client, &format!("/wp-json/?{INDEX_FIELDS}"))
        .send()
        .await
        .map_err(|e| unreachable(request_failed(&shown, site, &e)))?;
    let status = resp.status();
    if status == StatusCode::OK {
        let content_type = content_type(&resp);
        let (body, cut) = read_body(resp)
            .await
            .map_err(|e| unreachable(request_failed(&shown, site, &e)))?;
        if cut {
            return Err(unreachable(format!(
                "{shown} answered 200 with more than {} MiB, which is not the WordPress REST \
                 index asked for (a few fields): check the upstream URL {}",
                MAX_BODY / (1024 * 1024),
                site.base
            )));
        }
        return parse_index(&body).map_err(|why| {
            unreachable(match why {
                IndexProblem::NotJson => format!(
                    "{shown} answered 200 but not with JSON (content-type {}): a page cache, \
                     maintenance page or security plugin answers instead of WordPress's REST \
                     API, or the upstream URL {} is not the WordPress site",
                    content_type.as_deref().unwrap_or("none"),
                    site.base
                ),
                IndexProblem::NoNamespaces => format!(
                    "{shown} answered JSON without a \"namespaces\" list, so this is not a \
                     WordPress REST API index: check the upstream URL {} and its path prefix \
                     (or a plugin hides the index)",
                    site.base
                ),
            })
        });
    }
    let location = location(&resp);
    let body = read_body(resp).await.map(|(b, _)| b).unwrap_or_default();
    let wp = WpError::parse(&body);
    if status == StatusCode::NOT_FOUND {
        return Err(unreachable(not_found_message(client, site, &shown).await));
    }
    if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
        if site.target.credential.is_some() {
            return Err(auth_failed(site, &shown, status, &wp, None));
        }
        return Err(unreachable(format!(
            "{shown} answered {}{}: the REST API is closed to anonymous visitors (a security \
             plugin or the web server), and the site has no credential; give it one with \
             `wpgate site set-credential {} --auth app-password --username <user> --secret-stdin`",
            status.as_u16(),
            wp.in_parens(),
            site.target.site_id
        )));
    }
    Err(unreachable(unexpected_status(
        &shown,
        status,
        location.as_deref(),
        &wp,
    )))
}

enum IndexProblem {
    NotJson,
    NoNamespaces,
}

/// What the REST index tells: its namespaces, the site's home URL, and whether it offers
/// application passwords.
struct RestIndex {
    namespaces: Vec<String>,
    home: Option<String>,
    /// `Some(false)` when the index lists authentication methods without
    /// `application-passwords` (WordPress lists them only when they are available);
    /// `None` when it lists none at all.
    app_passwords: Option<bool>,
}

fn parse_index(body: &[u8]) -> Result<RestIndex, IndexProblem> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| IndexProblem::NotJson)?;
    let index = value.as_object().ok_or(IndexProblem::NotJson)?;
    let namespaces = index
        .get("namespaces")
        .and_then(serde_json::Value::as_array)
        .ok_or(IndexProblem::NoNamespaces)?
        .iter()
        .filter_map(|n| n.as_str().map(str::to_string))
        .collect();
    // An empty PHP array is `[]` in JSON, a non-empty one an object.
    let app_passwords = index.get("authentication").map(|a| {
        a.as_object()
            .is_some_and(|a| a.contains_key("application-passwords"))
    });
    Ok(RestIndex {
        namespaces,
        home: index
            .get("home")
            .and_then(serde_json::Value::as_str)
            .map(clean),
        app_passwords,
    })
}

/// `/wp-json/` is 404: is it WordPress without pretty permalinks, WordPress under another
/// path, or not WordPress?
async fn not_found_message(client: &reqwest::Client, site: &Site<'_>, shown: &str) -> String {
    let fallback = site
        .get(client, &format!("/?rest_route=/&{INDEX_FIELDS}"))
        .send()
        .await;
    let index = match fallback {
        Ok(resp) if resp.status() == StatusCode::OK => match read_body(resp).await {
            Ok((body, _)) => parse_index(&body).ok(),
            Err(_) => None,
        },
        _ => None,
    };
    // WordPress answers `?rest_route=` under any path its web server hands to index.php,
    // so a wrong path prefix also "works" there: its home URL tells.
    let home = index.as_ref().and_then(|i| i.home.clone());
    let home_path = home
        .as_deref()
        .and_then(|h| url::Url::parse(h).ok())
        .map(|u| u.path().trim_end_matches('/').to_string());
    match (index, home_path) {
        (Some(_), Some(home_path)) if home_path != site.prefix => format!(
            "{shown} answered 404, and WordPress's home URL is {}: the upstream URL's path \
             {} looks wrong; set the site's upstream to its home URL's path ({})",
            home.as_deref().unwrap_or_default(),
            if site.prefix.is_empty() {
                "(none)"
            } else {
                &site.prefix
            },
            if home_path.is_empty() {
                "none"
            } else {
                &home_path
            },
        ),
        (Some(_), _) => format!(
            "{shown} answered 404 but {}/?rest_route=/ works: WordPress runs without pretty \
             permalinks (or the web server does not rewrite /wp-json/ to index.php); choose \
             any permalink structure but Plain in wp-admin → Settings → Permalinks, or fix \
             the rewrite rules, since clients call /wp-json/ paths through wpgate",
            site.prefix
        ),
        (None, _) => format!(
            "{shown} answered 404: is this a WordPress site with pretty permalinks? Check the \
             upstream URL {} and its path prefix; {}/?rest_route=/ (the REST API without \
             pretty permalinks) did not answer with a REST index either",
            site.base, site.prefix
        ),
    }
}

enum Auth {
    /// users/me answered 200; the WordPress user's name.
    Confirmed(String),
    /// The site has no credential: nothing to check.
    NotChecked,
    /// users/me answered something that neither confirms nor refuses the credential.
    Unconfirmed(String),
}

/// Step 2: `users/me` with the credential.
async fn check_auth(
    client: &reqwest::Client,
    site: &Site<'_>,
    index: &RestIndex,
) -> Result<Auth, Outcome> {
    let target = site.target;
    if target.credential.is_none() {
        if target.credential_kind == CredentialKind::None {
            return Ok(Auth::NotChecked);
        }
        return Err(Outcome::new(
            HealthState::AuthFailed,
            format!(
                "the site's credential ({}) could not be built, so wpgate sends none; set it \
                 again with {}",
                target.credential_kind.as_str(),
                set_credential_command(target)
            ),
        ));
    }
    let shown = site.shown("/wp-json/wp/v2/users/me");
    let resp = site
        .get(client, "/wp-json/wp/v2/users/me")
        .send()
        .await
        .map_err(|e| unreachable(request_failed(&shown, site, &e)))?;
    let status = resp.status();
    let location = location(&resp);
    let body = match read_body(resp).await {
        Ok((body, _)) => body,
        Err(e) if status == StatusCode::OK => {
            return Err(unreachable(request_failed(&shown, site, &e)))
        }
        Err(_) => Vec::new(),
    };
    if status == StatusCode::OK {
        let me: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let name = ["name", "slug", "id"]
            .iter()
            .filter_map(|k| me.get(k))
            .find_map(|v| match v {
                serde_json::Value::String(s) if !s.is_empty() => Some(clean(s)),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            });
        return match name {
            Some(name) => Ok(Auth::Confirmed(name)),
            None => Ok(Auth::Unconfirmed(format!(
                "could not confirm the credential: {shown} answered 200 without a WordPress \
                 user (no \"id\" or \"name\"); a plugin or cache may be answering instead of \
                 WordPress"
            ))),
        };
    }
    let wp = WpError::parse(&body);
    if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
        return Err(auth_failed(site, &shown, status, &wp, index.app_passwords));
    }
    if status.is_server_error() {
        return Err(unreachable(unexpected_status(
            &shown,
            status,
            location.as_deref(),
            &wp,
        )));
    }
    Ok(Auth::Unconfirmed(format!(
        "could not confirm the credential: {}; a security plugin may hide the users \
         endpoint, which wpgate uses to check the credential",
        unexpected_status(&shown, status, location.as_deref(), &wp)
    )))
}

/// WordPress's error body: `{"code": "...", "message": "...", "data": {"status": N}}`.
#[derive(Debug, Default)]
struct WpError {
    code: Option<String>,
    message: Option<String>,
}

impl WpError {
    fn parse(body: &[u8]) -> WpError {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
            return WpError::default();
        };
        let text = |k: &str| {
            value
                .get(k)
                .and_then(serde_json::Value::as_str)
                .filter(|s| !s.is_empty())
                .map(clean)
        };
        WpError {
            code: text("code"),
            message: text("message"),
        }
    }

    /// `code: "message"`, or `None` when WordPress sent no error body.
    fn detail(&self) -> Option<String> {
        match (&self.code, &self.message) {
            (Some(c), Some(m)) => Some(format!("{c}: \"{m}\"")),
            (Some(c), None) => Some(c.clone()),
            (None, Some(m)) => Some(format!("\"{m}\"")),
            (None, None) => None,
        }
    }

    /// ` (code: "message")`, or "".
    fn in_parens(&self) -> String {
        self.detail().map(|d| format!(" ({d})")).unwrap_or_default()
    }
}

/// Quoted text from the site: one line, printable, bounded.
fn clean(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_QUOTE)
        .collect();
    if s.chars().count() > MAX_QUOTE {
        out.push('…');
    }
    out
}

fn credential_phrase(target: &ProbeTarget) -> String {
    let who = target.username.as_deref().unwrap_or("?");
    match target.credential_kind {
        CredentialKind::AppPassword => format!("the application password for user '{who}'"),
        CredentialKind::Bearer => "the bearer token".to_string(),
        CredentialKind::Header => format!("the credential in header '{who}'"),
        CredentialKind::None => "an anonymous request".to_string(),
    }
}

fn set_credential_command(target: &ProbeTarget) -> String {
    let site = &target.site_id;
    let who = target.username.as_deref().unwrap_or("<user>");
    match target.credential_kind {
        CredentialKind::AppPassword => format!(
            "`wpgate site set-credential {site} --auth app-password --username {who} --secret-stdin`"
        ),
        CredentialKind::Bearer => {
            format!("`wpgate site set-credential {site} --auth bearer --secret-stdin`")
        }
        CredentialKind::Header => format!(
            "`wpgate site set-credential {site} --auth header --header-name {who} --secret-stdin`"
        ),
        CredentialKind::None => format!(
            "`wpgate site set-credential {site} --auth app-password --username <user> --secret-stdin`"
        ),
    }
}

/// 401/403 to a request that carried the site's credential. `app_passwords`: whether the
/// REST index offers application passwords, if it said.
fn auth_failed(
    site: &Site<'_>,
    shown: &str,
    status: StatusCode,
    wp: &WpError,
    app_passwords: Option<bool>,
) -> Outcome {
    let target = site.target;
    let kind = target.credential_kind;
    let who = target.username.as_deref().unwrap_or("?");
    let mut m = format!(
        "WordPress rejected {} ({shown} answered {}{})",
        credential_phrase(target),
        status.as_u16(),
        match (&wp.code, wp.detail()) {
            (Some(_), Some(detail)) => format!(" {detail}"),
            _ => " without a WordPress error body, so something in front of WordPress \
                  refused it: web server authentication, a WAF or a security plugin"
                .to_string(),
        }
    );
    let fix = set_credential_command(target);
    match kind {
        CredentialKind::AppPassword => m.push_str(&format!(
            ": re-issue it in wp-admin → Users → Profile → Application Passwords and run {fix}"
        )),
        CredentialKind::Bearer => m.push_str(&format!(
            ": issue a new token with the site's token plugin and run {fix}"
        )),
        CredentialKind::Header => m.push_str(&format!(
            ": check that the plugin reading header '{who}' is active and the value is \
             current, then run {fix}"
        )),
        CredentialKind::None => {}
    }
    match wp.code.as_deref() {
        Some("rest_not_logged_in") if kind == CredentialKind::Header => m.push_str(&format!(
            ". WordPress saw no login at all: the plugin that reads header '{who}' may be \
             inactive, or a proxy in front of WordPress drops the header"
        )),
        Some("rest_not_logged_in")
            if kind == CredentialKind::AppPassword && app_passwords == Some(false) =>
        {
            m.push_str(
                ". But this WordPress does not offer application passwords at all (its REST \
                 index lists no 'application-passwords' authentication), so it ignores any: \
                 they need HTTPS or WP_ENVIRONMENT_TYPE 'local', and no plugin or \
                 wp_is_application_passwords_available filter turning them off",
            );
        }
        Some("rest_not_logged_in") => {
            m.push_str(
                ". WordPress saw no login at all: if the credential is right, it may never reach \
                 WordPress — a web server in front of PHP can strip the Authorization header \
                 (Apache with CGI/FastCGI: `CGIPassAuth On`)",
            );
            if kind == CredentialKind::AppPassword && app_passwords.is_none() {
                m.push_str(
                    ", and WordPress ignores application passwords on plain-HTTP sites unless \
                     WP_ENVIRONMENT_TYPE is 'local'",
                );
            }
        }
        Some("invalid_username") => m.push_str(&format!(
            ". WordPress has no user '{who}': check --username"
        )),
        Some("incorrect_password") => m.push_str(". The password is wrong or has been revoked"),
        Some(c) if c.starts_with("application_passwords_disabled") => m.push_str(
            ". Application passwords are disabled on this site or for this user \
             (a plugin or the wp_is_application_passwords_available filter)",
        ),
        _ => {}
    }
    Outcome::new(HealthState::AuthFailed, m)
}

fn unreachable(message: String) -> Outcome {
    Outcome::new(HealthState::Unreachable, message)
}

fn unexpected_status(
    shown: &str,
    status: StatusCode,
    location: Option<&str>,
    wp: &WpError,
) -> String {
    let code = status.as_u16();
    let detail = wp.in_parens();
    if status.is_redirection() {
        return format!(
            "{shown} answered {code} redirecting to {}: wpgate does not follow redirects; set \
             the site's upstream URL to the address it redirects to (https? www? the site's \
             home URL?)",
            location.unwrap_or("nowhere (no Location header)")
        );
    }
    match code {
        502 | 504 => format!(
            "{shown} answered {code}{detail}: the web server in front of WordPress got no \
             answer from PHP; is php-fpm running and not overloaded?"
        ),
        503 => format!(
            "{shown} answered 503{detail}: WordPress is in maintenance mode (an update in \
             progress or a stale .maintenance file), or PHP is overloaded"
        ),
        500..=599 => format!(
            "{shown} answered {code}{detail}: WordPress or PHP failed; see the site's PHP \
             error log"
        ),
        _ => format!("{shown} answered {code}{detail}"),
    }
}

/// A request that got no HTTP answer: why, in words an operator can act on. reqwest's own
/// text repeats the URL; the innermost cause is the useful part.
fn request_failed(shown: &str, site: &Site<'_>, e: &reqwest::Error) -> String {
    let base = site.base;
    if e.is_timeout() {
        return format!(
            "{shown} got no answer within {}: the site at {base} or its PHP workers are \
             overloaded or hung, or a firewall drops the connection",
            humantime::format_duration(site.timeout)
        );
    }
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let cause = clean(&cause.to_string());
    let lower = cause.to_ascii_lowercase();
    if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake") {
        return format!(
            "{shown} failed in TLS ({cause}): the certificate of {base} is not trusted; for a \
             private CA set upstream.ca_file"
        );
    }
    if e.is_connect() {
        return format!(
            "cannot connect to {base} ({cause}): is the web server running, and is the \
             upstream URL right?"
        );
    }
    format!("{shown} failed ({cause})")
}

fn content_type(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(clean)
}

fn location(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get(http::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(clean)
}

/// The body, at most [`MAX_BODY`] bytes; `true` when it was cut.
async fn read_body(mut resp: reqwest::Response) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > MAX_BODY {
            body.extend_from_slice(&chunk[..MAX_BODY - body.len()]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

fn missing_namespaces_message(missing: &[&str], offered: &[String]) -> String {
    let offered = if offered.is_empty() {
        "none".to_string()
    } else {
        offered.join(", ")
    };
    if let [one] = missing {
        format!(
            "REST namespace '{one}' is missing: is the plugin that provides it installed and \
             active? (the site offers: {offered})"
        )
    } else {
        format!(
            "REST namespaces {} are missing: are the plugins that provide them installed and \
             active? (the site offers: {offered})",
            missing
                .iter()
                .map(|m| format!("'{m}'"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

// ---------------------------------------------------------------------------------------
// The board
// ---------------------------------------------------------------------------------------

/// The latest report per site, shared by the prober, the proxy (fail-fast), the admin API
/// and the metrics. Reads take a read lock and clone one report.
#[derive(Default)]
pub struct HealthBoard {
    reports: RwLock<HashMap<String, HealthReport>>,
    rechecks: Mutex<HashSet<String>>,
    recheck_requested: tokio::sync::Notify,
}

impl HealthBoard {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, site: &str) -> Option<HealthReport> {
        self.read().get(site).cloned()
    }

    /// The site's state; `Unknown` when it has not been checked.
    pub fn state(&self, site: &str) -> HealthState {
        self.read()
            .get(site)
            .map_or(HealthState::Unknown, |r| r.state)
    }

    /// Stores `r` as it is.
    pub fn set(&self, site: &str, r: HealthReport) {
        self.write().insert(site.to_string(), r);
    }

    /// Stores the result of a check, counting `consecutive_failures` on from the previous
    /// report; returns what was stored. Use this for every fresh check (the prober does).
    pub fn record(&self, site: &str, mut r: HealthReport) -> HealthReport {
        let mut reports = self.write();
        r.consecutive_failures = if r.state.is_failure() {
            reports
                .get(site)
                .filter(|prev| prev.state.is_failure())
                .map_or(1, |prev| prev.consecutive_failures.saturating_add(1))
        } else {
            0
        };
        reports.insert(site.to_string(), r.clone());
        r
    }

    pub fn remove(&self, site: &str) {
        self.write().remove(site);
    }

    /// How many sites are in each state, every state listed (sites never checked are not
    /// on the board, so `Unknown` counts only reports stored as unknown).
    pub fn counts(&self) -> Vec<(HealthState, usize)> {
        let reports = self.read();
        HealthState::ALL
            .iter()
            .map(|s| (*s, reports.values().filter(|r| r.state == *s).count()))
            .collect()
    }

    /// Every report, sorted by site id.
    pub fn snapshot(&self) -> Vec<(String, HealthReport)> {
        let mut all: Vec<_> = self
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Asks the prober to check `site` now (and to re-read its targets first), e.g. after
    /// its credential or upstream changed, or when the proxy sees a site marked down
    /// answer again. Without a running prober this does nothing.
    pub fn request_recheck(&self, site: &str) {
        self.rechecks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(site.to_string());
        self.recheck_requested.notify_one();
    }

    fn take_rechecks(&self) -> Vec<String> {
        self.rechecks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .collect()
    }

    // A panic while holding the lock cannot leave a HashMap of reports half-updated in a
    // way that matters: keep serving.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, HealthReport>> {
        self.reports.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, HealthReport>> {
        self.reports.write().unwrap_or_else(PoisonError::into_inner)
    }
}

// ---------------------------------------------------------------------------------------
// The prober
// ---------------------------------------------------------------------------------------

/// Where the prober gets its sites; called about every `min(interval, 30s)` and whenever
/// a recheck is requested. Include disabled sites (they are reported `Disabled`); a site
/// that is no longer listed is dropped from the board.
#[async_trait]
pub trait TargetSource: Send + Sync + 'static {
    async fn targets(&self) -> Vec<ProbeTarget>;
}

#[derive(Debug, Clone)]
pub struct ProberSettings {
    /// Between checks of a site that is up (healthy or degraded). Default 5 min.
    pub interval: Duration,
    /// Each delay is multiplied by a random factor in `1 ± jitter` (clamped to 0..=0.9) so
    /// checks of many sites spread out. Default 0.1.
    pub jitter: f64,
    /// Checks in flight at once. Default 16.
    pub concurrency: usize,
    /// Per request of a check. Default 10 s.
    pub timeout: Duration,
    /// The longest delay between checks of a site that is down. Default `interval * 8`.
    pub max_backoff: Duration,
    /// The shortest delay after a failed check. Default 5 s.
    pub min_backoff: Duration,
}

impl Default for ProberSettings {
    fn default() -> Self {
        Self::with_interval(Duration::from_secs(300))
    }
}

impl ProberSettings {
    /// The defaults for a given interval.
    pub fn with_interval(interval: Duration) -> Self {
        ProberSettings {
            interval,
            jitter: 0.1,
            concurrency: 16,
            timeout: Duration::from_secs(10),
            max_backoff: interval.saturating_mul(8),
            min_backoff: Duration::from_secs(5),
        }
    }

    /// The delay until the next check after the `failures`-th failed check in a row of a
    /// site that is down (`failures` >= 1), before jitter: `max(interval/8, min_backoff)`,
    /// doubling with each failure, at most `max(max_backoff, that first delay)`. So with
    /// the defaults a site that goes down is checked again after 37.5 s, 75 s, 150 s, … and
    /// from the seventh failure every 40 min: a short outage is noticed as over quickly, a
    /// long-dead site costs little. Call [`HealthBoard::request_recheck`] to cut a wait.
    pub fn backoff(&self, failures: u32) -> Duration {
        let first = (self.interval / 8).max(self.min_backoff);
        let doublings = failures.saturating_sub(1).min(30);
        first
            .saturating_mul(1u32 << doublings)
            .min(self.max_backoff.max(first))
    }

    fn jittered(&self, d: Duration) -> Duration {
        let j = if self.jitter.is_finite() {
            self.jitter.clamp(0.0, 0.9)
        } else {
            0.0
        };
        if j == 0.0 {
            return d;
        }
        d.mul_f64(1.0 + rand::thread_rng().gen_range(-j..=j))
    }
}

/// Called with each fresh report (e.g. to update metrics).
pub type ReportHook = Arc<dyn Fn(&str, &HealthReport) + Send + Sync>;

/// Runs checks in the background until the handle is aborted.
///
/// Each site is checked as soon as it appears and whenever its target changes (upstream,
/// credential, kind, namespaces, enabled). After a check the next one is due:
/// - up (healthy, degraded) or disabled: after `interval`;
/// - down (unreachable, auth_failed): after [`ProberSettings::backoff`] of the number of
///   down results in a row;
///
/// each delay jittered by `± jitter`. At most `concurrency` checks run at once; due sites
/// wait in order of their due time. Each report is stored with [`HealthBoard::record`]
/// and handed to `on_report`.
pub fn spawn_prober(
    source: Arc<dyn TargetSource>,
    board: Arc<HealthBoard>,
    client: reqwest::Client,
    settings: ProberSettings,
    on_report: Option<ReportHook>,
) -> tokio::task::JoinHandle<()> {
    let prober = Prober {
        source,
        board,
        client,
        settings,
        on_report,
        hasher: RandomState::new(),
    };
    tokio::spawn(prober.run())
}

struct Prober {
    source: Arc<dyn TargetSource>,
    board: Arc<HealthBoard>,
    client: reqwest::Client,
    settings: ProberSettings,
    on_report: Option<ReportHook>,
    /// Keyed per process: fingerprints of targets (credential included) never leave memory
    /// and cannot be compared across processes.
    hasher: RandomState,
}

struct Scheduled {
    target: Arc<ProbeTarget>,
    fingerprint: u64,
    due: Instant,
    in_flight: bool,
    /// Check again as soon as the running check ends.
    again: bool,
    /// Down results in a row.
    down: u32,
}

struct Done {
    site: String,
    fingerprint: u64,
    report: HealthReport,
}

impl Prober {
    fn fingerprint(&self, t: &ProbeTarget) -> u64 {
        let mut h = self.hasher.build_hasher();
        t.base_url.hash(&mut h);
        t.credential_kind.as_str().hash(&mut h);
        t.username.hash(&mut h);
        t.required_namespaces.hash(&mut h);
        t.enabled.hash(&mut h);
        if let Some((name, value)) = &t.credential {
            name.as_str().hash(&mut h);
            value.as_bytes().hash(&mut h);
        }
        h.finish()
    }

    async fn run(self) {
        let concurrency = self.settings.concurrency.max(1);
        let refresh_every = self
            .settings
            .interval
            .min(Duration::from_secs(30))
            .max(Duration::from_millis(10));
        let mut schedule: HashMap<String, Scheduled> = HashMap::new();
        let mut tasks: JoinSet<Done> = JoinSet::new();
        let mut running: HashMap<tokio::task::Id, String> = HashMap::new();
        let mut next_refresh = Instant::now();
        loop {
            let rechecks = self.board.take_rechecks();
            if !rechecks.is_empty() || Instant::now() >= next_refresh {
                self.refresh(&mut schedule).await;
                next_refresh = Instant::now() + refresh_every;
            }
            let now = Instant::now();
            for site in rechecks {
                if let Some(s) = schedule.get_mut(&site) {
                    if s.in_flight {
                        s.again = true;
                    } else {
                        s.due = now;
                    }
                }
            }

            // Start the most overdue checks while there is room.
            if tasks.len() < concurrency {
                let mut due: Vec<(Instant, &String)> = schedule
                    .iter()
                    .filter(|(_, s)| !s.in_flight && s.due <= now)
                    .map(|(id, s)| (s.due, id))
                    .collect();
                due.sort();
                let start: Vec<String> = due
                    .into_iter()
                    .take(concurrency - tasks.len())
                    .map(|(_, id)| id.clone())
                    .collect();
                for site in start {
                    if let Some(s) = schedule.get_mut(&site) {
                        s.in_flight = true;
                        let target = Arc::clone(&s.target);
                        let fingerprint = s.fingerprint;
                        let client = self.client.clone();
                        let timeout = self.settings.timeout;
                        let handle = tasks.spawn(async move {
                            let report = probe(&client, &target, timeout).await;
                            Done {
                                site: target.site_id.clone(),
                                fingerprint,
                                report,
                            }
                        });
                        running.insert(handle.id(), site);
                    }
                }
            }

            let next_due = schedule
                .values()
                .filter(|s| !s.in_flight)
                .map(|s| s.due)
                .min();
            let wake = match next_due {
                Some(due) if tasks.len() < concurrency => due.min(next_refresh),
                _ => next_refresh,
            };
            tokio::select! {
                done = tasks.join_next_with_id(), if !tasks.is_empty() => match done {
                    Some(Ok((id, done))) => {
                        running.remove(&id);
                        self.finish(&mut schedule, done);
                    }
                    Some(Err(e)) => {
                        // A check panicked: forget it ran, try again at the normal pace.
                        if let Some(site) = running.remove(&e.id()) {
                            tracing::error!(site = %site, error = %e, "health check task failed");
                            if let Some(s) = schedule.get_mut(&site) {
                                s.in_flight = false;
                                s.due = Instant::now() + self.settings.jittered(self.settings.interval);
                            }
                        }
                    }
                    None => {}
                },
                () = tokio::time::sleep_until(wake) => {}
                () = self.board.recheck_requested.notified() => {}
            }
        }
    }

    /// Re-reads the targets: new or changed ones are due now, vanished ones leave the
    /// board. On a source that hangs, keeps the old list.
    async fn refresh(&self, schedule: &mut HashMap<String, Scheduled>) {
        let wait = self.settings.timeout.max(Duration::from_secs(30));
        let targets = match tokio::time::timeout(wait, self.source.targets()).await {
            Ok(t) => t,
            Err(_) => {
                tracing::warn!("health prober: the site list did not arrive within {wait:?}; keeping the old one");
                return;
            }
        };
        let now = Instant::now();
        let mut seen = HashSet::with_capacity(targets.len());
        for target in targets {
            let fingerprint = self.fingerprint(&target);
            let id = target.site_id.clone();
            seen.insert(id.clone());
            match schedule.get_mut(&id) {
                Some(s) if s.fingerprint == fingerprint => {}
                Some(s) => {
                    s.target = Arc::new(target);
                    s.fingerprint = fingerprint;
                    s.down = 0;
                    if s.in_flight {
                        s.again = true;
                    } else {
                        s.due = now;
                    }
                }
                None => {
                    schedule.insert(
                        id,
                        Scheduled {
                            target: Arc::new(target),
                            fingerprint,
                            due: now,
                            in_flight: false,
                            again: false,
                            down: 0,
                        },
                    );
                }
            }
        }
        schedule.retain(|id, _| {
            let keep = seen.contains(id);
            if !keep {
                self.board.remove(id);
            }
            keep
        });
    }

    fn finish(&self, schedule: &mut HashMap<String, Scheduled>, done: Done) {
        // A site removed while its check ran stays off the board.
        let Some(s) = schedule.get_mut(&done.site) else {
            return;
        };
        s.in_flight = false;
        if s.fingerprint != done.fingerprint {
            // The target changed while the check ran: the result is about the old one.
            s.due = Instant::now();
            s.again = false;
            return;
        }
        let previous = self.board.state(&done.site);
        let report = self.board.record(&done.site, done.report);
        let state = report.state;
        if state != previous {
            if state.is_failure() {
                tracing::warn!(site = %done.site, state = state.as_str(), previous = previous.as_str(), message = %report.message, "site health changed");
            } else {
                tracing::info!(site = %done.site, state = state.as_str(), previous = previous.as_str(), "site health changed");
            }
        }
        if let Some(hook) = &self.on_report {
            hook(&done.site, &report);
        }
        let delay = if state.is_down() {
            s.down = s.down.saturating_add(1);
            self.settings.backoff(s.down)
        } else {
            s.down = 0;
            self.settings.interval
        };
        s.due = if std::mem::take(&mut s.again) {
            Instant::now()
        } else {
            Instant::now() + self.settings.jittered(delay)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::{Query, State};
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;
    use axum::{Json, Router};
    use base64::Engine;
    use http::header::AUTHORIZATION;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const USER: &str = "api";
    const SECRET: &str = "abcd EFGH ijkl MNOP qrst UVWX";

    fn basic(user: &str, secret: &str) -> HeaderValue {
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"));
        let mut v = HeaderValue::from_str(&format!("Basic {b64}")).unwrap();
        v.set_sensitive(true);
        v
    }

    /// What the mimic's `/wp-json/` does.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Index {
        Ok,
        /// 404, and `/?rest_route=/` 404 too.
        NotFound,
        /// 404, but `/?rest_route=/` answers (no pretty permalinks).
        Plain,
        Html,
        NoNamespaces,
        Redirect,
        /// A REST index without application passwords among its authentication methods.
        NoAppPasswords,
    }

    #[derive(Default)]
    struct Counters {
        index: AtomicUsize,
        me: AtomicUsize,
        in_flight: AtomicUsize,
        max_in_flight: AtomicUsize,
        me_times: Mutex<Vec<std::time::Instant>>,
    }

    struct InFlight(Arc<Counters>);

    impl InFlight {
        fn enter(c: &Arc<Counters>) -> InFlight {
            let now = c.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            c.max_in_flight.fetch_max(now, Ordering::SeqCst);
            InFlight(Arc::clone(c))
        }
    }

    impl Drop for InFlight {
        fn drop(&mut self) {
            self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// A WordPress look-alike: the REST index and `users/me`.
    #[derive(Clone)]
    struct Mimic {
        index: Index,
        delay: Duration,
        /// The header `users/me` accepts.
        accept: (HeaderName, HeaderValue),
        /// `users/me` refuses with a bare 403 page, as a WAF would.
        waf: bool,
        /// The `home` the index reports.
        home: Option<&'static str>,
        counters: Arc<Counters>,
    }

    impl Mimic {
        fn new() -> Mimic {
            Mimic {
                index: Index::Ok,
                delay: Duration::ZERO,
                accept: (AUTHORIZATION, basic(USER, SECRET)),
                waf: false,
                home: None,
                counters: Arc::default(),
            }
        }
    }

    fn wp_index(m: &Mimic) -> Response {
        let mut index = serde_json::json!({
            "name": "mimic",
            "namespaces": ["oembed/1.0", "wp/v2", "myplugin/v1"],
        });
        if let Some(home) = m.home {
            index["home"] = home.into();
        }
        if m.index == Index::NoAppPasswords {
            index["authentication"] = serde_json::json!([]);
        }
        Json(index).into_response()
    }

    async fn index(State(m): State<Mimic>) -> Response {
        let _in = InFlight::enter(&m.counters);
        m.counters.index.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(m.delay).await;
        match m.index {
            Index::Ok | Index::NoAppPasswords => wp_index(&m),
            Index::NotFound | Index::Plain => {
                (StatusCode::NOT_FOUND, "<html>Not Found</html>").into_response()
            }
            Index::Html => (
                [(http::header::CONTENT_TYPE, "text/html")],
                "<html>Under maintenance</html>",
            )
                .into_response(),
            Index::NoNamespaces => Json(serde_json::json!({"hello": "world"})).into_response(),
            Index::Redirect => (
                StatusCode::MOVED_PERMANENTLY,
                [(http::header::LOCATION, "http://127.0.0.1:1/wp-json/")],
            )
                .into_response(),
        }
    }

    async fn root(State(m): State<Mimic>, Query(q): Query<HashMap<String, String>>) -> Response {
        if m.index == Index::Plain && q.get("rest_route").map(String::as_str) == Some("/") {
            return wp_index(&m);
        }
        (StatusCode::NOT_FOUND, "<html>Not Found</html>").into_response()
    }

    async fn me(State(m): State<Mimic>, headers: http::HeaderMap) -> Response {
        let _in = InFlight::enter(&m.counters);
        m.counters.me.fetch_add(1, Ordering::SeqCst);
        m.counters
            .me_times
            .lock()
            .unwrap()
            .push(std::time::Instant::now());
        tokio::time::sleep(m.delay).await;
        let (name, value) = &m.accept;
        if headers.get(name) == Some(value) {
            return Json(serde_json::json!({"id": 1, "name": "admin", "slug": "admin"}))
                .into_response();
        }
        if m.waf {
            return (StatusCode::FORBIDDEN, "<html>Request blocked</html>").into_response();
        }
        (
            StatusCode::UNAUTHORIZED,
            Json(serde_json::json!({
                "code": "rest_not_logged_in",
                "message": "You are not currently logged in.",
                "data": {"status": 401},
            })),
        )
            .into_response()
    }

    /// Starts `m` on 127.0.0.1; returns its base URL.
    async fn serve(m: Mimic) -> String {
        let app = Router::new()
            .route("/wp-json/", get(index))
            .route("/wp-json/wp/v2/users/me", get(me))
            .fallback(root)
            .with_state(m);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    }

    /// A loopback port nothing listens on.
    async fn closed_port() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        format!("http://{addr}")
    }

    fn target(site: &str, base: &str) -> ProbeTarget {
        ProbeTarget {
            site_id: site.to_string(),
            base_url: base.to_string(),
            credential: Some((AUTHORIZATION, basic(USER, SECRET))),
            credential_kind: CredentialKind::AppPassword,
            username: Some(USER.to_string()),
            required_namespaces: vec!["myplugin/v1".to_string()],
            enabled: true,
        }
    }

    fn test_client() -> reqwest::Client {
        client(None, Duration::from_secs(5)).unwrap()
    }

    async fn check(t: &ProbeTarget) -> HealthReport {
        let r = probe(&test_client(), t, Duration::from_secs(5)).await;
        assert_no_secret(&r);
        r
    }

    fn assert_no_secret(r: &HealthReport) {
        let json = serde_json::to_string(r).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{SECRET}"));
        for leak in [
            SECRET,
            &SECRET.replace(' ', ""),
            &b64,
            "Basic ",
            "k-secret",
            "wrong-",
        ] {
            assert!(!json.contains(leak), "{leak:?} leaked into {json}");
        }
    }

    #[tokio::test]
    async fn healthy_with_the_right_application_password() {
        let m = Mimic::new();
        let counters = Arc::clone(&m.counters);
        let base = serve(m).await;
        let r = check(&target("shop", &base)).await;
        assert_eq!(r.state, HealthState::Healthy, "{}", r.message);
        assert_eq!(r.wordpress_user.as_deref(), Some("admin"));
        assert!(
            r.message
                .contains("application password for user 'api' accepted"),
            "{}",
            r.message
        );
        assert!(r.message.contains("myplugin/v1"), "{}", r.message);
        assert_eq!(r.consecutive_failures, 0);
        assert!(r.checked_at > 1_600_000_000);
        assert_eq!(counters.index.load(Ordering::SeqCst), 1);
        assert_eq!(counters.me.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_refused_application_password_is_auth_failed_with_the_fix() {
        let base = serve(Mimic::new()).await;
        let mut t = target("shop", &base);
        t.credential = Some((AUTHORIZATION, basic(USER, "wrong-password")));
        let r = check(&t).await;
        assert_eq!(r.state, HealthState::AuthFailed, "{}", r.message);
        assert_eq!(r.wordpress_user, None);
        for part in [
            "WordPress rejected the application password for user 'api'",
            "answered 401 rest_not_logged_in: \"You are not currently logged in.\")",
            "Users → Profile → Application Passwords",
            "`wpgate site set-credential shop --auth app-password --username api --secret-stdin`",
            "strip the Authorization header",
            "unless WP_ENVIRONMENT_TYPE is 'local'",
        ] {
            assert!(r.message.contains(part), "{part:?} not in {}", r.message);
        }
    }

    #[tokio::test]
    async fn bearer_and_header_credentials_name_their_kind() {
        let mut m = Mimic::new();
        m.accept = (
            HeaderName::from_static("x-wp-key"),
            HeaderValue::from_static("k-secret-right"),
        );
        let base = serve(m).await;

        let mut t = target("shop", &base);
        t.credential_kind = CredentialKind::Header;
        t.username = Some("x-wp-key".into());
        t.credential = Some((
            HeaderName::from_static("x-wp-key"),
            HeaderValue::from_static("k-secret-right"),
        ));
        let r = check(&t).await;
        assert_eq!(r.state, HealthState::Healthy, "{}", r.message);
        assert!(
            r.message
                .contains("credential in header 'x-wp-key' accepted"),
            "{}",
            r.message
        );

        t.credential = Some((
            HeaderName::from_static("x-wp-key"),
            HeaderValue::from_static("k-secret-wrong"),
        ));
        let r = check(&t).await;
        assert_eq!(r.state, HealthState::AuthFailed, "{}", r.message);
        assert!(
            r.message
                .contains("rejected the credential in header 'x-wp-key'"),
            "{}",
            r.message
        );
        assert!(
            r.message.contains("--auth header --header-name x-wp-key"),
            "{}",
            r.message
        );
        assert!(
            r.message
                .contains("plugin that reads header 'x-wp-key' may be inactive"),
            "{}",
            r.message
        );

        t.credential_kind = CredentialKind::Bearer;
        t.username = None;
        t.credential = Some((
            AUTHORIZATION,
            HeaderValue::from_static("Bearer wrong-token"),
        ));
        let r = check(&t).await;
        assert_eq!(r.state, HealthState::AuthFailed, "{}", r.message);
        assert!(
            r.message.contains("rejected the bearer token"),
            "{}",
            r.message
        );
        assert!(
            r.message.contains("--auth bearer --secret-stdin"),
            "{}",
            r.message
        );
        assert!(
            r.message.contains("strip the Authorization header"),
            "{}",
            r.message
        );
    }

    #[tokio::test]
    async fn a_site_without_application_passwords_is_told() {
        let mut m = Mimic::new();
        m.index = Index::NoAppPasswords;
        let mut t = target("shop", &serve(m).await);
        t.credential = Some((AUTHORIZATION, basic(USER, "wrong-password")));
        let r = check(&t).await;
        assert_eq!(r.state, HealthState::AuthFailed, "{}", r.message);
        assert!(
            r.message.contains("does not offer application passwords"),
            "{}",
            r.message
        );
        assert!(
            r.message.contains("HTTPS or WP_ENVIRONMENT_TYPE 'local'"),
            "{}",
            r.message
        );
    }

    #[tokio::test]
    async fn a_waf_refusal_is_told_apart_from_wordpress() {
        let mut m = Mimic::new();
        m.waf = true;
        let base = serve(m).await;
        let mut t = target("shop", &base);
        t.credential = Some((AUTHORIZATION, basic(USER, "wrong-password")));
        let r = check(&t).await;
        assert_eq!(r.state, HealthState::AuthFailed, "{}", r.message);
        assert!(
            r.message
                .contains("answered 403 without a WordPress error body"),
            "{}",
            r.message
        );
        assert!(r.message.contains("WAF"), "{}", r.message);
    }

    #[tokio::test]
    async fn a_credential_that_could_not_be_built_is_auth_failed_without_asking() {
        let m = Mimic::new();
        let counters = Arc::clone(&m.counters);
        let base = serve(m).await;
        let mut t = target("shop", &base);
        t.credential = None;
        let r = check(&t).await;
        assert_eq!(r.state, HealthState::AuthFailed, "{}", r.message);
        assert!(r.message.contains("could not be built"), "{}", r.message);
        assert_eq!(counters.me.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_site_without_credential_skips_users_me_and_says_so() {
        let m = Mimic::new();
        let counters = Arc::clone(&m.counters);
        let base = serve(m).await;
        let mut t = target("shop", &base);
        t.credential = None;
        t.credential_kind = CredentialKind::None;
        t.username = None;
        let r = check(&t).await;
        assert_eq!(r.state, HealthState::Healthy, "{}", r.message);
        assert!(
            r.message.contains("authentication not checked"),
            "{}",
            r.message
        );
        assert_eq!(r.wordpress_user, None);
        assert_eq!(counters.me.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_missing_namespace_is_degraded() {
        let base = serve(Mimic::new()).await;
        let mut t = target("shop", &base);
        t.required_namespaces = vec!["myplugin/v1".into(), "nope/v1".into()];
        let r = check(&t).await;
        assert_eq!(r.state, HealthState::Degraded, "{}", r.message);
        assert!(
            r.message
                .contains("REST namespace 'nope/v1' is missing: is the plugin"),
            "{}",
            r.message
        );
        assert!(
            r.message.contains("oembed/1.0, wp/v2, myplugin/v1"),
            "{}",
            r.message
        );
        assert_eq!(r.wordpress_user.as_deref(), Some("admin"));

        t.required_namespaces = vec!["a/v1".into(), "b/v2".into()];
        let r = check(&t).await;
        assert!(
            r.message
                .contains("REST namespaces 'a/v1', 'b/v2' are missing"),
            "{}",
            r.message
        );
    }

    #[tokio::test]
    async fn index_404_explains_permalinks() {
        let mut m = Mimic::new();
        m.index = Index::NotFound;
        let r = check(&target("shop", &serve(m).await)).await;
        assert_eq!(r.state, HealthState::Unreachable, "{}", r.message);
        assert!(
            r.message.starts_with(
                "GET /wp-json/ answered 404: is this a WordPress site with pretty permalinks?"
            ),
            "{}",
            r.message
        );
        assert!(r.message.contains("?rest_route=/"), "{}", r.message);

        let mut m = Mimic::new();
        m.index = Index::Plain;
        let r = check(&target("shop", &serve(m).await)).await;
        assert_eq!(r.state, HealthState::Unreachable, "{}", r.message);
        assert!(r.message.contains("/?rest_route=/ works"), "{}", r.message);
        assert!(r.message.contains("Settings → Permalinks"), "{}", r.message);

        // WordPress answers ?rest_route= under any path: its home URL tells a wrong prefix.
        let mut m = Mimic::new();
        m.index = Index::Plain;
        m.home = Some("http://wordpress.test");
        let base = serve(m).await;
        let r = check(&target("shop", &format!("{base}/blog"))).await;
        assert_eq!(r.state, HealthState::Unreachable, "{}", r.message);
        assert!(r.message.starts_with("GET /blog/wp-json/ answered 404, and WordPress's home URL is http://wordpress.test: the upstream URL's path /blog looks wrong"), "{}", r.message);

        let mut m = Mimic::new();
        m.index = Index::Plain;
        m.home = Some("http://wordpress.test/blog/");
        let base = serve(m).await;
        let r = check(&target("shop", &format!("{base}/blog"))).await;
        assert!(
            r.message.contains("/blog/?rest_route=/ works"),
            "{}",
            r.message
        );
    }

    #[tokio::test]
    async fn a_path_prefix_is_kept() {
        let mut m = Mimic::new();
        m.index = Index::NotFound;
        let app = Router::new().nest(
            "/blog",
            Router::new()
                .route("/wp-json/", get(index))
                .route("/wp-json/wp/v2/users/me", get(me))
                .with_state(Mimic::new()),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let r = check(&target("shop", &format!("http://{addr}/blog"))).await;
        assert_eq!(r.state, HealthState::Healthy, "{}", r.message);
        let r = check(&target("shop", &format!("http://{addr}/other"))).await;
        assert!(
            r.message.starts_with("GET /other/wp-json/ answered 404"),
            "{}",
            r.message
        );
    }

    #[tokio::test]
    async fn not_an_index_is_unreachable() {
        let mut m = Mimic::new();
        m.index = Index::Html;
        let r = check(&target("shop", &serve(m).await)).await;
        assert_eq!(r.state, HealthState::Unreachable, "{}", r.message);
        assert!(
            r.message
                .contains("answered 200 but not with JSON (content-type text/html)"),
            "{}",
            r.message
        );

        let mut m = Mimic::new();
        m.index = Index::NoNamespaces;
        let r = check(&target("shop", &serve(m).await)).await;
        assert_eq!(r.state, HealthState::Unreachable, "{}", r.message);
        assert!(
            r.message.contains("without a \"namespaces\" list"),
            "{}",
            r.message
        );
    }

    #[tokio::test]
    async fn redirects_are_reported_not_followed() {
        let mut m = Mimic::new();
        m.index = Index::Redirect;
        let r = check(&target("shop", &serve(m).await)).await;
        assert_eq!(r.state, HealthState::Unreachable, "{}", r.message);
        assert!(
            r.message
                .contains("answered 301 redirecting to http://127.0.0.1:1/wp-json/"),
            "{}",
            r.message
        );
        assert!(
            r.message.contains("does not follow redirects"),
            "{}",
            r.message
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable() {
        let base = closed_port().await;
        let r = check(&target("shop", &base)).await;
        assert_eq!(r.state, HealthState::Unreachable, "{}", r.message);
        assert!(
            r.message.starts_with(&format!("cannot connect to {base}")),
            "{}",
            r.message
        );
        assert!(
            r.message.to_lowercase().contains("refused"),
            "{}",
            r.message
        );
        assert!(
            r.message.contains("is the web server running"),
            "{}",
            r.message
        );
    }

    #[tokio::test]
    async fn a_slow_site_times_out() {
        let mut m = Mimic::new();
        m.delay = Duration::from_secs(5);
        let base = serve(m).await;
        let started = std::time::Instant::now();
        let r = probe(
            &test_client(),
            &target("shop", &base),
            Duration::from_millis(300),
        )
        .await;
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!(r.state, HealthState::Unreachable, "{}", r.message);
        assert!(
            r.message
                .contains("GET /wp-json/ got no answer within 300ms"),
            "{}",
            r.message
        );
        assert!(r.duration_ms >= 300);
    }

    #[tokio::test]
    async fn disabled_sites_are_not_asked() {
        let m = Mimic::new();
        let counters = Arc::clone(&m.counters);
        let mut t = target("shop", &serve(m).await);
        t.enabled = false;
        let r = check(&t).await;
        assert_eq!(r.state, HealthState::Disabled);
        assert!(
            r.message.contains("`wpgate site enable shop`"),
            "{}",
            r.message
        );
        assert_eq!(counters.index.load(Ordering::SeqCst), 0);
        assert_eq!(counters.me.load(Ordering::SeqCst), 0);
    }

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
                "disabled"
            ]
        );
        for s in HealthState::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }

    fn report(state: HealthState) -> HealthReport {
        HealthReport {
            state,
            message: String::new(),
            checked_at: 0,
            duration_ms: 0,
            consecutive_failures: 0,
            wordpress_user: None,
        }
    }

    #[test]
    fn the_board_counts_failures_in_a_row() {
        let b = HealthBoard::new();
        assert_eq!(b.state("a"), HealthState::Unknown);
        assert_eq!(b.get("a"), None);
        assert_eq!(
            b.record("a", report(HealthState::Unreachable))
                .consecutive_failures,
            1
        );
        assert_eq!(
            b.record("a", report(HealthState::AuthFailed))
                .consecutive_failures,
            2
        );
        assert_eq!(
            b.record("a", report(HealthState::Degraded))
                .consecutive_failures,
            3
        );
        assert_eq!(b.get("a").unwrap().consecutive_failures, 3);
        assert_eq!(
            b.record("a", report(HealthState::Healthy))
                .consecutive_failures,
            0
        );
        assert_eq!(
            b.record("a", report(HealthState::Unreachable))
                .consecutive_failures,
            1
        );
        assert_eq!(
            b.record("a", report(HealthState::Disabled))
                .consecutive_failures,
            0
        );
        b.set("b", report(HealthState::Healthy));
        b.set("c", report(HealthState::Healthy));
        assert_eq!(b.state("b"), HealthState::Healthy);
        let counts = b.counts();
        assert_eq!(counts.len(), HealthState::ALL.len());
        assert!(counts.contains(&(HealthState::Healthy, 2)));
        assert!(counts.contains(&(HealthState::Disabled, 1)));
        assert!(counts.contains(&(HealthState::Unreachable, 0)));
        let ids: Vec<_> = b.snapshot().into_iter().map(|(id, _)| id).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        b.remove("b");
        assert_eq!(b.state("b"), HealthState::Unknown);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let s = ProberSettings::default();
        assert_eq!(s.max_backoff, Duration::from_secs(2400));
        let secs: Vec<f64> = (1..=8).map(|n| s.backoff(n).as_secs_f64()).collect();
        assert_eq!(
            secs,
            [37.5, 75.0, 150.0, 300.0, 600.0, 1200.0, 2400.0, 2400.0]
        );
        assert_eq!(s.backoff(u32::MAX), Duration::from_secs(2400));
        let short = ProberSettings::with_interval(Duration::from_secs(8));
        assert_eq!(
            short.backoff(1),
            Duration::from_secs(5),
            "at least min_backoff"
        );
        for _ in 0..100 {
            let d = s.jittered(Duration::from_secs(100));
            assert!(
                d >= Duration::from_secs(90) && d <= Duration::from_secs(110),
                "{d:?}"
            );
        }
        let wild = ProberSettings {
            jitter: f64::NAN,
            ..ProberSettings::default()
        };
        assert_eq!(
            wild.jittered(Duration::from_secs(1)),
            Duration::from_secs(1)
        );
    }

    struct Targets(Mutex<Vec<ProbeTarget>>);

    #[async_trait]
    impl TargetSource for Targets {
        async fn targets(&self) -> Vec<ProbeTarget> {
            self.0.lock().unwrap().clone()
        }
    }

    fn fast(interval: Duration, concurrency: usize) -> ProberSettings {
        ProberSettings {
            interval,
            jitter: 0.0,
            concurrency,
            timeout: Duration::from_secs(5),
            max_backoff: Duration::from_millis(800),
            min_backoff: Duration::from_millis(100),
        }
    }

    /// Polls `cond` until it holds; panics after 15 s.
    async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while !cond() {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn the_prober_fills_the_board_and_backs_off_a_failing_site() {
        let good = Mimic::new();
        let good_counts = Arc::clone(&good.counters);
        let bad = Mimic::new();
        let bad_counts = Arc::clone(&bad.counters);
        let good_base = serve(good).await;
        let bad_base = serve(bad).await;
        let mut failing = target("bad", &bad_base);
        failing.credential = Some((AUTHORIZATION, basic(USER, "wrong-password")));
        let source = Arc::new(Targets(Mutex::new(vec![
            target("good", &good_base),
            failing,
        ])));
        let board = Arc::new(HealthBoard::new());
        let hook_calls = Arc::new(AtomicUsize::new(0));
        let hook: ReportHook = {
            let calls = Arc::clone(&hook_calls);
            Arc::new(move |_site: &str, r: &HealthReport| {
                assert_no_secret(r);
                calls.fetch_add(1, Ordering::SeqCst);
            })
        };
        let settings = fast(Duration::from_millis(100), 4);
        let handle = spawn_prober(
            source,
            Arc::clone(&board),
            test_client(),
            settings.clone(),
            Some(hook),
        );

        eventually("4 failures in a row", || {
            board
                .get("bad")
                .is_some_and(|r| r.consecutive_failures >= 4)
        })
        .await;
        handle.abort();
        let bad_report = board.get("bad").unwrap();
        assert_eq!(bad_report.state, HealthState::AuthFailed);
        assert_eq!(board.state("good"), HealthState::Healthy);
        assert_eq!(
            board.get("good").unwrap().wordpress_user.as_deref(),
            Some("admin")
        );

        // Between checks of the failing site: at least 100, 200, 400 ms (never early).
        let times = bad_counts.me_times.lock().unwrap().clone();
        assert!(times.len() >= 4, "{}", times.len());
        for (i, pair) in times.windows(2).take(3).enumerate() {
            let gap = pair[1] - pair[0];
            let floor = settings.backoff(u32::try_from(i).unwrap() + 1);
            assert!(
                gap + Duration::from_millis(2) >= floor,
                "gap {i}: {gap:?} < {floor:?}"
            );
        }
        // Meanwhile the healthy site was checked every 100 ms: more often.
        let good_checks = good_counts.me.load(Ordering::SeqCst);
        assert!(
            good_checks > times.len(),
            "good {good_checks}, bad {}",
            times.len()
        );
        assert!(hook_calls.load(Ordering::SeqCst) >= good_checks + 4);
    }

    #[tokio::test]
    async fn the_prober_bounds_concurrency() {
        let mut m = Mimic::new();
        m.delay = Duration::from_millis(150);
        let counters = Arc::clone(&m.counters);
        let base = serve(m).await;
        let targets = (0..10).map(|i| target(&format!("s{i}"), &base)).collect();
        let board = Arc::new(HealthBoard::new());
        let handle = spawn_prober(
            Arc::new(Targets(Mutex::new(targets))),
            Arc::clone(&board),
            test_client(),
            fast(Duration::from_secs(3600), 2),
            None,
        );
        eventually("10 reports", || board.snapshot().len() == 10).await;
        handle.abort();
        assert!(board
            .snapshot()
            .iter()
            .all(|(_, r)| r.state == HealthState::Healthy));
        assert_eq!(counters.max_in_flight.load(Ordering::SeqCst), 2);
        assert_eq!(counters.index.load(Ordering::SeqCst), 10);
    }

    #[tokio::test]
    async fn the_prober_follows_target_changes_and_rechecks_on_request() {
        let m = Mimic::new();
        let counters = Arc::clone(&m.counters);
        let base = serve(m).await;
        let source = Arc::new(Targets(Mutex::new(vec![
            target("a", &base),
            target("b", &base),
        ])));
        let board = Arc::new(HealthBoard::new());
        let handle = spawn_prober(
            Arc::clone(&source) as Arc<dyn TargetSource>,
            Arc::clone(&board),
            test_client(),
            fast(Duration::from_secs(3600), 4),
            None,
        );
        eventually("both checked", || board.snapshot().len() == 2).await;
        assert_eq!(counters.index.load(Ordering::SeqCst), 2);

        // On request: checked again at once, despite the hour-long interval.
        board.request_recheck("a");
        eventually("a rechecked", || counters.index.load(Ordering::SeqCst) == 3).await;

        // b goes away, a's credential changes: b leaves the board, a is checked anew.
        {
            let mut targets = source.0.lock().unwrap();
            targets.retain(|t| t.site_id == "a");
            targets[0].credential = Some((AUTHORIZATION, basic(USER, "wrong-password")));
        }
        board.request_recheck("nothing-in-particular");
        eventually("a refused", || board.state("a") == HealthState::AuthFailed).await;
        assert_eq!(board.get("b"), None);
        assert_eq!(board.get("a").unwrap().consecutive_failures, 1);
        handle.abort();
    }

    #[tokio::test]
    async fn client_trusts_only_the_ca_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        assert!(client(Some(&missing), Duration::from_secs(1)).is_err());
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        assert!(client(Some(&empty), Duration::from_secs(1)).is_err());
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, cert.cert.pem()).unwrap();
        assert!(client(Some(&ca), Duration::from_secs(1)).is_ok());
    }

    /// Against the real WordPress sites of `tests/wordpress/setup.sh`: `tests/run` sets
    /// them up and exports `WPGATE_WP_ENV` (their `sites.env`). In CI a missing file
    /// fails the test; a plain `cargo test` elsewhere passes over it.
    #[tokio::test]
    async fn real_wordpress_site1() {
        let env_file = std::env::var("WPGATE_WP_ENV")
            .unwrap_or_else(|_| "/tmp/wpgate-wordpress/sites.env".into());
        let Ok(text) = std::fs::read_to_string(&env_file) else {
            assert!(
                std::env::var_os("CI").is_none(),
                "{env_file} missing: run tests/run (it sets up WordPress)"
            );
            eprintln!("{env_file} missing: real-WordPress check not run");
            return;
        };
        // Lines of KEY='value'.
        let var = |k: &str| {
            text.lines().find_map(|l| {
                let v = l.strip_prefix(k)?.strip_prefix('=')?;
                Some(v.trim_matches('\'').to_string())
            })
        };
        let (Some(url), Some(user), Some(password)) = (
            var("WPGATE_WP_SITE1_URL"),
            var("WPGATE_WP_SITE1_USER"),
            var("WPGATE_WP_SITE1_APP_PASSWORD"),
        ) else {
            panic!("{env_file} lacks WPGATE_WP_SITE1_URL/_USER/_APP_PASSWORD");
        };
        assert!(
            url.starts_with("http://127.0.0.1:") || url.starts_with("http://localhost:"),
            "only loopback sites: {url}"
        );
        let c = test_client();
        let mut t = ProbeTarget {
            site_id: "site1".into(),
            base_url: url.clone(),
            credential: Some((AUTHORIZATION, basic(&user, &password))),
            credential_kind: CredentialKind::AppPassword,
            username: Some(user.clone()),
            required_namespaces: vec!["wp/v2".into()],
            enabled: true,
        };
        let never = |r: &HealthReport| {
            let json = serde_json::to_string(r).unwrap();
            assert!(!json.contains(&password) && !json.contains(&password.replace(' ', "")));
        };

        let r = probe(&c, &t, Duration::from_secs(10)).await;
        eprintln!("right password: {r:#?}");
        never(&r);
        assert_eq!(r.state, HealthState::Healthy, "{}", r.message);
        assert!(r.wordpress_user.is_some());

        t.credential = Some((AUTHORIZATION, basic(&user, "aaaa bbbb cccc dddd eeee ffff")));
        let r = probe(&c, &t, Duration::from_secs(10)).await;
        eprintln!("wrong password: {r:#?}");
        assert_eq!(r.state, HealthState::AuthFailed, "{}", r.message);
        assert!(r.message.contains("Application Passwords"), "{}", r.message);

        t.credential = Some((
            AUTHORIZATION,
            basic("nosuchuser", "aaaa bbbb cccc dddd eeee ffff"),
        ));
        t.username = Some("nosuchuser".into());
        let r = probe(&c, &t, Duration::from_secs(10)).await;
        eprintln!("unknown user: {r:#?}");
        assert_eq!(r.state, HealthState::AuthFailed, "{}", r.message);

        t.credential = Some((AUTHORIZATION, basic(&user, &password)));
        t.username = Some(user.clone());
        t.required_namespaces = vec!["wp/v2".into(), "nope/v1".into()];
        let r = probe(&c, &t, Duration::from_secs(10)).await;
        eprintln!("missing namespace: {r:#?}");
        never(&r);
        assert_eq!(r.state, HealthState::Degraded, "{}", r.message);
        assert!(r.message.contains("'nope/v1' is missing"), "{}", r.message);

        t.credential = None;
        t.credential_kind = CredentialKind::None;
        t.username = None;
        t.required_namespaces = vec![];
        let r = probe(&c, &t, Duration::from_secs(10)).await;
        eprintln!("no credential: {r:#?}");
        assert_eq!(r.state, HealthState::Healthy, "{}", r.message);

        t.base_url = format!("{url}/not-wordpress");
        let r = probe(&c, &t, Duration::from_secs(10)).await;
        eprintln!("wrong prefix: {r:#?}");
        assert_eq!(r.state, HealthState::Unreachable, "{}", r.message);
        assert!(r.message.contains("looks wrong"), "{}", r.message);
    }
}
