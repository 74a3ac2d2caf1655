//! The serde mirror of `wpgate.toml`: exactly the keys a user may write, no more.
//! Validation and defaults that depend on other keys happen in `model.rs`.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub data_dir: PathBuf,
    pub listen: ListenFile,
    pub tls: TlsFile,
    pub store: StoreFile,
    pub keyring: KeyringFile,
    pub cache: CacheFile,
    pub upstream: UpstreamFile,
    pub proxy: ProxyFile,
    pub auth: AuthFile,
    pub admin: AdminFile,
    pub metrics: MetricsFile,
    pub health: HealthFile,
    pub keys: KeysFile,
    pub log: LogFile,
    pub legacy: LegacyFile,
}

impl Default for FileConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            listen: ListenFile::default(),
            tls: TlsFile::default(),
            store: StoreFile::default(),
            keyring: KeyringFile::default(),
            cache: CacheFile::default(),
            upstream: UpstreamFile::default(),
            proxy: ProxyFile::default(),
            auth: AuthFile::default(),
            admin: AdminFile::default(),
            metrics: MetricsFile::default(),
            health: HealthFile::default(),
            keys: KeysFile::default(),
            log: LogFile::default(),
            legacy: LegacyFile::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenFile {
    /// Plain HTTP; empty turns it off (then `proxy_tls` must be set).
    pub proxy: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_tls: Option<String>,
    pub admin: String,
    pub admin_tls: bool,
}

impl Default for ListenFile {
    fn default() -> Self {
        Self {
            proxy: "127.0.0.1:8080".into(),
            proxy_tls: None,
            admin: "127.0.0.1:9090".into(),
            admin_tls: false,
        }
    }
}

/// The TLS listeners' certificate and key files (PEM).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsFile {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// The admin listener's own pair (else it uses `cert_file`/`key_file`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_cert_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreFile {
    /// Default: `sqlite://<data_dir>/wpgate.db`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// How often the change log is read (the fallback for missed notifications, and
    /// how changes made by other processes on SQLite are seen).
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
}

impl Default for StoreFile {
    fn default() -> Self {
        Self {
            url: None,
            poll_interval: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeyringFile {
    /// Default: `<data_dir>/keyring.toml`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheFile {
    pub capacity: u64,
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub negative_ttl: Duration,
    /// How long past its TTL a cached site or key keeps answering while the store is
    /// unreachable.
    #[serde(with = "humantime_serde")]
    pub max_stale: Duration,
}

impl Default for CacheFile {
    fn default() -> Self {
        Self {
            capacity: 100_000,
            ttl: Duration::from_secs(30),
            negative_ttl: Duration::from_secs(5),
            max_stale: Duration::from_secs(600),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamFile {
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub read_timeout: Duration,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

impl Default for UpstreamFile {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            ca_file: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyFile {
    pub threads: usize,
    /// Removed besides the client credentials that are always removed.
    pub strip_headers: Vec<String>,
    pub trusted_proxies: Vec<String>,
}

impl Default for ProxyFile {
    fn default() -> Self {
        Self {
            threads: 2,
            strip_headers: Vec::new(),
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthFile {
    pub max_failures: u32,
    #[serde(with = "humantime_serde")]
    pub failure_window: Duration,
    #[serde(with = "humantime_serde")]
    pub jwks_min_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub jwks_max_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub jwks_refetch_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub jwks_max_stale: Duration,
    #[serde(with = "humantime_serde")]
    pub fetch_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub wordpress_cache_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub wordpress_negative_ttl: Duration,
}

impl Default for AuthFile {
    fn default() -> Self {
        Self {
            max_failures: 20,
            failure_window: Duration::from_secs(60),
            jwks_min_ttl: Duration::from_secs(60),
            jwks_max_ttl: Duration::from_secs(24 * 3600),
            jwks_refetch_interval: Duration::from_secs(30),
            jwks_max_stale: Duration::from_secs(3600),
            fetch_timeout: Duration::from_secs(5),
            wordpress_cache_ttl: Duration::from_secs(300),
            wordpress_negative_ttl: Duration::from_secs(10),
        }
    }
}

/// The admin listener's own limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminFile {
    pub max_failures: u32,
    #[serde(with = "humantime_serde")]
    pub failure_window: Duration,
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
}

impl Default for AdminFile {
    fn default() -> Self {
        Self {
            max_failures: 10,
            failure_window: Duration::from_secs(60),
            header_read_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthFile {
    pub enabled: bool,
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    pub concurrency: usize,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for HealthFile {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(300),
            concurrency: 16,
            timeout: Duration::from_secs(10),
        }
    }
}

/// API-key upkeep done by the running gateway.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysFile {
    /// Keys revoked (their grace over) or expired longer ago than this are deleted.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// How often the purge runs.
    #[serde(with = "humantime_serde")]
    pub purge_interval: Duration,
    /// How often the keys used since the last time are written (`last_used_at`).
    #[serde(with = "humantime_serde")]
    pub last_used_flush: Duration,
}

impl Default for KeysFile {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(30 * 24 * 3600),
            purge_interval: Duration::from_secs(3600),
            last_used_flush: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsFile {
    pub per_site_labels: bool,
}

impl Default for MetricsFile {
    fn default() -> Self {
        Self {
            per_site_labels: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogFile {
    pub format: String,
    pub level: String,
}

impl Default for LogFile {
    fn default() -> Self {
        Self {
            format: "pretty".into(),
            level: "info".into(),
        }
    }
}

/// Legacy single-site mode, for migrations: requests without `X-Website-ID` go to one
/// site (off unless `default_site` is set).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LegacyFile {
    /// The site a request without `X-Website-ID` is sent to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_site: Option<String>,
    /// The `Deprecation` date announced to such clients (RFC 3339, UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deprecated_since: Option<String>,
    /// A page that tells client authors what to change (`Link: <...>; rel="deprecation"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deprecation_link: Option<String>,
}
