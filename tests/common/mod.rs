//! Harness shared by the integration tests: a recording upstream (plain HTTP or
//! HTTPS), the real `wpgate` binary started as a gateway process, and CLI helpers.
//!
//! Every test binary compiles this module; helpers used by only some of them would
//! trip `dead_code`, hence the allow below.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::fmt::Write as _;
use std::future::Future;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine as _;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::header::HeaderMap;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

pub mod postgres;

/// The binary under test.
pub const WPGATE: &str = env!("CARGO_BIN_EXE_wpgate");

/// Header names the clients use.
pub const SITE_HEADER: &str = "X-Website-ID";
pub const KEY_HEADER: &str = "X-API-Key";

/// How long a gateway may take to come up.
pub const STARTUP_DEADLINE: Duration = Duration::from_secs(20);
/// How long a CLI command may take before the test gives up on it.
pub const CLI_DEADLINE: Duration = Duration::from_secs(60);
/// How long a test waits for a CLI change to reach a running gateway (cache.ttl is 1 s
/// in these tests; the rest is slack for a loaded 2-core machine).
pub const CHANGE_DEADLINE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------
// Small utilities
// ---------------------------------------------------------------------------------

/// A free TCP port on loopback (bind to port 0, read it, release it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        write!(s, "{b:02x}").unwrap();
    }
    s
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub fn base64_std(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

/// A random alphanumeric string (test secrets, markers).
pub fn random_string(len: usize) -> String {
    use rand::Rng as _;
    rand::thread_rng()
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// A unique marker to put in a query string, so a test finds its own request among
/// the ones the upstream recorded.
pub fn marker() -> String {
    format!("m{}", random_string(16))
}

/// Quote a string as a TOML basic string.
pub fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => write!(out, "\\u{:04X}", c as u32).unwrap(),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `[A-Za-z0-9._:-]{1,128}`: what the gateway accepts (and mints) as a request id.
pub fn is_sane_request_id(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Poll `f` until it returns `Ok`, or panic after `timeout` with the last `Err`.
pub async fn poll_until<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(last) => {
                if Instant::now() >= deadline {
                    panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Blocking variant of [`poll_until`] for synchronous helpers.
pub fn poll_until_blocking<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return v,
            Err(last) => {
                if Instant::now() >= deadline {
                    panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Deterministic payloads for the streaming tests
// ---------------------------------------------------------------------------------

const PATTERN_CHUNK: usize = 64 * 1024;

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

fn pattern_fill(state: &mut u64, n: usize) -> Bytes {
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        *state = xorshift(*state);
        let take = (n - v.len()).min(8);
        v.extend_from_slice(&state.to_le_bytes()[..take]);
    }
    Bytes::from(v)
}

fn pattern_seed(seed: u64) -> u64 {
    // xorshift must not start at 0.
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1
}

/// `total` pseudo-random bytes determined by `seed`, produced chunk by chunk so no
/// copy of the whole payload is ever held.
pub fn pattern_stream(
    total: u64,
    seed: u64,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    futures_util::stream::unfold(
        (0u64, pattern_seed(seed)),
        move |(sent, mut st)| async move {
            if sent >= total {
                return None;
            }
            let n = (total - sent).min(PATTERN_CHUNK as u64) as usize;
            let chunk = pattern_fill(&mut st, n);
            Some((Ok(chunk), (sent + n as u64, st)))
        },
    )
}

/// sha256 (hex) of what [`pattern_stream`] produces for the same arguments.
pub fn pattern_sha256(total: u64, seed: u64) -> String {
    let mut st = pattern_seed(seed);
    let mut hasher = Sha256::new();
    let mut done = 0u64;
    while done < total {
        let n = (total - done).min(PATTERN_CHUNK as u64) as usize;
        hasher.update(pattern_fill(&mut st, n));
        done += n as u64;
    }
    hex(&hasher.finalize())
}

// ---------------------------------------------------------------------------------
// Recording upstream
// ---------------------------------------------------------------------------------

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
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
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
}

#[derive(Clone, Default)]
struct UpstreamState {
    records: Arc<Mutex<Vec<Recorded>>>,
    /// Path+query of requests whose first body bytes arrived (recorded before the
    /// rest of the body is read).
    first_bytes: Arc<Mutex<Vec<String>>>,
}

/// Certificates for an HTTPS upstream: a throw-away CA and a server certificate it
/// signed for `localhost` and 127.0.0.1.
pub struct TestCa {
    pub ca_pem: String,
    pub server_cert_der: Vec<u8>,
    pub server_key_der: Vec<u8>,
}

impl TestCa {
    pub fn generate() -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
            KeyUsagePurpose, SanType,
        };
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "wpgate test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();

        let server_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = params.signed_by(&server_key, &ca_cert, &ca_key).unwrap();

        TestCa {
            ca_pem: ca_cert.pem(),
            server_cert_der: server_cert.der().to_vec(),
            server_key_der: server_key.serialize_der(),
        }
    }

    fn server_config(&self) -> Arc<tokio_rustls::rustls::ServerConfig> {
        use tokio_rustls::rustls;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(self.server_cert_der.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key_der.clone())),
            )
            .unwrap();
        Arc::new(config)
    }
}

/// A TLS listener for `axum::serve`: accepts TCP, completes the handshake, and skips
/// connections whose handshake fails (e.g. a client that refuses our certificate).
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            let handshake = self.acceptor.accept(tcp);
            if let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(5), handshake).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
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
    port: u16,
    scheme: &'static str,
    host: &'static str,
    state: UpstreamState,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
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
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let is_tls = tls.is_some();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let port = listener.local_addr().unwrap().port();
                match tls {
                    None => {
                        port_tx.send(port).unwrap();
                        tokio::select! {
                            r = axum::serve(listener, app) => r.unwrap(),
                            _ = stop_rx => {}
                        }
                    }
                    Some(config) => {
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
                            _ = stop_rx => {}
                        }
                    }
                }
            });
        });
        let port = port_rx.recv().unwrap();
        Upstream {
            port,
            scheme: if is_tls { "https" } else { "http" },
            host: if is_tls { "localhost" } else { "127.0.0.1" },
            state,
            shutdown: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>` or `https://localhost:<port>`.
    pub fn url(&self) -> String {
        format!("{}://{}:{}", self.scheme, self.host, self.port)
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

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn record(state: &UpstreamState, r: Recorded) {
    state.records.lock().unwrap().push(r);
}

fn json_response(status: StatusCode, value: serde_json::Value) -> Response {
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

    if path.ends_with("/slow") {
        record(
            &state,
            Recorded {
                method: method.clone(),
                uri,
                headers,
                body_len: 0,
                body_sha256: sha256_hex(b""),
            },
        );
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
    record(
        &state,
        Recorded {
            method: method.clone(),
            uri,
            headers,
            body_len: len,
            body_sha256: digest.clone(),
        },
    );

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

// ---------------------------------------------------------------------------------
// CLI
// ---------------------------------------------------------------------------------

/// What a finished `wpgate` command left behind.
#[derive(Debug)]
pub struct CliOutput {
    pub args: Vec<String>,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        assert!(
            self.status.success(),
            "`wpgate {}` failed with {}\nstdout:\n{}\nstderr:\n{}",
            self.args.join(" "),
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    #[track_caller]
    pub fn assert_failure(&self) -> &Self {
        assert!(
            !self.status.success(),
            "`wpgate {}` should have failed but exited 0\nstdout:\n{}\nstderr:\n{}",
            self.args.join(" "),
            self.stdout,
            self.stderr
        );
        self
    }

    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "`wpgate {}` did not print JSON ({e}):\n{}",
                self.args.join(" "),
                self.stdout
            )
        })
    }
}

/// A `wpgate` command with a clean environment: no inherited `WPGATE_*`/`RUST_LOG`.
pub fn wpgate_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(WPGATE);
    cmd.args(args);
    for (k, _) in std::env::vars_os() {
        let k_str = k.to_string_lossy();
        if k_str.starts_with("WPGATE_") || k_str == "RUST_LOG" {
            cmd.env_remove(&k);
        }
    }
    cmd
}

