//! A WordPress mimic for delegated authentication (`users/me`), recording the rest,
//! and the faults real sites show (a page served to every path, a redirect, errors).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Router;

use super::text::sha256_hex;
use super::upstream::{json_response, Recorded, ServerThread};

/// A WordPress user the mimic knows a token of.
#[derive(Clone)]
struct WpUser {
    id: u64,
    name: String,
    roles: Vec<String>,
}

/// What a site in trouble answers instead of WordPress.
#[derive(Clone, Debug)]
pub enum WpFault {
    /// Every path, `users/me` included, answers `200 text/html` (a maintenance page, a
    /// "coming soon" plugin, a page cache ignoring Authorization). Requests other than
    /// `users/me` are still recorded.
    HtmlEverywhere,
    /// `users/me` answers this status, content type and body.
    UsersMe {
        status: u16,
        content_type: &'static str,
        body: String,
    },
    /// `users/me` redirects to `/wp-login.php`, which answers a user as JSON (so a
    /// client that follows the redirect would be told yes) and is recorded.
    RedirectToLogin,
    /// `users/me` answers only after this long (as WordPress would).
    Slow(Duration),
}

#[derive(Clone, Default)]
struct WpState {
    tokens: Arc<Mutex<std::collections::HashMap<String, WpUser>>>,
    /// (Authorization header, path+query) of every `/wp-json/wp/v2/users/me` call.
    users_me: Arc<Mutex<Vec<(String, String)>>>,
    records: Arc<Mutex<Vec<Recorded>>>,
    fault: Arc<Mutex<Option<WpFault>>>,
}

/// A WordPress mimic: `GET .../wp-json/wp/v2/users/me` answers 200
/// `{"id":<id>,"name":<name>}` for a known `Authorization: Bearer <token>` (with the
/// user's `roles` under `context=edit`, as WordPress shows them to the user) and 401
/// otherwise, counting those calls; every other request is recorded (like
/// [`Upstream`]) and answered 200 JSON. [`WpMimic::fault`] makes it misbehave.
pub struct WpMimic {
    server: ServerThread,
    state: WpState,
}

fn html_page() -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/html; charset=UTF-8")
        .body(axum::body::Body::from(
            "<!DOCTYPE html><html><head><title>Maintenance</title></head><body>\
             Briefly unavailable for scheduled maintenance. Check back in a minute.</body></html>",
        ))
        .unwrap()
}

/// `users/me` as WordPress answers it, or as `fault` says.
async fn users_me(state: &WpState, auth: &str, query: &str, fault: Option<WpFault>) -> Response {
    match fault {
        Some(WpFault::HtmlEverywhere) => return html_page(),
        Some(WpFault::UsersMe {
            status,
            content_type,
            body,
        }) => {
            return Response::builder()
                .status(status)
                .header("content-type", content_type)
                .body(axum::body::Body::from(body))
                .unwrap()
        }
        Some(WpFault::RedirectToLogin) => {
            return Response::builder()
                .status(StatusCode::FOUND)
                .header(
                    "location",
                    "/wp-login.php?redirect_to=%2Fwp-json%2Fwp%2Fv2%2Fusers%2Fme",
                )
                .header("content-type", "text/html; charset=UTF-8")
                .body(axum::body::Body::empty())
                .unwrap()
        }
        Some(WpFault::Slow(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    let user = auth
        .strip_prefix("Bearer ")
        .and_then(|t| state.tokens.lock().unwrap().get(t).cloned());
    match user {
        Some(u) => {
            let mut me = serde_json::json!({"id": u.id, "name": u.name});
            if query.split('&').any(|p| p == "context=edit") {
                me["roles"] = serde_json::json!(u.roles);
            }
            json_response(StatusCode::OK, me)
        }
        None => json_response(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"code": "rest_not_logged_in", "data": {"status": 401}}),
        ),
    }
}

async fn handle_wp(State(state): State<WpState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let auth = parts
        .headers
        .get("authorization")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let fault = state.fault.lock().unwrap().clone();
    if path.ends_with("/wp-json/wp/v2/users/me") {
        let auth = auth.unwrap_or_default();
        let query = parts.uri.query().unwrap_or("").to_owned();
        let uri = parts
            .uri
            .path_and_query()
            .map_or_else(|| path.clone(), |p| p.as_str().to_owned());
        state.users_me.lock().unwrap().push((auth.clone(), uri));
        return users_me(&state, &auth, &query, fault).await;
    }
    // The REST index, as a health check reads it.
    let html = matches!(fault, Some(WpFault::HtmlEverywhere));
    if !html && (path.ends_with("/wp-json/") || path.ends_with("/wp-json")) {
        return json_response(
            StatusCode::OK,
            serde_json::json!({"name": "mimic", "namespaces": ["wp/v2"]}),
        );
    }
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let uri = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| path.clone());
    state.records.lock().unwrap().push(Recorded {
        method: parts.method.as_str().to_owned(),
        uri,
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body_len: bytes.len() as u64,
        body_sha256: sha256_hex(&bytes),
    });
    if html {
        return html_page();
    }
    if path.ends_with("/wp-login.php") {
        return json_response(
            StatusCode::OK,
            serde_json::json!({"id": 1, "name": "admin"}),
        );
    }
    json_response(
        StatusCode::OK,
        serde_json::json!({"ok": true, "path": path}),
    )
}

impl WpMimic {
    pub fn start() -> Self {
        let state = WpState::default();
        let app = Router::new().fallback(handle_wp).with_state(state.clone());
        WpMimic {
            server: ServerThread::start(app),
            state,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port)
    }

    /// `users/me` answers 200 with this user for `Authorization: Bearer <token>`.
    pub fn accept_token(&self, token: &str, id: u64, name: &str) {
        self.accept_user(token, id, name, &[]);
    }

    /// [`WpMimic::accept_token`] for a user with these roles.
    pub fn accept_user(&self, token: &str, id: u64, name: &str, roles: &[&str]) {
        let user = WpUser {
            id,
            name: name.to_owned(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        };
        self.state
            .tokens
            .lock()
            .unwrap()
            .insert(token.to_owned(), user);
    }

    /// From now on the site misbehaves as `fault` says (`None`: WordPress again).
    pub fn fault(&self, fault: Option<WpFault>) {
        *self.state.fault.lock().unwrap() = fault;
    }

    /// The Authorization header of every `users/me` call so far.
    pub fn users_me_calls(&self) -> Vec<String> {
        let calls = self.state.users_me.lock().unwrap();
        calls.iter().map(|(auth, _)| auth.clone()).collect()
    }

    /// The path and query of every `users/me` call so far.
    pub fn users_me_uris(&self) -> Vec<String> {
        let calls = self.state.users_me.lock().unwrap();
        calls.iter().map(|(_, uri)| uri.clone()).collect()
    }

    /// Every other request recorded so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.records.lock().unwrap().clone()
    }

    /// The one recorded request whose path+query contains `needle`.
    pub fn one_with(&self, needle: &str) -> Recorded {
        let mut found: Vec<Recorded> = self
            .requests()
            .into_iter()
            .filter(|r| r.uri.contains(needle))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "expected exactly one request containing {needle:?}, got {found:#?}"
        );
        found.remove(0)
    }
}
