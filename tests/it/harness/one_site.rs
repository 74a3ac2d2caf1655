//! The most common set-up: one recording upstream behind one gateway, with one site and
//! one API key for it.

use super::answer::Answer;
use super::credentials::{ApiKey, SiteAuth, KEY_HEADER, SITE_HEADER};
use super::gateway::{Gateway, GatewayConfig};
use super::upstream::{Recorded, Upstream};

pub struct OneSite {
    pub up: Upstream,
    pub gw: Gateway,
    pub site: String,
    pub key: ApiKey,
}

impl OneSite {
    /// Default gateway settings; `site` in front of the upstream's root.
    pub fn start(site: &str, auth: &SiteAuth) -> Self {
        Self::start_with(GatewayConfig::default(), site, "", auth)
    }

    /// `site` in front of `<upstream url><upstream_suffix>` (a path prefix).
    pub fn start_with(
        config: GatewayConfig,
        site: &str,
        upstream_suffix: &str,
        auth: &SiteAuth,
    ) -> Self {
        let up = Upstream::start();
        let gw = Gateway::start_with(config);
        gw.add_site(site, &format!("{}{upstream_suffix}", up.url()), auth);
        let key = gw.issue_key(site, &[]);
        OneSite {
            up,
            gw,
            site: site.to_owned(),
            key,
        }
    }

    /// GET `path` through the gateway for the site, with its key.
    pub async fn get(&self, path: &str) -> Answer {
        self.gw.get_as(&self.site, &self.key.full, path).await
    }

    /// GET `path` through the gateway with the key (asserting 200), and the one request
    /// the upstream recorded for it, found by `marker` (part of `path`).
    pub async fn get_recorded(&self, path: &str, marker: &str) -> Recorded {
        self.gw
            .send(self.authed(reqwest::Method::GET, path))
            .await
            .assert_ok();
        self.up.one_with(marker)
    }

    /// A request through the gateway for the site, with its key in `X-API-Key`.
    pub fn authed(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.gw
            .request(method, path)
            .header(SITE_HEADER, &self.site)
            .header(KEY_HEADER, &self.key.full)
    }
}
