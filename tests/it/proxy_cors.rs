//! CORS for browser apps, through the real binary in front of a recording upstream:
//! preflights answered by the gateway (never forwarded, no site id needed) for an
//! origin some site allows; a request with an `Origin` forwarded only when its own site
//! allows that origin; the CORS headers on what the browser gets; set-cors through the
//! CLI and the admin API, seen by a running gateway.

use crate::harness::{
    free_port, marker, poll_until, Answer, ApiKey, Gateway, SiteAuth, Upstream, CHANGE_DEADLINE,
    KEY_HEADER, SITE_HEADER,
};
use reqwest::Method;
use serde_json::{json, Value};

const APP: &str = "https://app.example.com";
const BLOG_APP: &str = "https://blog-app.example.com";
const EVIL: &str = "https://evil.example.com";

const ALLOW_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";
const ALLOW_HEADERS: &str = "X-Website-ID, X-API-Key, Authorization, Content-Type, X-Request-ID";
const EXPOSE_HEADERS: &str = "X-WP-Total, X-WP-TotalPages, Link, X-Request-ID";

fn site_auth() -> SiteAuth {
    SiteAuth::app_password("gateway", "abcd EFGH 1234 ijkl MNOP 5678")
}

/// A gateway with `shop` (allows [`APP`]), `blog` (allows [`BLOG_APP`]) and `plain`
/// (no origin) in front of one recording upstream, set through the CLI.
struct Fleet {
    up: Upstream,
    gw: Gateway,
    shop: ApiKey,
    blog: ApiKey,
    plain: ApiKey,
}

impl Fleet {
    async fn start() -> Fleet {
        let up = Upstream::start();
        let gw = Gateway::start();
        for site in ["shop", "blog", "plain"] {
            gw.add_site(site, &up.url(), &site_auth());
        }
        gw.cli(&["site", "set-cors", "shop", "--allow-origin", APP], None)
            .assert_success();
        gw.cli(
            &["site", "set-cors", "blog", "--allow-origin", BLOG_APP],
            None,
        )
        .assert_success();
        let f = Fleet {
            shop: gw.issue_key("shop", &[]),
            blog: gw.issue_key("blog", &[]),
            plain: gw.issue_key("plain", &[]),
            up,
            gw,
        };
        // The CLI wrote to the store: the running gateway sees it within a poll.
        f.until_preflight(APP, 204).await;
        f.until_preflight(BLOG_APP, 204).await;
        f
    }

    /// A preflight from `origin`, as a browser sends it: no site id, no credential.
    async fn preflight(&self, origin: &str, path: &str) -> Answer {
        self.gw
            .send(
                self.gw
                    .request(Method::OPTIONS, path)
                    .header("Origin", origin)
                    .header("Access-Control-Request-Method", "POST")
                    .header(
                        "Access-Control-Request-Headers",
                        "content-type, x-api-key, x-website-id",
                    ),
            )
            .await
    }

    async fn until_preflight(&self, origin: &str, status: u16) -> Answer {
        until_preflight(&self.gw, origin, status).await
    }

    /// GET `path` for `site` with `key`, from `origin` when given.
    async fn get(&self, site: &str, key: &str, path: &str, origin: Option<&str>) -> Answer {
        let mut req = self
            .gw
            .get(path)
            .header(SITE_HEADER, site)
            .header(KEY_HEADER, key);
        if let Some(o) = origin {
            req = req.header("Origin", o);
        }
        self.gw.send(req).await
    }
}

async fn preflight_on(gw: &Gateway, origin: &str) -> Answer {
    gw.send(
        gw.request(Method::OPTIONS, "/wp-json/wp/v2/posts")
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "GET"),
    )
    .await
}

/// Polls a preflight from `origin` until it gets `status`.
async fn until_preflight(gw: &Gateway, origin: &str, status: u16) -> Answer {
    poll_until(
        &format!("a preflight from {origin} to get {status}"),
        CHANGE_DEADLINE,
        || async {
            let a = preflight_on(gw, origin).await;
            if a.status == status {
                Ok(a)
            } else {
                Err(a.summary())
            }
        },
    )
    .await
}

fn values<'a>(a: &'a Answer, name: &str) -> Vec<&'a str> {
    a.headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect()
}

/// `Vary` names `Origin` (in any of its values).
fn varies_on_origin(a: &Answer) -> bool {
    values(a, "vary").iter().any(|v| {
        v.split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("origin"))
    })
}

