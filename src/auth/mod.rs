//! Client authentication: which credential a request presents, who it proves the
//! client is, and the exact reason when it proves nothing.
//!
//! [`Authenticator`] is the entry point: it turns a presented credential and the site a
//! request names into an [`Admitted`] principal or an [`AuthFailure`]. Each scheme lives
//! in its own module: API keys, local JWT checks (`jwt/`), delegated WordPress checks.

pub mod api_key;
mod authenticator;
pub mod delegated;
mod failure;
pub mod jwt;
pub mod policy;
mod presented;
pub mod ratelimit;

pub use authenticator::{
    Admitted, AuthSetupError, Authenticator, KeyLookup, Principal, SiteRef, UpstreamCredential,
};
pub use failure::AuthFailure;
pub use presented::{presented, Presented, API_KEY_HEADER};
