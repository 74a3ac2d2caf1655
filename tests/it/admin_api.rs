//! The admin API (`/admin/v1` on the admin listener) through the real binary: tokens
//! made with the CLI, sites, credentials and keys changed over HTTP and taking effect on
//! the proxy at once, the audit log, and the OpenAPI description.

use crate::harness::{
    marker, random_string, Answer, ApiKey, Gateway, GatewayConfig, SiteAuth, Upstream,
    HEALTH_STATES,
};
use reqwest::Method;
use serde_json::{json, Value};

/// A gateway whose caches would hold a site or key for an hour: anything that takes
/// effect in these tests did so because the admin API invalidated the cache.
fn gateway() -> Gateway {
    Gateway::start_with(GatewayConfig {
        ttl: "1h".into(),
        negative_ttl: "1h".into(),
        ..GatewayConfig::default()
    })
}

async fn call(
    gw: &Gateway,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Answer {
    let a = gw.admin_call(method, path, token, body).await;
    assert!(
        a.request_id()
            .is_some_and(crate::harness::is_sane_request_id),
        "admin response without a sane X-Request-ID: {}",
        a.summary()
    );
    a
}

#[track_caller]
fn status(a: &Answer, want: u16) -> Value {
    assert_eq!(a.status, want, "expected {want}, got {}", a.summary());
    a.json().unwrap_or(Value::Null)
}

#[tokio::test]
async fn tokens_are_required_and_scoped() {
    let gw = gateway();
    let write = gw.admin_token("write", Some("ops"));
    let read = gw.admin_token("read", Some("dashboard"));

    // No token, a malformed one, a well-formed one with the wrong secret, another scheme.
    let a = gw
        .send(gw.client.get(gw.admin_url("/admin/v1/sites")))
        .await;
    let e = a.assert_error(401, "admin.unauthorized");
    assert!(a.header("www-authenticate").unwrap().starts_with("Bearer"));
    assert!(e["message"].as_str().unwrap().contains("Bearer"));
    let mut wrong = write.clone();
    let last = wrong.pop().unwrap();
    wrong.push(if last == 'A' { 'B' } else { 'A' });
    for bad in ["nope", &wrong, &format!("{write}x")] {
        call(&gw, Method::GET, "/admin/v1/sites", bad, None)
            .await
            .assert_error(401, "admin.unauthorized");
    }
    let a = gw
        .send(
            gw.client
                .get(gw.admin_url("/admin/v1/sites"))
                .basic_auth("admin", Some(&write)),
        )
        .await;
    a.assert_error(401, "admin.unauthorized");

    // A read token reads, and may not write.
    status(
        &call(&gw, Method::GET, "/admin/v1/sites", &read, None).await,
        200,
    );
    let body = json!({"id": "blog", "upstream": "http://127.0.0.1:9"});
    call(
        &gw,
        Method::POST,
        "/admin/v1/sites",
        &read,
        Some(body.clone()),
    )
    .await
    .assert_error(403, "admin.forbidden");
    status(
        &call(&gw, Method::POST, "/admin/v1/sites", &write, Some(body)).await,
        201,
    );
    call(&gw, Method::DELETE, "/admin/v1/sites/blog", &read, None)
        .await
        .assert_error(403, "admin.forbidden");

    // A revoked token (never used, so nothing remembers it) is refused.
    let spare = gw.admin_token("write", None);
    let spare_id = &spare["wpgat_".len().."wpgat_".len() + 12];
    gw.cli(&["admin", "token", "revoke", spare_id], None)
        .assert_success();
    call(&gw, Method::GET, "/admin/v1/sites", &spare, None)
        .await
        .assert_error(401, "admin.unauthorized");
    let list = gw.cli_json(&["admin", "token", "list"]);
    list.assert_success();
    let tokens = list.json();
    assert_eq!(tokens.as_array().unwrap().len(), 3, "{tokens}");
    assert!(
        !list.stdout.contains(&spare[19..]),
        "token list shows a secret"
    );

    // The admin tokens never reach the gateway's logs.
    let logs = gw.logs();
    assert!(logs.contains("admin request"), "no admin access log lines");
    for t in [&write, &read, &spare] {
        assert!(
            !logs.contains(&t[19..]),
            "an admin token secret is in the logs"
        );
    }
}

#[tokio::test]
async fn sites_pagination_etags_and_validation() {
    let gw = gateway();
    let token = gw.admin_token("write", Some("ops"));
    for id in ["site-a", "site-b", "site-c"] {
        let a = call(
            &gw,
            Method::POST,
            "/admin/v1/sites",
            &token,
            Some(json!({"id": id, "name": format!("Site {id}"), "upstream": "http://127.0.0.1:9"})),
        )
        .await;
        let site = status(&a, 201);
        assert_eq!(site["id"], id);
        assert_eq!(site["credential"]["kind"], "none");
        assert_eq!(a.header("etag"), Some("\"1\""));
    }

    // Pagination: 3 sites, 2 per page.
    let page = status(
        &call(&gw, Method::GET, "/admin/v1/sites?limit=2", &token, None).await,
        200,
    );
    let ids: Vec<&str> = page["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["site-a", "site-b"]);
    assert_eq!(page["next_cursor"], "site-b");
    let page = status(
        &call(
            &gw,
            Method::GET,
            "/admin/v1/sites?limit=2&cursor=site-b",
            &token,
            None,
        )
        .await,
        200,
    );
    assert_eq!(page["sites"].as_array().unwrap().len(), 1);
    assert_eq!(page["sites"][0]["id"], "site-c");
    assert!(page["next_cursor"].is_null());
    call(&gw, Method::GET, "/admin/v1/sites?limit=0", &token, None)
        .await
        .assert_error(400, "admin.invalid_request");
    // Search in ids and names (either case) and by health state, in the store.
    let listed = |path: &'static str| {
        let (gw, token) = (&gw, &token);
        async move {
            let page = status(&call(gw, Method::GET, path, token, None).await, 200);
            page["sites"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed("/admin/v1/sites?q=SITE-B").await, ["site-b"]);
    assert_eq!(listed("/admin/v1/sites?q=e%20site-c").await, ["site-c"]);
    assert_eq!(
        listed("/admin/v1/sites?q=site-&limit=2&cursor=site-a").await,
        ["site-b", "site-c"]
    );
    assert_eq!(
        listed("/admin/v1/sites?state=unknown&q=c").await,
        ["site-c"]
    );
    assert!(listed("/admin/v1/sites?state=healthy").await.is_empty());
    for bad in ["q=", "q=%20%20", "q=a%00b", "state=fine", "state="] {
        call(
            &gw,
            Method::GET,
            &format!("/admin/v1/sites?{bad}"),
            &token,
            None,
        )
        .await
        .assert_error(400, "admin.invalid_request");
    }
    let long = format!("/admin/v1/sites?q={}", "x".repeat(101));
    call(&gw, Method::GET, &long, &token, None)
        .await
        .assert_error(400, "admin.invalid_request");

    // Show with an ETag; update with optimistic concurrency.
    let a = call(&gw, Method::GET, "/admin/v1/sites/site-a", &token, None).await;
    status(&a, 200);
    assert_eq!(a.header("etag"), Some("\"1\""));
    let patch = json!({"name": "Renamed", "enabled": false});
    let patch_site = |if_match: Option<&'static str>| {
        let req = gw.admin_request(Method::PATCH, "/admin/v1/sites/site-a", &token);
        match if_match {
            Some(version) => req.header("If-Match", version),
            None => req,
        }
        .json(&patch)
    };
    let a = gw.send(patch_site(None)).await;
    a.assert_error(428, "admin.precondition_required");
    let a = gw.send(patch_site(Some("\"7\""))).await;
    a.assert_error(412, "admin.version_conflict");
    let a = gw.send(patch_site(Some("\"1\""))).await;
    let site = status(&a, 200);
    assert_eq!(site["version"], 2);
    assert_eq!(site["name"], "Renamed");
    assert_eq!(site["enabled"], false);
    assert_eq!(a.header("etag"), Some("\"2\""));
    // The old ETag is stale now.
    let a = gw
        .send(
            gw.admin_request(Method::PATCH, "/admin/v1/sites/site-a", &token)
                .header("If-Match", "\"1\"")
                .json(&json!({"enabled": true})),
        )
        .await;
    a.assert_error(412, "admin.version_conflict");

    // Validation names the field.
    for (body, field) in [
        (
            json!({"id": "bad id", "upstream": "http://127.0.0.1:9"}),
            "id",
        ),
        (json!({"id": "ok", "upstream": "ftp://x"}), "upstream"),
        (
            json!({"id": "ok", "upstream": "http://127.0.0.1:9", "colour": 1}),
            "colour",
        ),
        (
            json!({"id": "ok", "upstream": "http://127.0.0.1:9", "credential": {"kind": "app_password", "secret": "x"}}),
            "credential.username",
        ),
        (json!({"upstream": "http://127.0.0.1:9"}), "id"),
    ] {
        let a = call(
            &gw,
            Method::POST,
            "/admin/v1/sites",
            &token,
            Some(body.clone()),
        )
        .await;
        let e = a.assert_error(400, "admin.invalid_request");
        assert!(
            e["message"].as_str().unwrap().contains(field),
            "{body}: message should name {field}: {e}"
        );
    }
    let a = gw
        .send(
            gw.admin_request(Method::POST, "/admin/v1/sites", &token)
                .header("content-type", "application/json")
                .body("{not json"),
        )
        .await;
    a.assert_error(400, "admin.invalid_request");
    call(
        &gw,
        Method::POST,
        "/admin/v1/sites",
        &token,
        Some(json!({"id": "site-a", "upstream": "http://127.0.0.1:9"})),
    )
    .await
    .assert_error(409, "admin.conflict");
    call(&gw, Method::GET, "/admin/v1/sites/missing", &token, None)
        .await
        .assert_error(404, "admin.not_found");
    call(
        &gw,
        Method::POST,
        "/admin/v1/sites/missing/enable",
        &token,
        None,
    )
    .await
    .assert_error(404, "admin.not_found");

    // A body over 64 KiB is refused before it is parsed.
    let big = json!({"id": "big", "upstream": "http://127.0.0.1:9", "name": "x".repeat(70 * 1024)});
    call(&gw, Method::POST, "/admin/v1/sites", &token, Some(big))
        .await
        .assert_error(413, "admin.body_too_large");

    // Delete.
    let a = call(&gw, Method::DELETE, "/admin/v1/sites/site-c", &token, None).await;
    assert_eq!(a.status, 204, "{}", a.summary());
    for method in [Method::GET, Method::DELETE] {
        call(&gw, method, "/admin/v1/sites/site-c", &token, None)
            .await
            .assert_error(404, "admin.not_found");
    }
}

#[tokio::test]
async fn credentials_and_keys_take_effect_at_once_and_are_audited() {
    let up = Upstream::start();
    let gw = gateway();
    let token = gw.admin_token("write", Some("ops"));
    let first = SiteAuth::bearer(&format!("first.{}", random_string(32)));
    let second = SiteAuth::header("X-Plugin-Auth", &random_string(32));
    let SiteAuth::Bearer(first_secret) = &first else {
        unreachable!()
    };
    let SiteAuth::Header {
        value: second_secret,
        ..
    } = &second
    else {
        unreachable!()
    };

    // Create with a bearer credential; the answer shows its kind, never the secret.
    let create_rid = format!("create-{}", random_string(8));
    let a = gw
        .send(
            gw.admin_request(Method::POST, "/admin/v1/sites", &token)
                .header("X-Request-ID", &create_rid)
                .json(&json!({
                    "id": "shop",
                    "upstream": up.url(),
                    "credential": {"kind": "bearer", "secret": first_secret},
                })),
        )
        .await;
    assert_eq!(a.request_id(), Some(create_rid.as_str()));
    let site = status(&a, 201);
    assert_eq!(site["credential"]["kind"], "bearer");
    assert!(site["credential"]["sealed_with"].is_string());
    assert!(!a.body.contains(first_secret.as_str()));

    // Issue a key over the API and use it through the proxy.
    let a = call(
        &gw,
        Method::POST,
        "/admin/v1/sites/shop/keys",
        &token,
        Some(json!({"label": "ci"})),
    )
    .await;
    let issued = status(&a, 201);
    assert_eq!(a.header("cache-control"), Some("no-store"));
    let key = ApiKey::parse(issued["key"].as_str().unwrap());
    assert_eq!(issued["key_id"], key.key_id.as_str());
    assert_eq!(issued["site_id"], "shop");
    let m = marker();
    gw.get_as("shop", &key.full, &format!("/wp-json/?{m}"))
        .await
        .assert_ok();
    up.one_with(&m).assert_credential(&first);

    // Replace the credential: the very next request carries the new one.
    let a = call(
        &gw,
        Method::PUT,
        "/admin/v1/sites/shop/credential",
        &token,
        Some(json!({"kind": "header", "header_name": "X-Plugin-Auth", "secret": second_secret})),
    )
    .await;
    let site = status(&a, 200);
    assert_eq!(site["credential"]["kind"], "header");
    assert_eq!(site["credential"]["header_name"], "X-Plugin-Auth");
    assert_eq!(site["version"], 2);
    assert!(!a.body.contains(second_secret.as_str()));
    let m = marker();
    gw.get_as("shop", &key.full, &format!("/wp-json/?{m}"))
        .await
        .assert_ok();
    let r = up.one_with(&m);
    r.assert_credential(&second);
    assert!(r.header("authorization").is_none(), "{r:#?}");

    // Disable / enable act at once too.
    status(
        &call(
            &gw,
            Method::POST,
            "/admin/v1/sites/shop/disable",
            &token,
            None,
        )
        .await,
        200,
    );
    gw.get_as("shop", &key.full, "/wp-json/")
        .await
        .assert_error(403, "site.disabled");
    status(
        &call(
            &gw,
            Method::POST,
            "/admin/v1/sites/shop/enable",
            &token,
            None,
        )
        .await,
        200,
    );
    gw.get_as("shop", &key.full, "/wp-json/").await.assert_ok();

    // Keys are listed without secrets; revoking refuses the key on the next request.
    let keys = status(
        &call(&gw, Method::GET, "/admin/v1/sites/shop/keys", &token, None).await,
        200,
    );
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1);
    assert!(!keys.to_string().contains(&key.secret));
    let revoke_rid = format!("revoke-{}", random_string(8));
    let a = gw
        .send(
            gw.admin_request(
                Method::POST,
                &format!("/admin/v1/keys/{}/revoke", key.key_id),
                &token,
            )
            .header("X-Request-ID", &revoke_rid),
        )
        .await;
    let revoked = status(&a, 200);
    assert!(revoked["revoked_at"].is_string());
    gw.get_as("shop", &key.full, "/wp-json/")
        .await
        .assert_error(401, "auth.invalid_credentials");
    call(
        &gw,
        Method::POST,
        "/admin/v1/keys/nonexistent1/revoke",
        &token,
        None,
    )
    .await
    .assert_error(404, "admin.not_found");
    call(&gw, Method::POST, "/admin/v1/keys/x/revoke", &token, None)
        .await
        .assert_error(404, "admin.not_found");
    call(
        &gw,
        Method::POST,
        "/admin/v1/keys/abcdefghijkl/revoke",
        &token,
        Some(json!({"grace": "soon"})),
    )
    .await
    .assert_error(400, "admin.invalid_request");

    // A second key revoked with a grace period keeps working.
    let issued = status(
        &call(&gw, Method::POST, "/admin/v1/sites/shop/keys", &token, None).await,
        201,
    );
    let graced = ApiKey::parse(issued["key"].as_str().unwrap());
    status(
        &call(
            &gw,
            Method::POST,
            &format!("/admin/v1/keys/{}/revoke", graced.key_id),
            &token,
            Some(json!({"grace": "1h"})),
        )
        .await,
        200,
    );
    gw.get_as("shop", &graced.full, "/wp-json/")
        .await
        .assert_ok();

    // The audit log: who, what, which request; never a secret.
    let a = call(
        &gw,
        Method::GET,
        "/admin/v1/audit?site=shop&limit=50",
        &token,
        None,
    )
    .await;
    let audit = status(&a, 200);
    let entries = audit["entries"].as_array().unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "key.revoke",
            "key.issue",
            "key.revoke",
            "site.enable",
            "site.disable",
            "site.set_credential",
            "key.issue",
            "site.create",
        ],
        "{audit:#}"
    );
    for e in entries {
        assert_eq!(e["actor"], "admin:ops", "{e}");
        assert!(
            e["request_id"].as_str().is_some_and(|r| !r.is_empty()),
            "{e}"
        );
        assert_eq!(e["site_id"], "shop", "{e}");
        assert!(e["at"].is_string());
    }
    let create = entries
        .iter()
        .find(|e| e["action"] == "site.create")
        .unwrap();
    assert_eq!(create["target"], "site:shop");
    assert_eq!(create["request_id"], create_rid.as_str());
    let revoke = entries
        .iter()
        .rfind(|e| e["action"] == "key.revoke")
        .unwrap();
    assert_eq!(revoke["target"], format!("key:{}", key.key_id));
    assert_eq!(revoke["request_id"], revoke_rid.as_str());
    let secrets = [
        first_secret.as_str(),
        second_secret.as_str(),
        &key.secret,
        &graced.secret,
        &token[19..],
    ];
    let text = a.body.clone();
    for secret in secrets {
        assert!(!text.contains(secret), "a secret is in the audit log");
    }
    call(&gw, Method::GET, "/admin/v1/audit?limit=5000", &token, None)
        .await
        .assert_error(400, "admin.invalid_request");

    // Deleting the site takes it off the proxy at once.
    let a = call(&gw, Method::DELETE, "/admin/v1/sites/shop", &token, None).await;
    assert_eq!(a.status, 204, "{}", a.summary());
    gw.get_as("shop", &graced.full, "/wp-json/")
        .await
        .assert_error(401, "auth.invalid_credentials");

    // Nothing secret in the gateway's logs either.
    let logs = gw.logs();
    for secret in secrets {
        assert!(!logs.contains(secret), "a secret is in the gateway's logs");
    }
}

