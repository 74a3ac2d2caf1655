//! One check of a site, at most three requests, none of which change anything: the REST
//! index answers (reachable), `users/me` accepts the credential (authenticated), and the
//! required namespaces are in the index (plugins present). The words of each failure
//! come from [`super::diagnose`]; [`probe_steps`] also reports each step on its own (for
//! `wpgate doctor`).

use http::StatusCode;
use std::time::Duration;

use super::diagnose::{self, clean, WpError};
use super::{HealthReport, HealthState, ProbeTarget, ServerDate, Step, Steps};
use crate::site::CredentialKind;

/// The most of a response body a check reads. The namespaces-only index is a few hundred
/// bytes; a site that ignores `_fields` sends its whole route table (MBs with big plugins).
const MAX_BODY: usize = 8 * 1024 * 1024;

/// Checks `target` now; `timeout` bounds each request. Disabled sites get a `Disabled`
/// report without any request.
pub async fn probe(
    client: &reqwest::Client,
    target: &ProbeTarget,
    timeout: Duration,
) -> HealthReport {
    probe_steps(client, target, timeout).await.0
}

/// [`probe`], and what each of its steps found.
pub async fn probe_steps(
    client: &reqwest::Client,
    target: &ProbeTarget,
    timeout: Duration,
) -> (HealthReport, Steps) {
    let started = std::time::Instant::now();
    let checked_at = crate::time::now_unix();
    let mut steps = Steps::not_run();
    let outcome = match (&target.unusable, target.enabled) {
        (_, false) => Outcome::new(HealthState::Disabled, diagnose::disabled(&target.site_id)),
        (Some(why), true) => Outcome::new(HealthState::Unusable, diagnose::unusable(why)),
        (None, true) => check(client, target, timeout, &mut steps).await,
    };
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    tracing::debug!(
        site = %target.site_id,
        state = outcome.state.as_str(),
        duration_ms,
        "health check"
    );
    let report = HealthReport {
        state: outcome.state,
        message: outcome.message,
        checked_at,
        duration_ms,
        consecutive_failures: 0,
        wordpress_user: outcome.user,
        checked_by: None,
    };
    (report, steps)
}

struct Outcome {
    state: HealthState,
    message: String,
    user: Option<String>,
    /// The exact fix, for the step that failed (see [`Step::Failed`]).
    fix: Option<String>,
}

impl Outcome {
    fn new(state: HealthState, message: String) -> Self {
        Outcome {
            state,
            message,
            user: None,
            fix: None,
        }
    }

    fn with_fix(mut self, fix: Option<String>) -> Self {
        self.fix = fix;
        self
    }

    /// This outcome as the step that failed.
    fn step(&self) -> Step {
        Step::Failed {
            message: self.message.clone(),
            fix: self.fix.clone(),
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

    fn request_failed(&self, shown: &str, e: &reqwest::Error) -> Outcome {
        unreachable(diagnose::request_failed(shown, self.base, self.timeout, e))
            .with_fix(diagnose::request_failed_fix(self.target, self.timeout, e))
    }

    /// 401/403 to a request that carried the site's credential.
    fn auth_failed(
        &self,
        shown: &str,
        status: StatusCode,
        wp: &WpError,
        app_passwords: Option<bool>,
    ) -> Outcome {
        Outcome::new(
            HealthState::AuthFailed,
            diagnose::auth_failed(self.target, shown, status, wp, app_passwords),
        )
        .with_fix(Some(diagnose::auth_failed_fix(self.target, status, wp)))
    }

    /// An answer that is neither the one asked for nor a refusal.
    fn unexpected(
        &self,
        shown: &str,
        status: StatusCode,
        location: Option<&str>,
        wp: &WpError,
    ) -> Outcome {
        unreachable(diagnose::unexpected_status(shown, status, location, wp)).with_fix(
            location
                .filter(|_| status.is_redirection())
                .and_then(|l| diagnose::redirect_fix(self.target, l)),
        )
    }
}

fn unreachable(message: String) -> Outcome {
    Outcome::new(HealthState::Unreachable, message)
}

async fn check(
    client: &reqwest::Client,
    target: &ProbeTarget,
    timeout: Duration,
    steps: &mut Steps,
) -> Outcome {
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
    let skipped = |why: &str| Step::Skipped(format!("not checked: {why}"));
    let index = match check_index(client, &site, steps).await {
        Ok(index) => index,
        Err(outcome) => {
            steps.index = outcome.step();
            steps.credential = skipped("the REST index did not answer");
            steps.namespaces = skipped("the REST index did not answer");
            return outcome;
        }
    };
    let namespaces = &index.namespaces;
    steps.offered_namespaces = namespaces.clone();
    steps.index = Step::Passed(format!(
        "WordPress REST API answers at {base}/wp-json/ ({} namespaces)",
        namespaces.len()
    ));
    let missing: Vec<&str> = target
        .required_namespaces
        .iter()
        .map(String::as_str)
        .filter(|need| !namespaces.iter().any(|have| have == need))
        .collect();
    steps.namespaces = if target.required_namespaces.is_empty() {
        Step::Passed("the site requires no REST namespace (`wpgate site set-health`)".into())
    } else if missing.is_empty() {
        Step::Passed(format!(
            "required REST namespaces present: {}",
            target.required_namespaces.join(", ")
        ))
    } else {
        Step::Failed {
            message: diagnose::missing_namespaces(&missing, namespaces),
            fix: None,
        }
    };
    let auth = match check_auth(client, &site, &index).await {
        Ok(auth) => auth,
        Err(outcome) => {
            steps.credential = outcome.step();
            return outcome;
        }
    };
    steps.credential = match &auth {
        Auth::Confirmed(user) => Step::Passed(format!(
            "{} accepted (WordPress user '{user}')",
            diagnose::credential_phrase(target)
        )),
        Auth::NotChecked => Step::Skipped(
            "the site has no credential (kind none): wpgate forwards requests anonymously".into(),
        ),
        Auth::Unconfirmed(why) => Step::Warned(why.clone()),
    };

    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(diagnose::missing_namespaces(&missing, namespaces));
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
            fix: None,
        };
    }