/// Run `wpgate <args>` to completion (at most [`CLI_DEADLINE`]), feeding `stdin`.
pub fn run_wpgate(args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> CliOutput {
    run_wpgate_within(args, stdin, env, CLI_DEADLINE).unwrap_or_else(|| {
        panic!(
            "`wpgate {}` did not finish within {CLI_DEADLINE:?}",
            args.join(" ")
        )
    })
}

/// Like [`run_wpgate`], but returns `None` (after killing it) when the command is
/// still running after `deadline`.
pub fn run_wpgate_within(
    args: &[&str],
    stdin: Option<&str>,
    env: &[(&str, &str)],
    deadline: Duration,
) -> Option<CliOutput> {
    let mut cmd = wpgate_command(args);
    cmd.envs(env.iter().copied());
    run_within(cmd, args, stdin, deadline)
}

/// Run a prepared command (stdout/stderr captured, `stdin` fed) for at most
/// `deadline`; `None` (after killing it) when it is still running then.
pub fn run_within(
    mut cmd: Command,
    args: &[&str],
    stdin: Option<&str>,
    deadline: Duration,
) -> Option<CliOutput> {
    let out_dir = TempDir::new().unwrap();
    let out_path = out_dir.path().join("stdout");
    let err_path = out_dir.path().join("stderr");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(std::fs::File::create(&out_path).unwrap())
    .stderr(std::fs::File::create(&err_path).unwrap());
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        // The command may exit without reading (e.g. a usage error); ignore EPIPE.
        let _ = pipe.write_all(input.as_bytes());
    }
    let until = Instant::now() + deadline;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let status = status?;
    Some(CliOutput {
        args: args.iter().map(|s| (*s).to_owned()).collect(),
        status,
        stdout: String::from_utf8_lossy(&std::fs::read(&out_path).unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&std::fs::read(&err_path).unwrap()).into_owned(),
    })
}

