//! The fuzz targets' bodies: each takes arbitrary bytes, feeds them to a parser or
//! verifier that meets untrusted (or operator-written) input, and asserts what must hold
//! whatever the input, not only that nothing panics. `fuzz/` (cargo-fuzz, libFuzzer)
//! runs them for long; the unit tests below run each over its seed corpus
//! (`fuzz/corpus/<target>/`) and some thousands of mutations of it on every `cargo test`.
//!
//! Built only for tests and with the `fuzzing` feature (which `fuzz/Cargo.toml` turns
//! on): it holds fixed test keys that have no place in the gateway.
//!
//! | target | what it feeds |
//! |---|---|
//! | `api_key` | API key and admin token parsing; `api_key::check` with a fixed pepper |
//! | `jwt_token` | arbitrary text as a bearer token to HS*, RS/PS* and ES256 verifiers |
//! | `jwt_parts` | tokens built from the input: chosen header, claims, key and tampering |
//! | `jwks` | a JWKS document as an issuer's URL serves it; a PEM public key |
//! | `sealed` | sealed text to `Keyring::open` and `sealed_key_id`; tampered seals |
//! | `keyring` | keyring TOML to `Keyring::parse` and the `wpgate keyring` edits |
//! | `config` | `wpgate.toml` text through the layers and validation `check`/`serve` use |
//! | `request_path` | request targets to the proxy's path and route check, three allow-lists |

mod api_key;
mod config;
mod input;
mod jwt;
mod request_path;
mod sealed;
#[cfg(test)]
mod tests;

pub use api_key::api_key;
pub use config::config;
pub use jwt::{jwks, jwt_parts, jwt_token};
pub use request_path::request_path;
pub use sealed::{keyring, sealed};

/// A target's body: any bytes in, a panic if an invariant breaks.
pub type Target = fn(&[u8]);

/// Every target, by name (the names of `fuzz/fuzz_targets/*.rs` and `fuzz/corpus/*`).
pub const TARGETS: &[(&str, Target)] = &[
    ("api_key", api_key),
    ("jwt_token", jwt_token),
    ("jwt_parts", jwt_parts),
    ("jwks", jwks),
    ("sealed", sealed),
    ("keyring", keyring),
    ("config", config),
    ("request_path", request_path),
];
