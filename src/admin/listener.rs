//! The admin listener's connections: HTTP/1.1 served by hyper with a timer, so that a
//! client that never finishes its request headers is cut off after
//! `admin.header_read_timeout`, and so is an idle keep-alive connection (hyper starts
//! the same timer when a connection waits for its next request). Each request carries
//! the peer's address (`ConnectInfo<SocketAddr>`): the client of the failure limit.
//!
//! (`axum::serve` sets no timer: a client could hold a connection open forever by
//! sending its headers one byte at a time, or none at all.)

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tower::ServiceExt;

/// How long connections still open at shutdown get to finish their request.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown` completes; then stops accepting, lets
/// each connection finish the request it is in (at most [`DRAIN`]) and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
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
                    let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
                    let mut closing = closing.clone();
                    connections.spawn(async move {
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
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let router = Router::new().route("/peer", get(peer_text));
        tokio::spawn(serve(
            listener,
            router,
            Duration::from_millis(300),
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
}
