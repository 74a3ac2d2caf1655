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
pub(super) fn legacy_first_loaded() -> i64 {
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
        super::validate::Validator { figment: &figment }.build(file, source_file)
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
