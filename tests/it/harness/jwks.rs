//! A JWKS endpoint on loopback serving the keys a test generated.

use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use axum::Router;

use super::upstream::{json_response, ServerThread};

#[derive(Default)]
struct JwksServed {
    keys: Vec<serde_json::Value>,
    status: u16,
}

/// A JWKS endpoint (`GET /jwks.json`) on loopback serving the keys a test generated.
/// It counts requests, can be switched to fail (any status) or stopped, and its keys
/// can be replaced (rotation).
pub struct JwksServer {
    server: ServerThread,
    served: Arc<Mutex<JwksServed>>,
    hits: Arc<std::sync::atomic::AtomicU64>,
}

impl JwksServer {
    pub fn start(keys: Vec<serde_json::Value>) -> Self {
        let served = Arc::new(Mutex::new(JwksServed { keys, status: 200 }));
        let hits = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (s, h) = (served.clone(), hits.clone());
        let app = Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                let (s, h) = (s.clone(), h.clone());
                async move {
                    h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let (status, body) = {
                        let st = s.lock().unwrap();
                        (st.status, serde_json::json!({ "keys": st.keys }))
                    };
                    if status == 200 {
                        json_response(StatusCode::OK, body)
                    } else {
                        json_response(
                            StatusCode::from_u16(status).unwrap(),
                            serde_json::json!({"error": "failing on purpose"}),
                        )
                    }
                }
            }),
        );
        JwksServer {
            server: ServerThread::start(app),
            served,
            hits,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/jwks.json", self.server.port)
    }

    /// Requests received so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Answer `status` from now on (200 serves the keys again).
    pub fn set_status(&self, status: u16) {
        self.served.lock().unwrap().status = status;
    }

    /// Serve these keys from now on.
    pub fn set_keys(&self, keys: Vec<serde_json::Value>) {
        self.served.lock().unwrap().keys = keys;
    }

    /// Close the listener and every connection: the URL refuses connections.
    pub fn stop(&mut self) {
        self.server.stop();
    }
}
