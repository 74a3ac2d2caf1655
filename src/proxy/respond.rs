//! What the gateway itself sends: rejections, upstream failures, the upstream peer, and
//! the one access-log line per request.

use super::ctx::{Rejection, RequestCtx};
use super::request_id;
use crate::error::{error_body, ErrorCode};
use pingora::http::ResponseHeader;
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, Session};
use pingora::{ErrorSource, ErrorType};
use std::time::Instant;

/// Writes the JSON rejection for `code`.
pub async fn reject(
    session: &mut Session,
    code: ErrorCode,
    request_id: &http::HeaderValue,
    retry_after: Option<u64>,
) -> pingora::Result<()> {
    let body = error_body(code, request_id::text(request_id));
    let mut resp = ResponseHeader::build(code.status(), Some(6))?;
    resp.insert_header("content-type", "application/json")?;
    resp.insert_header("content-length", body.len().to_string())?;
    resp.insert_header("cache-control", "no-store")?;
    resp.insert_header(request_id::HEADER, request_id.clone())?;
    if let Some(challenge) = code.www_authenticate() {
        resp.insert_header("www-authenticate", challenge)?;
    }
    if let Some(secs) = retry_after {
        resp.insert_header("retry-after", secs.to_string())?;
    }
    // The client may still be sending a body we will not read: do not reuse the connection.
    session.set_keepalive(None);
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await
}

/// The upstream connection for the admitted site.
pub fn peer(ctx: &mut RequestCtx) -> pingora::Result<Box<HttpPeer>> {
    let Some(site) = ctx.site.as_ref().filter(|_| ctx.admitted) else {
        return Err(pingora::Error::explain(
            ErrorType::InternalError,
            "no site admitted",
        ));
    };
    let Some(addr) = site.addr else {
        return Err(pingora::Error::explain(
            ErrorType::ConnectNoRoute,
            "upstream host did not resolve",
        ));
    };
    // The name is the TLS SNI; a plain-HTTP peer needs none (the Host header is set per
    // request), which also lets sites on one address share idle connections.
    let sni = if site.upstream.tls {
        site.upstream.host.clone()
    } else {
        String::new()
    };
    let mut peer = HttpPeer::new(addr, site.upstream.tls, sni);
    let up = &ctx.config.live.upstream;
    peer.options.connection_timeout = Some(up.connect_timeout);
    peer.options.total_connection_timeout = Some(up.connect_timeout);
    peer.options.read_timeout = Some(up.read_timeout);
    peer.options.write_timeout = Some(up.read_timeout);
    Ok(Box::new(peer))
}

/// Maps a proxy error to what the client hears.
fn classify(e: &pingora::Error) -> Option<Rejection> {
    use ErrorType::*;
    let r = match (e.esource(), e.etype()) {
        (_, ConnectTimedout | TLSHandshakeTimedout) => {
            (ErrorCode::UpstreamTimeout, "connect_timeout")
        }
        (ErrorSource::Upstream, ReadTimedout | WriteTimedout) => {
            (ErrorCode::UpstreamTimeout, "read_timeout")
        }
        (_, ConnectRefused) => (ErrorCode::UpstreamUnreachable, "connect_refused"),
        (_, ConnectNoRoute) => (ErrorCode::UpstreamUnreachable, "no_route"),
        (_, TLSHandshakeFailure | InvalidCert | HandshakeError | TLSWantX509Lookup) => {
            (ErrorCode::UpstreamUnreachable, "tls_failed")
        }
        (_, ConnectError | SocketError | ConnectProxyFailure) => {
            (ErrorCode::UpstreamUnreachable, "connect_failed")
        }
        (ErrorSource::Upstream, _) => (ErrorCode::UpstreamError, "upstream_error"),
        // The client went away or sent something unusable: nobody to answer, or a 400.
        (ErrorSource::Downstream, ReadError | WriteError | ConnectionClosed) => return None,
        (ErrorSource::Downstream, _) => (ErrorCode::MalformedRequest, "bad_request"),
        _ => (ErrorCode::Internal, "internal"),
    };
    Some(Rejection::new(r.0, r.1))
}

pub async fn failure(
    session: &mut Session,
    e: &pingora::Error,
    ctx: &mut RequestCtx,
) -> FailToProxy {
    let Some(rejection) = classify(e) else {
        return FailToProxy {
            error_code: 0,
            can_reuse_downstream: false,
        };
    };
    if ctx.request_id.is_empty() {
        ctx.request_id = request_id::take_or_mint_value(&session.req_header().headers);
    }
    ctx.rejection = Some(rejection);
    // Once the upstream's header is on its way there is no error to send, only a cut.
    if session.response_written().is_none() {
        if let Err(err) = reject(session, rejection.code, &ctx.request_id, None).await {
            tracing::debug!(error = %err, "could not send the error response");
        }
    }
    FailToProxy {
        error_code: rejection.code.status(),
        can_reuse_downstream: false,
    }
}

/// Metrics for one finished request.
fn record_metrics(status: u16, ctx: &RequestCtx, end: Instant) {
    let Some(m) = crate::metrics::get() else {
        return;
    };
    // Only a site found in the store becomes a label value.
    m.count_request(
        ctx.site.as_ref().map(|s| (s.id.as_str(), &s.counters)),
        status,
    );
    m.request_duration
        .observe(end.saturating_duration_since(ctx.started).as_secs_f64());
    if let Some(t) = ctx.upstream_started {
        m.upstream_duration
            .observe(end.saturating_duration_since(t).as_secs_f64());
    }
    if let Some(r) = ctx.rejection {
        let auth = matches!(r.code.status(), 401 | 403 | 429)
            || matches!(
                r.code,
                ErrorCode::JwksUnavailable | ErrorCode::VerifierUnavailable
            );
        if auth {
            let site = ctx
                .site
                .as_ref()
                .map_or(crate::metrics::UNKNOWN_SITE, |s| m.site_label(&s.id));
            m.auth_failures.with_label_values(&[site, r.reason]).inc();
        }
    }
}

/// One structured line and the metrics per request. Never a header value, never the
/// query string.
pub fn access_log(session: &Session, e: Option<&pingora::Error>, ctx: &RequestCtx) {
    let req = session.req_header();
    let status = session.response_written().map_or(0, |r| r.status.as_u16());
    // One clock read for the metrics and the log line.
    let end = Instant::now();
    record_metrics(status, ctx, end);
    let duration_ms = end.saturating_duration_since(ctx.started).as_secs_f64() * 1000.0;
    let reason = ctx.rejection.map_or("-", |r| r.reason);
    let code = ctx.rejection.map_or("-", |r| r.code.as_str());
    let principal = ctx.principal.as_ref().map_or("-", |p| p.log_id());
    let site = ctx.site_id().unwrap_or("-");
    let error = e.map(|e| e.etype().as_str());
    tracing::info!(
        target: "wpgate::access",
        request_id = ctx.request_id_text(),
        site,
        principal,
        client = ctx.client_ip.map(tracing::field::display),
        method = %req.method,
        path = req.uri.path(),
        status,
        code,
        reason,
        error,
        duration_ms,
        "request"
    );
}
