//! The validated configuration the gateway runs on. Built from the figment layers; every
//! error names the key and where its value came from.

use super::file::FileConfig;
use crate::site::SiteId;
use figment::providers::{Data, Env, Format, Serialized, Toml};
use figment::Figment;
use http::{HeaderName, HeaderValue};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The configuration file's top-level keys (see `file.rs`).
const TOP_LEVEL_KEYS: &[&str] = &[
    "data_dir", "listen", "tls", "store", "keyring", "cache", "upstream", "proxy", "auth", "admin",
    "metrics", "health", "keys", "log", "legacy",
];

/// Where the configuration file is looked for when `--config` is not given.
pub const DEFAULT_CONFIG_FILE: &str = "config/wpgate.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
    /// figment's message names the key and the file or environment variable.
    #[error("{0}")]
    Parse(Box<figment::Error>),
    #[error("`{key}` {problem} (from {origin})")]
    Invalid {
        key: &'static str,
        problem: String,
        origin: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Where the store lives. `Debug` and `Display` never show a password: a PostgreSQL URL
/// may carry one.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Sqlite(PathBuf),
    /// `postgres://` or `postgresql://` URL, as sqlx takes it (may hold a password).
    Postgres(String),
}

impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            StoreUrl::Postgres(url) => f.debug_tuple("Postgres").field(&redact_url(url)).finish(),
        }
    }
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            StoreUrl::Postgres(url) => f.write_str(&redact_url(url)),
        }
    }
}

/// `url` fit for messages and logs: a password (in the user part, or a query parameter
/// whose name contains "password") is replaced by `redacted`; a URL that does not parse
/// is not shown at all.
pub fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return "[unparsable URL, not shown]".into();
    };
    if parsed.password().is_some() && parsed.set_password(Some("redacted")).is_err() {
        return "[URL not shown]".into();
    }
    if parsed.query().is_some() {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if k.to_ascii_lowercase().contains("password") {
                    "redacted".to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

impl StoreUrl {
    /// Parses `store.url`; the error never repeats the URL.
    pub fn parse(url: &str) -> Result<Self, String> {
        if let Some(rest) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            let path = rest.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err("needs a file path, e.g. sqlite://./data/wpgate.db".into());
            }
            return Ok(StoreUrl::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(StoreUrl::Postgres(url.to_string()));
        }
        Err("must start with sqlite:// or postgres://".into())
    }
}

/// Where the settings come from besides the defaults.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--config`: must exist. Without it `config/wpgate.toml` is used if present.
    pub config_file: Option<PathBuf>,
    /// `--data-dir`: overrides every other source.
    pub data_dir: Option<PathBuf>,
}

/// The whole configuration, in two halves: what a running process keeps until it
/// restarts, and what a reload applies. A new setting has to go into one of them, and
/// `Boot::changed` / `Live::changed` name every field, so the compiler asks where it goes
/// and what a reload reports about it.
#[derive(Debug, Clone)]
pub struct Config {
    pub boot: Boot,
    pub live: Live,
    /// The file the configuration was read from, if any (for messages and the reload
    /// watcher).
    pub source_file: Option<PathBuf>,
}

/// Settings read once at start: listeners, the store, caches, HTTP clients and
/// background tasks are built from them. Changing one takes a restart (or upgrade).
#[derive(Debug, Clone, PartialEq)]
pub struct Boot {
    pub data_dir: PathBuf,
    /// `listen.proxy`: plain HTTP; `None` when it is empty (TLS only).
    pub listen_proxy: Option<SocketAddr>,
    /// `listen.proxy_tls`: HTTPS (HTTP/1.1 and HTTP/2 by ALPN).
    pub listen_proxy_tls: Option<SocketAddr>,
    pub listen_admin: SocketAddr,
    /// `listen.admin_tls`: the admin listener speaks HTTPS.
    pub listen_admin_tls: bool,
    pub store: StoreUrl,
    /// `store.poll_interval`: how often the change log is read.
    pub store_poll_interval: Duration,
    pub keyring_file: PathBuf,
    pub cache: CacheSettings,
    /// `upstream.ca_file`: the trust roots for TLS to the sites (else the system's).
    pub upstream_ca_file: Option<PathBuf>,
    /// `proxy.threads`
    pub proxy_threads: usize,
    pub auth: AuthSettings,
    pub admin: AdminSettings,
    pub health: HealthSettings,
    pub keys: KeyUpkeepSettings,
    pub log: LogSettings,
}

