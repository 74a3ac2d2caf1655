//! Bare Pingora 0.9 reverse proxy: the framework's floor for `benches/load.sh`.
//!
//! Forwards every request to one plain-HTTP upstream and sets one fixed request
//! header, nothing else, so the difference to wpgate in the same run is what
//! wpgate itself adds (auth, credential injection, logging, metrics).
//!
//! With `--tls-cert`/`--tls-key` it listens for HTTPS instead, set up as wpgate's TLS
//! listener is (Pingora's rustls listener, ALPN h2 and http/1.1), with the certificate
//! read from the files rather than through a reloadable resolver.
//!
//! ```text
//! cargo build --release --example bare_pingora
//! target/release/examples/bare_pingora --listen 127.0.0.1:8081 --upstream 127.0.0.1:8080
//! target/release/examples/bare_pingora --write-test-cert /tmp/tls   # cert.pem, key.pem
//! target/release/examples/bare_pingora --listen 127.0.0.1:8443 --upstream 127.0.0.1:8080 \
//!     --tls-cert /tmp/tls/cert.pem --tls-key /tmp/tls/key.pem
//! ```

// A benchmark tool: a setup failure ends it with the reason.
#![allow(clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;

use async_trait::async_trait;
use clap::Parser;
use pingora::http::RequestHeader;
use pingora::listeners::tls::TlsSettings;
use pingora::proxy::{http_proxy_service, ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::upstreams::peer::HttpPeer;

// Same allocator as the wpgate binary, so the floor is measured on equal terms.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(about = "Minimal Pingora reverse proxy (benchmark baseline)")]
struct Args {
    /// Address to listen on, e.g. 127.0.0.1:8081
    #[arg(long, required_unless_present = "write_test_cert")]
    listen: Option<SocketAddr>,
    /// Plain-HTTP upstream address, e.g. 127.0.0.1:8080
    #[arg(long, required_unless_present = "write_test_cert")]
    upstream: Option<SocketAddr>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Run with the Pingora settings wpgate runs with (`src/serve.rs`, `src/proxy/mod.rs`):
    /// no downstream modules (Pingora's default adds a response compression module,
    /// off), and with one thread (this proxy's) no work stealing. Without it, Pingora's
    /// defaults: the floor wpgate is held to.
    #[arg(long)]
    like_wpgate: bool,
    /// Write a self-signed ECDSA P-256 certificate for localhost and 127.0.0.1
    /// (DIR/cert.pem, DIR/key.pem) for the load script's HTTPS targets, then exit.
    #[arg(long, value_name = "DIR")]
    write_test_cert: Option<PathBuf>,
}

fn write_test_cert(dir: &std::path::Path) {
    let key = rcgen::KeyPair::generate().expect("key");
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("params");
    let cert = params.self_signed(&key).expect("certificate");
    std::fs::create_dir_all(dir).expect("directory");
    std::fs::write(dir.join("cert.pem"), cert.pem()).expect("cert.pem");
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("key.pem");
}

struct BareProxy {
    upstream: SocketAddr,
    like_wpgate: bool,
}

#[async_trait]
impl ProxyHttp for BareProxy {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    fn init_downstream_modules(&self, modules: &mut pingora::modules::http::HttpModules) {
        if !self.like_wpgate {
            modules.add_module(
                pingora::modules::http::compression::ResponseCompressionBuilder::enable(0),
            );
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut Self::CTX,
    ) -> pingora::Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        _ctx: &mut Self::CTX,
    ) -> pingora::Result<()> {
        upstream_request.insert_header("X-Bench", "1")
    }
}

fn main() {
    let args = Args::parse();
    if let Some(dir) = &args.write_test_cert {
        write_test_cert(dir);
        return;
    }
    let (Some(listen), Some(upstream)) = (args.listen, args.upstream) else {
        unreachable!("clap requires --listen and --upstream");
    };

    // Per-instance pid/upgrade paths so several proxies (or a real wpgate) can run
    // side by side; no grace period so SIGTERM from the script stops it at once.
    let tag = format!("{}-{}", listen.port(), std::process::id());
    let conf = ServerConf {
        threads: 1,
        pid_file: format!("/tmp/bare_pingora-{tag}.pid"),
        upgrade_sock: format!("/tmp/bare_pingora-{tag}.sock"),
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(0),
        work_stealing: !args.like_wpgate,
        ..Default::default()
    };

    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let mut proxy = http_proxy_service(
        &server.configuration,
        BareProxy {
            upstream,
            like_wpgate: args.like_wpgate,
        },
    );
    match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let mut tls =
                TlsSettings::intermediate(&cert.to_string_lossy(), &key.to_string_lossy())
                    .expect("TLS settings");
            tls.enable_h2();
            proxy.add_tls_with_settings(&listen.to_string(), None, tls);
        }
        _ => proxy.add_tcp(&listen.to_string()),
    }
    server.add_service(proxy);

    server.run_forever();
}