// ---------------------------------------------------------------------------------
// API keys and site credentials
// ---------------------------------------------------------------------------------

/// An issued API key, `wpg_<12-char key id>_<43-char secret>`.
#[derive(Clone, Debug)]
pub struct ApiKey {
    pub full: String,
    pub key_id: String,
    pub secret: String,
}

impl ApiKey {
    #[track_caller]
    pub fn parse(s: &str) -> Self {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        assert!(
            s.len() == 4 + 12 + 1 + 43
                && s.starts_with("wpg_")
                && s.as_bytes()[16] == b'_'
                && s.chars().all(ok_char),
            "not an API key of the form wpg_<12-char id>_<43-char secret>: {s:?}"
        );
        ApiKey {
            full: s.to_owned(),
            key_id: s[4..16].to_owned(),
            secret: s[17..].to_owned(),
        }
    }

    /// The same key id with a different (wrong) secret of the right shape.
    pub fn with_wrong_secret(&self) -> String {
        let mut wrong: Vec<char> = self.secret.chars().collect();
        wrong[0] = if wrong[0] == 'A' { 'B' } else { 'A' };
        wrong[42] = if wrong[42] == 'A' { 'B' } else { 'A' };
        format!(
            "wpg_{}_{}",
            self.key_id,
            wrong.into_iter().collect::<String>()
        )
    }
}

/// How a site authenticates to its WordPress upstream.
#[derive(Clone, Debug)]
pub enum SiteAuth {
    AppPassword { username: String, password: String },
    Bearer(String),
    Header { name: String, value: String },
    None,
}

impl SiteAuth {
    pub fn app_password(username: &str, password: &str) -> Self {
        SiteAuth::AppPassword {
            username: username.to_owned(),
            password: password.to_owned(),
        }
    }

    pub fn bearer(token: &str) -> Self {
        SiteAuth::Bearer(token.to_owned())
    }

    pub fn header(name: &str, value: &str) -> Self {
        SiteAuth::Header {
            name: name.to_owned(),
            value: value.to_owned(),
        }
    }

    /// CLI arguments (`--auth ...`) and the secret to feed on stdin, if any.
    pub fn cli_args(&self) -> (Vec<String>, Option<String>) {
        let v = |xs: &[&str]| xs.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        match self {
            SiteAuth::AppPassword { username, password } => (
                v(&[
                    "--auth",
                    "app-password",
                    "--username",
                    username,
                    "--secret-stdin",
                ]),
                Some(format!("{password}\n")),
            ),
            SiteAuth::Bearer(token) => (
                v(&["--auth", "bearer", "--secret-stdin"]),
                Some(format!("{token}\n")),
            ),
            SiteAuth::Header { name, value } => (
                v(&["--auth", "header", "--header-name", name, "--secret-stdin"]),
                Some(format!("{value}\n")),
            ),
            SiteAuth::None => (v(&["--auth", "none"]), None),
        }
    }

    /// The header the upstream must receive: (lower-case name, value).
    pub fn expected_upstream_header(&self) -> Option<(String, String)> {
        match self {
            SiteAuth::AppPassword { username, password } => Some((
                "authorization".into(),
                format!("Basic {}", base64_std(&format!("{username}:{password}"))),
            )),
            SiteAuth::Bearer(t) => Some(("authorization".into(), format!("Bearer {t}"))),
            SiteAuth::Header { name, value } => Some((name.to_ascii_lowercase(), value.clone())),
            SiteAuth::None => None,
        }
    }

