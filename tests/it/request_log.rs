//! The per-request log line: one JSON line per request on stderr with the request id,
//! site, method, path (never the query string), status and the exact refusal reason.

use std::time::Duration;

use serde_json::Value;

use crate::harness::{marker, Gateway, SiteAuth, Upstream, KEY_HEADER, SITE_HEADER};

/// Every (key, value) pair in a JSON log line, nested objects included; numbers and
/// booleans as text.
fn pairs(v: &Value) -> Vec<(String, String)> {
    fn walk(key: &str, v: &Value, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    walk(k, v, out);
                }
            }
            Value::Array(items) => {
                for v in items {
                    walk(key, v, out);
                }
            }
            Value::String(s) => out.push((key.to_owned(), s.clone())),
            Value::Null => {}
            other => out.push((key.to_owned(), other.to_string())),
        }
    }
    let mut out = Vec::new();
    walk("", v, &mut out);
    out
}

/// The log lines carrying request id `rid` as a value.
fn lines_for(gw: &Gateway, rid: &str) -> Vec<Value> {
    gw.log_json()
        .into_iter()
        .filter(|l| pairs(l).iter().any(|(_, v)| v == rid))
        .collect()
}

async fn the_line_for(gw: &Gateway, rid: &str) -> Value {
    crate::harness::poll_until(
        &format!("the log line of request {rid}"),
        Duration::from_secs(5),
        || async {
            let found = lines_for(gw, rid);
            if found.is_empty() {
                Err("none yet".to_owned())
            } else {
                Ok(())
            }
        },
    )
    .await;
    let found = lines_for(gw, rid);
    assert_eq!(
        found.len(),
        1,
        "request {rid} should log exactly one line, logged:\n{found:#?}"
    );
    found.into_iter().next().unwrap()
}

fn value_of(line: &Value, key: &str) -> Option<String> {
    pairs(line)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

fn has_value(line: &Value, value: &str) -> bool {
    pairs(line).iter().any(|(_, v)| v == value)
}

#[tokio::test]
async fn one_json_line_per_request() {
    let up = Upstream::start();
    let gw = Gateway::start();
    gw.add_site("blog", &up.url(), &SiteAuth::None);
    let key = gw.issue_key("blog", &[]);

    let query_marker = marker();
    gw.send(
        gw.get(&format!("/wp-json/wp/v2/posts?search={query_marker}"))
            .header(SITE_HEADER, "blog")
            .header(KEY_HEADER, &key.full)
            .header("X-Request-ID", "log-ok-1"),
    )
    .await
    .assert_ok();
    gw.send(
        gw.get("/wp-json/wp/v2/users/me")
            .header(SITE_HEADER, "blog")
            .header(KEY_HEADER, key.with_wrong_secret())
            .header("X-Request-ID", "log-wrong-key"),
    )
    .await
    .assert_error(401, "auth.invalid_credentials");
    gw.send(
        gw.get("/wp-json/wp/v2/users/me")
            .header(SITE_HEADER, "nosuchsite")
            .header(KEY_HEADER, &key.full)
            .header("X-Request-ID", "log-unknown-site"),
    )
    .await
    .assert_error(401, "auth.invalid_credentials");

    let ok = the_line_for(&gw, "log-ok-1").await;
    assert!(has_value(&ok, "blog"), "site missing: {ok}");
    assert!(has_value(&ok, "GET"), "method missing: {ok}");
    assert!(has_value(&ok, "/wp-json/wp/v2/posts"), "path missing: {ok}");
    assert_eq!(value_of(&ok, "status").as_deref(), Some("200"), "{ok}");
    assert!(
        !gw.logs().contains(&query_marker),
        "the query string was logged"
    );

    let wrong = the_line_for(&gw, "log-wrong-key").await;
    let unknown = the_line_for(&gw, "log-unknown-site").await;
    for line in [&wrong, &unknown] {
        assert_eq!(value_of(line, "status").as_deref(), Some("401"), "{line}");
        assert!(has_value(line, "/wp-json/wp/v2/users/me"), "{line}");
    }
    let r_wrong = value_of(&wrong, "reason").unwrap_or_default();
    let r_unknown = value_of(&unknown, "reason").unwrap_or_default();
    assert!(!r_wrong.is_empty(), "no reason in {wrong}");
    assert!(!r_unknown.is_empty(), "no reason in {unknown}");
    assert_ne!(
        r_wrong, r_unknown,
        "the log must tell a wrong key from an unknown site"
    );
}
