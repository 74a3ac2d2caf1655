//! A WordPress look-alike on loopback for the health tests: the REST index and
//! `users/me`, with switches for the ways real sites fail.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use http::header::AUTHORIZATION;
use http::{HeaderName, HeaderValue, StatusCode};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{client, probe, HealthReport, HealthState, ProbeTarget};
use crate::site::CredentialKind;
use crate::store::{AuditEntry, SiteRecord, Store, StoredCredential};

pub(super) const USER: &str = "api";
pub(super) const SECRET: &str = "abcd EFGH ijkl MNOP qrst UVWX";

pub(super) fn basic(user: &str, secret: &str) -> HeaderValue {
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"));
    let mut v = HeaderValue::from_str(&format!("Basic {b64}")).unwrap();
    v.set_sensitive(true);
    v
}

/// What the mimic's `/wp-json/` does.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Index {
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
pub(super) struct Counters {
    pub(super) index: AtomicUsize,
    pub(super) me: AtomicUsize,
    pub(super) in_flight: AtomicUsize,
    pub(super) max_in_flight: AtomicUsize,
    pub(super) me_times: Mutex<Vec<std::time::Instant>>,
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
pub(super) struct Mimic {
    pub(super) index: Index,
    pub(super) delay: Duration,
    /// The header `users/me` accepts.
    pub(super) accept: (HeaderName, HeaderValue),
    /// `users/me` refuses with a bare 403 page, as a WAF would.
    pub(super) waf: bool,
    /// The `home` the index reports.
    pub(super) home: Option<&'static str>,
    pub(super) counters: Arc<Counters>,
}

impl Mimic {
    pub(super) fn new() -> Mimic {
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

pub(super) async fn index(State(m): State<Mimic>) -> Response {
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

pub(super) async fn me(State(m): State<Mimic>, headers: http::HeaderMap) -> Response {
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
pub(super) async fn serve(m: Mimic) -> String {
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
pub(super) async fn closed_port() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

pub(super) fn target(site: &str, base: &str) -> ProbeTarget {
    ProbeTarget {
        site_id: site.to_string(),
        base_url: base.to_string(),
        credential: Some((AUTHORIZATION, basic(USER, SECRET))),
        credential_kind: CredentialKind::AppPassword,
        username: Some(USER.to_string()),
        required_namespaces: vec!["myplugin/v1".to_string()],
        enabled: true,
        unusable: None,
    }
}

pub(super) fn test_client() -> reqwest::Client {
    client(None, Duration::from_secs(5)).unwrap()
}

pub(super) async fn check(t: &ProbeTarget) -> HealthReport {
    let r = probe(&test_client(), t, Duration::from_secs(5)).await;
    assert_no_secret(&r);
    r
}

pub(super) fn assert_no_secret(r: &HealthReport) {
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

/// Asserts that the report's message contains `part`.
pub(super) fn assert_says(r: &HealthReport, part: &str) {
    assert!(r.message.contains(part), "{part:?} not in {}", r.message);
}

/// Starts `m`; returns its base URL and its request counters.
pub(super) async fn serve_counted(m: Mimic) -> (String, Arc<Counters>) {
    let counters = Arc::clone(&m.counters);
    (serve(m).await, counters)
}

/// Checks site `shop` on a fresh mimic whose `/wp-json/` does `index`, which makes it
/// unreachable.
pub(super) async fn unreachable_with(index: Index) -> HealthReport {
    let mut m = Mimic::new();
    m.index = index;
    let r = check(&target("shop", &serve(m).await)).await;
    assert_state(&r, HealthState::Unreachable);
    r
}

/// Checks site `shop` on `m` with a wrong application password, which fails.
pub(super) async fn refused_by(m: Mimic) -> HealthReport {
    let mut t = target("shop", &serve(m).await);
    t.credential = Some((AUTHORIZATION, basic(USER, "wrong-password")));
    let r = check(&t).await;
    assert_state(&r, HealthState::AuthFailed);
    r
}

/// Asserts the report's state, showing its message when it differs.
pub(super) fn assert_state(r: &HealthReport, state: HealthState) {
    assert_eq!(r.state, state, "{}", r.message);
}

/// A SQLite store in `dir` holding sites named `ids`: the health records (and leases)
/// the probers share. Their records only name them; the tests' targets say where the
/// sites are.
pub(super) async fn store_with_sites(dir: &std::path::Path, ids: &[&str]) -> Arc<dyn Store> {
    let store: Arc<dyn Store> = Arc::new(
        crate::store::sqlite::SqliteStore::open(&dir.join("store.db"))
            .await
            .unwrap(),
    );
    for id in ids {
        store
            .create_site(&site_record(id), &audit(id))
            .await
            .unwrap();
    }
    store
}

pub(super) fn site_record(id: &str) -> SiteRecord {
    SiteRecord {
        id: id.into(),
        name: id.into(),
        upstream_url: "http://127.0.0.1:1".into(),
        enabled: true,
        credential: StoredCredential {
            kind: CredentialKind::None,
            username: None,
            sealed_secret: None,
        },
        auth_policy: None,
        jwt_secret_sealed: None,
        required_namespaces: Vec::new(),
        health_fail_fast: false,
        allowed_paths: Vec::new(),
        allowed_origins: Vec::new(),
        created_at: 1,
        updated_at: 1,
        version: 1,
    }
}

pub(super) fn audit(site: &str) -> AuditEntry {
    AuditEntry {
        actor: "test".into(),
        action: "site.test".into(),
        target: format!("site:{site}"),
        site_id: Some(site.into()),
        request_id: None,
        detail: None,
    }
}
