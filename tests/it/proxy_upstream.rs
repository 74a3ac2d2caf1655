//! What the gateway does with the request on its way to the upstream and back:
//! request ids, X-Forwarded-*, path prefixes, upstream failures, streaming bodies.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use crate::harness::{
    free_port, hex, is_sane_request_id, marker, pattern_sha256, pattern_stream, Gateway,
    GatewayConfig, OneSite, SiteAuth, Upstream, KEY_HEADER, SITE_HEADER,
};

/// Site `blog` (no upstream credential) in front of `<upstream><upstream_suffix>`.
fn setup_with(config: GatewayConfig, upstream_suffix: &str) -> OneSite {
    OneSite::start_with(config, "blog", upstream_suffix, &SiteAuth::None)
}

fn setup() -> OneSite {
    setup_with(GatewayConfig::default(), "")
}

const FIFTY_MB: u64 = 50 * 1024 * 1024;

#[tokio::test]
async fn sane_request_id_is_kept_forwarded_and_returned() {
    let s = setup();
    for rid in ["abc-123", "A.b_c:d-E", &"x".repeat(128)] {
        let m = marker();
        let a =
            s.gw.send(
                s.authed(reqwest::Method::GET, &format!("/wp-json/?{m}"))
                    .header("X-Request-ID", rid),
            )
            .await;
        a.assert_ok();
        assert_eq!(a.request_id(), Some(rid), "{a:?}");
        let r = s.up.one_with(&m);
        assert_eq!(r.header_values("x-request-id"), vec![rid], "{r:#?}");
    }
}

#[tokio::test]
async fn request_id_is_minted_when_missing_or_insane() {
    let s = setup();
    let too_long = "y".repeat(129);
    let mut seen = Vec::new();
    for sent in [
        None,
        Some("has space"),
        Some("<script>"),
        Some(too_long.as_str()),
        Some(""),
    ] {
        let m = marker();
        let mut req = s.authed(reqwest::Method::GET, &format!("/wp-json/?{m}"));
        if let Some(v) = sent {
            req = req.header("X-Request-ID", v);
        }
        let a = s.gw.send(req).await;
        a.assert_ok();
        let minted = a
            .request_id()
            .unwrap_or_else(|| panic!("no X-Request-ID returned for {sent:?}"))
            .to_owned();
        assert!(
            is_sane_request_id(&minted),
            "minted id {minted:?} is not sane"
        );
        assert_ne!(Some(minted.as_str()), sent, "insane id {sent:?} was kept");
        let r = s.up.one_with(&m);
        assert_eq!(
            r.header_values("x-request-id"),
            vec![minted.as_str()],
            "upstream must get the id the client got back: {r:#?}"
        );
        seen.push(minted);
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "minted ids repeat: {seen:?}");
}

#[tokio::test]
async fn request_id_is_returned_on_errors() {
    let s = setup();
    // Kept on a 400 ...
    let a =
        s.gw.send(s.gw.get("/wp-json/").header("X-Request-ID", "err-400-kept"))
            .await;
    a.assert_error(400, "request.missing_site_id");
    assert_eq!(a.request_id(), Some("err-400-kept"));
    // ... and on a 401 ...
    let a =
        s.gw.send(
            s.gw.get("/wp-json/")
                .header(SITE_HEADER, "blog")
                .header(KEY_HEADER, s.key.with_wrong_secret())
                .header("X-Request-ID", "err-401-kept"),
        )
        .await;
    a.assert_error(401, "auth.invalid_credentials");
    assert_eq!(a.request_id(), Some("err-401-kept"));
    // ... and minted when absent (assert_error checks header == body).
    let a = s.gw.send(s.gw.get("/wp-json/")).await;
    a.assert_error(400, "request.missing_site_id");
    assert!(is_sane_request_id(a.request_id().unwrap()));
}