    /// Every string that must never leak (secret, and for app passwords the Basic
    /// credential it becomes).
    pub fn secrets(&self) -> Vec<String> {
        match self {
            SiteAuth::AppPassword { username, password } => vec![
                password.clone(),
                base64_std(&format!("{username}:{password}")),
            ],
            SiteAuth::Bearer(t) => vec![t.clone()],
            SiteAuth::Header { value, .. } => vec![value.clone()],
            SiteAuth::None => vec![],
        }
    }
}

// ---------------------------------------------------------------------------------
// HTTP answers from the gateway
// ---------------------------------------------------------------------------------

/// A whole response from the gateway.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub async fn read(resp: reqwest::Response) -> Self {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.text().await.unwrap();
        Answer {
            status,
            headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn request_id(&self) -> Option<&str> {
        self.header("x-request-id")
    }

    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.body).ok()
    }

    pub fn error_code(&self) -> Option<String> {
        self.json()?
            .pointer("/error/code")?
            .as_str()
            .map(str::to_owned)
    }

    /// Status, code, and a short body for assertion messages.
    pub fn summary(&self) -> String {
        let body: String = self.body.chars().take(300).collect();
        format!("{} {}", self.status, body)
    }

    /// Everything a client sees: status line bits, every header, the body.
    pub fn all_text(&self) -> String {
        let mut s = String::new();
        for (k, v) in &self.headers {
            writeln!(s, "{}: {}", k, String::from_utf8_lossy(v.as_bytes())).unwrap();
        }
        s.push_str(&self.body);
        s
    }

    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        assert_eq!(self.status, 200, "expected 200, got {}", self.summary());
        self
    }

    /// Check the documented error shape and return the `error` object:
    /// `{"error":{"code","message","request_id"}}`, `application/json`, the request id
    /// in the body equal to the `X-Request-ID` header, `WWW-Authenticate` on 401s.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) -> serde_json::Value {
        assert_eq!(
            self.status,
            status,
            "expected {status} {code}, got {}",
            self.summary()
        );
        let ct = self.header("content-type").unwrap_or("");
        assert!(
            ct.starts_with("application/json"),
            "error content-type should be application/json, got {ct:?} ({})",
            self.summary()
        );
        let json = self
            .json()
            .unwrap_or_else(|| panic!("error body is not JSON: {}", self.summary()));
        let err = json
            .get("error")
            .unwrap_or_else(|| panic!("no `error` object in {json}"))
            .clone();
        assert_eq!(
            err.get("code").and_then(|c| c.as_str()),
            Some(code),
            "wrong error code in {json}"
        );
        let message = err.get("message").and_then(|m| m.as_str()).unwrap_or("");
        assert!(!message.is_empty(), "error message missing in {json}");
        let rid = self
            .request_id()
            .unwrap_or_else(|| panic!("no X-Request-ID on error response {}", self.summary()));
        assert_eq!(
            err.get("request_id").and_then(|r| r.as_str()),
            Some(rid),
            "request_id in the body differs from the X-Request-ID header in {json}"
        );
        if status == 401 {
            assert!(
                self.header("www-authenticate").is_some(),
                "401 without WWW-Authenticate: {}",
                self.summary()
            );
        }
        err
    }
}

// ---------------------------------------------------------------------------------
// Gateway process
// ---------------------------------------------------------------------------------

/// Settings written into a gateway's temporary config file.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub ttl: String,
    pub negative_ttl: String,
    pub connect_timeout: String,
    pub read_timeout: String,
    pub log_level: String,
    pub ca_file: Option<PathBuf>,
    /// Extra TOML appended verbatim (must not repeat a table written above).
    pub extra_toml: String,
    /// Extra lines written inside the `[proxy]` table (e.g. `trusted_proxies = [...]`).
    pub proxy_toml: String,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            ttl: "1s".into(),
            negative_ttl: "1s".into(),
            connect_timeout: "2s".into(),
            read_timeout: "30s".into(),
            log_level: "info".into(),
            ca_file: None,
            extra_toml: String::new(),
            proxy_toml: String::new(),
        }
    }
}

