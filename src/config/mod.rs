//! Configuration: figment layers (defaults < file < `WPGATE_*` env < CLI flags) read into
//! the serde mirror (`file.rs`), then validated into the model the gateway uses
//! (`model.rs`). The live configuration is an `ArcSwap` snapshot so a reload can replace
//! it atomically while requests in flight keep the one they started with.

pub mod file;
pub mod model;

pub use model::{redact_url, Config, ConfigError, LoadOptions, LogFormat, StoreUrl};

use arc_swap::ArcSwap;
use std::sync::Arc;

/// The configuration a request sees: taken once at the start of the request.
pub type Live = Arc<ArcSwap<Config>>;

pub fn live(config: Config) -> Live {
    Arc::new(ArcSwap::from_pointee(config))
}
