//! Delegated verification (`--jwt-verify wordpress`) through the real gateway, against
//! a WordPress mimic that misbehaves the way real sites do: a page served to every path
//! (maintenance mode, a "coming soon" plugin, plain permalinks, a page cache ignoring
//! Authorization), JSON that is no user, a redirect to the login page, errors and
//! timeouts. Only a real yes admits a token; and a delegated site acts as the WordPress
//! user (the client's own token goes upstream, not the site's credential) unless the
//! operator opts in to acting as the site for listed roles.
//!
//! The last test shows it on the real WordPress sites of `tests/wordpress/setup.sh`:
//! WordPress core issues no bearer tokens, so the sites load a small JWT plugin (as real
//! delegated setups use one); a subscriber and an editor are made for the test, each
//! with an Application Password they fetch their token with, and deleted afterwards.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::wordpress::{wp_client, wp_env, WpCleanup, WpSite, SITES};
use crate::harness::{
    marker, poll_until, random_string, Answer, CliOutput, Gateway, GatewayConfig, SiteAuth,
    WpFault, WpMimic, CHANGE_DEADLINE, SITE_HEADER,
};

/// No failure limit (one test sets its own), the default caches.
const AUTH_TOML: &str = "[auth]\nmax_failures = 0\n";

/// A WordPress-issued token (shaped like a JWT, valid for ten minutes); wpgate does not
/// know the key it is signed with, only the site can tell.
fn wp_token() -> String {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.{}",
        b64(&json!({"alg": "HS256", "typ": "JWT"})),
        b64(&json!({"iss": "wordpress", "iat": t, "exp": t + 600, "data": {"user": {"id": 1}}})),
        random_string(43)
    )
}

/// A gateway serving site `wp` in front of `wp` (the mimic) with a random site
/// credential (returned), its auth policy set with `set-auth <policy>`.
struct Lab {
    wp: WpMimic,
    gw: Gateway,
    site_cred: String,
}

impl Lab {
    fn start(auth_toml: &str, policy: &[&str]) -> Self {
        let wp = WpMimic::start();
        let mut gw = Gateway::prepare(GatewayConfig {
            extra_toml: auth_toml.into(),
            ..GatewayConfig::default()
        });
        let site_cred = format!("site-admin-cred-{}", random_string(24));
        gw.add_site("wp", &wp.url(), &SiteAuth::bearer(&site_cred));
        set_auth(&gw, "wp", policy).assert_success();
        gw.serve();
        Lab { wp, gw, site_cred }
    }

    /// GET `/wp-json/wp/v2/posts?<marker>` on site `wp` with `Authorization: Bearer
    /// <token>` (and, to see that they never pass, a cookie and an API key header).
    async fn get(&self, token: &str, m: &str) -> Answer {
        self.gw
            .send(
                self.gw
                    .get(&format!("/wp-json/wp/v2/posts?{m}"))
                    .header(SITE_HEADER, "wp")
                    .header("Authorization", format!("Bearer {token}"))
                    .header("Cookie", "wordpress_logged_in_x=admin")
                    .header("X-Auth-Subject", "1"),
            )
            .await
    }

    /// A 401 `auth.invalid_credentials` logged as `reason`, and nothing reached the site
    /// but the verification calls.
    async fn refused(&self, token: &str, reason: &str, what: &str) {
        let before = self.wp.requests().len();
        let a = self.get(token, &marker()).await;
        assert_eq!(a.status, 401, "{what}: {}", a.summary());
        a.assert_error(401, "auth.invalid_credentials");
        assert_eq!(self.gw.logged_reason(&a).await, reason, "{what}");
        assert_eq!(
            self.wp.requests().len(),
            before,
            "{what}: a refused request reached the site: {:#?}",
            self.wp.requests()
        );
    }

    /// Asserts the site received request `m` with `authorization` (exactly, once), and
    /// nothing of the other credential.
    #[track_caller]
    fn forwarded_with(&self, m: &str, authorization: &str, never: &str) {
        let r = self.wp.one_with(m);
        assert_eq!(
            r.header_values("authorization"),
            vec![authorization],
            "{r:#?}"
        );
        assert!(r.header("cookie").is_none(), "{r:#?}");
        for (name, value) in &r.headers {
            assert!(!value.contains(never), "{name} carries {never:?}: {r:#?}");
        }
    }
}