impl GatewayConfig {
    pub fn render(&self, data_dir: &Path, proxy: SocketAddr, admin: SocketAddr) -> String {
        let mut s = String::new();
        writeln!(s, "data_dir = {}", toml_str(&data_dir.to_string_lossy())).unwrap();
        writeln!(s, "\n[listen]").unwrap();
        writeln!(s, "proxy = {}", toml_str(&proxy.to_string())).unwrap();
        writeln!(s, "admin = {}", toml_str(&admin.to_string())).unwrap();
        writeln!(s, "\n[cache]").unwrap();
        writeln!(s, "ttl = {}", toml_str(&self.ttl)).unwrap();
        writeln!(s, "negative_ttl = {}", toml_str(&self.negative_ttl)).unwrap();
        writeln!(s, "\n[upstream]").unwrap();
        writeln!(s, "connect_timeout = {}", toml_str(&self.connect_timeout)).unwrap();
        writeln!(s, "read_timeout = {}", toml_str(&self.read_timeout)).unwrap();
        if let Some(ca) = &self.ca_file {
            writeln!(s, "ca_file = {}", toml_str(&ca.to_string_lossy())).unwrap();
        }
        writeln!(s, "\n[proxy]").unwrap();
        writeln!(s, "threads = 2").unwrap();
        if !self.proxy_toml.is_empty() {
            writeln!(s, "{}", self.proxy_toml.trim_end()).unwrap();
        }
        // The background health prober would add its own requests to the recording
        // upstreams; tests that want it write their own [health] table.
        if !self.extra_toml.contains("[health]") {
            writeln!(s, "\n[health]\nenabled = false").unwrap();
        }
        writeln!(s, "\n[log]").unwrap();
        writeln!(s, "format = \"json\"").unwrap();
        writeln!(s, "level = {}", toml_str(&self.log_level)).unwrap();
        s.push('\n');
        s.push_str(&self.extra_toml);
        s
    }
}

