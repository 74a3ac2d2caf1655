//! The upstream connection for an admitted request.

use super::ctx::RequestCtx;
use pingora::prelude::HttpPeer;
use pingora::ErrorType;

/// The upstream connection for the admitted site.
pub fn peer(ctx: &mut RequestCtx) -> pingora::Result<Box<HttpPeer>> {
    let Some(site) = ctx.site.as_ref().filter(|_| ctx.admitted.is_some()) else {
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
