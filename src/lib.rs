//! wpgate: an authentication gateway for fleets of WordPress sites.
//!
//! Clients call a site's REST API through wpgate with a per-site API key; wpgate checks
//! the key, drops it, and forwards the request with the site's own WordPress credential,
//! which it keeps sealed at rest and which clients never see. See `README.md`.

pub mod admin;
pub mod auth;
pub mod cache;
pub mod cli;
pub mod config;
pub mod credential;
pub mod crypto;
pub mod doctor;
pub mod error;
pub mod fleet;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
pub mod metrics;
pub mod proxy;
pub mod secret;
pub mod serve;
pub mod site;
pub mod store;
pub mod time;
pub mod tls;
