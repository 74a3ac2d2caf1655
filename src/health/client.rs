//! The HTTP client health checks use.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why the check client could not be built. The causes are part of the message (as the
/// operator reads it once), not a source chain.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read CA file {}: {error}", path.display())]
    ReadCaFile {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("CA file {} is not a PEM bundle: {error}", path.display())]
    NotPem {
        path: PathBuf,
        error: reqwest::Error,
    },
    #[error("CA file {} holds no certificate", path.display())]
    NoCertificate { path: PathBuf },
    #[error(transparent)]
    Build(#[from] reqwest::Error),
}

/// The HTTP client for checks: no redirects followed (a redirect is reported, since the
/// proxy does not follow it either), no proxy from the environment (the proxy connects
/// directly too), `timeout` per request. With `ca_file`, only the certificates in that
/// PEM bundle are trusted, as for the proxy's upstream connections.
pub fn client(ca_file: Option<&Path>, timeout: Duration) -> Result<reqwest::Client, ClientError> {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("wpgate-health/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|error| ClientError::ReadCaFile {
            path: path.to_path_buf(),
            error,
        })?;
        let certs =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|error| ClientError::NotPem {
                path: path.to_path_buf(),
                error,
            })?;
        if certs.is_empty() {
            return Err(ClientError::NoCertificate {
                path: path.to_path_buf(),
            });
        }
        b = b.tls_built_in_root_certs(false);
        for cert in certs {
            b = b.add_root_certificate(cert);
        }
    }
    Ok(b.build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn client_trusts_only_the_ca_file() {
        let dir = tempfile::tempdir().unwrap();
        let with_ca = |file: &str| client(Some(&dir.path().join(file)), Duration::from_secs(1));
        assert!(with_ca("missing.pem").is_err());
        std::fs::write(dir.path().join("empty.pem"), "").unwrap();
        assert!(with_ca("empty.pem").is_err());
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        std::fs::write(dir.path().join("ca.pem"), cert.cert.pem()).unwrap();
        assert!(with_ca("ca.pem").is_ok());
    }
}