/// The CORS headers of an answer a browser app at `origin` may read.
#[track_caller]
fn assert_readable_from(a: &Answer, origin: &str) {
    assert_eq!(values(a, "access-control-allow-origin"), [origin], "{a:?}");
    assert_eq!(
        values(a, "access-control-expose-headers"),
        [EXPOSE_HEADERS],
        "{a:?}"
    );
    assert!(varies_on_origin(a), "{a:?}");
    assert!(
        a.header("access-control-allow-credentials").is_none(),
        "{a:?}"
    );
}

#[track_caller]
fn assert_no_cors(a: &Answer) {
    let cors: Vec<_> = a
        .headers
        .keys()
        .filter(|k| k.as_str().starts_with("access-control-"))
        .collect();
    assert!(cors.is_empty(), "{cors:?} in {a:?}");
}

#[tokio::test]
async fn preflights_are_answered_by_the_gateway_and_never_forwarded() {
    let f = Fleet::start().await;
    for (origin, path) in [
        (APP, "/wp-json/wp/v2/posts"),
        (BLOG_APP, "/wp-json/wp/v2/posts/1"),
        // Any path: the real request is checked on its own.
        (APP, "/wp-admin/"),
    ] {
        let a = f.preflight(origin, path).await;
        assert_eq!(a.status, 204, "{origin} {path}: {}", a.summary());
        assert_eq!(values(&a, "access-control-allow-origin"), [origin]);
        assert_eq!(values(&a, "access-control-allow-methods"), [ALLOW_METHODS]);
        assert_eq!(values(&a, "access-control-allow-headers"), [ALLOW_HEADERS]);
        assert_eq!(values(&a, "access-control-max-age"), ["600"]);
        assert_eq!(values(&a, "vary"), ["Origin"]);
        assert!(a.header("access-control-allow-credentials").is_none());
        assert!(a.request_id().is_some());
        assert!(a.body.is_empty());
    }
    // With a site id, even one that does not allow the origin or is malformed: the
    // preflight is about the fleet, before the site id is read.
    for site in ["blog", "no such site!"] {
        let a =
            f.gw.send(
                f.gw.request(Method::OPTIONS, "/wp-json/")
                    .header("Origin", APP)
                    .header("Access-Control-Request-Method", "DELETE")
                    .header(SITE_HEADER, site),
            )
            .await;
        assert_eq!(a.status, 204, "{site}: {}", a.summary());
    }
    // An origin no site allows, or one written as no browser writes it: 403, no allow
    // headers.
    for origin in [
        EVIL,
        "https://APP.example.com",
        "https://app.example.com:443",
        "https://app.example.com/",
        "null",
    ] {
        let a = f.preflight(origin, "/wp-json/wp/v2/posts").await;
        a.assert_error(403, "cors.origin_not_allowed");
        assert_no_cors(&a);
    }
    // Nothing reached the upstream.
    let seen = f.up.requests();
    assert!(seen.is_empty(), "{seen:#?}");
    // A plain OPTIONS (no Access-Control-Request-Method) is a request like any other.
    let m = marker();
    let a =
        f.gw.send(
            f.gw.request(Method::OPTIONS, &format!("/wp-json/?{m}"))
                .header(SITE_HEADER, "shop")
                .header(KEY_HEADER, &f.shop.full)
                .header("Origin", APP),
        )
        .await;
    a.assert_ok();
    assert_readable_from(&a, APP);
    assert_eq!(f.up.one_with(&m).method, "OPTIONS");
    let a =
        f.gw.send(
            f.gw.request(Method::OPTIONS, "/wp-json/")
                .header("Origin", APP),
        )
        .await;
    a.assert_error(400, "request.missing_site_id");
}