/// Whether something at `addr` answers an HTTP/1.1 request with a status line.
pub fn http_answers(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let req =
        format!("GET /__wpgate_test_ready HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    let mut got = 0;
    while got < 9 {
        match stream.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    buf[..got].starts_with(b"HTTP/1.")
}

/// A running `wpgate serve` with its own temp dir, config, data dir and log file.
/// Killed when dropped.
pub struct Gateway {
    child: Option<Child>,
    pub config: GatewayConfig,
    pub config_path: PathBuf,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub client: reqwest::Client,
    /// Extra environment for `serve` and for CLI commands.
    pub env: Vec<(String, String)>,
    starts: u32,
    // Last: removed after the process is gone.
    pub dir: TempDir,
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(180))
        .build()
        .unwrap()
}

impl Gateway {
    /// Defaults: cache ttl 1 s, info logs in JSON.
    pub fn start() -> Self {
        Self::start_with(GatewayConfig::default())
    }

    pub fn start_with(config: GatewayConfig) -> Self {
        let mut gw = Self::prepare(config);
        gw.serve();
        gw
    }

    /// Write the config and pick ports, without starting anything.
    pub fn prepare(config: GatewayConfig) -> Self {
        let dir = TempDir::new().unwrap();
        let data_dir = dir.path().join("data");
        let proxy_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let admin_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let config_path = dir.path().join("wpgate.toml");
        std::fs::write(
            &config_path,
            config.render(&data_dir, proxy_addr, admin_addr),
        )
        .unwrap();
        Gateway {
            child: None,
            config,
            config_path,
            log_path: dir.path().join("gateway-0.log"),
            data_dir,
            proxy_addr,
            admin_addr,
            client: http_client(),
            env: Vec::new(),
            starts: 0,
            dir,
        }
    }

    fn env_pairs(&self) -> Vec<(&str, &str)> {
        self.env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// Start `wpgate --config F serve` and wait until the proxy answers HTTP.
    pub fn serve(&mut self) {
        assert!(self.child.is_none(), "gateway already running");
        self.log_path = self.dir.path().join(format!("gateway-{}.log", self.starts));
        self.starts += 1;
        let log = std::fs::File::create(&self.log_path).unwrap();
        let out = std::fs::File::create(self.dir.path().join("serve.stdout")).unwrap();
        let config = self.config_path.to_string_lossy().into_owned();
        let mut cmd = wpgate_command(&["--config", &config, "serve"]);
        cmd.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(log);
        let mut child = cmd.spawn().unwrap();
        let deadline = Instant::now() + STARTUP_DEADLINE;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "`wpgate serve` exited early with {status}; its log:\n{}",
                    std::fs::read_to_string(&self.log_path).unwrap_or_default()
                );
            }
            if http_answers(self.proxy_addr) {
                break;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "`wpgate serve` did not answer HTTP on {} within {STARTUP_DEADLINE:?}; its log:\n{}",
                    self.proxy_addr,
                    std::fs::read_to_string(&self.log_path).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
    }

    /// The running `serve` process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("gateway not running").id()
    }

    /// Send `signal` (e.g. "HUP", "QUIT") to the running `serve` process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Start another `wpgate --config F serve <extra>` on the same config (e.g.
    /// `--upgrade`), logging to `<name>.log`; the caller owns the process.
    pub fn spawn_serve(&self, extra: &[&str], name: &str) -> (Child, PathBuf) {
        let log_path = self.dir.path().join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path).unwrap();
        let config = self.config_path.to_string_lossy().into_owned();
        let mut args = vec!["--config", config.as_str(), "serve"];
        args.extend_from_slice(extra);
        let mut cmd = wpgate_command(&args);
        cmd.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        (cmd.spawn().unwrap(), log_path)
    }

    /// Forget the running process without killing it (it was replaced, e.g. by a
    /// graceful upgrade, and exits by itself); returns it.
    pub fn take_child(&mut self) -> Option<Child> {
        self.child.take()
    }

    /// Stop the gateway process (SIGKILL) and wait for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Run `wpgate --config F <args>`, feeding `stdin`.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> CliOutput {
        let config = self.config_path.to_string_lossy().into_owned();
        let mut all = vec!["--config", config.as_str()];
        all.extend_from_slice(args);
        run_wpgate(&all, stdin, &self.env_pairs())
    }

    /// Run `wpgate --config F --json <args>`.
    pub fn cli_json(&self, args: &[&str]) -> CliOutput {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        self.cli(&all, None)
    }

    /// The gateway's stderr so far (the current run's).
    pub fn logs(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    /// Log lines that parse as JSON objects.
    pub fn log_json(&self) -> Vec<serde_json::Value> {
        self.logs()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v.is_object())
            .collect()
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.proxy_addr, path_and_query)
    }

    pub fn keyring_path(&self) -> PathBuf {
        self.data_dir.join("keyring.toml")
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("wpgate.db")
    }

    // --- setup through the CLI ---

    /// `site add <id> --upstream <url> <auth...>`; asserts success.
    pub fn add_site(&self, id: &str, upstream: &str, auth: &SiteAuth) -> CliOutput {
        let (auth_args, stdin) = auth.cli_args();
        let mut args = vec!["site", "add", id, "--upstream", upstream];
        args.extend(auth_args.iter().map(String::as_str));
        let out = self.cli(&args, stdin.as_deref());
        out.assert_success();
        out
    }

    /// `key issue <site> <extra...>`; asserts success and the documented output.
    pub fn issue_key(&self, site: &str, extra: &[&str]) -> ApiKey {
        let mut args = vec!["key", "issue", site];
        args.extend_from_slice(extra);
        let out = self.cli(&args, None);
        out.assert_success();
        let lines: Vec<&str> = out
            .stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "`key issue` must print the key alone on one line, printed:\n{}",
            out.stdout
        );
        ApiKey::parse(lines[0].trim())
    }

    // --- requests through the proxy ---

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path))
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path))
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Answer {
        Answer::read(req.send().await.unwrap()).await
    }

    /// GET `path` for `site` with `X-API-Key: key`.
    pub async fn get_as(&self, site: &str, key: &str, path: &str) -> Answer {
        self.send(
            self.get(path)
                .header(SITE_HEADER, site)
                .header(KEY_HEADER, key),
        )
        .await
    }

    /// Poll GET `path` (site + key) until the status is `status`; returns that answer.
    pub async fn poll_status(&self, site: &str, key: &str, path: &str, status: u16) -> Answer {
        poll_until(
            &format!("GET {path} on site {site} to answer {status}"),
            CHANGE_DEADLINE,
            || async {
                let a = self.get_as(site, key, path).await;
                if a.status == status {
                    Ok(a)
                } else {
                    Err(a.summary())
                }
            },
        )
        .await
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            let logs = self.logs();
            let tail: Vec<&str> = logs.lines().rev().take(40).collect();
            eprintln!(
                "---- last gateway log lines ({}) ----",
                self.log_path.display()
            );
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Access log lines
// ---------------------------------------------------------------------------------

/// A field of a JSON log line: under `fields` (tracing's JSON layout) or at the top
/// level (a flattened event); numbers and booleans as text.
pub fn log_field(line: &serde_json::Value, key: &str) -> Option<String> {
    let v = line
        .get("fields")
        .and_then(|f| f.get(key))
        .or_else(|| line.get(key))?;
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

impl Gateway {
    /// The access-log line (target `wpgate::access`) of request `request_id`, waiting
    /// up to 5 s for it to be written; panics unless exactly one is found.
    pub async fn access_line(&self, request_id: &str) -> serde_json::Value {
        let find = || -> Vec<serde_json::Value> {
            self.log_json()
                .into_iter()
                .filter(|l| {
                    l.get("target").and_then(|t| t.as_str()) == Some("wpgate::access")
                        && log_field(l, "request_id").as_deref() == Some(request_id)
                })
                .collect()
        };
        poll_until(
            &format!("the access log line of request {request_id}"),
            Duration::from_secs(5),
            || async {
                if find().is_empty() {
                    Err("none yet".to_owned())
                } else {
                    Ok(())
                }
            },
        )
        .await;
        let mut found = find();
        assert_eq!(
            found.len(),
            1,
            "request {request_id} should have one access log line, got {found:#?}"
        );
        found.remove(0)
    }

    /// The `reason` the access log gives for the request that got `answer`.
    pub async fn logged_reason(&self, answer: &Answer) -> String {
        let rid = answer
            .request_id()
            .unwrap_or_else(|| panic!("no X-Request-ID on {}", answer.summary()))
            .to_owned();
        let line = self.access_line(&rid).await;
        log_field(&line, "reason").unwrap_or_else(|| panic!("no reason in {line}"))
    }
}

// ---------------------------------------------------------------------------------
// Small local servers on their own thread (JWKS endpoint, WordPress mimic)
// ---------------------------------------------------------------------------------

/// An axum app served on 127.0.0.1 by its own thread and runtime; stopping it (or
/// dropping it) closes the listener and every open connection.
struct ServerThread {
    port: u16,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerThread {
    fn start(app: Router) -> Self {
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                port_tx.send(listener.local_addr().unwrap().port()).unwrap();
                tokio::select! {
                    r = axum::serve(listener, app) => r.unwrap(),
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

    fn stop(&mut self) {
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

// ---------------------------------------------------------------------------------
// Admin listener, Prometheus metrics and promtool
// ---------------------------------------------------------------------------------

/// One sample of the Prometheus text exposition: `name{labels} value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether every `(key, value)` of `want` is among the sample's labels.
    pub fn has_labels(&self, want: &[(&str, &str)]) -> bool {
        want.iter().all(|(k, v)| self.label(k) == Some(*v))
    }
}

/// Parse the label set after `{`, up to and including the closing `}`; returns the
/// labels and the rest of the line.
type Labels = Vec<(String, String)>;

fn parse_labels(mut s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start_matches([' ', ',']);
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((labels, rest));
        }
        let (key, rest) = s
            .split_once('=')
            .ok_or_else(|| format!("label without '=' in {s:?}"))?;
        let rest = rest
            .strip_prefix('"')
            .ok_or_else(|| format!("unquoted label value in {s:?}"))?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err(format!("dangling escape in {s:?}")),
                },
                Some((_, c)) => value.push(c),
                None => return Err(format!("unterminated label value in {s:?}")),
            }
        };
        labels.push((key.trim().to_owned(), value));
        s = &rest[end + 1..];
    }
}

/// Every sample of a Prometheus text exposition (comments skipped); panics on a line
/// it cannot read, quoting it.
pub fn parse_metrics(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed = (|| -> Result<Sample, String> {
            let name_end = line
                .find(|c: char| c == '{' || c.is_whitespace())
                .ok_or("no value")?;
            let name = line[..name_end].to_owned();
            let (labels, rest) = if line[name_end..].starts_with('{') {
                parse_labels(&line[name_end + 1..])?
            } else {
                (Vec::new(), &line[name_end..])
            };
            let value = rest
                .split_whitespace()
                .next()
                .ok_or("no value")?
                .parse::<f64>()
                .map_err(|e| e.to_string())?;
            Ok(Sample {
                name,
                labels,
                value,
            })
        })();
        match parsed {
            Ok(s) => out.push(s),
            Err(e) => panic!("unreadable metrics line {line:?}: {e}"),
        }
    }
    out
}