#[tokio::test]
async fn openapi_describes_every_endpoint() {
    let gw = gateway();
    let token = gw.admin_token("read", None);
    gw.send(gw.client.get(gw.admin_url("/admin/v1/openapi.json")))
        .await
        .assert_error(401, "admin.unauthorized");
    let doc = status(
        &call(&gw, Method::GET, "/admin/v1/openapi.json", &token, None).await,
        200,
    );
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/admin/v1/sites", &["get", "post"][..]),
        ("/admin/v1/sites/{id}", &["get", "patch", "delete"]),
        ("/admin/v1/sites/{id}/enable", &["post"]),
        ("/admin/v1/sites/{id}/disable", &["post"]),
        ("/admin/v1/sites/{id}/credential", &["put"]),
        ("/admin/v1/sites/{id}/routes", &["put"]),
        ("/admin/v1/sites/{id}/cors", &["put"]),
        ("/admin/v1/sites/{id}/keys", &["get", "post"]),
        ("/admin/v1/keys/{key_id}/revoke", &["post"]),
        ("/admin/v1/audit", &["get"]),
        ("/admin/v1/sites/{id}/health", &["get"]),
        ("/admin/v1/sites/{id}/test", &["post"]),
        ("/admin/v1/openapi.json", &["get"]),
        ("/admin/v1/overview", &["get"]),
    ] {
        let item = paths
            .get(path)
            .unwrap_or_else(|| panic!("{path} missing from {:?}", paths.keys()));
        for m in methods {
            assert!(item.get(*m).is_some(), "{m} {path} is not documented");
        }
    }
    assert!(doc["components"]["securitySchemes"]["admin_token"].is_object());
    // The credential secret is documented as write-only input, never in a response.
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    assert!(schemas.contains_key("SiteView") && schemas.contains_key("CredentialBody"));
    assert!(schemas.contains_key("RoutesBody") && schemas.contains_key("RoutesView"));
    assert!(schemas.contains_key("CorsBody") && schemas.contains_key("CorsView"));
    assert!(!schemas["SiteView"].to_string().contains("secret\""));
}

