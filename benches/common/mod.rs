//! Set-up shared by the criterion benches: a fleet in a temp data dir with one site.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use wpgate::config::{Config, LoadOptions};
use wpgate::fleet::{Actor, CredentialInput, Fleet, NewSite};
use wpgate::secret::Secret;
use wpgate::site::CredentialKind;

/// A fleet stored under `dir` with the site `shop` (app-password credential).
pub async fn fleet_with_shop(dir: &Path) -> (Fleet, Config) {
    let config = Config::load(&LoadOptions {
        config_file: None,
        data_dir: Some(dir.to_path_buf()),
    })
    .unwrap();
    let (fleet, _) = Fleet::open(
        &config,
        std::sync::Arc::new(wpgate::metrics::Metrics::new().unwrap()),
    )
    .await
    .unwrap();
    fleet
        .add_site(
            NewSite {
                id: "shop".parse().unwrap(),
                name: None,
                upstream_url: "http://127.0.0.1:9".into(),
                credential: CredentialInput {
                    kind: CredentialKind::AppPassword,
                    username: Some("api".into()),
                    secret: Some(Secret::from_string("abcd efgh ijkl mnop".into())),
                },
            },
            &Actor::new("bench"),
        )
        .await
        .unwrap();
    (fleet, config)
}
