//! Client authentication at the gateway and upstream credential injection, through
//! the real binary in front of a recording upstream.

use std::time::{Duration, Instant};

use crate::harness::{
    marker, random_string, Gateway, OneSite, SiteAuth, Upstream, CHANGE_DEADLINE, KEY_HEADER,
    SITE_HEADER,
};

/// Send a request with `X-API-Key` and check the upstream got exactly the site's
/// credential and nothing of the client's.
async fn assert_injected(auth: SiteAuth) {
    let s = OneSite::start("inject", &auth);
    let m = marker();
    s.gw.send(
        s.gw.get(&format!("/wp-json/wp/v2/posts?{m}"))
            .header(SITE_HEADER, "inject")
            .header(KEY_HEADER, &s.key.full),
    )
    .await
    .assert_ok();
    let r = s.up.one_with(&m);
    assert!(
        r.header("x-api-key").is_none(),
        "client key forwarded: {r:#?}"
    );
    match auth.expected_upstream_header() {
        Some((name, value)) => {
            assert_eq!(r.header_values(&name), vec![value.as_str()], "{r:#?}");
            if name != "authorization" {
                assert!(r.header("authorization").is_none(), "{r:#?}");
            }
        }
        None => assert!(r.header("authorization").is_none(), "{r:#?}"),
    }

    // Same through `Authorization: Bearer wpg_...`: the client's Authorization is
    // replaced, never forwarded alongside.
    let m = marker();
    s.gw.send(
        s.gw.get(&format!("/wp-json/wp/v2/posts?{m}"))
            .header(SITE_HEADER, "inject")
            .bearer_auth(&s.key.full),
    )
    .await
    .assert_ok();
    let r = s.up.one_with(&m);
    let auth_values = r.header_values("authorization");
    assert!(
        !auth_values.iter().any(|v| v.contains(&s.key.full)),
        "client's bearer key reached the upstream: {r:#?}"
    );
    match auth.expected_upstream_header() {
        Some((name, value)) => assert_eq!(r.header_values(&name), vec![value.as_str()]),
        None => assert!(auth_values.is_empty(), "{r:#?}"),
    }
}

#[tokio::test]
async fn app_password_is_injected_as_basic_auth() {
    let password = format!(
        "{} {} {} {}",
        random_string(4),
        random_string(4),
        random_string(4),
        random_string(4)
    );
    assert_injected(SiteAuth::app_password("editor", &password)).await;
}

#[tokio::test]
async fn bearer_token_is_injected() {
    assert_injected(SiteAuth::bearer(&format!("jwt.{}", random_string(40)))).await;
}

#[tokio::test]
async fn custom_header_credential_is_injected() {
    assert_injected(SiteAuth::header("X-Plugin-Auth", &random_string(32))).await;
}

#[tokio::test]
async fn auth_none_injects_nothing() {
    assert_injected(SiteAuth::None).await;
}

#[tokio::test]
async fn client_cannot_forge_the_injected_header() {
    let secret = random_string(32);
    let s = OneSite::start("forge", &SiteAuth::header("X-Plugin-Auth", &secret));
    let m = marker();
    s.gw.send(
        s.gw.get(&format!("/wp-json/?{m}"))
            .header(SITE_HEADER, "forge")
            .header(KEY_HEADER, &s.key.full)
            .header("X-Plugin-Auth", "forged-by-client"),
    )
    .await
    .assert_ok();
    let r = s.up.one_with(&m);
    assert_eq!(
        r.header_values("x-plugin-auth"),
        vec![secret.as_str()],
        "{r:#?}"
    );
}