#[tokio::test]
async fn a_browser_request_needs_an_origin_its_own_site_allows() {
    let f = Fleet::start().await;
    // Allowed: forwarded, answered with the CORS headers.
    let m = marker();
    let a = f
        .get(
            "shop",
            &f.shop.full,
            &format!("/wp-json/wp/v2/posts?{m}"),
            Some(APP),
        )
        .await;
    a.assert_ok();
    assert_readable_from(&a, APP);
    f.up.one_with(&m);

    // An origin only another site allows, or none allows: 403, not forwarded.
    for (site, key, origin) in [
        ("blog", &f.blog.full, APP),
        ("shop", &f.shop.full, BLOG_APP),
        ("shop", &f.shop.full, EVIL),
        ("plain", &f.plain.full, APP),
        ("shop", &f.shop.full, "https://app.example.com:443"),
        ("shop", &f.shop.full, "null"),
    ] {
        let m = marker();
        let a = f
            .get(
                site,
                key,
                &format!("/wp-json/wp/v2/posts?{m}"),
                Some(origin),
            )
            .await;
        a.assert_error(403, "cors.origin_not_allowed");
        assert!(f.up.requests_with(&m).is_empty(), "{site} {origin}");
        // The refusal is readable by an app some site allows (it learns which request
        // was refused), not by any other.
        if origin == APP || origin == BLOG_APP {
            assert_readable_from(&a, origin);
        } else {
            assert_no_cors(&a);
        }
    }
    // Two Origin headers: refused.
    let m = marker();
    let a =
        f.gw.send(
            f.gw.get(&format!("/wp-json/?{m}"))
                .header(SITE_HEADER, "shop")
                .header(KEY_HEADER, &f.shop.full)
                .header("Origin", APP)
                .header("Origin", APP),
        )
        .await;
    a.assert_error(403, "cors.origin_not_allowed");
    assert!(f.up.requests_with(&m).is_empty());

    // Without Origin (servers, scripts): as before, on every site. A site that allows
    // origins says its answers vary on it.
    for (site, key) in [("shop", &f.shop.full), ("plain", &f.plain.full)] {
        let m = marker();
        let a = f.get(site, key, &format!("/wp-json/?{m}"), None).await;
        a.assert_ok();
        assert!(a.header("access-control-allow-origin").is_none(), "{a:?}");
        assert_eq!(varies_on_origin(&a), site == "shop", "{site}: {a:?}");
        f.up.one_with(&m);
    }

    // The site's own CORS headers (WordPress echoes any origin and allows credentials)
    // are replaced by the gateway's; its paging headers stay readable.
    let a = f
        .get("shop", &f.shop.full, "/wp-json/wp/v2/wp-cors", Some(APP))
        .await;
    a.assert_ok();
    assert_readable_from(&a, APP);
    assert!(a.header("access-control-allow-headers").is_none(), "{a:?}");
    assert_eq!(values(&a, "vary"), ["Origin"], "{a:?}");
    assert_eq!(a.header("x-wp-total"), Some("3"));
    let a = f
        .get("shop", &f.shop.full, "/wp-json/wp/v2/wp-cors", None)
        .await;
    a.assert_ok();
    assert_eq!(values(&a, "access-control-allow-credentials"), ["true"]);
}

#[tokio::test]
async fn the_gateway_s_own_errors_are_readable_by_an_allowed_app() {
    let f = Fleet::start().await;
    // A wrong key: 401 with the CORS headers, and the same answer for a site that does
    // not allow the origin and for one that does not exist: the origin check comes only
    // after the credential, so nothing tells the sites apart.
    for site in ["shop", "blog", "ghost"] {
        let a = f
            .get(site, &f.shop.with_wrong_secret(), "/wp-json/", Some(APP))
            .await;
        a.assert_error(401, "auth.invalid_credentials");
        assert_readable_from(&a, APP);
        let a = f
            .get(site, &f.shop.with_wrong_secret(), "/wp-json/", Some(EVIL))
            .await;
        a.assert_error(401, "auth.invalid_credentials");
        assert_no_cors(&a);
    }
    // No site id, a path outside the REST API.
    let a = f.gw.send(f.gw.get("/wp-json/").header("Origin", APP)).await;
    a.assert_error(400, "request.missing_site_id");
    assert_readable_from(&a, APP);
    let a = f.get("shop", &f.shop.full, "/wp-admin/", Some(APP)).await;
    a.assert_error(403, "route.not_allowed");
    assert_readable_from(&a, APP);
    let seen = f.up.requests();
    assert!(seen.is_empty(), "{seen:#?}");

    // The upstream down: 502 from the gateway, readable too.
    let down = format!("http://127.0.0.1:{}", free_port());
    f.gw.add_site("down", &down, &site_auth());
    f.gw.cli(&["site", "set-cors", "down", "--allow-origin", APP], None)
        .assert_success();
    let key = f.gw.issue_key("down", &[]);
    let a = poll_until(
        "the down site to allow the app",
        CHANGE_DEADLINE,
        || async {
            let a = f.get("down", &key.full, "/wp-json/", Some(APP)).await;
            if a.status == 502 {
                Ok(a)
            } else {
                Err(a.summary())
            }
        },
    )
    .await;
    a.assert_error(502, "upstream.unreachable");
    assert_readable_from(&a, APP);
}

