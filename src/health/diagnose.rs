//! What an operator reads in a report: for each way a check can fail, what is wrong and
//! how to fix it, in the site's own terms (its path, its credential's kind and user,
//! WordPress's error code). Never the credential's value.

use http::StatusCode;
use std::time::Duration;

use super::ProbeTarget;
use crate::site::CredentialKind;

/// How much of WordPress's own error message a report quotes.
const MAX_QUOTE: usize = 200;

/// WordPress's error body: `{"code": "...", "message": "...", "data": {"status": N}}`.
#[derive(Debug, Default)]
pub(super) struct WpError {
    pub(super) code: Option<String>,
    message: Option<String>,
}

impl WpError {
    pub(super) fn parse(body: &[u8]) -> WpError {
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
    pub(super) fn in_parens(&self) -> String {
        self.detail().map(|d| format!(" ({d})")).unwrap_or_default()
    }
}

/// Quoted text from the site: one line, printable, bounded.
pub(super) fn clean(s: &str) -> String {
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

pub(super) fn credential_phrase(target: &ProbeTarget) -> String {
    let who = target.username.as_deref().unwrap_or("?");
    match target.credential_kind {
        CredentialKind::AppPassword => format!("the application password for user '{who}'"),
        CredentialKind::Bearer => "the bearer token".to_string(),
        CredentialKind::Header => format!("the credential in header '{who}'"),
        CredentialKind::None => "an anonymous request".to_string(),
    }
}

/// The command that sets the site's credential again, in backticks: its kind and user
/// as stored, the secret on standard input.
pub fn set_credential_command(target: &ProbeTarget) -> String {
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
pub(super) fn auth_failed(
    target: &ProbeTarget,
    shown: &str,
    status: StatusCode,
    wp: &WpError,
    app_passwords: Option<bool>,
) -> String {
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
    m
}

pub(super) fn unexpected_status(
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
pub(super) fn request_failed(
    shown: &str,
    base: &str,
    timeout: Duration,
    e: &reqwest::Error,
) -> String {
    if e.is_timeout() {
        return format!(
            "{shown} got no answer within {}: the site at {base} or its PHP workers are \
             overloaded or hung, or a firewall drops the connection",
            humantime::format_duration(timeout)
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

pub(super) fn missing_namespaces(missing: &[&str], offered: &[String]) -> String {
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

pub(super) fn disabled(site_id: &str) -> String {
    format!(
        "the site is disabled in wpgate, so it is not checked; enable it with \
         `wpgate site enable {site_id}`"
    )
}

pub(super) fn unusable(why: &str) -> String {
    format!("wpgate cannot use the site's stored record, so it is not contacted: {why}")
}

pub(super) fn index_too_large(shown: &str, max_bytes: usize, base: &str) -> String {
    format!(
        "{shown} answered 200 with more than {} MiB, which is not the WordPress REST \
         index asked for (a few fields): check the upstream URL {base}",
        max_bytes / (1024 * 1024),
    )
}

pub(super) fn index_not_json(shown: &str, content_type: Option<&str>, base: &str) -> String {
    format!(
        "{shown} answered 200 but not with JSON (content-type {}): a page cache, \
         maintenance page or security plugin answers instead of WordPress's REST \
         API, or the upstream URL {base} is not the WordPress site",
        content_type.unwrap_or("none"),
    )
}

pub(super) fn index_without_namespaces(shown: &str, base: &str) -> String {
    format!(
        "{shown} answered JSON without a \"namespaces\" list, so this is not a \
         WordPress REST API index: check the upstream URL {base} and its path prefix \
         (or a plugin hides the index)"
    )
}

/// The index refused an anonymous request and the site has no credential to send.
pub(super) fn closed_to_anonymous(
    shown: &str,
    status: StatusCode,
    wp: &WpError,
    site_id: &str,
) -> String {
    format!(
        "{shown} answered {}{}: the REST API is closed to anonymous visitors (a security \
         plugin or the web server), and the site has no credential; give it one with \
         `wpgate site set-credential {site_id} --auth app-password --username <user> --secret-stdin`",
        status.as_u16(),
        wp.in_parens(),
    )
}

/// `/wp-json/` answered 404. `fallback_answered`: `/?rest_route=/` answered with a REST
/// index, whose home URL is `home` (if it said). WordPress answers `?rest_route=` under
/// any path its web server hands to index.php, so a wrong path prefix also "works"
/// there: its home URL tells.
pub(super) fn index_not_found(
    shown: &str,
    base: &str,
    prefix: &str,
    fallback_answered: bool,
    home: Option<&str>,
) -> String {
    let home_path = home
        .and_then(|h| url::Url::parse(h).ok())
        .map(|u| u.path().trim_end_matches('/').to_string());
    match (fallback_answered, home_path) {
        (true, Some(home_path)) if home_path != prefix => format!(
            "{shown} answered 404, and WordPress's home URL is {}: the upstream URL's path \
             {} looks wrong; set the site's upstream to its home URL's path ({})",
            home.unwrap_or_default(),
            if prefix.is_empty() { "(none)" } else { prefix },
            if home_path.is_empty() {
                "none"
            } else {
                &home_path
            },
        ),
        (true, _) => format!(
            "{shown} answered 404 but {prefix}/?rest_route=/ works: WordPress runs without pretty \
             permalinks (or the web server does not rewrite /wp-json/ to index.php); choose \
             any permalink structure but Plain in wp-admin → Settings → Permalinks, or fix \
             the rewrite rules, since clients call /wp-json/ paths through wpgate"
        ),
        (false, _) => format!(
            "{shown} answered 404: is this a WordPress site with pretty permalinks? Check the \
             upstream URL {base} and its path prefix; {prefix}/?rest_route=/ (the REST API without \
             pretty permalinks) did not answer with a REST index either"
        ),
    }
}

pub(super) fn credential_not_built(target: &ProbeTarget) -> String {
    format!(
        "the site's credential ({}) could not be built, so wpgate sends none; set it \
         again with {}",
        target.credential_kind.as_str(),
        set_credential_command(target)
    )
}

/// `users/me` answered 200 but named no user.
pub(super) fn no_user_in_answer(shown: &str) -> String {
    format!(
        "could not confirm the credential: {shown} answered 200 without a WordPress \
         user (no \"id\" or \"name\"); a plugin or cache may be answering instead of \
         WordPress"
    )
}

/// `users/me` answered neither 200 nor a refusal nor a server error.
pub(super) fn users_me_hidden(unexpected: &str) -> String {
    format!(
        "could not confirm the credential: {unexpected}; a security plugin may hide the users \
         endpoint, which wpgate uses to check the credential"
    )
}

// ---- fixes: the exact command or WordPress screen, for `wpgate doctor` ----

/// The command that points the site at `url`, in backticks. A URL on another origin
/// (scheme, host or port) takes the secret again: the stored one is sealed to the old
/// origin.
pub fn update_upstream_command(target: &ProbeTarget, url: &str) -> String {
    let id = &target.site_id;
    if target.credential_kind == CredentialKind::None {
        return format!("`wpgate site update {id} --upstream {url}`");
    }
    let origin = |u: &str| url::Url::parse(u).ok().map(|u| u.origin());
    match (origin(&target.base_url), origin(url)) {
        (Some(from), Some(to)) if from == to => {
            format!("`wpgate site update {id} --upstream {url}`")
        }
        (_, Some(_)) => format!(
            "`wpgate site update {id} --upstream {url} --secret-stdin` (the credential is \
             sealed to the old scheme, host and port: give the secret again on standard input)"
        ),
        (_, None) => format!(
            "`wpgate site update {id} --upstream {url}` (with `--secret-stdin` and the secret \
             on standard input when the scheme, host or port changes: the credential is \
             sealed to them)"
        ),
    }
}

/// What to do about a request that got no answer, when there is something exact to say.
pub(super) fn request_failed_fix(
    target: &ProbeTarget,
    timeout: Duration,
    e: &reqwest::Error,
) -> Option<String> {
    if e.is_timeout() {
        return Some(format!(
            "check the site's web server and PHP workers (load, hung requests, a firewall \
             dropping packets); if it is only slow, see whether it answers with more time \
             (`wpgate doctor {} --timeout {}`) and raise `health.timeout` and \
             `upstream.read_timeout` in the configuration",
            target.site_id,
            humantime::format_duration(timeout.saturating_mul(3))
        ));
    }
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let lower = cause.to_string().to_ascii_lowercase();
    if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake") {
        return Some(tls_fix(target));
    }
    if e.is_connect() {
        return Some(format!(
            "start the site's web server, or point the site at the address it answers on: {}",
            update_upstream_command(target, "<URL>")
        ));
    }
    None
}

/// What to do about a certificate the gateway does not accept.
pub fn tls_fix(target: &ProbeTarget) -> String {
    let host = url::Url::parse(&target.base_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| "the upstream host".into());
    format!(
        "renew the site's certificate so that it names {host}, is within its validity, \
         and is served with its intermediate certificates; for a private CA, set \
         `upstream.ca_file` in the configuration to the CA's PEM file (the gateway and \
         `wpgate doctor` then trust only that file)"
    )
}

/// What to do about a 401 or 403 to a request that carried the site's credential.
pub(super) fn auth_failed_fix(target: &ProbeTarget, status: StatusCode, wp: &WpError) -> String {
    let who = target.username.as_deref().unwrap_or("?");
    let command = set_credential_command(target);
    if status == StatusCode::FORBIDDEN && wp.code.is_none() {
        return format!(
            "allow the gateway's requests (with their Authorization header) through the web \
             server, WAF or security plugin in front of WordPress that refuses them, then run \
             `wpgate doctor {}`",
            target.site_id
        );
    }
    if wp
        .code
        .as_deref()
        .is_some_and(|c| c.starts_with("application_passwords_disabled"))
    {
        return format!(
            "turn application passwords back on for user '{who}' (a plugin or the \
             wp_is_application_passwords_available filter turns them off), then issue one \
             in wp-admin → Users → Profile → Application Passwords and run {command}"
        );
    }
    match target.credential_kind {
        CredentialKind::AppPassword => format!(
            "log in to wp-admin as '{who}', open Users → Profile → Application Passwords, \
             revoke the old password and add a new one, then run {command} and give the new \
             password on standard input"
        ),
        CredentialKind::Bearer => format!(
            "issue a new token with the site's token plugin, then run {command} and give it \
             on standard input"
        ),
        CredentialKind::Header => format!(
            "check that the plugin reading header '{who}' is active (wp-admin → Plugins) and \
             get its current value, then run {command} and give it on standard input"
        ),
        CredentialKind::None => no_credential_fix(target),
    }
}

/// Give a site without a usable credential one.
pub(super) fn no_credential_fix(target: &ProbeTarget) -> String {
    format!(
        "issue an Application Password in wp-admin → Users → Profile → Application \
         Passwords and run {} with it on standard input",
        set_credential_command(target)
    )
}

/// A redirect from the REST index: point the site where it redirects, if that is a
/// WordPress REST path.
pub(super) fn redirect_fix(target: &ProbeTarget, location: &str) -> Option<String> {
    let base = url::Url::parse(&target.base_url).ok()?;
    let to = base.join(location).ok()?;
    let at = to.path().find("/wp-json")?;
    let new_base = format!(
        "{}{}",
        to.origin().ascii_serialization(),
        to.path()[..at].trim_end_matches('/')
    );
    (new_base != target.base_url.trim_end_matches('/')).then(|| {
        format!(
            "point the site at the address WordPress redirects to: {}",
            update_upstream_command(target, &new_base)
        )
    })
}

/// `/wp-json/` answered 404 (see [`index_not_found`] for the cases).
pub(super) fn index_not_found_fix(
    target: &ProbeTarget,
    prefix: &str,
    fallback_answered: bool,
    home: Option<&str>,
) -> String {
    let home_path = home
        .and_then(|h| url::Url::parse(h).ok())
        .map(|u| u.path().trim_end_matches('/').to_string());
    let origin = url::Url::parse(&target.base_url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default();
    match (fallback_answered, home_path) {
        (true, Some(home_path)) if home_path != prefix => format!(
            "point the site at WordPress's home path: {}",
            update_upstream_command(target, &format!("{origin}{home_path}"))
        ),
        (true, _) => "in wp-admin → Settings → Permalinks choose any structure but Plain (e.g. \
             Post name) and Save Changes; if that is already so, make the web server hand \
             /wp-json/ to index.php (nginx: `try_files $uri $uri/ /index.php?$args;`, Apache: \
             the .htaccess rules WordPress writes)"
            .to_string(),
        (false, _) => format!(
            "check that the upstream URL is the WordPress home URL ({}) and that no plugin \
             (e.g. \"Disable WP REST API\", a security plugin's REST setting) or web server \
             rule turns the REST API off",
            update_upstream_command(target, "<home URL>")
        ),
    }
}

/// The index answered 200 with something else than a REST index.
pub(super) fn not_an_index_fix(target: &ProbeTarget) -> String {
    format!(
        "open {}/wp-json/ in a browser: if a page shows instead of JSON, exclude /wp-json/ \
         from the page cache or turn off the maintenance or coming-soon plugin; if it is \
         another site, fix the upstream URL: {}",
        target.base_url.trim_end_matches('/'),
        update_upstream_command(target, "<URL>")
    )
}

#[cfg(test)]
mod tests {
    use crate::health::mimic::*;
    use crate::health::HealthState;
    use crate::site::CredentialKind;
    use http::header::AUTHORIZATION;
    use http::{HeaderName, HeaderValue};
    use std::time::Duration;

    #[tokio::test]
    async fn a_refused_application_password_is_auth_failed_with_the_fix() {
        let r = refused_by(Mimic::new()).await;
        assert_eq!(r.wordpress_user, None);
        for part in [
            "WordPress rejected the application password for user 'api'",
            "answered 401 rest_not_logged_in: \"You are not currently logged in.\")",
            "Users → Profile → Application Passwords",
            "`wpgate site set-credential shop --auth app-password --username api --secret-stdin`",
            "strip the Authorization header",
            "unless WP_ENVIRONMENT_TYPE is 'local'",
        ] {
            assert_says(&r, part);
        }
    }

    #[tokio::test]
    async fn bearer_and_header_credentials_name_their_kind() {
        let x_wp_key = |value: &'static str| {
            (
                HeaderName::from_static("x-wp-key"),
                HeaderValue::from_static(value),
            )
        };
        let mut m = Mimic::new();
        m.accept = x_wp_key("k-secret-right");
        let base = serve(m).await;

        let mut t = target("shop", &base);
        t.credential_kind = CredentialKind::Header;
        t.username = Some("x-wp-key".into());
        t.credential = Some(x_wp_key("k-secret-right"));
        let r = check(&t).await;
        assert_state(&r, HealthState::Healthy);
        assert_says(&r, "credential in header 'x-wp-key' accepted");

        t.credential = Some(x_wp_key("k-secret-wrong"));
        let r = check(&t).await;
        assert_state(&r, HealthState::AuthFailed);
        assert_says(&r, "rejected the credential in header 'x-wp-key'");
        assert_says(&r, "--auth header --header-name x-wp-key");
        assert_says(&r, "plugin that reads header 'x-wp-key' may be inactive");

        t.credential_kind = CredentialKind::Bearer;
        t.username = None;
        t.credential = Some((
            AUTHORIZATION,
            HeaderValue::from_static("Bearer wrong-token"),
        ));
        let r = check(&t).await;
        assert_state(&r, HealthState::AuthFailed);
        assert_says(&r, "rejected the bearer token");
        assert_says(&r, "--auth bearer --secret-stdin");
        assert_says(&r, "strip the Authorization header");
    }

    #[tokio::test]
    async fn a_site_without_application_passwords_is_told() {
        let mut m = Mimic::new();
        m.index = Index::NoAppPasswords;
        let r = refused_by(m).await;
        assert_says(&r, "does not offer application passwords");
        assert_says(&r, "HTTPS or WP_ENVIRONMENT_TYPE 'local'");
    }

    #[tokio::test]
    async fn a_waf_refusal_is_told_apart_from_wordpress() {
        let mut m = Mimic::new();
        m.waf = true;
        let r = refused_by(m).await;
        assert_says(&r, "answered 403 without a WordPress error body");
        assert_says(&r, "WAF");
    }

    #[tokio::test]
    async fn index_404_explains_permalinks() {
        let r = unreachable_with(Index::NotFound).await;
        assert!(
            r.message.starts_with(
                "GET /wp-json/ answered 404: is this a WordPress site with pretty permalinks?"
            ),
            "{}",
            r.message
        );
        assert_says(&r, "?rest_route=/");

        let r = unreachable_with(Index::Plain).await;
        assert_says(&r, "/?rest_route=/ works");
        assert_says(&r, "Settings → Permalinks");

        // WordPress answers ?rest_route= under any path: its home URL tells a wrong prefix.
        let mut m = Mimic::new();
        m.index = Index::Plain;
        m.home = Some("http://wordpress.test");
        let base = serve(m).await;
        let r = check(&target("shop", &format!("{base}/blog"))).await;
        assert_state(&r, HealthState::Unreachable);
        assert!(r.message.starts_with("GET /blog/wp-json/ answered 404, and WordPress's home URL is http://wordpress.test: the upstream URL's path /blog looks wrong"), "{}", r.message);

        let mut m = Mimic::new();
        m.index = Index::Plain;
        m.home = Some("http://wordpress.test/blog/");
        let base = serve(m).await;
        let r = check(&target("shop", &format!("{base}/blog"))).await;
        assert_says(&r, "/blog/?rest_route=/ works");
    }

    #[tokio::test]
    async fn redirects_are_reported_not_followed() {
        let r = unreachable_with(Index::Redirect).await;
        assert_says(
            &r,
            "answered 301 redirecting to http://127.0.0.1:1/wp-json/",
        );
        assert_says(&r, "does not follow redirects");
    }

    #[tokio::test]
    async fn each_step_is_reported_with_its_exact_fix() {
        use crate::health::{probe_steps, Step};
        let c = test_client();
        let t5 = Duration::from_secs(5);
        let fix = |s: &Step| match s {
            Step::Failed { fix, .. } => fix.clone().unwrap_or_default(),
            other => panic!("not a failure: {other:?}"),
        };

        let base = serve(Mimic::new()).await;
        let (r, steps) = probe_steps(&c, &target("shop", &base), t5).await;
        assert_state(&r, HealthState::Healthy);
        assert!(matches!(steps.index, Step::Passed(_)), "{steps:?}");
        assert!(matches!(steps.credential, Step::Passed(_)), "{steps:?}");
        assert!(matches!(steps.namespaces, Step::Passed(_)), "{steps:?}");
        assert!(steps.offered_namespaces.contains(&"wp/v2".to_string()));
        let date = steps.server_date.expect("the index answer's Date header");
        assert!(date.skew_seconds().abs() <= 2, "{date:?}");

        let mut t = target("shop", &base);
        t.credential = Some((AUTHORIZATION, basic(USER, "wrong-password")));
        t.required_namespaces = vec!["nope/v1".into()];
        let (_, steps) = probe_steps(&c, &t, t5).await;
        assert!(matches!(steps.index, Step::Passed(_)), "{steps:?}");
        let f = fix(&steps.credential);
        assert!(f.contains("Users → Profile → Application Passwords"), "{f}");
        assert!(
            f.contains("`wpgate site set-credential shop --auth app-password --username api --secret-stdin`"),
            "{f}"
        );
        // The namespaces are judged from the index even when the credential fails.
        assert!(matches!(steps.namespaces, Step::Failed { .. }), "{steps:?}");

        let mut m = Mimic::new();
        m.index = Index::Plain;
        let (_, steps) = probe_steps(&c, &target("shop", &serve(m).await), t5).await;
        assert!(
            fix(&steps.index).contains("Settings → Permalinks"),
            "{steps:?}"
        );
        assert!(matches!(steps.credential, Step::Skipped(_)), "{steps:?}");

        let mut m = Mimic::new();
        m.index = Index::Plain;
        m.home = Some("http://wordpress.test");
        let base = serve(m).await;
        let (_, steps) = probe_steps(&c, &target("shop", &format!("{base}/blog")), t5).await;
        let f = fix(&steps.index);
        assert!(
            f.contains(&format!("`wpgate site update shop --upstream {base}`")),
            "{f}"
        );

        let mut m = Mimic::new();
        m.index = Index::Redirect;
        let (_, steps) = probe_steps(&c, &target("shop", &serve(m).await), t5).await;
        let f = fix(&steps.index);
        assert!(
            f.contains("`wpgate site update shop --upstream http://127.0.0.1:1 --secret-stdin`"),
            "{f}"
        );

        let (_, steps) = probe_steps(&c, &target("shop", &closed_port().await), t5).await;
        assert!(
            fix(&steps.index).contains("start the site's web server"),
            "{steps:?}"
        );
        assert_eq!(steps.server_date, None);
    }
}
