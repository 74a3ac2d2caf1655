//! The injected credential reaches only what it must: client credentials are always
//! removed, TRACE/TRACK/CONNECT are answered by the gateway, only the REST API (and the
//! paths a site allows) is forwarded, and no request target leaves it once decoded.
//! Hostile targets go on a raw connection (clients normalise them), through the real
//! binary, in front of a recording upstream.

use crate::harness::{marker, Answer, GatewayConfig, OneSite, SiteAuth, KEY_HEADER, SITE_HEADER};
use reqwest::Method;
use serde_json::{json, Value};

fn site_auth() -> SiteAuth {
    SiteAuth::app_password("gateway", "abcd EFGH 1234 ijkl MNOP 5678")
}

/// A raw request for the site with its key.
async fn raw_as(s: &OneSite, method: &str, target: &[u8]) -> Answer {
    s.gw.raw(
        method,
        target,
        &[(SITE_HEADER, &s.site), (KEY_HEADER, &s.key.full)],
    )
    .await
}

#[tokio::test]
async fn trace_track_and_connect_are_refused_before_anything_is_looked_up() {
    // Two failed authentications would lock the client out: refused methods count none.
    let s = OneSite::start_with(
        GatewayConfig {
            extra_toml: "[auth]\nmax_failures = 2\nfailure_window = \"1m\"\n".into(),
            ..GatewayConfig::default()
        },
        "shop",
        "",
        &site_auth(),
    );
    let connect_target = format!("127.0.0.1:{}", s.up.port());
    for (method, target) in [
        ("TRACE", "/wp-json/wp/v2/posts"),
        ("TRACK", "/wp-json/wp/v2/posts"),
        ("CONNECT", connect_target.as_str()),
        ("trace", "/wp-json/"),
    ] {
        // With the site's key, with a wrong key, with nothing at all: the same 405.
        let wrong = s.key.with_wrong_secret();
        for mut headers in [
            vec![
                (SITE_HEADER, s.site.as_str()),
                (KEY_HEADER, s.key.full.as_str()),
            ],
            vec![(SITE_HEADER, s.site.as_str()), (KEY_HEADER, wrong.as_str())],
            vec![],
        ] {
            if method == "CONNECT" {
                // Pingora refuses a CONNECT whose Host differs from its target.
                headers.push(("Host", target));
            }
            let a = s.gw.raw(method, target.as_bytes(), &headers).await;
            a.assert_error(405, "request.method_not_allowed");
            let allow = a
                .header("allow")
                .unwrap_or_else(|| panic!("no Allow: {a:?}"));
            assert!(allow.contains("GET") && !allow.contains("TRACE"), "{allow}");
            assert_eq!(s.gw.logged_reason(&a).await, "method_never_forwarded");
        }
    }
    assert!(s.up.requests().is_empty(), "{:#?}", s.up.requests());
    // No failure was counted: the site's key still gets through.
    s.get("/wp-json/wp/v2/posts").await.assert_ok();
    assert_eq!(s.up.requests().len(), 1);
}

#[tokio::test]
async fn only_the_rest_api_is_forwarded_by_default() {
    let s = OneSite::start("shop", &site_auth());
    for (method, path) in [
        (Method::GET, "/wp-admin/"),
        (Method::GET, "/wp-admin/options.php"),
        (Method::POST, "/wp-login.php"),
        (Method::POST, "/xmlrpc.php"),
        (Method::GET, "/"),
        (Method::GET, "/index.php"),
        (Method::GET, "/?p=1"),
        (Method::GET, "/wp-jsonx/wp/v2"),
        (Method::GET, "/?rest_route="),
        (Method::GET, "/?rest_route=/wp/v2/posts&rest_route="),
        (Method::GET, "/wp-json/wp/v2/posts?rest_route="),
    ] {
        s.gw.send(s.authed(method.clone(), path))
            .await
            .assert_error(403, "route.not_allowed");
    }
    assert!(s.up.requests().is_empty(), "{:#?}", s.up.requests());
    // A client the site does not accept learns nothing about its routes.
    s.gw.send(s.gw.get("/wp-admin/").header(SITE_HEADER, &s.site))
        .await
        .assert_error(401, "auth.missing_credentials");

    // The REST API, in each of its spellings, is forwarded with the credential.
    for path in [
        "/wp-json",
        "/wp-json/wp/v2/posts",
        "/?rest_route=/wp/v2/posts",
        "/index.php?rest_route=/wp/v2/posts",
        "/index.php?rest_route=%2Fwp%2Fv2%2Fusers%2Fme&context=edit",
    ] {
        let m = marker();
        let sep = if path.contains('?') { '&' } else { '?' };
        let sent = format!("{path}{sep}{m}");
        let r = s.get_recorded(&sent, &m).await;
        assert_eq!(r.uri, sent);
        r.assert_credential(&site_auth());
    }
}