#[tokio::test]
async fn client_credentials_never_reach_the_upstream() {
    let s = OneSite::start("strip", &SiteAuth::None);
    let cookie = format!("wordpress_logged_in_abc={}", random_string(24));

    let m1 = marker();
    s.gw.send(
        s.gw.get(&format!("/wp-json/?{m1}"))
            .header(SITE_HEADER, "strip")
            .header(KEY_HEADER, &s.key.full)
            .header("Cookie", &cookie),
    )
    .await
    .assert_ok();
    let m2 = marker();
    s.gw.send(
        s.gw.request(reqwest::Method::POST, &format!("/wp-json/wp/v2/posts?{m2}"))
            .header(SITE_HEADER, "strip")
            .bearer_auth(&s.key.full)
            .header("Cookie", &cookie)
            .body("{\"title\":\"x\"}"),
    )
    .await
    .assert_ok();

    for m in [m1, m2] {
        let r = s.up.one_with(&m);
        for name in ["authorization", "x-api-key", "cookie"] {
            assert!(
                r.header(name).is_none(),
                "{name} reached the upstream: {r:#?}"
            );
        }
        for (name, value) in &r.headers {
            assert!(
                !value.contains(&s.key.secret) && !value.contains(&cookie),
                "client credential reached the upstream in {name}: {value}"
            );
        }
    }
}

/// `req` is answered `status` `code`, and nothing reached the upstream.
async fn refused_unproxied(s: &OneSite, req: reqwest::RequestBuilder, status: u16, code: &str) {
    s.gw.send(req).await.assert_error(status, code);
    assert!(s.up.requests().is_empty());
}

#[tokio::test]
async fn missing_site_id_is_400() {
    let s = OneSite::start("blog", &SiteAuth::None);
    let no_site = s.gw.get("/wp-json/").header(KEY_HEADER, &s.key.full);
    refused_unproxied(&s, no_site, 400, "request.missing_site_id").await;
}

#[tokio::test]
async fn duplicate_site_id_is_400() {
    let s = OneSite::start("blog", &SiteAuth::None);
    for (first, second) in [("blog", "blog"), ("blog", "other")] {
        let a =
            s.gw.send(
                s.gw.get("/wp-json/")
                    .header(SITE_HEADER, first)
                    .header(SITE_HEADER, second)
                    .header(KEY_HEADER, &s.key.full),
            )
            .await;
        a.assert_error(400, "request.invalid_site_id");
    }
    assert!(s.up.requests().is_empty());
}

#[tokio::test]
async fn malformed_site_id_is_400() {
    let s = OneSite::start("blog", &SiteAuth::None);
    let too_long = "a".repeat(65);
    let bad: Vec<&[u8]> = vec![
        b"has space",
        b"semi;colon",
        b"slash/path",
        b"../etc",
        b"dot.dot",
        b"blog,other",
        too_long.as_bytes(),
        "sit\u{e9}".as_bytes(),
    ];
    for value in bad {
        let a =
            s.gw.send(
                s.gw.get("/wp-json/")
                    .header(
                        SITE_HEADER,
                        reqwest::header::HeaderValue::from_bytes(value).unwrap(),
                    )
                    .header(KEY_HEADER, &s.key.full),
            )
            .await;
        assert_eq!(
            a.error_code().as_deref(),
            Some("request.invalid_site_id"),
            "site id {:?}: {}",
            String::from_utf8_lossy(value),
            a.summary()
        );
        a.assert_error(400, "request.invalid_site_id");
    }
    // The longest well-formed id is not malformed, only unknown.
    let a = s.gw.get_as(&"a".repeat(64), &s.key.full, "/wp-json/").await;
    a.assert_error(401, "auth.invalid_credentials");
    assert!(s.up.requests().is_empty());
}

#[tokio::test]
async fn unknown_site_answers_like_a_wrong_key() {
    let s = OneSite::start("blog", &SiteAuth::None);
    let unknown = s.gw.get_as("no-such-site", &s.key.full, "/wp-json/").await;
    let e_unknown = unknown.assert_error(401, "auth.invalid_credentials");
    let wrong =
        s.gw.get_as("blog", &s.key.with_wrong_secret(), "/wp-json/")
            .await;
    let e_wrong = wrong.assert_error(401, "auth.invalid_credentials");
    assert_eq!(
        e_unknown["message"], e_wrong["message"],
        "unknown site and wrong key must look the same to the client"
    );
    assert_eq!(
        unknown.header("www-authenticate"),
        wrong.header("www-authenticate")
    );

    // Without a key, too, an unknown site looks like a known one.
    let a_known =
        s.gw.send(s.gw.get("/wp-json/").header(SITE_HEADER, "blog"))
            .await;
    let a_unknown =
        s.gw.send(s.gw.get("/wp-json/").header(SITE_HEADER, "no-such-site"))
            .await;
    a_known.assert_error(401, "auth.missing_credentials");
    a_unknown.assert_error(401, "auth.missing_credentials");
    assert!(s.up.requests().is_empty());
}

