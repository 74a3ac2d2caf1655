//! What the integration tests share, one file per concern: the real gateway process
//! and its CLI, real upstreams on loopback (recording, TLS, JWKS, WordPress mimic),
//! the real WordPress sites and PostgreSQL, and reading what the gateway says
//! (answers, access log, metrics).

mod access_log;
mod admin;
mod answer;
mod cli;
mod credentials;
mod gateway;
mod jwks;
mod metrics;
mod one_site;
mod payload;
pub mod png;
mod ports;
pub mod postgres;
mod raw;
pub mod records;
mod text;
mod tls;
mod upstream;
mod wait;
pub mod wordpress;
mod wp_mimic;

pub use access_log::log_field;
pub use answer::Answer;
pub use cli::{run_within, run_wpgate, run_wpgate_within, wpgate_command, CliOutput, CLI_DEADLINE};
pub use credentials::{ApiKey, SiteAuth, KEY_HEADER, SITE_HEADER};
pub use gateway::{http_client, Gateway, GatewayConfig, STARTUP_DEADLINE};
pub use jwks::JwksServer;
pub use metrics::{
    metric_sum, metric_value, parse_metrics, promtool_check_metrics, Sample, HEALTH_STATES,
};
pub use one_site::OneSite;
pub use payload::{pattern_sha256, pattern_stream};
pub use ports::{free_port, http_answers};
pub use text::{base64_std, hex, is_sane_request_id, marker, random_string, sha256_hex, toml_str};
pub use tls::{served_serial, AdminTls, CertOnDisk, H2Connection, TestCa, TlsListen};
pub use upstream::{Recorded, ServerThread, Upstream};
pub use wait::{poll_until, poll_until_blocking, CHANGE_DEADLINE};
pub use wp_mimic::{WpFault, WpMimic};