#[tokio::test]
async fn forwarded_headers_and_host_are_set() {
    let s = setup();
    let m = marker();
    let r = s
        .get_recorded(&format!("/wp-json/wp/v2/posts?per_page=2&{m}"), &m)
        .await;
    assert_eq!(r.uri, format!("/wp-json/wp/v2/posts?per_page=2&{m}"));
    assert_eq!(
        r.header_values("x-forwarded-for"),
        vec!["127.0.0.1"],
        "{r:#?}"
    );
    assert_eq!(r.header_values("x-forwarded-proto"), vec!["http"], "{r:#?}");
    let client_host = s.gw.proxy_addr.to_string();
    assert_eq!(
        r.header_values("x-forwarded-host"),
        vec![client_host.as_str()],
        "{r:#?}"
    );
    let upstream_host = format!("127.0.0.1:{}", s.up.port());
    assert_eq!(
        r.header_values("host"),
        vec![upstream_host.as_str()],
        "{r:#?}"
    );
}

#[tokio::test]
async fn upstream_path_prefix_is_prepended() {
    let s = setup_with(GatewayConfig::default(), "/blog");
    let m = marker();
    let r = s
        .get_recorded(&format!("/wp-json/wp/v2/posts?per_page=2&{m}"), &m)
        .await;
    assert_eq!(r.uri, format!("/blog/wp-json/wp/v2/posts?per_page=2&{m}"));
}

