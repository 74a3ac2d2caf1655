//! Store records for tests and benches that write the store directly. Shared with
//! `benches/store_scale.rs` (included there by path), so it uses nothing from the harness.

use wpgate::site::CredentialKind;
use wpgate::store::{SiteRecord, StoredCredential};

/// A plain enabled site `id`: no credential, no auth policy, version 1.
pub fn site(id: &str) -> SiteRecord {
    SiteRecord {
        id: id.into(),
        name: id.into(),
        upstream_url: "http://127.0.0.1:1".into(),
        enabled: true,
        credential: StoredCredential {
            kind: CredentialKind::None,
            username: None,
            sealed_secret: None,
        },
        auth_policy: None,
        jwt_secret_sealed: None,
        required_namespaces: Vec::new(),
        health_fail_fast: false,
        allowed_paths: Vec::new(),
        allowed_origins: Vec::new(),
        created_at: 1_700_000_000,
        updated_at: 1_700_000_000,
        version: 1,
    }
}

/// An app-password credential for the WordPress user `gateway`.
pub fn app_password(sealed_secret: String) -> StoredCredential {
    StoredCredential {
        kind: CredentialKind::AppPassword,
        username: Some("gateway".into()),
        sealed_secret: Some(sealed_secret),
    }
}