/// The value of the one sample named `name` whose labels include `labels`; `None` when
/// there is none, panics when several match.
pub fn metric_value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == name && s.has_labels(labels))
        .collect();
    assert!(
        found.len() <= 1,
        "several samples of {name} match {labels:?}: {found:#?}"
    );
    found.first().map(|s| s.value)
}

/// The sum of every sample named `name` whose labels include `labels` (0 if none).
pub fn metric_sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && s.has_labels(labels))
        .map(|s| s.value)
        .fold(0.0, |a, b| a + b)
}

impl Gateway {
    /// `http://<admin listener><path>`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin_addr, path)
    }

    /// GET `path` on the admin listener.
    pub async fn admin_get(&self, path: &str) -> Answer {
        self.send(self.client.get(self.admin_url(path))).await
    }

    /// The body of `GET /metrics` on the admin listener (asserts 200).
    pub async fn metrics_text(&self) -> String {
        let a = self.admin_get("/metrics").await;
        assert_eq!(a.status, 200, "GET /metrics: {}", a.summary());
        a.body
    }

    /// The samples of `GET /metrics`.
    pub async fn metric_samples(&self) -> Vec<Sample> {
        parse_metrics(&self.metrics_text().await)
    }
}

/// What `promtool check metrics` said about an exposition.
#[derive(Debug)]
pub struct PromtoolReport {
    /// Exit code: 0 clean, 3 lint problems only, anything else an error.
    pub code: i32,
    /// stdout and stderr, in that order.
    pub output: String,
    /// Lines reporting errors (unparsable exposition, promtool failures).
    pub errors: Vec<String>,
    /// Lint problems (naming conventions and the like), one per line.
    pub lint: Vec<String>,
}