    let mut message = format!("WordPress REST API answers at {base}/wp-json/");
    match &auth {
        Auth::Confirmed(user) => {
            message.push_str(&format!(
                "; {} accepted (WordPress user '{user}')",
                diagnose::credential_phrase(target)
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
        fix: None,
    }
}

/// The parts of the REST index a check reads.
const INDEX_FIELDS: &str = "_fields=name,home,namespaces,authentication";

/// Step 1: the REST index.
async fn check_index(
    client: &reqwest::Client,
    site: &Site<'_>,
    steps: &mut Steps,
) -> Result<RestIndex, Outcome> {
    let shown = site.shown("/wp-json/");
    let resp = site
        .get(client, &format!("/wp-json/?{INDEX_FIELDS}"))
        .send()
        .await
        .map_err(|e| site.request_failed(&shown, &e))?;
    steps.server_date = server_date(&resp);
    let status = resp.status();
    if status == StatusCode::OK {
        let content_type = content_type(&resp);
        let (body, cut) = read_body(resp)
            .await
            .map_err(|e| site.request_failed(&shown, &e))?;
        if cut {
            return Err(unreachable(diagnose::index_too_large(
                &shown, MAX_BODY, site.base,
            )));
        }
        return parse_index(&body).map_err(|why| {
            unreachable(match why {
                IndexProblem::NotJson => {
                    diagnose::index_not_json(&shown, content_type.as_deref(), site.base)
                }
                IndexProblem::NoNamespaces => diagnose::index_without_namespaces(&shown, site.base),
            })
            .with_fix(Some(diagnose::not_an_index_fix(site.target)))
        });
    }
    let location = location(&resp);
    let body = read_body(resp).await.map(|(b, _)| b).unwrap_or_default();
    let wp = WpError::parse(&body);
    if status == StatusCode::NOT_FOUND {
        return Err(not_found(client, site, &shown).await);
    }
    if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
        if site.target.credential.is_some() {
            return Err(site.auth_failed(&shown, status, &wp, None));
        }
        return Err(unreachable(diagnose::closed_to_anonymous(
            &shown,
            status,
            &wp,
            &site.target.site_id,
        ))
        .with_fix(Some(diagnose::no_credential_fix(site.target))));
    }
    Err(site.unexpected(&shown, status, location.as_deref(), &wp))
}

/// The answer's `Date` header, if it has a valid one, and now.
fn server_date(resp: &reqwest::Response) -> Option<ServerDate> {
    let received_at = crate::time::now_unix();
    let date = resp
        .headers()
        .get(http::header::DATE)?
        .to_str()
        .ok()
        .and_then(|d| httpdate::parse_http_date(d).ok())?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    Some(ServerDate {
        date: i64::try_from(date.as_secs()).ok()?,
        received_at,
    })
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
async fn not_found(client: &reqwest::Client, site: &Site<'_>, shown: &str) -> Outcome {
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
    let home = index.as_ref().and_then(|i| i.home.as_deref());
    unreachable(diagnose::index_not_found(
        shown,
        site.base,
        &site.prefix,
        index.is_some(),
        home,
    ))
    .with_fix(Some(diagnose::index_not_found_fix(
        site.target,
        &site.prefix,
        index.is_some(),
        home,
    )))
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
            diagnose::credential_not_built(target),
        )
        .with_fix(Some(diagnose::no_credential_fix(target))));
    }
    let shown = site.shown("/wp-json/wp/v2/users/me");
    let resp = site
        .get(client, "/wp-json/wp/v2/users/me")
        .send()
        .await
        .map_err(|e| site.request_failed(&shown, &e))?;
    let status = resp.status();
    let location = location(&resp);
    let body = match read_body(resp).await {
        Ok((body, _)) => body,
        Err(e) if status == StatusCode::OK => return Err(site.request_failed(&shown, &e)),
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
            None => Ok(Auth::Unconfirmed(diagnose::no_user_in_answer(&shown))),
        };
    }
    let wp = WpError::parse(&body);
    if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
        return Err(site.auth_failed(&shown, status, &wp, index.app_passwords));
    }
    if status.is_server_error() {
        return Err(site.unexpected(&shown, status, location.as_deref(), &wp));
    }
    Ok(Auth::Unconfirmed(diagnose::users_me_hidden(
        &diagnose::unexpected_status(&shown, status, location.as_deref(), &wp),
    )))
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

