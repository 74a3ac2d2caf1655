//! A WordPress mimic for delegated authentication (`users/me`), recording the rest.

use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Router;

use super::text::sha256_hex;
use super::upstream::{json_response, Recorded, ServerThread};

#[derive(Clone, Default)]
struct WpState {
    /// token -> (user id, name)
    tokens: Arc<Mutex<std::collections::HashMap<String, (u64, String)>>>,
    /// The Authorization header of every `/wp-json/wp/v2/users/me` call.
    users_me: Arc<Mutex<Vec<String>>>,
    records: Arc<Mutex<Vec<Recorded>>>,
}

/// A WordPress mimic: `GET .../wp-json/wp/v2/users/me` answers 200
/// `{"id":<id>,"name":<name>}` for a known `Authorization: Bearer <token>` and 401
/// otherwise, counting those calls; every other request is recorded (like
/// [`Upstream`]) and answered 200 JSON.
pub struct WpMimic {
    server: ServerThread,
    state: WpState,
}

async fn handle_wp(State(state): State<WpState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let auth = parts
        .headers
        .get("authorization")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    if path.ends_with("/wp-json/wp/v2/users/me") {
        let auth = auth.unwrap_or_default();
        state.users_me.lock().unwrap().push(auth.clone());
        let user = auth
            .strip_prefix("Bearer ")
            .and_then(|t| state.tokens.lock().unwrap().get(t).cloned());
        return match user {
            Some((id, name)) => {
                json_response(StatusCode::OK, serde_json::json!({"id": id, "name": name}))
            }
            None => json_response(
                StatusCode::UNAUTHORIZED,
                serde_json::json!({"code": "rest_not_logged_in", "data": {"status": 401}}),
            ),
        };
    }
    // The REST index, as a health check reads it.
    if path.ends_with("/wp-json/") || path.ends_with("/wp-json") {
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
        self.state
            .tokens
            .lock()
            .unwrap()
            .insert(token.to_owned(), (id, name.to_owned()));
    }

    /// The Authorization header of every `users/me` call so far.
    pub fn users_me_calls(&self) -> Vec<String> {
        self.state.users_me.lock().unwrap().clone()
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
