//! What the gateway answers itself: a rejection, or the error for a request the
//! upstream could not serve.

use super::ctx::{Rejection, RequestCtx};
use super::{cors, legacy, request_id};
use crate::config::LegacySite;
use crate::error::{error_body, ErrorCode};
use pingora::http::ResponseHeader;
use pingora::proxy::{FailToProxy, Session};
use pingora::{ErrorSource, ErrorType};

/// Writes the JSON rejection for `code`, readable by a browser app from `cors_origin`
/// (see `cors.rs`) when one is given, marked deprecated for a request legacy
/// single-site mode routed (`legacy`).
pub async fn reject(
    session: &mut Session,
    code: ErrorCode,
    request_id: &http::HeaderValue,
    retry_after: Option<u64>,
    cors_origin: Option<&http::HeaderValue>,
    legacy: Option<&LegacySite>,
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
    if let Some(methods) = code.allow() {
        resp.insert_header("allow", methods)?;
    }
    if let Some(secs) = retry_after {
        resp.insert_header("retry-after", secs.to_string())?;
    }
    if let Some(origin) = cors_origin {
        cors::allow_response(&mut resp, origin)?;
    }
    if let Some(legacy) = legacy {
        legacy::mark_deprecated(&mut resp, legacy)?;
    }
    // The client may still be sending a body we will not read: do not reuse the connection.
    session.set_keepalive(None);
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await
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
        _ if client_went_away(e) => return None,
        (ErrorSource::Downstream, _) => (ErrorCode::MalformedRequest, "bad_request"),
        _ => (ErrorCode::Internal, "internal"),
    };
    Some(Rejection::new(r.0, r.1))
}

/// A client that went away (closed the connection, or it broke) before the answer was
/// complete: nobody to answer, and nothing wrong with the gateway.
pub fn client_went_away(e: &pingora::Error) -> bool {
    matches!(
        (e.esource(), e.etype()),
        (
            ErrorSource::Downstream,
            ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError
        )
    )
}

/// Whether Pingora's own `error!` line for a failed request is dropped: a client that
/// went away is an everyday event (every load test ends with some), logged here at
/// debug; the access line still records it (`error`).
pub fn quiet_error_log(e: &pingora::Error, ctx: &RequestCtx) -> bool {
    if !client_went_away(e) {
        return false;
    }
    tracing::debug!(
        request_id = ctx.request_id_text(),
        error = %e,
        "the client went away before the answer was complete"
    );
    true
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
    ctx.set_rejection(rejection);
    // Once the upstream's header is on its way there is no error to send, only a cut.
    if session.response_written().is_none() {
        let cors = ctx.cors_origin();
        let legacy = ctx.legacy_site();
        if let Err(err) = reject(session, rejection.code, &ctx.request_id, None, cors, legacy).await
        {
            tracing::debug!(error = %err, "could not send the error response");
        }
    }
    FailToProxy {
        error_code: rejection.code.status(),
        can_reuse_downstream: false,
    }
}