#[tokio::test]
async fn missing_key_is_401() {
    let s = OneSite::start("blog", &SiteAuth::None);
    let no_key = s.gw.get("/wp-json/").header(SITE_HEADER, "blog");
    refused_unproxied(&s, no_key, 401, "auth.missing_credentials").await;
}

#[tokio::test]
async fn wrong_keys_are_401() {
    let s = OneSite::start("blog", &SiteAuth::None);
    let unknown_id = format!("wpg_{}_{}", "Zz9Zz9Zz9Zz9", s.key.secret);
    let wrong = [
        s.key.with_wrong_secret(),
        unknown_id,
        "wpg_short_abc".to_owned(),
        "not-a-wpgate-key".to_owned(),
        format!("{}x", s.key.full),
    ];
    for k in &wrong {
        let a = s.gw.get_as("blog", k, "/wp-json/").await;
        a.assert_error(401, "auth.invalid_credentials");
        let a =
            s.gw.send(
                s.gw.get("/wp-json/")
                    .header(SITE_HEADER, "blog")
                    .bearer_auth(k),
            )
            .await;
        if k.starts_with("wpg_") {
            a.assert_error(401, "auth.invalid_credentials");
        } else {
            assert_eq!(a.status, 401, "bearer {k}: {}", a.summary());
        }
    }
    assert!(s.up.requests().is_empty());
    // The right key still works after all those failures.
    s.get("/wp-json/").await.assert_ok();
}

#[tokio::test]
async fn both_key_headers_are_ambiguous() {
    let s = OneSite::start("blog", &SiteAuth::None);
    let both =
        s.gw.get("/wp-json/")
            .header(SITE_HEADER, "blog")
            .header(KEY_HEADER, &s.key.full)
            .bearer_auth(&s.key.full);
    refused_unproxied(&s, both, 400, "request.ambiguous_credentials").await;
}

#[tokio::test]
async fn key_of_another_site_is_401() {
    let up = Upstream::start();
    let gw = Gateway::start();
    gw.add_site("site-a", &up.url(), &SiteAuth::None);
    gw.add_site("site-b", &up.url(), &SiteAuth::None);
    let key_a = gw.issue_key("site-a", &[]);
    let key_b = gw.issue_key("site-b", &[]);
    gw.get_as("site-a", &key_a.full, "/wp-json/")
        .await
        .assert_ok();
    gw.get_as("site-b", &key_b.full, "/wp-json/")
        .await
        .assert_ok();
    gw.get_as("site-b", &key_a.full, "/wp-json/")
        .await
        .assert_error(401, "auth.invalid_credentials");
    gw.get_as("site-a", &key_b.full, "/wp-json/")
        .await
        .assert_error(401, "auth.invalid_credentials");
    assert_eq!(up.requests().len(), 2);
}

#[tokio::test]
async fn revoked_key_is_401() {
    let s = OneSite::start("blog", &SiteAuth::None);
    let other = s.gw.issue_key("blog", &[]);
    s.get("/wp-json/").await.assert_ok();
    s.gw.cli(&["key", "revoke", &s.key.key_id], None)
        .assert_success();
    s.gw.poll_status("blog", &s.key.full, "/wp-json/", 401)
        .await
        .assert_error(401, "auth.invalid_credentials");
    // Only that key is revoked.
    s.gw.get_as("blog", &other.full, "/wp-json/")
        .await
        .assert_ok();
    let listed = s.gw.cli_json(&["key", "list", "blog"]).json();
    let entry = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key_id"] == s.key.key_id.as_str())
        .unwrap_or_else(|| panic!("revoked key missing from `key list`: {listed}"))
        .clone();
    assert!(
        entry["revoked_at"].is_string(),
        "revoked_at not set: {entry}"
    );
}

