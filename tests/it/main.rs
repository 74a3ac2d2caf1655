//! The integration tests: one binary, one module per capability, run against the real
//! `wpgate` binary, real HTTP upstreams, PostgreSQL and WordPress on loopback.
//! Shared set-up lives in `harness/`, by concern.
//!
//! Tests run in parallel threads of this one process: anything they share (the real
//! WordPress sites) is guarded in the harness; everything else is per test (its own
//! gateway process, temp dir, ports, upstreams, database).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

mod admin_api;
mod cache;
mod cli;
mod config_files;
mod console;
mod day_two;
mod doctor;
mod e2e_wordpress;
mod fleet_postgres;
mod hardening_admin;
mod hardening_delegated;
mod hardening_origin;
mod hardening_request;
mod health_fleet;
mod onboard;
mod openapi_conformance;
mod parity;
mod proxy_auth;
mod proxy_cors;
mod proxy_jwt;
mod proxy_tls;
mod proxy_tls_upstream;
mod proxy_upstream;
mod request_log;
mod rotation;
mod secrets;
mod store_contract;
mod store_migrate;
mod upgrade;