#[cfg(test)]
mod tests {
    use super::probe;
    use crate::health::mimic::*;
    use crate::health::{HealthReport, HealthState, ProbeTarget};
    use crate::site::CredentialKind;
    use axum::routing::get;
    use axum::Router;
    use http::header::AUTHORIZATION;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    #[tokio::test]
    async fn healthy_with_the_right_application_password() {
        let (base, counters) = serve_counted(Mimic::new()).await;
        let r = check(&target("shop", &base)).await;
        assert_state(&r, HealthState::Healthy);
        assert_eq!(r.wordpress_user.as_deref(), Some("admin"));
        assert_says(&r, "application password for user 'api' accepted");
        assert_says(&r, "myplugin/v1");
        assert_eq!(r.consecutive_failures, 0);
        assert!(r.checked_at > 1_600_000_000);
        assert_eq!(counters.index.load(Ordering::SeqCst), 1);
        assert_eq!(counters.me.load(Ordering::SeqCst), 1);
    }

    /// Checks site `shop` with no credential header and `kind` (the user kept unless the
    /// kind is `None`); `users/me` must not be asked.
    async fn check_without_header(kind: CredentialKind) -> HealthReport {
        let (base, counters) = serve_counted(Mimic::new()).await;
        let mut t = target("shop", &base);
        t.credential = None;
        if kind == CredentialKind::None {
            t.credential_kind = kind;
            t.username = None;
        }
        let r = check(&t).await;
        assert_eq!(counters.me.load(Ordering::SeqCst), 0);
        r
    }

    #[tokio::test]
    async fn a_credential_that_could_not_be_built_is_auth_failed_without_asking() {
        let r = check_without_header(CredentialKind::AppPassword).await;
        assert_state(&r, HealthState::AuthFailed);
        assert_says(&r, "could not be built");
    }

    #[tokio::test]
    async fn an_unusable_site_is_reported_without_asking() {
        let (base, counters) = serve_counted(Mimic::new()).await;
        let mut t = target("shop", &base);
        t.credential = None;
        t.unusable = Some("its upstream credential cannot be used for http://x:80".into());
        let r = check(&t).await;
        assert_state(&r, HealthState::Unusable);
        assert_says(&r, "cannot be used for http://x:80");
        assert_eq!(counters.index.load(Ordering::SeqCst), 0);
        assert_eq!(counters.me.load(Ordering::SeqCst), 0);
        // A disabled site is reported disabled, whatever else is wrong with it.
        t.enabled = false;
        assert_state(&check(&t).await, HealthState::Disabled);
    }

    #[tokio::test]
    async fn a_site_without_credential_skips_users_me_and_says_so() {
        let r = check_without_header(CredentialKind::None).await;
        assert_state(&r, HealthState::Healthy);
        assert_says(&r, "authentication not checked");
        assert_eq!(r.wordpress_user, None);
    }