/// Settings a reload applies: each request reads them from the snapshot it started with.
#[derive(Debug, Clone, PartialEq)]
pub struct Live {
    pub proxy: ProxySettings,
    pub upstream: UpstreamTimeouts,
    /// `metrics.per_site_labels`: false counts every site under `site="_all"`.
    pub metrics_per_site_labels: bool,
    /// `keys.retention`: keys revoked (grace over) or expired longer ago are purged.
    pub key_retention: Duration,
    /// The TLS listeners' certificate files: a reload reads them again.
    pub tls: TlsFiles,
    /// `[legacy]`: where a request without `X-Website-ID` goes (`None`: it is refused).
    pub legacy: Option<LegacySite>,
}

/// Legacy single-site mode (`[legacy]`), for migrations from a one-site set-up: a
/// request without `X-Website-ID` is handled as if it named `default_site`, and its
/// answer says that this is deprecated (RFC 9745).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacySite {
    /// `legacy.default_site`
    pub default_site: SiteId,
    /// The site id as the header value a request keeps (as if the client had sent it).
    pub site_header: HeaderValue,
    /// `legacy.deprecated_since`, Unix seconds, when given.
    pub deprecated_since: Option<i64>,
    /// `legacy.deprecation_link`, when given.
    pub deprecation_link: Option<String>,
    /// The `Deprecation` header's value, `@<Unix seconds>` (RFC 9745): the configured
    /// date, else the moment this process first loaded a `default_site`.
    pub deprecation: HeaderValue,
    /// The `Link` header's value, `<url>; rel="deprecation"; type="text/html"`.
    pub link: Option<HeaderValue>,
}

/// When this process first loaded a `legacy.default_site` (the `Deprecation` date when
/// none is configured): fixed from then on, so a reload does not move it.
fn legacy_first_loaded() -> i64 {
    static FIRST: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *FIRST.get_or_init(crate::time::now_unix)
}

/// A certificate chain and its private key, PEM files, with the settings that name
/// them (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// E.g. `tls.cert_file`.
    pub cert_setting: &'static str,
    /// E.g. `tls.key_file`.
    pub key_setting: &'static str,
}

/// The certificates of the TLS listeners. Which listeners exist is a boot setting
/// (`listen.proxy_tls`, `listen.admin_tls`); validation makes every pair here used.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsFiles {
    /// `tls.cert_file` and `tls.key_file`: the proxy's, and the admin listener's unless
    /// it has its own.
    pub certificate: Option<CertFiles>,
    /// `tls.admin_cert_file` and `tls.admin_key_file`.
    pub admin_certificate: Option<CertFiles>,
}

impl TlsFiles {
    /// The pair the admin listener serves.
    pub fn admin(&self) -> Option<&CertFiles> {
        self.admin_certificate
            .as_ref()
            .or(self.certificate.as_ref())
    }
}

impl Boot {
    /// The settings (by their key in the file) whose values differ in `other`.
    pub fn changed(&self, other: &Boot) -> Vec<&'static str> {
        // Every field is named (no `..`): a new one does not compile until it is listed.
        let Boot {
            data_dir,
            listen_proxy,
            listen_proxy_tls,
            listen_admin,
            listen_admin_tls,
            store,
            store_poll_interval,
            keyring_file,
            cache,
            upstream_ca_file,
            proxy_threads,
            auth,
            admin,
            health,
            keys,
            log,
        } = self;
        differing([
            ("data_dir", *data_dir != other.data_dir),
            ("listen.proxy", *listen_proxy != other.listen_proxy),
            (
                "listen.proxy_tls",
                *listen_proxy_tls != other.listen_proxy_tls,
            ),
            ("listen.admin", *listen_admin != other.listen_admin),
            (
                "listen.admin_tls",
                *listen_admin_tls != other.listen_admin_tls,
            ),
            ("store.url", *store != other.store),
            (
                "store.poll_interval",
                *store_poll_interval != other.store_poll_interval,
            ),
            ("keyring.file", *keyring_file != other.keyring_file),
            ("cache", *cache != other.cache),
            (
                "upstream.ca_file",
                *upstream_ca_file != other.upstream_ca_file,
            ),
            ("proxy.threads", *proxy_threads != other.proxy_threads),
            ("auth", *auth != other.auth),
            ("admin", *admin != other.admin),
            ("health", *health != other.health),
            ("keys", *keys != other.keys),
            ("log", *log != other.log),
        ])
    }
}

