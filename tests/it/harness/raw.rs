//! Requests written byte for byte on a TCP connection: HTTP clients normalise `..` and
//! `%2e` segments and refuse odd methods or targets, so hostile requests are sent raw.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::answer::Answer;
use super::gateway::Gateway;

impl Gateway {
    /// Sends `<method> <target> HTTP/1.1` with `headers`, `Host` (the gateway's unless
    /// given) and `Connection: close`, exactly as given, and reads the whole answer.
    pub async fn raw(&self, method: &str, target: &[u8], headers: &[(&str, &str)]) -> Answer {
        let addr = self.proxy_addr;
        let mut request = Vec::new();
        request.extend_from_slice(method.as_bytes());
        request.push(b' ');
        request.extend_from_slice(target);
        request.extend_from_slice(b" HTTP/1.1\r\n");
        if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
            request.extend_from_slice(format!("Host: {addr}\r\n").as_bytes());
        }
        for (name, value) in headers {
            request.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        request.extend_from_slice(b"Connection: close\r\n\r\n");
        tokio::task::spawn_blocking(move || {
            let mut conn = TcpStream::connect(addr).unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            conn.write_all(&request).unwrap();
            let mut response = Vec::new();
            // The gateway closes the connection after the answer (Connection: close).
            let _ = conn.read_to_end(&mut response);
            parse(&response)
        })
        .await
        .unwrap()
    }
}

/// An HTTP/1.1 response: status line, headers, and a body by `Content-Length`, chunked,
/// or up to the end of the connection.
fn parse(response: &[u8]) -> Answer {
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| {
            panic!(
                "no complete response: {:?}",
                String::from_utf8_lossy(response)
            )
        });
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let mut body = &response[split + 4..];
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    let mut headers = HeaderMap::new();
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            headers.append(
                HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
                HeaderValue::from_str(value.trim()).unwrap(),
            );
        }
    }
    let mut decoded = Vec::new();
    if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"))
    {
        while let Some(end) = body.windows(2).position(|w| w == b"\r\n") {
            let size_text = String::from_utf8_lossy(&body[..end]);
            let size =
                usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
            if size == 0 {
                break;
            }
            decoded.extend_from_slice(&body[end + 2..end + 2 + size]);
            body = &body[end + 2 + size + 2..];
        }
    } else if let Some(len) = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        decoded.extend_from_slice(&body[..len.min(body.len())]);
    } else {
        decoded.extend_from_slice(body);
    }
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&decoded).into_owned(),
    }
}
