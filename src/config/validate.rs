//! From the file's serde mirror to the model: every value checked, every error naming
//! its key and where the value came from (the file, an environment variable, the
//! defaults).

use super::file::*;
use super::model::*;
use crate::site::SiteId;
use figment::Figment;
use http::{HeaderName, HeaderValue};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub(super) struct Validator<'a> {
    pub(super) figment: &'a Figment,
}

impl Validator<'_> {
    fn invalid(&self, key: &'static str, problem: impl Into<String>) -> ConfigError {
        let origin = match self.figment.find_metadata(key) {
            Some(meta) => match &meta.source {
                Some(source) => format!("{} {}", meta.name, source),
                None => meta.name.to_string(),
            },
            None => "defaults".into(),
        };
        ConfigError::Invalid {
            key,
            problem: problem.into(),
            origin,
        }
    }

    fn addr(&self, key: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
        value
            .parse()
            .map_err(|_| self.invalid(key, format!("must be an IP:port address, got {value:?}")))
    }

    /// An address, or `None` for an absent or empty value (a listener turned off).
    fn optional_addr(
        &self,
        key: &'static str,
        value: Option<&str>,
    ) -> Result<Option<SocketAddr>, ConfigError> {
        match value.map(str::trim) {
            None | Some("") => Ok(None),
            Some(v) => self.addr(key, v).map(Some),
        }
    }

    /// A certificate and key pair: both settings or neither, each an existing file.
    fn cert_pair(
        &self,
        (cert_setting, cert): (&'static str, &Option<PathBuf>),
        (key_setting, key): (&'static str, &Option<PathBuf>),
    ) -> Result<Option<CertFiles>, ConfigError> {
        let (cert, key) = match (cert, key) {
            (None, None) => return Ok(None),
            (Some(_), None) => {
                return Err(self.invalid(key_setting, format!("must be set with {cert_setting}")))
            }
            (None, Some(_)) => {
                return Err(self.invalid(cert_setting, format!("must be set with {key_setting}")))
            }
            (Some(cert), Some(key)) => (cert, key),
        };
        for (setting, path) in [(cert_setting, cert), (key_setting, key)] {
            if !path.is_file() {
                return Err(self.invalid(
                    setting,
                    format!("{} is not a readable file", path.display()),
                ));
            }
        }
        Ok(Some(CertFiles {
            cert: cert.clone(),
            key: key.clone(),
            cert_setting,
            key_setting,
        }))
    }

    /// The `[tls]` files, checked against the TLS listeners that use them: a listener
    /// without a certificate, and a certificate no listener uses, are both errors.
    fn tls_files(
        &self,
        t: &super::file::TlsFile,
        proxy_tls: bool,
        admin_tls: bool,
    ) -> Result<TlsFiles, ConfigError> {
        let certificate = self.cert_pair(
            ("tls.cert_file", &t.cert_file),
            ("tls.key_file", &t.key_file),
        )?;
        let admin_certificate = self.cert_pair(
            ("tls.admin_cert_file", &t.admin_cert_file),
            ("tls.admin_key_file", &t.admin_key_file),
        )?;
        if proxy_tls && certificate.is_none() {
            return Err(self.invalid("listen.proxy_tls", "needs tls.cert_file and tls.key_file"));
        }
        if admin_tls && admin_certificate.is_none() && certificate.is_none() {
            return Err(self.invalid(
                "listen.admin_tls",
                "needs tls.cert_file and tls.key_file (or tls.admin_cert_file and tls.admin_key_file)",
            ));
        }
        if !admin_tls && admin_certificate.is_some() {
            return Err(self.invalid(
                "tls.admin_cert_file",
                "is set but listen.admin_tls is false",
            ));
        }
        let admin_uses_it = admin_tls && admin_certificate.is_none();
        if certificate.is_some() && !proxy_tls && !admin_uses_it {
            return Err(self.invalid(
                "tls.cert_file",
                "is set but no listener uses it (set listen.proxy_tls, or listen.admin_tls = true)",
            ));
        }
        Ok(TlsFiles {
            certificate,
            admin_certificate,
        })
    }

    /// `[legacy]`: a site id like any other; a date and a link only with a site.
    fn legacy(&self, l: &super::file::LegacyFile) -> Result<Option<LegacySite>, ConfigError> {
        let Some(raw) = l.default_site.as_deref() else {
            for (key, set) in [
                ("legacy.deprecated_since", l.deprecated_since.is_some()),
                ("legacy.deprecation_link", l.deprecation_link.is_some()),
            ] {
                if set {
                    return Err(self.invalid(key, "is set but legacy.default_site is not"));
                }
            }
            return Ok(None);
        };
        let default_site: SiteId = raw
            .parse()
            .map_err(|e| self.invalid("legacy.default_site", format!("{e}, got {raw:?}")))?;
        let site_header = HeaderValue::from_str(default_site.as_str())
            .map_err(|_| self.invalid("legacy.default_site", "is not a header value"))?;
        let deprecated_since = match l.deprecated_since.as_deref() {
            None => None,
            Some(text) => {
                let at = humantime::parse_rfc3339_weak(text.trim()).map_err(|_| {
                    self.invalid(
                        "legacy.deprecated_since",
                        format!(
                            "must be an RFC 3339 UTC time, e.g. 2025-06-01T00:00:00Z, got {text:?}"
                        ),
                    )
                })?;
                let secs = match at.duration_since(std::time::UNIX_EPOCH) {
                    Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                    Err(_) => {
                        return Err(self.invalid("legacy.deprecated_since", "must be after 1970"))
                    }
                };
                Some(secs)
            }
        };
        let deprecation = HeaderValue::from_str(&format!(
            "@{}",
            deprecated_since.unwrap_or_else(legacy_first_loaded)
        ))
        .map_err(|_| self.invalid("legacy.deprecated_since", "is not a header value"))?;
        let (deprecation_link, link) = match l.deprecation_link.as_deref() {
            None => (None, None),
            Some(text) => {
                let url = url::Url::parse(text.trim())
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
                    .ok_or_else(|| {
                        self.invalid(
                            "legacy.deprecation_link",
                            format!("must be an http or https URL, got {text:?}"),
                        )
                    })?;
                let value = format!("<{url}>; rel=\"deprecation\"; type=\"text/html\"");
                let header = HeaderValue::from_str(&value).map_err(|_| {
                    self.invalid("legacy.deprecation_link", "is not a header value")
                })?;
                (Some(url.to_string()), Some(header))
            }
        };
        Ok(Some(LegacySite {
            default_site,
            site_header,
            deprecated_since,
            deprecation_link,
            deprecation,
            link,
        }))
    }

    pub(super) fn build(
        &self,
        f: FileConfig,
        source_file: Option<PathBuf>,
    ) -> Result<Config, ConfigError> {
        if f.data_dir.as_os_str().is_empty() {
            return Err(self.invalid("data_dir", "must not be empty"));
        }
        let listen_proxy = self.optional_addr("listen.proxy", Some(&f.listen.proxy))?;
        let listen_proxy_tls =
            self.optional_addr("listen.proxy_tls", f.listen.proxy_tls.as_deref())?;
        let listen_admin = self.addr("listen.admin", &f.listen.admin)?;
        if listen_proxy.is_none() && listen_proxy_tls.is_none() {
            return Err(self.invalid(
                "listen.proxy",
                "is empty and listen.proxy_tls is not set: the proxy would listen nowhere",
            ));
        }
        if listen_proxy == Some(listen_admin) {
            return Err(self.invalid("listen.admin", "must differ from listen.proxy"));
        }
        if listen_proxy_tls == Some(listen_admin) {
            return Err(self.invalid("listen.admin", "must differ from listen.proxy_tls"));
        }
        if listen_proxy.is_some() && listen_proxy == listen_proxy_tls {
            return Err(self.invalid("listen.proxy_tls", "must differ from listen.proxy"));
        }
        let tls = self.tls_files(&f.tls, listen_proxy_tls.is_some(), f.listen.admin_tls)?;
        let store_url = f
            .store
            .url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", f.data_dir.join("wpgate.db").display()));
        let store = StoreUrl::parse(&store_url).map_err(|p| self.invalid("store.url", p))?;
        let keyring_file = f
            .keyring
            .file
            .clone()
            .unwrap_or_else(|| f.data_dir.join("keyring.toml"));

        if f.cache.capacity == 0 {
            return Err(self.invalid("cache.capacity", "must be at least 1"));
        }
        if f.cache.ttl.is_zero() {
            return Err(self.invalid("cache.ttl", "must be longer than 0s"));
        }
        if f.cache.negative_ttl.is_zero() || f.cache.negative_ttl > f.cache.ttl {
            return Err(self.invalid(
                "cache.negative_ttl",
                "must be longer than 0s and no longer than cache.ttl",
            ));
        }
        if f.store.poll_interval < Duration::from_millis(100) {
            return Err(self.invalid("store.poll_interval", "must be at least 100ms"));
        }
        if f.upstream.connect_timeout.is_zero() {
            return Err(self.invalid("upstream.connect_timeout", "must be longer than 0s"));
        }
        if f.upstream.read_timeout.is_zero() {
            return Err(self.invalid("upstream.read_timeout", "must be longer than 0s"));
        }
        if let Some(ca) = &f.upstream.ca_file {
            if !ca.is_file() {
                return Err(self.invalid(
                    "upstream.ca_file",
                    format!("{} is not a readable file", ca.display()),
                ));
            }
        }
        if f.proxy.threads == 0 || f.proxy.threads > 256 {
            return Err(self.invalid("proxy.threads", "must be between 1 and 256"));
        }
        let mut strip_headers = Vec::with_capacity(f.proxy.strip_headers.len());
        for name in &f.proxy.strip_headers {
            let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                self.invalid(
                    "proxy.strip_headers",
                    format!("{name:?} is not a header name"),
                )
            })?;
            strip_headers.push(header);
        }
        let mut trusted_proxies = Vec::with_capacity(f.proxy.trusted_proxies.len());
        for t in &f.proxy.trusted_proxies {
            let net = t
                .parse::<ipnet::IpNet>()
                .or_else(|_| t.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    self.invalid(
                        "proxy.trusted_proxies",
                        format!("{t:?} is not an IP address or CIDR range"),
                    )
                })?;
            trusted_proxies.push(net);
        }
        let a = &f.auth;
        if a.failure_window.is_zero() {
            return Err(self.invalid("auth.failure_window", "must be longer than 0s"));
        }
        if a.jwks_min_ttl.is_zero() || a.jwks_min_ttl > a.jwks_max_ttl {
            return Err(self.invalid(
                "auth.jwks_min_ttl",
                "must be longer than 0s and no longer than auth.jwks_max_ttl",
            ));
        }
        if a.fetch_timeout.is_zero() {
            return Err(self.invalid("auth.fetch_timeout", "must be longer than 0s"));
        }
        if a.wordpress_negative_ttl.is_zero() || a.wordpress_cache_ttl.is_zero() {
            return Err(self.invalid(
                "auth.wordpress_cache_ttl",
                "auth.wordpress_cache_ttl and auth.wordpress_negative_ttl must be longer than 0s",
            ));
        }
        if f.admin.failure_window.is_zero() {
            return Err(self.invalid("admin.failure_window", "must be longer than 0s"));
        }
        if f.admin.header_read_timeout < Duration::from_millis(100)
            || f.admin.header_read_timeout > Duration::from_secs(600)
        {
            return Err(self.invalid("admin.header_read_timeout", "must be between 100ms and 10m"));
        }
        if f.health.interval < Duration::from_secs(1) {
            return Err(self.invalid("health.interval", "must be at least 1s"));
        }
        if f.health.concurrency == 0 {
            return Err(self.invalid("health.concurrency", "must be at least 1"));
        }
        if f.health.timeout.is_zero() {
            return Err(self.invalid("health.timeout", "must be longer than 0s"));
        }
        if f.keys.purge_interval < Duration::from_secs(1) {
            return Err(self.invalid("keys.purge_interval", "must be at least 1s"));
        }
        if f.keys.last_used_flush < Duration::from_millis(100)
            || f.keys.last_used_flush > Duration::from_secs(3600)
        {
            return Err(self.invalid("keys.last_used_flush", "must be between 100ms and 1h"));
        }
        let legacy = self.legacy(&f.legacy)?;
        let format = match f.log.format.as_str() {
            "pretty" => LogFormat::Pretty,
            "json" => LogFormat::Json,
            other => {
                return Err(self.invalid(
                    "log.format",
                    format!("must be \"pretty\" or \"json\", got {other:?}"),
                ))
            }
        };
        // ASCII only: tracing-subscriber's directive parser (0.3.23) panics on some
        // non-ASCII text (it slices inside a character) instead of refusing it.
        if !f.log.level.is_ascii() || tracing_subscriber::EnvFilter::try_new(&f.log.level).is_err()
        {
            return Err(self.invalid(
                "log.level",
                format!("{:?} is not a log filter (e.g. \"info\")", f.log.level),
            ));
        }

        Ok(Config {
            boot: Boot {
                data_dir: f.data_dir,
                listen_proxy,
                listen_proxy_tls,
                listen_admin,
                listen_admin_tls: f.listen.admin_tls,
                store,
                store_poll_interval: f.store.poll_interval,
                keyring_file,
                cache: CacheSettings {
                    capacity: f.cache.capacity,
                    ttl: f.cache.ttl,
                    negative_ttl: f.cache.negative_ttl,
                    max_stale: f.cache.max_stale,
                },
                upstream_ca_file: f.upstream.ca_file,
                proxy_threads: f.proxy.threads,
                auth: AuthSettings {
                    max_failures: f.auth.max_failures,
                    failure_window: f.auth.failure_window,
                    jwks_min_ttl: f.auth.jwks_min_ttl,
                    jwks_max_ttl: f.auth.jwks_max_ttl,
                    jwks_refetch_interval: f.auth.jwks_refetch_interval,
                    jwks_max_stale: f.auth.jwks_max_stale,
                    fetch_timeout: f.auth.fetch_timeout,
                    wordpress_cache_ttl: f.auth.wordpress_cache_ttl,
                    wordpress_negative_ttl: f.auth.wordpress_negative_ttl,
                },
                admin: AdminSettings {
                    max_failures: f.admin.max_failures,
                    failure_window: f.admin.failure_window,
                    header_read_timeout: f.admin.header_read_timeout,
                },
                health: HealthSettings {
                    enabled: f.health.enabled,
                    interval: f.health.interval,
                    concurrency: f.health.concurrency,
                    timeout: f.health.timeout,
                },
                keys: KeyUpkeepSettings {
                    purge_interval: f.keys.purge_interval,
                    last_used_flush: f.keys.last_used_flush,
                },
                log: LogSettings {
                    format,
                    level: f.log.level,
                },
            },
            live: Live {
                proxy: ProxySettings {
                    strip_headers,
                    trusted_proxies,
                },
                upstream: UpstreamTimeouts {
                    connect_timeout: f.upstream.connect_timeout,
                    read_timeout: f.upstream.read_timeout,
                },
                metrics_per_site_labels: f.metrics.per_site_labels,
                key_retention: f.keys.retention,
                tls,
                legacy,
            },
            source_file,
        })
    }
}