impl Live {
    /// The settings (by their key in the file) whose values differ in `other`.
    pub fn changed(&self, other: &Live) -> Vec<&'static str> {
        // Every field is named (no `..`): a new one does not compile until it is listed.
        let Live {
            proxy:
                ProxySettings {
                    strip_headers,
                    trusted_proxies,
                },
            upstream:
                UpstreamTimeouts {
                    connect_timeout,
                    read_timeout,
                },
            metrics_per_site_labels,
            key_retention,
            tls:
                TlsFiles {
                    certificate,
                    admin_certificate,
                },
            legacy,
        } = self;
        let site = |l: &Option<LegacySite>| l.as_ref().map(|l| l.default_site.clone());
        let since = |l: &Option<LegacySite>| l.as_ref().and_then(|l| l.deprecated_since);
        let link = |l: &Option<LegacySite>| l.as_ref().and_then(|l| l.deprecation_link.clone());
        fn cert(files: &Option<CertFiles>) -> Option<&PathBuf> {
            files.as_ref().map(|f| &f.cert)
        }
        fn key(files: &Option<CertFiles>) -> Option<&PathBuf> {
            files.as_ref().map(|f| &f.key)
        }
        let theirs = &other.tls;
        differing([
            (
                "proxy.strip_headers",
                *strip_headers != other.proxy.strip_headers,
            ),
            (
                "proxy.trusted_proxies",
                *trusted_proxies != other.proxy.trusted_proxies,
            ),
            (
                "upstream.connect_timeout",
                *connect_timeout != other.upstream.connect_timeout,
            ),
            (
                "upstream.read_timeout",
                *read_timeout != other.upstream.read_timeout,
            ),
            (
                "metrics.per_site_labels",
                *metrics_per_site_labels != other.metrics_per_site_labels,
            ),
            ("keys.retention", *key_retention != other.key_retention),
            (
                "tls.cert_file",
                cert(certificate) != cert(&theirs.certificate),
            ),
            ("tls.key_file", key(certificate) != key(&theirs.certificate)),
            (
                "tls.admin_cert_file",
                cert(admin_certificate) != cert(&theirs.admin_certificate),
            ),
            (
                "tls.admin_key_file",
                key(admin_certificate) != key(&theirs.admin_certificate),
            ),
            ("legacy.default_site", site(legacy) != site(&other.legacy)),
            (
                "legacy.deprecated_since",
                since(legacy) != since(&other.legacy),
            ),
            (
                "legacy.deprecation_link",
                link(legacy) != link(&other.legacy),
            ),
        ])
    }
}