#[tokio::test]
async fn health_shows_the_last_check_and_test_runs_one() {
    let up = Upstream::start();
    let gw = gateway();
    let write = gw.admin_token("write", Some("ops"));
    let read = gw.admin_token("read", None);
    status(
        &call(
            &gw,
            Method::POST,
            "/admin/v1/sites",
            &write,
            Some(json!({"id": "shop", "upstream": up.url()})),
        )
        .await,
        201,
    );
    let h = status(
        &call(&gw, Method::GET, "/admin/v1/sites/shop/health", &read, None).await,
        200,
    );
    assert_eq!(h["site_id"], "shop");
    assert!(h["message"].as_str().is_some_and(|m| !m.is_empty()), "{h}");
    for (method, path, token, status, code) in [
        (
            Method::POST,
            "/admin/v1/sites/shop/test",
            &read,
            403,
            "admin.forbidden",
        ),
        (
            Method::POST,
            "/admin/v1/sites/nope/test",
            &write,
            404,
            "admin.not_found",
        ),
        (
            Method::GET,
            "/admin/v1/sites/nope/health",
            &read,
            404,
            "admin.not_found",
        ),
    ] {
        call(&gw, method, path, token, None)
            .await
            .assert_error(status, code);
    }

    // The recording upstream is no WordPress: the check runs against it (on loopback)
    // and reports a state with a message; that becomes the site's health.
    let tested = status(
        &call(&gw, Method::POST, "/admin/v1/sites/shop/test", &write, None).await,
        200,
    );
    let state = tested["state"].as_str().unwrap();
    assert!(
        HEALTH_STATES.contains(&state) && state != "unknown",
        "{tested}"
    );
    assert!(tested["checked_at"].is_string(), "{tested}");
    assert!(
        up.requests()
            .iter()
            .any(|r| r.path().starts_with("/wp-json")),
        "the test did not reach the upstream"
    );
    let h = status(
        &call(&gw, Method::GET, "/admin/v1/sites/shop/health", &read, None).await,
        200,
    );
    assert_eq!(h["state"], tested["state"], "{h}");
    assert!(h["checked_at"].is_string(), "{h}");

    // A disabled site is reported as such without a request.
    status(
        &call(
            &gw,
            Method::POST,
            "/admin/v1/sites/shop/disable",
            &write,
            None,
        )
        .await,
        200,
    );
    let tested = status(
        &call(&gw, Method::POST, "/admin/v1/sites/shop/test", &write, None).await,
        200,
    );
    assert_eq!(tested["state"], "disabled", "{tested}");
}