#[tokio::test]
async fn a_site_allows_more_paths_through_the_cli_and_the_admin_api() {
    let s = OneSite::start("shop", &site_auth());
    let key = s.key.full.clone();
    s.get("/xmlrpc.php")
        .await
        .assert_error(403, "route.not_allowed");

    // CLI: --allow-path (repeatable), checked before anything is stored.
    for bad in ["xmlrpc.php", "/a/../b", "/a%2fb", "/a?x", "/a b"] {
        let out =
            s.gw.cli(&["site", "set-routes", "shop", "--allow-path", bad], None);
        out.assert_failure();
    }
    s.gw.cli(
        &[
            "site",
            "set-routes",
            "shop",
            "--reset",
            "--allow-path",
            "/x",
        ],
        None,
    )
    .assert_failure();
    s.gw.cli(&["site", "set-routes", "shop"], None)
        .assert_failure();
    let out = s.gw.cli_json(&[
        "site",
        "set-routes",
        "shop",
        "--allow-path",
        "/xmlrpc.php",
        "--allow-path",
        "/wp-content/uploads/",
    ]);
    out.assert_success();
    assert_eq!(
        out.json()["routes"]["allow_paths"],
        json!(["/xmlrpc.php", "/wp-content/uploads/"])
    );
    let shown = s.gw.cli(&["site", "show", "shop"], None);
    assert!(
        shown
            .stdout
            .contains("REST API and /xmlrpc.php, /wp-content/uploads/"),
        "{}",
        shown.stdout
    );
    s.gw.poll_status("shop", &key, "/xmlrpc.php", 200).await;
    let m = marker();
    let r = s.get_recorded(&format!("/xmlrpc.php?{m}"), &m).await;
    r.assert_credential(&site_auth());
    s.get_recorded(
        &format!("/wp-content/uploads/2024/a.png?{m}"),
        &format!("a.png?{m}"),
    )
    .await;
    for still_refused in [
        "/xmlrpc.phpx",
        "/wp-content/uploadsx",
        "/wp-content/",
        "/wp-admin/",
    ] {
        s.get(still_refused)
            .await
            .assert_error(403, "route.not_allowed");
    }
    // Prefixes are matched on the decoded path; dot segments never pass.
    let a = raw_as(&s, "GET", b"/wp-content/uploads/../../wp-config.php").await;
    a.assert_error(400, "request.malformed_path");

    // --reset: the REST API only, again.
    s.gw.cli(&["site", "set-routes", "shop", "--reset"], None)
        .assert_success();
    s.gw.poll_status("shop", &key, "/xmlrpc.php", 403).await;

    // The admin API: the same, audited, shown in the site's view.
    let write = s.gw.admin_token("write", Some("ops"));
    let read = s.gw.admin_token("read", None);
    let put = |token: &str, body: Value| {
        let token = token.to_string();
        let gw = &s.gw;
        async move {
            gw.admin_call(
                Method::PUT,
                "/admin/v1/sites/shop/routes",
                &token,
                Some(body),
            )
            .await
        }
    };
    put(&read, json!({"allow_paths": ["/wp-login.php"]}))
        .await
        .assert_error(403, "admin.forbidden");
    for bad in [
        json!({"allow_paths": ["wp-login.php"]}),
        json!({"allow_paths": ["/wp-json/../wp-login.php"]}),
        json!({"allow_paths": "/wp-login.php"}),
        json!({"paths": ["/wp-login.php"]}),
    ] {
        let a = put(&write, bad.clone()).await;
        a.assert_error(400, "admin.invalid_request");
    }
    let a = put(&write, json!({"allow_paths": ["/wp-login.php"]})).await;
    a.assert_ok();
    assert_eq!(
        a.json().unwrap()["routes"]["allow_paths"],
        json!(["/wp-login.php"])
    );
    let shown =
        s.gw.admin_call(Method::GET, "/admin/v1/sites/shop", &read, None)
            .await;
    assert_eq!(
        shown.json().unwrap()["routes"]["allow_paths"],
        json!(["/wp-login.php"])
    );
    s.gw.poll_status("shop", &key, "/wp-login.php", 200).await;
    s.get("/xmlrpc.php")
        .await
        .assert_error(403, "route.not_allowed");
    let audit =
        s.gw.admin_call(Method::GET, "/admin/v1/audit?site=shop", &read, None)
            .await;
    let entries = audit.json().unwrap()["entries"].clone();
    let actions: Vec<&str> = entries
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "site.set_routes")
        .map(|e| e["actor"].as_str().unwrap())
        .collect();
    assert_eq!(actions.len(), 3, "{entries:#}");
    assert!(
        actions.iter().any(|a| a.starts_with("admin:")),
        "{entries:#}"
    );
    // An empty list is the reset.
    put(&write, json!({"allow_paths": []})).await.assert_ok();
    s.gw.poll_status("shop", &key, "/wp-login.php", 403).await;
}

