//! Legacy single-site mode (`[legacy]`, for migrations from a one-site set-up): a
//! request without `X-Website-ID` is handled as if it named `legacy.default_site` —
//! authenticated exactly like such a request — counted, its client warned about once in
//! the log, and its answer marked deprecated (`Deprecation`, RFC 9745; `Link:
//! rel="deprecation"` when configured). Requests that name a site are not affected.

use crate::auth::ratelimit::client_key;
use crate::config::LegacySite;
use crate::metrics::Metrics;
use pingora::http::ResponseHeader;
use std::net::IpAddr;

/// How many clients are remembered as warned about; past that the least used are
/// forgotten (and warned about again when they come back).
const WARNED_CLIENTS: u64 = 10_000;

/// The clients already warned about (IPv4 address, IPv6 /64, as the failure limit
/// counts them; requests without a peer address count as one client).
pub struct LegacyClients {
    warned: moka::sync::Cache<Option<IpAddr>, ()>,
}

impl Default for LegacyClients {
    fn default() -> Self {
        LegacyClients {
            warned: moka::sync::Cache::builder()
                .max_capacity(WARNED_CLIENTS)
                .build(),
        }
    }
}

impl LegacyClients {
    /// A request without `X-Website-ID` sent to the legacy site: counted in
    /// `wpgate_legacy_requests_total`; the first one of each client is logged.
    pub fn routed(&self, legacy: &LegacySite, client: Option<IpAddr>, metrics: &Metrics) {
        metrics.legacy_requests.inc();
        let first = self
            .warned
            .entry(client.map(client_key))
            .or_insert(())
            .is_fresh();
        if first {
            tracing::warn!(
                target: "wpgate::legacy",
                client = client.map(tracing::field::display),
                site = legacy.default_site.as_str(),
                "a client calls without X-Website-ID: its requests go to legacy.default_site; \
                 it should send X-Website-ID (logged once per client)"
            );
        }
    }
}

/// Marks an answer to a legacy request as deprecated: `Deprecation: @<date>` and, when
/// configured, a `Link` to the migration notes (added to the site's own links).
pub fn mark_deprecated(resp: &mut ResponseHeader, legacy: &LegacySite) -> pingora::Result<()> {
    resp.insert_header("deprecation", legacy.deprecation.clone())?;
    if let Some(link) = &legacy.link {
        resp.append_header("link", link.clone())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn legacy() -> LegacySite {
        let config = crate::config::Config::load_text(
            "[legacy]\ndefault_site = \"shop\"\ndeprecated_since = \"2025-06-01T00:00:00Z\"\n\
             deprecation_link = \"https://docs.example.com/x\"\n",
            &crate::config::LoadOptions::default(),
        )
        .unwrap();
        config.live.legacy.unwrap()
    }

    #[test]
    fn each_client_is_warned_about_once_and_every_request_counted() {
        let m = Metrics::new().unwrap();
        let clients = LegacyClients::default();
        let l = legacy();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        let b_same_64: IpAddr = "2001:db8::2".parse().unwrap();
        for ip in [Some(a), Some(a), Some(b), Some(b_same_64), None, None] {
            clients.routed(&l, ip, &m);
        }
        assert_eq!(m.legacy_requests.get(), 6);
        clients.warned.run_pending_tasks();
        assert_eq!(clients.warned.entry_count(), 3);
    }

    #[test]
    fn answers_are_marked_deprecated() {
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.insert_header(
            "link",
            "<https://shop.example/wp-json/>; rel=\"https://api.w.org/\"",
        )
        .unwrap();
        mark_deprecated(&mut resp, &legacy()).unwrap();
        assert_eq!(resp.headers["deprecation"], "@1748736000");
        let links: Vec<_> = resp.headers.get_all("link").iter().collect();
        assert_eq!(links.len(), 2, "{links:?}");
        assert_eq!(
            links[1],
            "<https://docs.example.com/x>; rel=\"deprecation\"; type=\"text/html\""
        );
    }
}
