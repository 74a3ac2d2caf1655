//! Bare Pingora 0.9 reverse proxy: the framework's floor for `benches/load.sh`.
//!
//! Forwards every request to one plain-HTTP upstream and sets one fixed request
//! header, nothing else, so the difference to wpgate in the same run is what
//! wpgate itself adds (auth, credential injection, logging, metrics).
//!
//! ```text
//! cargo build --release --example bare_pingora
//! target/release/examples/bare_pingora --listen 127.0.0.1:8081 --upstream 127.0.0.1:8080
//! ```

use std::net::SocketAddr;

use async_trait::async_trait;
use clap::Parser;
use pingora::http::RequestHeader;
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
    #[arg(long)]
    listen: SocketAddr,
    /// Plain-HTTP upstream address, e.g. 127.0.0.1:8080
    #[arg(long)]
    upstream: SocketAddr,
}

struct BareProxy {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for BareProxy {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

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

    // Per-instance pid/upgrade paths so several proxies (or a real wpgate) can run
    // side by side; no grace period so SIGTERM from the script stops it at once.
    let tag = format!("{}-{}", args.listen.port(), std::process::id());
    let conf = ServerConf {
        threads: 1,
        pid_file: format!("/tmp/bare_pingora-{tag}.pid"),
        upgrade_sock: format!("/tmp/bare_pingora-{tag}.sock"),
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(0),
        ..Default::default()
    };

    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let mut proxy = http_proxy_service(
        &server.configuration,
        BareProxy {
            upstream: args.upstream,
        },
    );
    proxy.add_tcp(&args.listen.to_string());
    server.add_service(proxy);

    server.run_forever();
}