#[tokio::test]
async fn expired_key_is_401() {
    let s = OneSite::start("blog", &SiteAuth::None);
    let long_lived = s.gw.issue_key("blog", &["--expires-in", "1h"]);
    let short = s.gw.issue_key("blog", &["--expires-in", "1s"]);
    s.gw.get_as("blog", &long_lived.full, "/wp-json/")
        .await
        .assert_ok();
    s.gw.poll_status("blog", &short.full, "/wp-json/", 401)
        .await
        .assert_error(401, "auth.invalid_credentials");
    s.gw.get_as("blog", &long_lived.full, "/wp-json/")
        .await
        .assert_ok();
}

#[tokio::test]
async fn revoked_key_with_grace_works_until_the_grace_ends() {
    let s = OneSite::start("blog", &SiteAuth::None);
    s.get("/wp-json/").await.assert_ok();

    let revoked_at = Instant::now();
    s.gw.cli(&["key", "revoke", &s.key.key_id, "--grace", "3s"], None)
        .assert_success();
    // Inside the grace period the key keeps working.
    let mut accepted = 0;
    while revoked_at.elapsed() < Duration::from_millis(2000) {
        let a = s.get("/wp-json/").await;
        if revoked_at.elapsed() < Duration::from_millis(2800) {
            assert_eq!(
                a.status,
                200,
                "key refused {:?} into a 3 s grace period: {}",
                revoked_at.elapsed(),
                a.summary()
            );
            accepted += 1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(accepted > 0, "no request made it inside the grace period");

    // After it, the key is refused.
    let a =
        s.gw.poll_status("blog", &s.key.full, "/wp-json/", 401)
            .await;
    a.assert_error(401, "auth.invalid_credentials");
    assert!(
        revoked_at.elapsed() >= Duration::from_millis(2900),
        "key refused after {:?}, before its 3 s grace ended",
        revoked_at.elapsed()
    );
    assert!(revoked_at.elapsed() < Duration::from_secs(3) + CHANGE_DEADLINE);
}

#[tokio::test]
async fn disabled_site_is_403_and_reenabled_works() {
    let s = OneSite::start("blog", &SiteAuth::None);
    s.get("/wp-json/").await.assert_ok();

    s.gw.cli(&["site", "disable", "blog"], None)
        .assert_success();
    s.gw.poll_status("blog", &s.key.full, "/wp-json/", 403)
        .await
        .assert_error(403, "site.disabled");
    let before = s.up.requests().len();
    // Unauthenticated callers learn nothing about a disabled site.
    s.gw.get_as("blog", &s.key.with_wrong_secret(), "/wp-json/")
        .await
        .assert_error(401, "auth.invalid_credentials");
    assert_eq!(s.up.requests().len(), before, "a disabled site was proxied");

    s.gw.cli(&["site", "enable", "blog"], None).assert_success();
    s.gw.poll_status("blog", &s.key.full, "/wp-json/", 200)
        .await;
}

#[tokio::test]
async fn set_credential_changes_what_is_injected() {
    let s = OneSite::start("blog", &SiteAuth::bearer("old-token-1"));
    let expect_auth = |value: String| {
        let up = &s.up;
        let gw = &s.gw;
        let key = s.key.full.clone();
        async move {
            crate::harness::poll_until(
                &format!("upstream to receive Authorization {value:?}"),
                CHANGE_DEADLINE,
                || async {
                    let m = marker();
                    gw.send(
                        gw.get(&format!("/wp-json/?{m}"))
                            .header(SITE_HEADER, "blog")
                            .header(KEY_HEADER, &key),
                    )
                    .await
                    .assert_ok();
                    let r = up.one_with(&m);
                    let got = r.header_values("authorization");
                    if got == vec![value.as_str()] {
                        Ok(())
                    } else {
                        Err(format!("{got:?}"))
                    }
                },
            )
            .await
        }
    };
    expect_auth("Bearer old-token-1".into()).await;

    s.gw.set_credential("blog", &SiteAuth::bearer("new-token-2"), &[])
        .assert_success();
    expect_auth("Bearer new-token-2".into()).await;

    s.gw.set_credential("blog", &SiteAuth::app_password("bob", "pw pw pw"), &[])
        .assert_success();
    expect_auth(format!(
        "Basic {}",
        crate::harness::base64_std("bob:pw pw pw")
    ))
    .await;
}