/// The overview: sites per stored health state (every state listed), refused client
/// authentications by reason over the last hour, listener and keyring; read scope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_counts_sites_by_state_and_recent_refusals() {
    let gw = gateway();
    let write = gw.admin_token("write", Some("ops"));
    let read = gw.admin_token("read", Some("viewer"));
    for id in ["ov-a", "ov-b"] {
        let a = call(
            &gw,
            Method::POST,
            "/admin/v1/sites",
            &write,
            Some(json!({"id": id, "upstream": "http://127.0.0.1:9"})),
        )
        .await;
        status(&a, 201);
    }
    // Refused: no credential (twice), and a site that does not exist.
    let url = format!("http://{}/wp-json/", gw.proxy_addr);
    for site in ["ov-a", "ov-b"] {
        let r = gw
            .client
            .get(&url)
            .header("X-Website-ID", site)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = gw
        .client
        .get(&url)
        .header("X-Website-ID", "ov-none")
        .header(
            "X-API-Key",
            "wpg_aaaaaaaaaaaa_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // (Counted when each request's log line is written, just after its answer.)
    let o = crate::harness::poll_until(
        "the refusals counted",
        crate::harness::CHANGE_DEADLINE,
        || {
            let (gw, read) = (&gw, &read);
            async move {
                let o = status(
                    &call(gw, Method::GET, "/admin/v1/overview", read, None).await,
                    200,
                );
                let fails = &o["auth_failures_last_hour"];
                if fails["missing_credentials"] == 2 && fails["unknown_site"] == 1 {
                    Ok(o)
                } else {
                    Err(o.to_string())
                }
            }
        },
    )
    .await;
    assert_eq!(o["sites"], 2);
    assert_eq!(o["sites_by_state"]["unknown"], 2);
    assert_eq!(o["sites_by_state"]["healthy"], 0);
    assert_eq!(
        o["sites_by_state"].as_object().unwrap().len(),
        wpgate::health::HealthState::ALL.len()
    );
    assert_eq!(o["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(o["change_listener_connected"], false);
    assert!(
        o["keyring_primary"].as_str().unwrap().starts_with('k'),
        "{o}"
    );
    assert_eq!(o["keyring_keys"], 1);
}
