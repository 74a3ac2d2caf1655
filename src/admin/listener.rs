//! The admin listener's connections: HTTP/1.1 served by hyper with a timer, so that a
//! client that never finishes its request headers is cut off after
//! `admin.header_read_timeout`, and so is an idle keep-alive connection (hyper starts
//! the same timer when a connection waits for its next request). Each request carries
//! the peer's address (`ConnectInfo<SocketAddr>`): the client of the failure limit.
//! With TLS (`listen.admin_tls`), the handshake has to finish within the same timeout.
//!
//! (`axum::serve` sets no timer: a client could hold a connection open forever by
//! sending its headers one byte at a time, or none at all.)

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tower::ServiceExt;

/// A connection's byte stream: plain TCP or TLS over it.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// How long connections still open at shutdown get to finish their request.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` (over TLS with `tls`) until `shutdown` completes; then
/// stops accepting, lets each connection finish the request it is in (at most
/// [`DRAIN`]) and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_read_timeout: Duration,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let http = Arc::new(http);
    let (closing_tx, closing) = tokio::sync::watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let service = router.clone().map_request(move |mut req: http::Request<Incoming>| {
                        req.extensions_mut().insert(ConnectInfo(peer));
                        req
                    });
                    let (http, tls, mut closing) = (Arc::clone(&http), tls.clone(), closing.clone());
                    connections.spawn(async move {
                        let io: Box<dyn Io> = match tls {
                            None => Box::new(stream),
                            Some(tls) => {
                                let handshake = tokio::time::timeout(header_read_timeout, tls.accept(stream));
                                let done = tokio::select! {
                                    done = handshake => done,
                                    () = async { let _ = closing.wait_for(|c| *c).await; } => return,
                                };
                                match done {
                                    Ok(Ok(stream)) => Box::new(stream),
                                    Ok(Err(e)) => {
                                        tracing::debug!(target: "wpgate::admin", peer = %peer, error = %e, "admin TLS handshake failed");
                                        return;
                                    }
                                    Err(_) => {
                                        tracing::debug!(target: "wpgate::admin", peer = %peer, "admin TLS handshake timed out");
                                        return;
                                    }
                                }
                            }
                        };
                        let conn = http.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
                        tokio::pin!(conn);
                        let result = tokio::select! {
                            r = conn.as_mut() => r,
                            () = async { let _ = closing.wait_for(|c| *c).await; } => {
                                conn.as_mut().graceful_shutdown();
                                conn.await
                            }
                        };
                        if let Err(e) = result {
                            // A header read timeout, a client gone mid-request...
                            tracing::debug!(target: "wpgate::admin", peer = %peer, error = %e, "admin connection ended");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors, typically: let some connections end.
                    tracing::warn!(target: "wpgate::admin", error = %e, "admin listener cannot accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next() => {}
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = closing_tx.send(true);
    let drained = tokio::time::timeout(DRAIN, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(target: "wpgate::admin", "admin connections still open at shutdown were closed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn peer_text(ConnectInfo(peer): ConnectInfo<SocketAddr>) -> String {
        peer.ip().to_string()
    }

    /// A listener with a 300 ms header timeout; stops when the sender is dropped.
    async fn start() -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        start_with(None).await
    }

    async fn start_with(
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let router = Router::new().route("/peer", get(peer_text));
        tokio::spawn(serve(
            listener,
            router,
            Duration::from_millis(300),
            tls,
            async move {
                let _ = stopped.await;
            },
        ));
        (addr, stop)
    }

    /// Reads until the server closes the connection (or 10 s pass: a failure).
    async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
        let mut got = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
        assert!(read.is_ok(), "the connection was not closed; got {got:?}");
        got
    }

    #[tokio::test]
    async fn requests_carry_the_peer_address() {
        let (addr, _stop) = start().await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let got = String::from_utf8(read_to_close(&mut s).await).unwrap();
        assert!(got.starts_with("HTTP/1.1 200"), "{got}");
        assert!(got.ends_with("127.0.0.1"), "{got}");
    }

    #[tokio::test]
    async fn half_sent_headers_and_idle_connections_are_cut_off() {
        let (addr, _stop) = start().await;
        // Half a request, then nothing: closed without an answer.
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        assert!(read_to_close(&mut slow).await.is_empty());
        // A connection that never sends a byte.
        let mut silent = TcpStream::connect(addr).await.unwrap();
        assert!(read_to_close(&mut silent).await.is_empty());
        // A kept-alive connection, idle after its answer.
        let mut idle = TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let got = String::from_utf8(read_to_close(&mut idle).await).unwrap();
        assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    }

    #[tokio::test]
    async fn shutdown_stops_accepting() {
        let (addr, stop) = start().await;
        drop(stop);
        for _ in 0..250 {
            if TcpStream::connect(addr).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{addr} still accepts connections after shutdown");
    }

    /// The listener over TLS with a self-signed certificate for `localhost`, and a
    /// client that trusts it.
    async fn start_tls() -> (
        SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio_rustls::TlsConnector,
    ) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let files = crate::config::model::CertFiles {
            cert: dir.path().join("c.pem"),
            key: dir.path().join("k.pem"),
            cert_setting: "tls.cert_file",
            key_setting: "tls.key_file",
        };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        let loaded = crate::tls::load(&files, crate::time::now_unix()).unwrap();
        let resolver = crate::tls::CertResolver::new(Arc::new(loaded));
        let (addr, stop) = start_with(Some(crate::tls::admin_acceptor(resolver).unwrap())).await;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        let mut client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        client.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        (
            addr,
            stop,
            tokio_rustls::TlsConnector::from(Arc::new(client)),
        )
    }

    #[tokio::test]
    async fn over_tls_requests_are_served_and_unfinished_handshakes_cut_off() {
        let (addr, _stop, connector) = start_tls().await;
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        // The admin API speaks HTTP/1.1 only, and says so.
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        tls.write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        let _ = tls.read_to_end(&mut got).await;
        let got = String::from_utf8(got).unwrap();
        assert!(got.starts_with("HTTP/1.1 200"), "{got}");
        assert!(got.ends_with("127.0.0.1"), "{got}");

        // No ClientHello at all: closed after the header timeout.
        let mut silent = TcpStream::connect(addr).await.unwrap();
        assert!(read_to_close(&mut silent).await.is_empty());
        // Plain HTTP on the TLS port: no HTTP answer.
        let mut plain = TcpStream::connect(addr).await.unwrap();
        plain
            .write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let got = read_to_close(&mut plain).await;
        assert!(!got.starts_with(b"HTTP/"), "{got:?}");
    }
}
