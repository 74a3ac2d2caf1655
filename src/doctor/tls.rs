//! The TLS check of an https upstream: a handshake with the trust the proxy uses
//! (`upstream.ca_file`, else the system's trust store, loaded the way Pingora loads it),
//! the upstream host as the name (SNI and verification), and the certificate's expiry.

use super::{Check, CheckName};
use crate::health::ProbeTarget;
use rustls::pki_types::ServerName;
use rustls::{CertificateError, RootCertStore};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The client side of the proxy's TLS to sites, built once per run.
pub(super) struct Trust {
    config: Result<Arc<rustls::ClientConfig>, String>,
    /// Where the roots come from, for messages.
    roots: String,
}

impl Trust {
    /// The proxy's trust: only the certificates of `ca_file`, or the system's store
    /// (with `SSL_CERT_FILE` / `SSL_CERT_DIR`), as Pingora's connector loads them.
    pub(super) fn new(ca_file: Option<&Path>) -> Self {
        let mut store = RootCertStore::empty();
        let (loaded, roots) = match ca_file {
            Some(path) => (
                pingora::tls::load_ca_file_into_store(path, &mut store),
                format!("upstream.ca_file {}", path.display()),
            ),
            None => (
                pingora::tls::load_platform_certs_incl_env_into_store(&mut store),
                "the system's trust store".to_string(),
            ),
        };
        let config = loaded
            .map_err(|e| format!("cannot load the trust roots ({roots}): {e}"))
            .and_then(|()| {
                if store.is_empty() {
                    return Err(format!("no trust roots in {roots}"));
                }
                rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
                .map_err(|e| e.to_string())
                .map(|b| Arc::new(b.with_root_certificates(store).with_no_client_auth()))
            });
        Trust { config, roots }
    }
}

/// What a check needs besides the trust.
pub(super) struct Peer<'a> {
    pub addr: SocketAddr,
    pub host: &'a str,
    pub target: &'a ProbeTarget,
}

/// Handshakes with `peer` and reads its certificate.
pub(super) async fn check(
    trust: &Trust,
    peer: &Peer<'_>,
    timeout: Duration,
    warn_within: Duration,
) -> Check {
    let config = match &trust.config {
        Ok(c) => Arc::clone(c),
        Err(why) => {
            return Check::fail(
                CheckName::Tls,
                why.clone(),
                Some(crate::health::tls_fix(peer.target)),
            )
        }
    };
    let Ok(name) = ServerName::try_from(peer.host.to_string()) else {
        return Check::fail(
            CheckName::Tls,
            format!("{} is not a name TLS can verify", peer.host),
            None,
        );
    };
    let handshake = async {
        let tcp = tokio::net::TcpStream::connect(peer.addr).await?;
        tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
    };
    let stream = match tokio::time::timeout(timeout, handshake).await {
        Err(_) => {
            return Check::fail(
                CheckName::Tls,
                format!(
                    "no TLS handshake with {} within {}",
                    peer.addr,
                    humantime::format_duration(timeout)
                ),
                Some(format!(
                    "check that {} serves HTTPS on port {}",
                    peer.host,
                    peer.addr.port()
                )),
            )
        }
        Ok(Err(e)) => return refused(trust, peer, &e),
        Ok(Ok(stream)) => stream,
    };
    let (_, session) = stream.get_ref();
    let protocol = session
        .protocol_version()
        .and_then(|v| v.as_str())
        .unwrap_or("TLS");
    let Some(leaf) = session.peer_certificates().and_then(|c| c.first()) else {
        return Check::fail(CheckName::Tls, "the server sent no certificate", None);
    };
    let not_after = match x509_parser::parse_x509_certificate(leaf) {
        Ok((_, cert)) => cert.validity().not_after.timestamp(),
        Err(e) => {
            return Check::fail(
                CheckName::Tls,
                format!("the certificate does not parse: {e}"),
                Some(crate::health::tls_fix(peer.target)),
            )
        }
    };
    let left = not_after - crate::time::now_unix();
    let days = left / 86_400;
    let until = crate::time::rfc3339(not_after);
    let found = format!(
        "{protocol} with {}: the certificate is valid for {} and trusted ({})",
        peer.addr, peer.host, trust.roots
    );
    if left < i64::try_from(warn_within.as_secs()).unwrap_or(i64::MAX) {
        return Check::warn(
            CheckName::Tls,
            format!(
                "{found}, but it expires in {days} days ({until}; warned within {} days)",
                warn_within.as_secs() / 86_400
            ),
            Some(format!(
                "renew the certificate of {} before {until}",
                peer.host
            )),
        );
    }
    Check::pass(
        CheckName::Tls,
        format!("{found}, until {until} ({days} days)"),
    )
}