#[tokio::test]
async fn set_cors_through_the_cli_reaches_a_running_gateway() {
    let up = Upstream::start();
    let gw = Gateway::start();
    gw.add_site("shop", &up.url(), &site_auth());
    let key = gw.issue_key("shop", &[]);
    // By default no origin: browsers cannot call the site.
    let a = preflight_on(&gw, APP).await;
    a.assert_error(403, "cors.origin_not_allowed");
    gw.get_as("shop", &key.full, "/wp-json/").await.assert_ok();

    // Checked before anything is stored.
    for bad in [
        "*",
        "https://*.example.com",
        "null",
        "app.example.com",
        "ftp://app.example.com",
        "https://app.example.com/path",
        "https://app.example.com/?x=1",
        "https://user@app.example.com",
    ] {
        let out = gw.cli(&["site", "set-cors", "shop", "--allow-origin", bad], None);
        out.assert_failure();
    }
    gw.cli(
        &["site", "set-cors", "shop", "--reset", "--allow-origin", APP],
        None,
    )
    .assert_failure();
    gw.cli(&["site", "set-cors", "shop"], None).assert_failure();
    let out = gw.cli_json(&[
        "site",
        "set-cors",
        "shop",
        "--allow-origin",
        "HTTPS://App.Example.com:443/",
        "--allow-origin",
        "http://localhost:3000",
    ]);
    out.assert_success();
    assert_eq!(
        out.json()["cors"]["allow_origins"],
        json!([APP, "http://localhost:3000"])
    );
    let shown = gw.cli(&["site", "show", "shop"], None);
    assert!(
        shown
            .stdout
            .contains("cors:       https://app.example.com, http://localhost:3000"),
        "{}",
        shown.stdout
    );

    // The running gateway answers preflights and lets the app through.
    until_preflight(&gw, "http://localhost:3000", 204).await;
    let a = preflight_on(&gw, APP).await;
    assert_eq!(a.status, 204, "{}", a.summary());
    let a = gw
        .send(
            gw.get("/wp-json/")
                .header(SITE_HEADER, "shop")
                .header(KEY_HEADER, &key.full)
                .header("Origin", APP),
        )
        .await;
    a.assert_ok();
    assert_readable_from(&a, APP);

    // --reset: none again, for preflights and requests.
    gw.cli(&["site", "set-cors", "shop", "--reset"], None)
        .assert_success();
    until_preflight(&gw, APP, 403).await;
    poll_until("the app to be refused", CHANGE_DEADLINE, || async {
        let a = gw
            .send(
                gw.get("/wp-json/")
                    .header(SITE_HEADER, "shop")
                    .header(KEY_HEADER, &key.full)
                    .header("Origin", APP),
            )
            .await;
        if a.status == 403 {
            Ok(())
        } else {
            Err(a.summary())
        }
    })
    .await;
    // A deleted site's origins go with it.
    gw.cli(&["site", "set-cors", "shop", "--allow-origin", APP], None)
        .assert_success();
    until_preflight(&gw, APP, 204).await;
    gw.cli(&["site", "rm", "shop"], None).assert_success();
    until_preflight(&gw, APP, 403).await;
}

