//! One structured access-log line and the request metrics for every request.

use super::ctx::RequestCtx;
use crate::error::ErrorCode;
use crate::metrics::{Metrics, UNKNOWN_SITE};
use pingora::proxy::Session;
use std::time::Instant;

/// Metrics for one finished request.
fn record_metrics(m: &Metrics, status: u16, ctx: &RequestCtx, end: Instant) {
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
                .map_or(UNKNOWN_SITE, |s| m.site_label(&s.id));
            m.auth_failures.with_label_values(&[site, r.reason]).inc();
        }
    }
}

/// One structured line and the metrics per request. Never a header value, never the
/// query string.
pub fn access_log(
    metrics: &Metrics,
    session: &Session,
    e: Option<&pingora::Error>,
    ctx: &RequestCtx,
) {
    let req = session.req_header();
    let status = session.response_written().map_or(0, |r| r.status.as_u16());
    // One clock read for the metrics and the log line.
    let end = Instant::now();
    record_metrics(metrics, status, ctx, end);
    let duration_ms = end.saturating_duration_since(ctx.started).as_secs_f64() * 1000.0;
    let reason = ctx.rejection.map_or("-", |r| r.reason);
    let code = ctx.rejection.map_or("-", |r| r.code.as_str());
    let principal = ctx.admitted.as_ref().map_or("-", |a| a.principal.log_id());
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