/// promtool: `WPGATE_PROMTOOL`, else `promtool` on the PATH. Panics when there is none,
/// saying how to get it (tests/run installs it).
pub fn promtool_path() -> PathBuf {
    if let Some(p) = std::env::var_os("WPGATE_PROMTOOL").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(p.exists(), "WPGATE_PROMTOOL={} does not exist", p.display());
        return p;
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("promtool"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "promtool not found (set WPGATE_PROMTOOL or install Debian's `prometheus` \
                 package: apt-get install --no-install-recommends prometheus; tests/run does)"
            )
        })
}

/// Pipe `text` to `promtool check metrics`.
pub fn promtool_check_metrics(text: &str) -> PromtoolReport {
    let tool = promtool_path();
    let mut cmd = Command::new(&tool);
    cmd.args(["check", "metrics"]);
    let out = run_within(
        cmd,
        &["check", "metrics"],
        Some(text),
        Duration::from_secs(60),
    )
    .unwrap_or_else(|| panic!("{} check metrics did not finish in 60s", tool.display()));
    let output = format!("{}{}", out.stdout, out.stderr);
    let code = out.status.code().unwrap_or(-1);
    let mut errors = Vec::new();
    let mut lint = Vec::new();
    for line in output.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let lower = line.to_ascii_lowercase();
        if lower.contains("error") || lower.contains("fail") || lower.contains("invalid") {
            errors.push(line.to_owned());
        } else {
            lint.push(line.to_owned());
        }
    }
    if code != 0 && code != 3 && errors.is_empty() {
        errors.push(format!("promtool exited with {code}"));
    }
    PromtoolReport {
        code,
        output,
        errors,
        lint,
    }
}

// ---------------------------------------------------------------------------------
// Admin API
// ---------------------------------------------------------------------------------

impl Gateway {
    /// `wpgate admin token create --scope <scope> [--label <label>]`; asserts success and
    /// that the token is printed alone on stdout, and returns it.
    pub fn admin_token(&self, scope: &str, label: Option<&str>) -> String {
        let mut args = vec!["admin", "token", "create", "--scope", scope];
        if let Some(l) = label {
            args.extend_from_slice(&["--label", l]);
        }
        let out = self.cli(&args, None);
        out.assert_success();
        let lines: Vec<&str> = out
            .stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "`admin token create` must print the token alone on one line, printed:\n{}",
            out.stdout
        );
        let token = lines[0].trim().to_owned();
        assert!(token.starts_with("wpgat_"), "not an admin token: {token:?}");
        token
    }

    /// A request to the admin listener with `Authorization: Bearer <token>`.
    pub fn admin_request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
    ) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.admin_url(path))
            .bearer_auth(token)
    }
}