#[tokio::test]
async fn set_cors_through_the_admin_api_applies_at_once_and_is_audited() {
    let up = Upstream::start();
    let gw = Gateway::start();
    gw.add_site("shop", &up.url(), &site_auth());
    let key = gw.issue_key("shop", &[]);
    let write = gw.admin_token("write", Some("ops"));
    let read = gw.admin_token("read", None);
    let put = |token: &str, site: &str, body: Value| {
        let (token, path) = (token.to_string(), format!("/admin/v1/sites/{site}/cors"));
        let gw = &gw;
        async move { gw.admin_call(Method::PUT, &path, &token, Some(body)).await }
    };
    put(&read, "shop", json!({"allow_origins": [APP]}))
        .await
        .assert_error(403, "admin.forbidden");
    for bad in [
        json!({"allow_origins": ["*"]}),
        json!({"allow_origins": ["https://app.example.com/x"]}),
        json!({"allow_origins": ["app.example.com"]}),
        json!({"allow_origins": APP}),
        json!({"origins": [APP]}),
    ] {
        let a = put(&write, "shop", bad.clone()).await;
        a.assert_error(400, "admin.invalid_request");
    }
    put(&write, "ghost", json!({"allow_origins": [APP]}))
        .await
        .assert_error(404, "admin.not_found");
    let a = put(
        &write,
        "shop",
        json!({"allow_origins": ["https://App.Example.com", BLOG_APP, APP]}),
    )
    .await;
    a.assert_ok();
    assert_eq!(
        a.json().unwrap()["cors"]["allow_origins"],
        json!([APP, BLOG_APP])
    );
    // The admin API writes through this gateway: its preflights know at once.
    let p = preflight_on(&gw, BLOG_APP).await;
    assert_eq!(p.status, 204, "{}", p.summary());
    let shown = gw
        .admin_call(Method::GET, "/admin/v1/sites/shop", &read, None)
        .await;
    assert_eq!(
        shown.json().unwrap()["cors"]["allow_origins"],
        json!([APP, BLOG_APP])
    );
    let a = gw
        .send(
            gw.get("/wp-json/")
                .header(SITE_HEADER, "shop")
                .header(KEY_HEADER, &key.full)
                .header("Origin", BLOG_APP),
        )
        .await;
    a.assert_ok();
    assert_readable_from(&a, BLOG_APP);

    // An empty list is the reset.
    put(&write, "shop", json!({"allow_origins": []}))
        .await
        .assert_ok();
    preflight_on(&gw, APP)
        .await
        .assert_error(403, "cors.origin_not_allowed");
    gw.cli(&["site", "set-cors", "shop", "--allow-origin", APP], None)
        .assert_success();

    let audit = gw
        .admin_call(Method::GET, "/admin/v1/audit?site=shop", &read, None)
        .await;
    let entries = audit.json().unwrap()["entries"].clone();
    let set: Vec<(&str, &str)> = entries
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "site.set_cors")
        .map(|e| (e["actor"].as_str().unwrap(), e["detail"].as_str().unwrap()))
        .collect();
    assert_eq!(set.len(), 3, "{entries:#}");
    assert!(
        set.iter().any(|(actor, detail)| actor.starts_with("admin:")
            && *detail == format!("allow_origins={APP},{BLOG_APP}")),
        "{entries:#}"
    );
    assert!(
        set.iter()
            .any(|(_, detail)| *detail == "allow_origins=(none)"),
        "{entries:#}"
    );
    assert!(
        set.iter().any(|(actor, _)| actor.starts_with("cli:")),
        "{entries:#}"
    );
}

#[tokio::test]
async fn a_gateway_answers_preflights_from_its_first_request() {
    let up = Upstream::start();
    let mut gw = Gateway::prepare(Default::default());
    gw.add_site("shop", &up.url(), &site_auth());
    gw.cli(&["site", "set-cors", "shop", "--allow-origin", APP], None)
        .assert_success();
    gw.serve();
    // Read at start-up, not at the change follower's first poll.
    let a = preflight_on(&gw, APP).await;
    assert_eq!(a.status, 204, "{}", a.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_one_postgres_learn_of_set_cors_from_each_other() {
    use crate::fleet_postgres::{replica, shared_keyring};
    use crate::harness::postgres::TestDb;
    let db = TestDb::create();
    let up = Upstream::start();
    let keyring = shared_keyring();
    // The change-log poll is slow on purpose: within seconds means by notification.
    let a = replica(&db.url, &keyring, "poll_interval = \"30s\"");
    let b = replica(&db.url, &keyring, "poll_interval = \"30s\"");
    a.add_site("shop", &up.url(), &site_auth());
    let key = a.issue_key("shop", &[]);
    let token = a.admin_token("write", None);
    let put = |origins: Value| {
        a.admin_call(
            Method::PUT,
            "/admin/v1/sites/shop/cors",
            &token,
            Some(json!({ "allow_origins": origins })),
        )
    };
    // Within CHANGE_DEADLINE, shorter than the poll: by notification.
    put(json!([APP])).await.assert_ok();
    until_preflight(&b, APP, 204).await;
    let r = b
        .send(
            b.get("/wp-json/")
                .header(SITE_HEADER, "shop")
                .header(KEY_HEADER, &key.full)
                .header("Origin", APP),
        )
        .await;
    r.assert_ok();
    assert_readable_from(&r, APP);
    put(json!([])).await.assert_ok();
    until_preflight(&b, APP, 403).await;
}