/// `wpgate site set-auth <id> <args...>`.
fn set_auth(gw: &Gateway, id: &str, args: &[&str]) -> CliOutput {
    let mut all = vec!["site", "set-auth", id];
    all.extend_from_slice(args);
    gw.cli(&all, None)
}

const DELEGATED: &[&str] = &["--methods", "jwt", "--jwt-verify", "wordpress"];

// ---------------------------------------------------------------------------------
// Only a real yes admits a token
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn a_page_served_to_every_path_admits_no_token() {
    let lab = Lab::start(AUTH_TOML, DELEGATED);
    lab.wp.fault(Some(WpFault::HtmlEverywhere));
    let token = wp_token();
    lab.refused(&token, "verifier_bad_answer", "200 text/html to everything")
        .await;
    // The refusal is cached like WordPress's own: no second call.
    lab.refused(&token, "verifier_bad_answer", "the same token again")
        .await;
    assert_eq!(lab.wp.users_me_calls().len(), 1);
    assert!(
        lab.gw.logs().contains("is not a WordPress user"),
        "the operator is told why"
    );
}

#[tokio::test]
async fn json_that_is_no_user_is_refused() {
    let lab = Lab::start(AUTH_TOML, DELEGATED);
    for (what, content_type, body) in [
        (
            "the REST index",
            "application/json; charset=UTF-8",
            r#"{"name":"shop","namespaces":["wp/v2"]}"#,
        ),
        ("id 0", "application/json", r#"{"id":0,"name":"x"}"#),
        ("a string id", "application/json", r#"{"id":"1"}"#),
        ("a list", "application/json", r#"[{"id":1}]"#),
        ("an empty body", "application/json", ""),
        ("a user as text/plain", "text/plain", r#"{"id":1}"#),
    ] {
        lab.wp.fault(Some(WpFault::UsersMe {
            status: 200,
            content_type,
            body: body.to_owned(),
        }));
        lab.refused(&wp_token(), "verifier_bad_answer", what).await;
    }
}

#[tokio::test]
async fn a_redirect_is_refused_and_not_followed() {
    let lab = Lab::start(AUTH_TOML, DELEGATED);
    lab.wp.fault(Some(WpFault::RedirectToLogin));
    lab.refused(&wp_token(), "verifier_bad_answer", "302 to wp-login.php")
        .await;
    assert!(
        lab.wp.requests().is_empty(),
        "the redirect was followed: {:#?}",
        lab.wp.requests()
    );
}

#[tokio::test]
async fn wordpress_saying_no_is_verifier_refused() {
    let lab = Lab::start(AUTH_TOML, DELEGATED);
    lab.refused(&wp_token(), "verifier_refused", "401 rest_not_logged_in")
        .await;
    let uris = lab.wp.users_me_uris();
    assert_eq!(
        uris,
        vec!["/wp-json/wp/v2/users/me?context=edit&_fields=id,roles"]
    );
}

#[tokio::test]
async fn a_failing_site_is_503_never_cached_nor_counted_against_the_client() {
    // Two failures and the client is blocked: the verifier's trouble must not count.
    let lab = Lab::start(
        "[auth]\nmax_failures = 2\nfailure_window = \"1m\"\nfetch_timeout = \"1s\"\n",
        DELEGATED,
    );
    let token = wp_token();
    lab.wp.accept_user(&token, 7, "sam", &["subscriber"]);
    let faults = [
        WpFault::UsersMe {
            status: 500,
            content_type: "text/html",
            body: "<h1>Error establishing a database connection</h1>".into(),
        },
        WpFault::UsersMe {
            status: 503,
            content_type: "application/json",
            body: r#"{"id":1}"#.into(),
        },
        WpFault::UsersMe {
            status: 429,
            content_type: "text/plain",
            body: "slow down".into(),
        },
        WpFault::Slow(Duration::from_secs(3)),
    ];
    for (n, fault) in faults.into_iter().enumerate() {
        let what = format!("{fault:?}");
        lab.wp.fault(Some(fault));
        let a = lab.get(&token, &marker()).await;
        a.assert_error(503, "auth.verifier_unavailable");
        assert_eq!(
            lab.gw.logged_reason(&a).await,
            "verifier_unavailable",
            "{what}"
        );
        assert_eq!(
            lab.wp.users_me_calls().len(),
            n + 1,
            "{what}: not asked again"
        );
    }
    assert!(lab.wp.requests().is_empty(), "{:#?}", lab.wp.requests());
    // The site is back: the same client and token pass at once (nothing cached, no 429).
    lab.wp.fault(None);
    let m = marker();
    lab.get(&token, &m).await.assert_ok();
    lab.forwarded_with(&m, &format!("Bearer {token}"), &lab.site_cred);
}

// ---------------------------------------------------------------------------------
// Whose credential WordPress receives
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn by_default_the_site_receives_the_users_own_token_not_its_credential() {
    let lab = Lab::start(
        AUTH_TOML,
        &[DELEGATED, &["--jwt-claim-header", "sub=X-Auth-Subject"]].concat(),
    );
    let token = wp_token();
    lab.wp.accept_user(&token, 7, "sam", &["subscriber"]);
    for _ in 0..2 {
        let m = marker();
        lab.get(&token, &m).await.assert_ok();
        lab.forwarded_with(&m, &format!("Bearer {token}"), &lab.site_cred);
        assert_eq!(
            lab.wp.one_with(&m).header_values("x-auth-subject"),
            vec!["7"]
        );
    }
    assert_eq!(lab.wp.users_me_calls().len(), 1, "the yes was cached");
    // A POST too: WordPress decides what this user may do.
    let m = marker();
    let a = lab
        .gw
        .send(
            lab.gw
                .request(Method::POST, &format!("/wp-json/wp/v2/posts?{m}"))
                .header(SITE_HEADER, "wp")
                .header("Authorization", format!("bearer   {token}"))
                .header("X-WP-Nonce", "0123456789")
                .json(&json!({"title": "x"})),
        )
        .await;
    a.assert_ok();
    lab.forwarded_with(&m, &format!("Bearer {token}"), &lab.site_cred);
    let r = lab.wp.one_with(&m);
    assert_eq!(r.method, "POST", "{r:#?}");
    let shown = lab.gw.cli_json(&["site", "show", "wp"]).json();
    assert_eq!(shown["auth"]["jwt"]["act_as"], "user", "{shown}");
    let text = lab.gw.cli(&["site", "show", "wp"], None);
    assert!(
        text.assert_success().stdout.contains("acting as the user"),
        "{}",
        text.stdout
    );
}

#[tokio::test]
async fn acting_as_the_site_takes_a_listed_role() {
    let lab = Lab::start(
        AUTH_TOML,
        &[
            DELEGATED,
            &[
                "--jwt-act-as",
                "site",
                "--jwt-require-role",
                "administrator,editor",
            ],
        ]
        .concat(),
    );
    let (admin, editor, subscriber, nobody) = (wp_token(), wp_token(), wp_token(), wp_token());
    lab.wp.accept_user(&admin, 1, "admin", &["administrator"]);
    lab.wp
        .accept_user(&editor, 2, "ed", &["subscriber", "editor"]);
    lab.wp.accept_user(&subscriber, 3, "sub", &["subscriber"]);
    lab.wp.accept_token(&nobody, 4, "no-roles");
    for token in [&admin, &editor] {
        let m = marker();
        lab.get(token, &m).await.assert_ok();
        lab.forwarded_with(&m, &format!("Bearer {}", lab.site_cred), token);
    }
    for (token, what) in [
        (&subscriber, "a subscriber"),
        (&nobody, "a user without roles"),
    ] {
        for _ in 0..2 {
            let before = lab.wp.requests().len();
            let a = lab.get(token, &marker()).await;
            let err = a.assert_error(403, "auth.role_not_allowed");
            assert!(!err["message"].as_str().unwrap().contains("subscriber"));
            assert_eq!(lab.gw.logged_reason(&a).await, "role_not_allowed", "{what}");
            assert_eq!(lab.wp.requests().len(), before, "{what} was forwarded");
        }
    }
    // One users/me call per token: the roles are cached with the yes.
    assert_eq!(lab.wp.users_me_calls().len(), 4);
    let shown = lab.gw.cli_json(&["site", "show", "wp"]).json();
    assert_eq!(shown["auth"]["jwt"]["act_as"], "site", "{shown}");
    assert_eq!(
        shown["auth"]["jwt"]["require_roles"],
        json!(["administrator", "editor"]),
        "{shown}"
    );
    // The admin API shows the same policy.
    let token = lab.gw.admin_token("read", None);
    let site = lab
        .gw
        .admin_call(Method::GET, "/admin/v1/sites/wp", &token, None)
        .await;
    let site = site.assert_ok().json().unwrap();
    assert_eq!(site["auth"], shown["auth"], "{site}");
}

#[tokio::test]
async fn acting_as_the_site_without_roles_is_refused() {
    let wp = WpMimic::start();
    let gw = Gateway::prepare(GatewayConfig::default());
    gw.add_site("wp", &wp.url(), &SiteAuth::bearer("cred"));
    set_auth(&gw, "wp", DELEGATED).assert_success();
    let before = gw.cli_json(&["site", "show", "wp"]).json();
    for (args, says) in [
        (vec!["--jwt-act-as", "site"], "--jwt-require-role"),
        (
            vec![
                "--jwt-act-as",
                "site",
                "--jwt-require-role",
                "Administrator",
            ],
            "role",
        ),
        (vec!["--jwt-act-as", "admin"], "--jwt-act-as"),
    ] {
        let out = set_auth(&gw, "wp", &[DELEGATED, &args[..]].concat());
        assert!(!out.success(), "{args:?} was accepted: {}", out.stdout);
        assert!(out.stderr.contains(says), "{args:?}: {}", out.stderr);
    }
    // Locally verified tokens always get the site credential: no act-as there.
    let out = set_auth(
        &gw,
        "wp",
        &[
            "--methods",
            "jwt",
            "--jwt-alg",
            "RS256",
            "--jwt-jwks-url",
            "http://127.0.0.1:9/jwks.json",
            "--jwt-act-as",
            "user",
        ],
    );
    assert!(!out.success(), "act-as with a local policy: {}", out.stdout);
    assert!(out.stderr.contains("verify=wordpress"), "{}", out.stderr);
    assert_eq!(gw.cli_json(&["site", "show", "wp"]).json(), before);
}

// ---------------------------------------------------------------------------------
// Real WordPress: the user's own capabilities
// ---------------------------------------------------------------------------------

/// A WordPress user made for one test, with an Application Password, and the token the
/// sites' test JWT plugin (tests/wordpress/setup.sh) issues them.
struct RealUser {
    id: u64,
    token: String,
}

/// Creates user `login` with `role` on `site` (as its admin, through the REST API),
/// gives them an Application Password, and has them fetch a token with it.
async fn real_user(site: &WpSite, cleanup: &mut WpCleanup, login: &str, role: &str) -> RealUser {
    let new_user = json!({
        "username": login,
        "email": format!("{login}@wpgate.test"),
        "password": random_string(24),
        "roles": [role],
    });
    let (status, user) = site
        .direct_json_with(Method::POST, "/wp-json/wp/v2/users", Some(new_user))
        .await;
    assert_eq!(status, 201, "creating {login}: {user}");
    let id = user["id"].as_u64().unwrap();
    cleanup.user(site, id);
    let (status, app) = site
        .direct_json_with(
            Method::POST,
            &format!("/wp-json/wp/v2/users/{id}/application-passwords"),
            Some(json!({"name": "wpgate-test"})),
        )
        .await;
    assert_eq!(status, 201, "an application password for {login}: {app}");
    let password = app["password"].as_str().unwrap().to_owned();
    RealUser {
        id,
        token: real_token(site, login, &password).await,
    }
}

/// The test JWT plugin's token for the user with this Application Password.
async fn real_token(site: &WpSite, login: &str, app_password: &str) -> String {
    let resp = wp_client()
        .post(format!("{}/wp-json/wpgate-test-jwt/v1/token", site.url))
        .basic_auth(login, Some(app_password))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap();
    assert_eq!(
        status, 200,
        "{}: no token for {login} ({body}); tests/wordpress/setup.sh installs the test JWT plugin",
        site.url
    );
    let v: Value = serde_json::from_str(&body).unwrap();
    v["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn real_wordpress_applies_the_users_own_capabilities() {
    let _shared = SITES.read().await;
    let env = wp_env();
    let site = &env.sites[0];
    let mut cleanup = WpCleanup::default();
    let tag = random_string(8).to_lowercase();
    let sub = real_user(site, &mut cleanup, &format!("sub-{tag}"), "subscriber").await;
    let editor = real_user(site, &mut cleanup, &format!("ed-{tag}"), "editor").await;
    let admin = real_token(site, &site.user, &site.app_password).await;

    let mut gw = Gateway::prepare(GatewayConfig {
        extra_toml: AUTH_TOML.into(),
        read_timeout: "120s".into(),
        ..GatewayConfig::default()
    });
    gw.add_site(
        "real",
        &site.url,
        &SiteAuth::app_password(&site.user, &site.app_password),
    );
    set_auth(&gw, "real", DELEGATED).assert_success();
    gw.serve();
    let call = |token: &str, method: Method, path: &str| {
        gw.request(method, path)
            .header(SITE_HEADER, "real")
            .header("Authorization", format!("Bearer {token}"))
    };

    // Acting as the user (the default): WordPress sees the subscriber, not the admin
    // whose Application Password the site is registered with.
    let me = gw
        .send(call(&sub.token, Method::GET, "/wp-json/wp/v2/users/me"))
        .await;
    assert_eq!(me.assert_ok().json().unwrap()["id"], sub.id, "{}", me.body);
    let users = "/wp-json/wp/v2/users?context=edit&_fields=id";
    let a = gw.send(call(&sub.token, Method::GET, users)).await;
    assert_eq!(a.status, 403, "a subscriber listed users: {}", a.summary());
    assert_eq!(
        a.json().unwrap()["code"],
        "rest_forbidden_context",
        "{}",
        a.body
    );
    let a = gw
        .send(
            call(&sub.token, Method::POST, "/wp-json/wp/v2/posts")
                .json(&json!({"title": format!("by a subscriber {tag}")})),
        )
        .await;
    cleanup.created(&a, site, "/wp-json/wp/v2/posts");
    assert_eq!(a.status, 403, "a subscriber wrote a post: {}", a.summary());
    assert_eq!(
        a.json().unwrap()["code"],
        "rest_cannot_create",
        "{}",
        a.body
    );
    // The admin's own token may.
    let a = gw.send(call(&admin, Method::GET, users)).await;
    assert!(a.assert_ok().json().unwrap().as_array().unwrap().len() >= 3);

    // Acting as the site, for editors: an editor gets the site's credential (the admin),
    // a subscriber is turned away by wpgate.
    set_auth(
        &gw,
        "real",
        &[
            DELEGATED,
            &["--jwt-act-as", "site", "--jwt-require-role", "editor"],
        ]
        .concat(),
    )
    .assert_success();
    poll_until(
        "the subscriber refused once the policy changed",
        CHANGE_DEADLINE,
        || async {
            let a = gw
                .send(call(&sub.token, Method::GET, "/wp-json/wp/v2/users/me"))
                .await;
            (a.status == 403)
                .then_some(a)
                .ok_or_else(|| "not yet".to_owned())
        },
    )
    .await
    .assert_error(403, "auth.role_not_allowed");
    let me = gw
        .send(call(&editor.token, Method::GET, "/wp-json/wp/v2/users/me"))
        .await;
    assert_eq!(
        me.assert_ok().json().unwrap()["id"],
        site.user_id,
        "{}",
        me.body
    );
    assert_ne!(editor.id, site.user_id);
    gw.send(call(&editor.token, Method::GET, users))
        .await
        .assert_ok();
    cleanup.delete_now().await;
}
