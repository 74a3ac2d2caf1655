//! Real HTTP(S) upstreams on loopback: the recording upstream the gateway proxies to,
//! and the small server thread the JWKS endpoint and the WordPress mimic run on.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use super::credentials::SiteAuth;
use super::payload::pattern_stream;
use super::text::{hex, sha256_hex};
use super::tls::{TestCa, TlsListener};

/// One request as the upstream saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// Path and query string, as received.
    pub uri: String,
    /// (lower-case name, value) in arrival order; repeated headers appear repeatedly.
    pub headers: Vec<(String, String)>,
    pub body_len: u64,
    pub body_sha256: String,
}

impl Recorded {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).into_iter().next()
    }

    /// Every value of header `name` (case-insensitive).
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or("")
    }

    /// Asserts the request carries the header `auth` becomes, once, with its value.
    #[track_caller]
    pub fn assert_credential(&self, auth: &SiteAuth) {
        let (name, value) = auth
            .expected_upstream_header()
            .expect("a site credential that sends a header");
        assert_eq!(self.header_values(&name), vec![value.as_str()], "{self:#?}");
    }
}

#[derive(Clone, Default)]
struct UpstreamState {
    records: Arc<Mutex<Vec<Recorded>>>,
    /// Path+query of requests whose first body bytes arrived (recorded before the
    /// rest of the body is read).
    first_bytes: Arc<Mutex<Vec<String>>>,
}

/// A real HTTP(S) server on loopback that records every request it receives.
///
/// Routes (matched on the end of the path, so a site's path prefix does not matter):
/// - `.../slow`: waits [`Upstream::SLOW`] before answering 200;
/// - `.../download/<n>`: streams `n` deterministic bytes (see [`pattern_stream`] with
///   seed `n`), with `Content-Length`;
/// - `.../status/<code>`: answers that status with a small JSON body;
/// - `.../trickle`: answers 200 with `first\n`, then after [`Upstream::SLOW`] `last\n`;
/// - anything else: consumes the request body as a stream and answers 200 JSON with
///   the method, path, received length and sha256. Request headers are never echoed.
///
/// It runs on its own thread and runtime, independent of the test's runtime.
pub struct Upstream {
    scheme: &'static str,
    host: &'static str,
    state: UpstreamState,
    server: ServerThread,
}

impl Upstream {
    pub const SLOW: Duration = Duration::from_secs(5);

    /// Plain HTTP on 127.0.0.1.
    pub fn start() -> Self {
        Self::start_inner(None)
    }

    /// HTTPS with the server certificate of `ca`, on 127.0.0.1 (and ::1 when the
    /// machine has it, so `localhost` works whichever address it resolves to first).
    pub fn start_tls(ca: &TestCa) -> Self {
        Self::start_inner(Some(ca.server_config()))
    }

    fn start_inner(tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>) -> Self {
        let state = UpstreamState::default();
        let app = Router::new()
            .fallback(handle_upstream)
            .layer(DefaultBodyLimit::disable())
            .with_state(state.clone());
        let is_tls = tls.is_some();
        Upstream {
            scheme: if is_tls { "https" } else { "http" },
            host: if is_tls { "localhost" } else { "127.0.0.1" },
            state,
            server: ServerThread::start_with(app, tls, 2),
        }
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// `http://127.0.0.1:<port>` or `https://localhost:<port>`.
    pub fn url(&self) -> String {
        format!("{}://{}:{}", self.scheme, self.host, self.server.port)
    }

    /// Path+query of the requests whose first body bytes have arrived so far, while
    /// their body may still be in flight (a handle usable from a body stream).
    pub fn first_bytes_seen(&self) -> Arc<Mutex<Vec<String>>> {
        self.state.first_bytes.clone()
    }

    /// Every request recorded so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.records.lock().unwrap().clone()
    }

    /// The requests whose path+query contains `needle`.
    pub fn requests_with(&self, needle: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.uri.contains(needle))
            .collect()
    }

    /// The one request whose path+query contains `needle`; panics unless exactly one.
    pub fn one_with(&self, needle: &str) -> Recorded {
        let mut found = self.requests_with(needle);
        assert_eq!(
            found.len(),
            1,
            "expected exactly one upstream request containing {needle:?}, got {found:#?}"
        );
        found.remove(0)
    }
}

fn record(state: &UpstreamState, r: Recorded) {
    state.records.lock().unwrap().push(r);
}

pub(super) fn json_response(status: StatusCode, value: serde_json::Value) -> Response {
    (
        status,
        [("content-type", HeaderValue::from_static("application/json"))],
        value.to_string(),
    )
        .into_response()
}

