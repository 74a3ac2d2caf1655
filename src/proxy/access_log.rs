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
    if let Some(r) = ctx.rejection() {
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
            m.recent_auth_failures.add(r.reason);
        }
    }
}

/// Milliseconds rounded to the microsecond, e.g. `0.117` (not `0.11655800000000001`):
/// a whole number of microseconds over 1000 prints as its shortest decimal.
fn millis(d: std::time::Duration) -> f64 {
    let micros = u64::try_from(d.as_nanos().saturating_add(500) / 1000).unwrap_or(u64::MAX);
    micros as f64 / 1000.0
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
    let duration_ms = millis(end.saturating_duration_since(ctx.started));
    let rejection = ctx.rejection();
    let reason = rejection.map_or("-", |r| r.reason);
    let code = rejection.map_or("-", |r| r.code.as_str());
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

#[cfg(test)]
mod tests {
    use super::millis;
    use std::time::Duration;

    #[test]
    fn durations_are_rounded_to_the_microsecond() {
        let shown = |d: Duration| serde_json::json!(millis(d)).to_string();
        assert_eq!(shown(Duration::from_nanos(116_558)), "0.117");
        assert_eq!(shown(Duration::from_nanos(116_400)), "0.116");
        assert_eq!(shown(Duration::from_micros(1_234_567)), "1234.567");
        assert_eq!(shown(Duration::from_millis(5)), "5.0");
        assert_eq!(shown(Duration::ZERO), "0.0");
        for n in [1u64, 7, 99, 116_558, 3_333_333, 987_654_321] {
            let text = shown(Duration::from_nanos(n * 37));
            let decimals = text.split('.').nth(1).unwrap_or_default();
            assert!(decimals.len() <= 3, "{text}");
        }
    }
}
