//! Configuration: figment layers (defaults < file < `WPGATE_*` env < CLI flags) read into
//! the serde mirror (`file.rs`), then validated into the model the gateway uses
//! (`model.rs`): a `Boot` half read once at start and a `Live` half that a reload
//! (`reload.rs`) replaces atomically while requests in flight keep the snapshot they
//! started with.

pub mod file;
pub mod model;
pub mod reload;
mod validate;

pub use model::{
    redact_url, Boot, Config, ConfigError, LegacySite, Live, LoadOptions, LogFormat, StoreUrl,
};

use arc_swap::ArcSwap;
use std::sync::Arc;

/// The configuration in effect: a request takes one snapshot at its start.
pub type Current = Arc<ArcSwap<Config>>;

pub fn current(config: Config) -> Current {
    Arc::new(ArcSwap::from_pointee(config))
}