#[tokio::test]
async fn methods_bodies_and_upstream_statuses_pass_through() {
    let s = setup();
    let body = br#"{"title":"Hello","status":"draft"}"#;
    for method in [
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::PATCH,
    ] {
        let m = marker();
        let a =
            s.gw.send(
                s.authed(method.clone(), &format!("/wp-json/wp/v2/posts/7?{m}"))
                    .header("content-type", "application/json")
                    .body(body.to_vec()),
            )
            .await;
        a.assert_ok();
        let r = s.up.one_with(&m);
        assert_eq!(r.method, method.as_str());
        assert_eq!(r.body_len, body.len() as u64);
        assert_eq!(r.body_sha256, crate::harness::sha256_hex(body));
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    let m = marker();
    s.gw.send(s.authed(
        reqwest::Method::DELETE,
        &format!("/wp-json/wp/v2/posts/7?{m}"),
    ))
    .await
    .assert_ok();
    assert_eq!(s.up.one_with(&m).method, "DELETE");

    // An upstream's own error is the upstream's answer, not a gateway error.
    let a =
        s.gw.send(s.authed(reqwest::Method::GET, "/wp-json/status/404"))
            .await;
    assert_eq!(a.status, 404, "{}", a.summary());
    assert_eq!(a.json().unwrap()["code"], "from_upstream");
    assert!(a.request_id().is_some());
}

#[tokio::test]
async fn upstream_down_is_502() {
    let up_port = free_port(); // nothing listens there
    let gw = Gateway::start();
    gw.add_site(
        "down",
        &format!("http://127.0.0.1:{up_port}"),
        &SiteAuth::None,
    );
    let key = gw.issue_key("down", &[]);
    let a = gw.get_as("down", &key.full, "/wp-json/").await;
    a.assert_error(502, "upstream.unreachable");
}

#[tokio::test]
async fn slow_upstream_is_504() {
    let s = setup_with(
        GatewayConfig {
            read_timeout: "1s".into(),
            ..GatewayConfig::default()
        },
        "",
    );
    let started = Instant::now();
    let a =
        s.gw.send(s.authed(reqwest::Method::GET, "/wp-json/slow"))
            .await;
    let took = started.elapsed();
    a.assert_error(504, "upstream.timeout");
    assert!(
        took < Upstream::SLOW - Duration::from_millis(500),
        "504 came after {took:?}: read_timeout = 1s was not applied"
    );
    assert_eq!(s.up.requests_with("/slow").len(), 1);
}

#[tokio::test]
async fn fifty_megabyte_upload_streams_through_intact() {
    let s = setup();
    let seed = 7;
    // Hash the expected payload while it streams (sha256 is slow in debug builds).
    let expected = tokio::task::spawn_blocking(move || pattern_sha256(FIFTY_MB, seed));
    let m = marker();
    let a =
        s.gw.send(
            s.authed(reqwest::Method::POST, &format!("/wp-json/wp/v2/media?{m}"))
                .header("content-type", "application/octet-stream")
                .header("content-length", FIFTY_MB.to_string())
                .body(reqwest::Body::wrap_stream(pattern_stream(FIFTY_MB, seed))),
        )
        .await;
    a.assert_ok();
    let r = s.up.one_with(&m);
    assert_eq!(r.body_len, FIFTY_MB);
    assert_eq!(r.body_sha256, expected.await.unwrap());
}

#[tokio::test]
async fn chunked_upload_streams_through_intact() {
    let s = setup();
    let len = 5 * 1024 * 1024 + 123;
    let seed = 11;
    let m = marker();
    // No Content-Length: the client sends Transfer-Encoding: chunked.
    let a =
        s.gw.send(
            s.authed(reqwest::Method::PUT, &format!("/wp-json/wp/v2/media/9?{m}"))
                .body(reqwest::Body::wrap_stream(pattern_stream(len, seed))),
        )
        .await;
    a.assert_ok();
    let r = s.up.one_with(&m);
    assert_eq!(r.body_len, len);
    assert_eq!(r.body_sha256, pattern_sha256(len, seed));
}

#[tokio::test]
async fn fifty_megabyte_download_streams_through_intact() {
    let s = setup();
    let expected = tokio::task::spawn_blocking(|| pattern_sha256(FIFTY_MB, FIFTY_MB));
    let resp = s
        .authed(
            reqwest::Method::GET,
            &format!("/wp-json/download/{FIFTY_MB}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("x-request-id").is_some());
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        len += chunk.len() as u64;
        hasher.update(&chunk);
    }
    assert_eq!(len, FIFTY_MB);
    assert_eq!(hex(&hasher.finalize()), expected.await.unwrap());
}

#[tokio::test]
async fn response_body_is_streamed_not_buffered() {
    let s = setup();
    let started = Instant::now();
    let resp = s
        .authed(reqwest::Method::GET, "/wp-json/trickle")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    let first_at = started.elapsed();
    assert!(first.starts_with(b"first"), "{first:?}");
    assert!(
        first_at < Upstream::SLOW - Duration::from_secs(2),
        "the first bytes took {first_at:?}: the response was buffered"
    );
    let mut rest = first.to_vec();
    while let Some(chunk) = stream.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(rest, b"first\nlast\n");
}

#[tokio::test]
async fn request_body_is_streamed_not_buffered() {
    let s = setup();
    let m = marker();
    let seen = s.up.first_bytes_seen();
    let needle = m.clone();
    let chunk = bytes::Bytes::from(vec![b'a'; 64 * 1024]);
    // Send one chunk, then hold the rest back until the upstream has that chunk: a
    // gateway that buffers the whole body before forwarding never gets there.
    let body = futures_util::stream::unfold(0u8, move |step| {
        let seen = seen.clone();
        let needle = needle.clone();
        let chunk = chunk.clone();
        async move {
            match step {
                0 => Some((Ok::<_, std::io::Error>(chunk), 1)),
                1 => {
                    let deadline = Instant::now() + Duration::from_secs(10);
                    while !seen.lock().unwrap().iter().any(|u| u.contains(&needle)) {
                        if Instant::now() >= deadline {
                            let err = std::io::Error::other("upstream never saw the first chunk");
                            return Some((Err(err), 2));
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Some((Ok(chunk), 2))
                }
                _ => None,
            }
        }
    });
    let resp = s
        .authed(reqwest::Method::POST, &format!("/wp-json/wp/v2/media?{m}"))
        .header("content-length", (128 * 1024).to_string())
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await;
    let resp = resp.unwrap_or_else(|e| panic!("upload failed (request body buffered?): {e:?}"));
    assert_eq!(resp.status(), 200);
    assert_eq!(s.up.one_with(&m).body_len, 128 * 1024);
}