async fn handle_upstream(State(state): State<UpstreamState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let uri = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| parts.uri.path().to_owned());
    let path = parts.uri.path().to_owned();
    let method = parts.method.as_str().to_owned();
    let origin = parts.headers.get("origin").cloned();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();

    // The body's length and digest are filled in once it has been read.
    let mut seen = Recorded {
        method: method.clone(),
        uri: uri.clone(),
        headers,
        body_len: 0,
        body_sha256: sha256_hex(b""),
    };
    if path.ends_with("/slow") {
        record(&state, seen);
        tokio::time::sleep(Upstream::SLOW).await;
        return json_response(StatusCode::OK, serde_json::json!({"slow": true}));
    }

    // Consume the body as it arrives; never hold it whole.
    let mut stream = body.into_data_stream();
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => {
                if len == 0 && !c.is_empty() {
                    state.first_bytes.lock().unwrap().push(uri.clone());
                }
                len += c.len() as u64;
                hasher.update(&c);
            }
            Err(e) => {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({"upstream_error": e.to_string()}),
                );
            }
        }
    }
    let digest = hex(&hasher.finalize());
    (seen.body_len, seen.body_sha256) = (len, digest.clone());
    record(&state, seen);

    if let Some(n) = path
        .rsplit_once("/download/")
        .and_then(|(_, n)| n.parse::<u64>().ok())
    {
        return Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/octet-stream")
            .header("content-length", n.to_string())
            .body(Body::from_stream(pattern_stream(n, n)))
            .unwrap();
    }
    if path.ends_with("/trickle") {
        let chunks = futures_util::stream::unfold(0u8, |step| async move {
            match step {
                0 => Some((Ok::<_, std::io::Error>(Bytes::from_static(b"first\n")), 1)),
                1 => {
                    tokio::time::sleep(Upstream::SLOW).await;
                    Some((Ok(Bytes::from_static(b"last\n")), 2))
                }
                _ => None,
            }
        });
        return Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "text/plain")
            .body(Body::from_stream(chunks))
            .unwrap();
    }
    // What WordPress sends for a request with an Origin: its own CORS headers, echoing
    // any origin and allowing credentials, and its paging headers.
    if path.ends_with("/wp-cors") {
        let mut resp = json_response(StatusCode::OK, serde_json::json!([{"id": 1}]));
        let h = resp.headers_mut();
        if let Some(origin) = origin {
            h.insert("access-control-allow-origin", origin);
        }
        for (name, value) in [
            ("access-control-allow-credentials", "true"),
            (
                "access-control-allow-headers",
                "Authorization, X-WP-Nonce, Content-Type",
            ),
            (
                "access-control-expose-headers",
                "X-WP-Total, X-WP-TotalPages, Link",
            ),
            ("vary", "Origin"),
            ("x-wp-total", "3"),
            ("x-wp-totalpages", "1"),
            (
                "link",
                "<http://wp.test/wp-json/>; rel=\"https://api.w.org/\"",
            ),
        ] {
            h.append(name, HeaderValue::from_static(value));
        }
        return resp;
    }
    if let Some(code) = path
        .rsplit_once("/status/")
        .and_then(|(_, c)| c.parse::<u16>().ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
    {
        return json_response(
            code,
            serde_json::json!({"code": "from_upstream", "status": code.as_u16()}),
        );
    }
    json_response(
        StatusCode::OK,
        serde_json::json!({
            "ok": true,
            "method": method,
            "path": path,
            "received_bytes": len,
            "received_sha256": digest,
        }),
    )
}

/// An axum app served on 127.0.0.1 by its own thread and runtime; stopping it (or
/// dropping it) closes the listener and every open connection.
pub struct ServerThread {
    pub port: u16,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerThread {
    /// Plain HTTP, one worker thread.
    pub fn start(app: Router) -> Self {
        Self::start_with(app, None, 1)
    }

    /// `workers` runtime threads; with `tls`, HTTPS (see [`serve`]).
    fn start_with(
        app: Router,
        tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
        workers: usize,
    ) -> Self {
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tokio::select! {
                    _ = serve(listener, app, tls, port_tx) => {}
                    _ = stop_rx => {}
                }
            });
            // Dropping the runtime here cancels the connection tasks too.
        });
        ServerThread {
            port: port_rx.recv().unwrap(),
            shutdown: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub(super) fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Serves `app` on `listener`; with `tls`, over HTTPS and also on ::1 at the same port
/// when the machine has it, so `localhost` works whichever address it resolves to
/// first. Sends the port once every listener is bound.
async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    port_tx: std::sync::mpsc::Sender<u16>,
) {
    let port = listener.local_addr().unwrap().port();
    let Some(config) = tls else {
        port_tx.send(port).unwrap();
        return axum::serve(listener, app).await.unwrap();
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let v4 = TlsListener {
        tcp: listener,
        acceptor: acceptor.clone(),
    };
    let v6 = tokio::net::TcpListener::bind(("::1", port))
        .await
        .ok()
        .map(|tcp| TlsListener { tcp, acceptor });
    port_tx.send(port).unwrap();
    let app6 = app.clone();
    let serve6 = async move {
        match v6 {
            Some(l) => axum::serve(l, app6).await.unwrap(),
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        r = axum::serve(v4, app) => r.unwrap(),
        _ = serve6 => {}
    }
}