/// The names whose flag is set, in order.
fn differing<const N: usize>(settings: [(&'static str, bool); N]) -> Vec<&'static str> {
    settings
        .into_iter()
        .filter_map(|(name, differs)| differs.then_some(name))
        .collect()
}

#[derive(Debug, Clone, PartialEq)]
pub struct CacheSettings {
    pub capacity: u64,
    pub ttl: Duration,
    pub negative_ttl: Duration,
    /// Past the TTL, how long a cached entry answers while the store is unreachable.
    pub max_stale: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamTimeouts {
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProxySettings {
    /// Headers removed before forwarding besides the client credentials that always are
    /// (`credential::CLIENT_CREDENTIAL_HEADERS`).
    pub strip_headers: Vec<HeaderName>,
    /// Peers whose X-Forwarded-For is believed (load balancers in front of wpgate).
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl ProxySettings {
    pub fn is_trusted(&self, ip: std::net::IpAddr) -> bool {
        self.trusted_proxies.iter().any(|n| n.contains(&ip))
    }
}

/// Client authentication settings shared by all sites (per-site policies are in the store).
#[derive(Debug, Clone, PartialEq)]
pub struct AuthSettings {
    /// Failed authentications per client IP per window before 429 (0 = no limit).
    pub max_failures: u32,
    pub failure_window: Duration,
    pub jwks_min_ttl: Duration,
    pub jwks_max_ttl: Duration,
    pub jwks_refetch_interval: Duration,
    pub jwks_max_stale: Duration,
    pub fetch_timeout: Duration,
    pub wordpress_cache_ttl: Duration,
    pub wordpress_negative_ttl: Duration,
}

/// The admin listener's limits.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminSettings {
    /// Failed admin token checks per client (IPv4 address, IPv6 /64) per window before
    /// 429 (0 = no limit).
    pub max_failures: u32,
    pub failure_window: Duration,
    /// A client must send a request's headers within this; an idle keep-alive
    /// connection is closed after it too.
    pub header_read_timeout: Duration,
}

/// The background health prober.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthSettings {
    pub enabled: bool,
    pub interval: Duration,
    pub concurrency: usize,
    pub timeout: Duration,
}

/// The running gateway's API-key upkeep (`keys.retention` is in [`Live`]).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyUpkeepSettings {
    /// `keys.purge_interval`
    pub purge_interval: Duration,
    /// `keys.last_used_flush`
    pub last_used_flush: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

impl Config {
    /// Reads every layer and validates the result.
    pub fn load(opts: &LoadOptions) -> Result<Config, ConfigError> {
        let source_file = match &opts.config_file {
            Some(path) if !path.exists() => return Err(ConfigError::MissingFile(path.clone())),
            Some(path) => Some(path.clone()),
            None => Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|p| p.exists()),
        };
        let file_layer = source_file.as_deref().map(Toml::file_exact);
        Self::from_layers(file_layer, opts, source_file)
    }

    /// [`Config::load`] with the file's text given instead of read (`opts.config_file`
    /// is not read): the same layers and validation (used by the fuzzer).
    pub fn load_text(text: &str, opts: &LoadOptions) -> Result<Config, ConfigError> {
        Self::from_layers(Some(Toml::string(text)), opts, None)
    }

    fn from_layers(
        file_layer: Option<Data<Toml>>,
        opts: &LoadOptions,
        source_file: Option<PathBuf>,
    ) -> Result<Config, ConfigError> {
        let figment = figment(file_layer, opts);
        let file: FileConfig = figment
            .extract()
            .map_err(|e| ConfigError::Parse(Box::new(e)))?;
        Validator { figment: &figment }.build(file, source_file)
    }
}

fn figment(file_layer: Option<Data<Toml>>, opts: &LoadOptions) -> Figment {
    let mut figment = Figment::from(Serialized::defaults(FileConfig::default()));
    if let Some(layer) = file_layer {
        figment = figment.merge(layer);
    }
    // Only variables for the file's top-level keys are configuration: WPGATE_KEYRING
    // carries the keyring itself (for containers), and other WPGATE_* variables (tools,
    // scripts) are none of ours.
    figment = figment.merge(
        Env::prefixed("WPGATE_")
            .split("__")
            .ignore(&["keyring"])
            .filter(|key| {
                let top = key.as_str().split('.').next().unwrap_or_default();
                TOP_LEVEL_KEYS.iter().any(|k| k.eq_ignore_ascii_case(top))
            }),
    );
    if let Some(dir) = &opts.data_dir {
        figment = figment.merge(("data_dir", dir.display().to_string()));
    }
    figment
}

struct Validator<'a> {
    figment: &'a Figment,
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

    fn build(&self, f: FileConfig, source_file: Option<PathBuf>) -> Result<Config, ConfigError> {
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
        if tracing_subscriber::EnvFilter::try_new(&f.log.level).is_err() {
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

/// The directory that holds `path`, for creating it.
pub fn parent_dir(path: &Path) -> Option<&Path> {
    path.parent().filter(|p| !p.as_os_str().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn load_str(toml: &str) -> Result<Config, ConfigError> {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(toml.as_bytes()).unwrap();
        Config::load(&LoadOptions {
            config_file: Some(f.path().to_path_buf()),
            data_dir: None,
        })
    }

    #[test]
    fn defaults_are_valid() {
        let c = load_str("").unwrap();
        assert_eq!(c.boot.listen_proxy, Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(c.boot.listen_proxy_tls, None);
        assert!(!c.boot.listen_admin_tls);
        assert_eq!(c.live.tls, TlsFiles::default());
        assert_eq!(
            c.boot.store,
            StoreUrl::Sqlite(PathBuf::from("./data/wpgate.db"))
        );
        assert_eq!(c.boot.keyring_file, PathBuf::from("./data/keyring.toml"));
        assert!(c.live.proxy.strip_headers.is_empty());
        assert_eq!(c.live.key_retention, Duration::from_secs(30 * 24 * 3600));
        assert_eq!(c.boot.keys.last_used_flush, Duration::from_secs(60));
        assert_eq!(c.boot.keys.purge_interval, Duration::from_secs(3600));
    }

    #[test]
    fn key_upkeep_settings() {
        let c = load_str("[keys]\nretention = \"1s\"\nlast_used_flush = \"500ms\"\n").unwrap();
        assert_eq!(c.live.key_retention, Duration::from_secs(1));
        assert_eq!(c.boot.keys.last_used_flush, Duration::from_millis(500));
        assert!(load_err("[keys]\nlast_used_flush = \"0s\"\n").contains("keys.last_used_flush"));
        assert!(load_err("[keys]\npurge_interval = \"10ms\"\n").contains("keys.purge_interval"));
        assert!(load_err("[keys]\nretention_days = 3\n").contains("retention_days"));
    }

    fn load_err(toml: &str) -> String {
        load_str(toml).unwrap_err().to_string()
    }

    #[test]
    fn unknown_key_is_named() {
        let err = load_err("[cache]\ncapacityy = 3\n");
        assert!(err.contains("capacityy"), "{err}");
    }

    #[test]
    fn invalid_value_names_key_and_file() {
        let err = load_err("[listen]\nproxy = \"nope\"\n");
        assert!(err.contains("listen.proxy"), "{err}");
        assert!(err.contains("TOML"), "{err}");
    }

    #[test]
    fn data_dir_drives_derived_paths_and_cli_wins() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"data_dir = \"/srv/a\"\n").unwrap();
        let c = Config::load(&LoadOptions {
            config_file: Some(f.path().to_path_buf()),
            data_dir: Some(PathBuf::from("/srv/b")),
        })
        .unwrap();
        assert_eq!(c.boot.keyring_file, PathBuf::from("/srv/b/keyring.toml"));
        assert_eq!(
            c.boot.store,
            StoreUrl::Sqlite(PathBuf::from("/srv/b/wpgate.db"))
        );
    }

    #[test]
    fn text_loads_as_the_same_file_does() {
        for toml in [
            "",
            "[cache]\nttl = \"2m\"\nnegative_ttl = \"1s\"\n[proxy]\nthreads = 4\n",
            "[listen]\nproxy = \"nope\"\n",
            "[cache]\ncapacityy = 3\n",
        ] {
            match (
                load_str(toml),
                Config::load_text(toml, &LoadOptions::default()),
            ) {
                (Ok(file), Ok(text)) => {
                    assert_eq!(file.boot, text.boot);
                    assert_eq!(file.live, text.live);
                    assert_eq!(text.source_file, None);
                }
                (
                    Err(ConfigError::Invalid { key: a, .. }),
                    Err(ConfigError::Invalid { key: b, .. }),
                ) => {
                    assert_eq!(a, b)
                }
                (Err(ConfigError::Parse(a)), Err(ConfigError::Parse(b))) => {
                    assert_eq!(a.path, b.path)
                }
                (file, text) => panic!("{toml:?}: from a file {file:?}, as text {text:?}"),
            }
        }
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        let err = Config::load(&LoadOptions {
            config_file: Some(PathBuf::from("/nonexistent/wpgate.toml")),
            data_dir: None,
        })
        .unwrap_err();
        assert!(matches!(err, ConfigError::MissingFile(_)));
    }

    #[test]
    fn durations_and_store_urls() {
        let c = load_str(
            "[cache]\nttl = \"2m\"\nnegative_ttl = \"1s\"\n[store]\nurl = \"sqlite:///tmp/x.db\"\n",
        )
        .unwrap();
        assert_eq!(c.boot.cache.ttl, Duration::from_secs(120));
        assert_eq!(c.boot.store, StoreUrl::Sqlite(PathBuf::from("/tmp/x.db")));
        assert!(load_str("[store]\nurl = \"mysql://x\"\n").is_err());
    }

    #[test]
    fn admin_limits_have_defaults_and_bounds() {
        let c = load_str("").unwrap();
        assert_eq!(c.boot.admin.max_failures, 10);
        assert_eq!(c.boot.admin.failure_window, Duration::from_secs(60));
        assert_eq!(c.boot.admin.header_read_timeout, Duration::from_secs(30));
        let c = load_str("[admin]\nmax_failures = 3\nheader_read_timeout = \"1s\"\n").unwrap();
        assert_eq!(c.boot.admin.max_failures, 3);
        assert_eq!(c.boot.admin.header_read_timeout, Duration::from_secs(1));
        assert!(load_err("[admin]\nheader_read_timeout = \"0s\"\n")
            .contains("admin.header_read_timeout"));
        assert!(load_err("[admin]\nfailure_window = \"0s\"\n").contains("admin.failure_window"));
        assert!(load_err("[admin]\nheader_timeout = \"1s\"\n").contains("header_timeout"));
    }

    #[test]
    fn tls_listeners_need_their_files_and_files_need_a_listener() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("chain.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, "not read here").unwrap();
        std::fs::write(&key, "not read here").unwrap();
        let files = format!(
            "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            cert.display(),
            key.display()
        );

        // TLS instead of plain HTTP; the admin listener uses the same pair.
        let c = load_str(&format!(
            "[listen]\nproxy = \"\"\nproxy_tls = \"127.0.0.1:8443\"\nadmin_tls = true\n{files}"
        ))
        .unwrap();
        assert_eq!(c.boot.listen_proxy, None);
        assert_eq!(
            c.boot.listen_proxy_tls,
            Some("127.0.0.1:8443".parse().unwrap())
        );
        assert!(c.boot.listen_admin_tls);
        let pair = c.live.tls.certificate.clone().unwrap();
        assert_eq!((pair.cert, pair.key), (cert.clone(), key.clone()));
        assert_eq!(c.live.tls.admin(), c.live.tls.certificate.as_ref());
        // Beside plain HTTP.
        let c = load_str(&format!(
            "[listen]\nproxy_tls = \"127.0.0.1:8443\"\n{files}"
        ))
        .unwrap();
        assert!(c.boot.listen_proxy.is_some() && c.boot.listen_proxy_tls.is_some());

        for (toml, names) in [
            ("[listen]\nproxy = \"\"\n".to_string(), &["listen.proxy", "listen.proxy_tls"][..]),
            (
                "[listen]\nproxy_tls = \"127.0.0.1:8443\"\n".to_string(),
                &["listen.proxy_tls", "tls.cert_file"],
            ),
            (
                format!("[listen]\nproxy_tls = \"127.0.0.1:8443\"\n[tls]\ncert_file = \"{}\"\n", cert.display()),
                &["tls.key_file"],
            ),
            (
                format!(
                    "[listen]\nproxy_tls = \"127.0.0.1:8443\"\n[tls]\ncert_file = \"/nonexistent/chain.pem\"\nkey_file = \"{}\"\n",
                    key.display()
                ),
                &["tls.cert_file", "/nonexistent/chain.pem"],
            ),
            (files.clone(), &["tls.cert_file", "no listener"]),
            ("[listen]\nadmin_tls = true\n".to_string(), &["listen.admin_tls"]),
            (
                format!(
                    "[listen]\nproxy_tls = \"127.0.0.1:8443\"\n{files}admin_cert_file = \"{}\"\nadmin_key_file = \"{}\"\n",
                    cert.display(),
                    key.display()
                ),
                &["tls.admin_cert_file", "listen.admin_tls"],
            ),
            (
                format!("[listen]\nproxy_tls = \"127.0.0.1:9090\"\n{files}"),
                &["listen.admin", "listen.proxy_tls"],
            ),
            (
                format!("[listen]\nproxy_tls = \"127.0.0.1:8080\"\n{files}"),
                &["listen.proxy_tls", "listen.proxy"],
            ),
            ("[tls]\ncertfile = \"x\"\n".to_string(), &["certfile"]),
        ] {
            let err = load_err(&toml);
            for name in names {
                assert!(err.contains(name), "{toml}: {err} does not name {name}");
            }
        }

        // The admin listener's own pair, and what a reload reports about the files.
        let other_key = dir.path().join("other-key.pem");
        std::fs::write(&other_key, "x").unwrap();
        let c = load_str(&format!(
            "[listen]\nproxy_tls = \"127.0.0.1:8443\"\nadmin_tls = true\n{files}admin_cert_file = \"{}\"\nadmin_key_file = \"{}\"\n",
            cert.display(),
            other_key.display()
        ))
        .unwrap();
        assert_eq!(c.live.tls.admin().unwrap().key, other_key);
        assert_eq!(
            c.live.tls.admin().unwrap().key_setting,
            "tls.admin_key_file"
        );
        let before = load_str(&format!(
            "[listen]\nproxy_tls = \"127.0.0.1:8443\"\nadmin_tls = true\n{files}"
        ))
        .unwrap();
        assert_eq!(
            before.live.changed(&c.live),
            vec!["tls.admin_cert_file", "tls.admin_key_file"]
        );
        assert!(before.boot.changed(&c.boot).is_empty());
    }

    #[test]
    fn legacy_mode_is_live_and_checked() {
        assert_eq!(load_str("").unwrap().live.legacy, None);
        let c = load_str("[legacy]\ndefault_site = \"shop\"\n").unwrap();
        let l = c.live.legacy.clone().unwrap();
        assert_eq!(l.default_site.as_str(), "shop");
        assert_eq!(l.site_header, "shop");
        assert!(l.deprecation.to_str().unwrap().starts_with('@'), "{l:?}");
        // The default date stays put: another load (a reload) gives the same header.
        let again = load_str("[legacy]\ndefault_site = \"shop\"\n").unwrap();
        assert_eq!(again.live, c.live);
        let c2 = load_str(
            "[legacy]\ndefault_site = \"blog\"\ndeprecated_since = \"2025-06-01T00:00:00Z\"\n\
             deprecation_link = \"https://docs.example.com/migrate\"\n",
        )
        .unwrap();
        let l2 = c2.live.legacy.clone().unwrap();
        assert_eq!(l2.deprecation, "@1748736000");
        assert_eq!(
            l2.link.unwrap(),
            "<https://docs.example.com/migrate>; rel=\"deprecation\"; type=\"text/html\""
        );
        assert_eq!(
            c.live.changed(&c2.live),
            vec![
                "legacy.default_site",
                "legacy.deprecated_since",
                "legacy.deprecation_link"
            ]
        );
        for (toml, key) in [
            (
                "[legacy]\ndefault_site = \"no such/site\"\n",
                "legacy.default_site",
            ),
            ("[legacy]\ndefault_site = \"\"\n", "legacy.default_site"),
            (
                "[legacy]\ndefault_site = \"a\"\ndeprecated_since = \"yesterday\"\n",
                "legacy.deprecated_since",
            ),
            (
                "[legacy]\ndefault_site = \"a\"\ndeprecation_link = \"ftp://x.example\"\n",
                "legacy.deprecation_link",
            ),
            (
                "[legacy]\ndeprecation_link = \"https://x.example\"\n",
                "legacy.deprecation_link",
            ),
            ("[legacy]\ndefault = \"a\"\n", "default"),
        ] {
            let err = load_err(toml);
            assert!(err.contains(key), "{toml}: {err}");
        }
    }

    #[test]
    fn store_url_passwords_never_show() {
        let c = load_str(
            "[store]\nurl = \"postgres://gw:s3cr%40t@db.internal:5432/wpgate?sslmode=require&password=other-s3cr\"\n",
        )
        .unwrap();
        let shown = [
            format!("{c:?}"),
            format!("{:?}", c.boot.store),
            c.boot.store.to_string(),
        ];
        for text in &shown {
            assert!(!text.contains("s3cr"), "{text}");
            assert!(text.contains("db.internal:5432/wpgate"), "{text}");
            assert!(text.contains("sslmode=require"), "{text}");
        }
        assert_eq!(
            redact_url("postgresql://u:p@h/d"),
            "postgresql://u:redacted@h/d"
        );
        assert_eq!(redact_url("postgres://h/d"), "postgres://h/d");
        assert!(!redact_url("postgres://u:pw@[::1/d").contains("pw"));
        assert_eq!(
            StoreUrl::Sqlite(PathBuf::from("/tmp/x.db")).to_string(),
            "sqlite:///tmp/x.db"
        );
    }
}