/// What the upstream must never receive, whatever the encoding, and the reason the
/// access log gives.
const HOSTILE: [(&[u8], &str); 16] = [
    (b"/wp-json/../wp-admin/", "path_dot_segment"),
    (b"/wp-json/..", "path_dot_segment"),
    (b"/wp-json/./wp/v2/posts", "path_dot_segment"),
    (b"/wp-json/%2e%2e/wp-admin/", "path_dot_segment"),
    (b"/wp-json/%2E%2E/wp-admin/", "path_dot_segment"),
    (b"/wp-json/.%2E/wp-admin/", "path_dot_segment"),
    (b"/wp-json/a%2fb", "path_encoded_slash"),
    (b"/wp-json%2f..%2fwp-admin/", "path_encoded_slash"),
    (b"/wp-json/a\\b", "path_backslash"),
    (b"/wp-json\\..\\wp-admin\\", "path_backslash"),
    (b"/wp-json/%5c..%5cwp-admin/", "path_encoded_slash"),
    (b"/wp-json/a%00.php", "path_control_char"),
    (b"/wp-json/a%0d%0aX-Injected:%201", "path_control_char"),
    (b"/wp-json/%252e%252e/wp-admin/", "path_double_encoded"),
    (b"/wp-json/%c0%ae%c0%ae/wp-admin/", "path_not_utf8"),
    (b"/wp-json/caf%e9/", "path_not_utf8"),
];

