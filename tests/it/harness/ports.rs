//! Loopback ports: picking a free one, and telling when a listener answers HTTP.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// A free TCP port on loopback for a process this test starts (or a closed port).
///
/// Not a port the kernel picks for `bind(0)`: those come from the ephemeral range, the
/// same range every outgoing connection of the suite (HTTP clients, PostgreSQL pools)
/// takes its local port from, so between the pick and the child's bind an unrelated
/// connection could take it ("Address already in use"). The ports here lie below the
/// ephemeral range, handed out once each per test process by a counter (the test
/// processes of one run start at different places), and are checked free with a bind.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static RANGE: OnceLock<Option<(u16, u16)>> = OnceLock::new();
    let Some((low, high)) = *RANGE.get_or_init(below_ephemeral) else {
        return kernel_port();
    };
    let span = u32::from(high - low);
    let start = std::process::id().wrapping_mul(7919) % span;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < span, "no free loopback port left in {low}..{high}");
        let port = low + ((start + n) % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The ports from 10000 up to the start of the kernel's ephemeral range, when there are
/// at least 2,000 of them (Linux's default range starts at 32768).
fn below_ephemeral() -> Option<(u16, u16)> {
    const LOW: u16 = 10_000;
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let first: u16 = range.split_whitespace().next()?.parse().ok()?;
    (first >= LOW + 2_000).then_some((LOW, first))
}

/// Elsewhere: a port the kernel picks (bind to port 0, read it, release it).
fn kernel_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