    #[tokio::test]
    async fn a_missing_namespace_is_degraded() {
        let base = serve(Mimic::new()).await;
        let mut t = target("shop", &base);
        t.required_namespaces = vec!["myplugin/v1".into(), "nope/v1".into()];
        let r = check(&t).await;
        assert_state(&r, HealthState::Degraded);
        assert_says(&r, "REST namespace 'nope/v1' is missing: is the plugin");
        assert_says(&r, "oembed/1.0, wp/v2, myplugin/v1");
        assert_eq!(r.wordpress_user.as_deref(), Some("admin"));

        t.required_namespaces = vec!["a/v1".into(), "b/v2".into()];
        let r = check(&t).await;
        assert_says(&r, "REST namespaces 'a/v1', 'b/v2' are missing");
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
        assert_state(&r, HealthState::Healthy);
        let r = check(&target("shop", &format!("http://{addr}/other"))).await;
        assert!(
            r.message.starts_with("GET /other/wp-json/ answered 404"),
            "{}",
            r.message
        );
    }

    #[tokio::test]
    async fn not_an_index_is_unreachable() {
        let r = unreachable_with(Index::Html).await;
        assert_says(
            &r,
            "answered 200 but not with JSON (content-type text/html)",
        );

        let r = unreachable_with(Index::NoNamespaces).await;
        assert_says(&r, "without a \"namespaces\" list");
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable() {
        let base = closed_port().await;
        let r = check(&target("shop", &base)).await;
        assert_state(&r, HealthState::Unreachable);
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
        assert_says(&r, "is the web server running");
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
        assert_state(&r, HealthState::Unreachable);
        assert_says(&r, "GET /wp-json/ got no answer within 300ms");
        assert!(r.duration_ms >= 300);
    }

    #[tokio::test]
    async fn disabled_sites_are_not_asked() {
        let (base, counters) = serve_counted(Mimic::new()).await;
        let mut t = target("shop", &base);
        t.enabled = false;
        let r = check(&t).await;
        assert_eq!(r.state, HealthState::Disabled);
        assert_says(&r, "`wpgate site enable shop`");
        assert_eq!(counters.index.load(Ordering::SeqCst), 0);
        assert_eq!(counters.me.load(Ordering::SeqCst), 0);
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
            unusable: None,
        };
        let never = |r: &HealthReport| {
            let json = serde_json::to_string(r).unwrap();
            assert!(!json.contains(&password) && !json.contains(&password.replace(' ', "")));
        };

        let r = probe(&c, &t, Duration::from_secs(10)).await;
        eprintln!("right password: {r:#?}");
        never(&r);
        assert_state(&r, HealthState::Healthy);
        assert!(r.wordpress_user.is_some());

        t.credential = Some((AUTHORIZATION, basic(&user, "aaaa bbbb cccc dddd eeee ffff")));
        let r = probe(&c, &t, Duration::from_secs(10)).await;
        eprintln!("wrong password: {r:#?}");
        assert_state(&r, HealthState::AuthFailed);
        assert_says(&r, "Application Passwords");

        t.credential = Some((
            AUTHORIZATION,
            basic("nosuchuser", "aaaa bbbb cccc dddd eeee ffff"),
        ));
        t.username = Some("nosuchuser".into());
        let r = probe(&c, &t, Duration::from_secs(10)).await;
        eprintln!("unknown user: {r:#?}");
        assert_state(&r, HealthState::AuthFailed);

        t.credential = Some((AUTHORIZATION, basic(&user, &password)));
        t.username = Some(user.clone());
        t.required_namespaces = vec!["wp/v2".into(), "nope/v1".into()];
        let r = probe(&c, &t, Duration::from_secs(10)).await;
        eprintln!("missing namespace: {r:#?}");
        never(&r);
        assert_state(&r, HealthState::Degraded);
        assert_says(&r, "'nope/v1' is missing");

        t.credential = None;
        t.credential_kind = CredentialKind::None;
        t.username = None;
        t.required_namespaces = vec![];
        let r = probe(&c, &t, Duration::from_secs(10)).await;
        eprintln!("no credential: {r:#?}");
        assert_state(&r, HealthState::Healthy);

        t.base_url = format!("{url}/not-wordpress");
        let r = probe(&c, &t, Duration::from_secs(10)).await;
        eprintln!("wrong prefix: {r:#?}");
        assert_state(&r, HealthState::Unreachable);
        assert_says(&r, "looks wrong");
    }
}