/// A failed handshake, told by rustls's reason.
fn refused(trust: &Trust, peer: &Peer<'_>, e: &std::io::Error) -> Check {
    let fix = Some(crate::health::tls_fix(peer.target));
    let host = peer.host;
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return Check::fail(
            CheckName::Tls,
            format!(
                "TLS with {} failed ({e}): does port {} serve HTTPS?",
                peer.addr,
                peer.addr.port()
            ),
            fix,
        );
    };
    let why = match tls {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::NotValidForName => {
                format!("the certificate is not valid for {host}")
            }
            CertificateError::NotValidForNameContext { presented, .. } => format!(
                "the certificate is not valid for {host} (it names {})",
                presented.join(", ")
            ),
            CertificateError::UnknownIssuer => format!(
                "the certificate chain is not trusted: no CA in {} signed it (self-signed, a \
                 private CA, or the server does not send its intermediate certificates)",
                trust.roots
            ),
            CertificateError::BadSignature => format!(
                "the certificate chain is not trusted: its signature does not verify with the \
                 CA of that name in {}",
                trust.roots
            ),
            CertificateError::Expired => "the certificate has expired".to_string(),
            CertificateError::ExpiredContext { not_after, .. } => format!(
                "the certificate expired on {}",
                crate::time::rfc3339(i64::try_from(not_after.as_secs()).unwrap_or(0))
            ),
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the certificate is not valid yet (check the clocks)".to_string()
            }
            other => format!("the certificate is refused ({other})"),
        },
        other => format!("the TLS handshake failed ({other})"),
    };
    Check::fail(
        CheckName::Tls,
        format!("{why}; the proxy refuses it too"),
        fix,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::site::CredentialKind;
    use rcgen::{CertificateParams, KeyPair};
    use std::io::Write;

    /// An HTTPS server on 127.0.0.1 serving a certificate for `localhost` that expires
    /// in `days`; the CA file that trusts it.
    async fn server(days: i64) -> (SocketAddr, tempfile::NamedTempFile) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "doctor test site");
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        let end = crate::time::now_unix() + days * 86_400 - 3600;
        params.not_after =
            rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(u64::try_from(end).unwrap());
        let cert = params.self_signed(&key).unwrap();
        let mut ca = tempfile::NamedTempFile::new().unwrap();
        ca.write_all(cert.pem().as_bytes()).unwrap();
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _ = acceptor.accept(tcp).await;
                });
            }
        });
        (addr, ca)
    }

    fn target(base: &str) -> ProbeTarget {
        ProbeTarget {
            site_id: "shop".into(),
            base_url: base.into(),
            credential: None,
            credential_kind: CredentialKind::None,
            username: None,
            required_namespaces: vec![],
            enabled: true,
            unusable: None,
        }
    }

    async fn run(days: i64, host: &str, trusted: bool) -> Check {
        let (addr, ca) = server(days).await;
        let trust = if trusted {
            Trust::new(Some(ca.path()))
        } else {
            let other = tempfile::NamedTempFile::new().unwrap();
            let cert = rcgen::generate_simple_self_signed(vec!["other".into()]).unwrap();
            std::fs::write(other.path(), cert.cert.pem()).unwrap();
            Trust::new(Some(other.path()))
        };
        let t = target(&format!("https://{host}:{}", addr.port()));
        let peer = Peer {
            addr,
            host,
            target: &t,
        };
        check(
            &trust,
            &peer,
            Duration::from_secs(5),
            Duration::from_secs(14 * 86_400),
        )
        .await
    }

    #[tokio::test]
    async fn a_trusted_certificate_passes_and_one_near_its_end_is_warned() {
        let c = run(90, "localhost", true).await;
        assert_eq!(c.status, super::super::Status::Pass, "{c:?}");
        assert!(
            c.message.contains("valid for localhost and trusted"),
            "{c:?}"
        );

        let c = run(5, "localhost", true).await;
        assert_eq!(c.status, super::super::Status::Warn, "{c:?}");
        assert!(c.message.contains("expires in 4 days"), "{c:?}");
        assert!(c.message.contains("warned within 14 days"), "{c:?}");
        assert!(c
            .fix
            .unwrap()
            .contains("renew the certificate of localhost"));
    }

    #[tokio::test]
    async fn an_untrusted_chain_and_a_wrong_name_fail_with_the_reason() {
        let c = run(90, "localhost", false).await;
        assert_eq!(c.status, super::super::Status::Fail, "{c:?}");
        assert!(c.message.contains("not trusted"), "{c:?}");
        assert!(c.fix.unwrap().contains("upstream.ca_file"));

        let c = run(90, "127.0.0.1", true).await;
        assert_eq!(c.status, super::super::Status::Fail, "{c:?}");
        assert!(c.message.contains("not valid for 127.0.0.1"), "{c:?}");
    }
}