#[tokio::test]
async fn hostile_targets_are_400_and_never_forwarded() {
    let s = OneSite::start("shop", &site_auth());
    for (target, reason) in HOSTILE {
        let a = raw_as(&s, "GET", target).await;
        let code = a.error_code();
        assert_eq!(
            (a.status, code.as_deref()),
            (400, Some("request.malformed_path")),
            "{:?}: {}",
            String::from_utf8_lossy(target),
            a.summary()
        );
        a.assert_error(400, "request.malformed_path");
        assert_eq!(s.gw.logged_reason(&a).await, reason);
    }
    // Bytes that are not UTF-8, unencoded: Pingora refuses them before the gateway's
    // checks (400 without a body); never forwarded either way.
    assert_eq!(raw_as(&s, "GET", b"/wp-json/caf\xe9/").await.status, 400);
    // Not origin-form: nothing to prefix, nothing forwarded.
    s.gw.raw(
        "GET",
        b"http://evil.example/wp-json/",
        &[
            ("Host", "evil.example"),
            (SITE_HEADER, &s.site),
            (KEY_HEADER, &s.key.full),
        ],
    )
    .await
    .assert_error(400, "request.malformed_path");
    assert!(s.up.requests().is_empty(), "{:#?}", s.up.requests());
    // The same connection path with a clean target is forwarded.
    raw_as(&s, "GET", b"/wp-json/wp/v2/posts?q=%2e%2e%2f")
        .await
        .assert_ok();
    let seen = s.up.requests();
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(seen[0].uri, "/wp-json/wp/v2/posts?q=%2e%2e%2f");
}

#[tokio::test]
async fn no_request_leaves_the_upstream_path_prefix() {
    let s = OneSite::start_with(GatewayConfig::default(), "blog", "/blog", &site_auth());
    for target in [
        &b"/../other/wp-json/"[..],
        b"/wp-json/../../other/wp-json/",
        b"/%2e%2e/other/wp-json/",
        b"/wp-json/%2e%2e/%2e%2e/other/",
        b"/wp-json%2f..%2f..%2fother",
    ] {
        raw_as(&s, "GET", target)
            .await
            .assert_error(400, "request.malformed_path");
    }
    for target in [&b"/other/wp-json/"[..], b"//other/wp-json/"] {
        raw_as(&s, "GET", target)
            .await
            .assert_error(403, "route.not_allowed");
    }
    raw_as(&s, "GET", b"/wp-json/wp/v2/posts").await.assert_ok();
    let seen: Vec<String> = s.up.requests().into_iter().map(|r| r.uri).collect();
    assert_eq!(seen, vec!["/blog/wp-json/wp/v2/posts"]);
}

#[tokio::test]
async fn client_credentials_are_removed_whatever_strip_headers_says() {
    // The configuration names one header of its own; it adds to the fixed list.
    let site_secret = "site-plugin-secret-0123456789";
    let auth = SiteAuth::header("X-Plugin-Auth", site_secret);
    let s = OneSite::start_with(
        GatewayConfig {
            proxy_toml: "strip_headers = [\"X-Debug\"]".into(),
            ..GatewayConfig::default()
        },
        "shop",
        "",
        &auth,
    );
    let client_headers = [
        ("Cookie", "wordpress_logged_in_abc=admin|123"),
        ("Proxy-Authorization", "Basic cHJveHk6c2VjcmV0"),
        ("X-WP-Nonce", "0123456789"),
        ("X-Debug", "1"),
        ("X-Plugin-Auth", "forged-by-the-client"),
        ("X-Kept", "kept"),
    ];
    // Authenticated with X-API-Key, then with Authorization: Bearer.
    for bearer in [false, true] {
        let m = marker();
        let mut req =
            s.gw.get(&format!("/wp-json/wp/v2/posts?{m}"))
                .header(SITE_HEADER, &s.site);
        req = if bearer {
            req.bearer_auth(&s.key.full)
        } else {
            req.header(KEY_HEADER, &s.key.full)
        };
        for (name, value) in client_headers {
            req = req.header(name, value);
        }
        s.gw.send(req).await.assert_ok();
        let r = s.up.one_with(&m);
        for gone in [
            "authorization",
            "proxy-authorization",
            "x-api-key",
            "cookie",
            "x-wp-nonce",
            "x-debug",
        ] {
            assert!(r.header(gone).is_none(), "{gone} forwarded: {r:#?}");
        }
        assert_eq!(
            r.header_values("x-plugin-auth"),
            vec![site_secret],
            "{r:#?}"
        );
        assert_eq!(r.header("x-kept"), Some("kept"));
    }
}
