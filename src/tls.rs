//! TLS on the proxy and admin listeners: certificates read from PEM files and checked,
//! then served through a resolver that a reload swaps without touching a connection.
//!
//! Pingora's rustls listener (`TlsSettings::set_cert_resolver`) and the admin listener
//! (tokio-rustls) ask a [`CertResolver`] for the certificate at each handshake. A
//! reload loads and checks the new pair off to the side ([`prepare`]); only when every
//! pair is good does it store them ([`ServingCerts::apply`]): new handshakes get the new
//! certificate, established connections keep the one they were made with.

use crate::config::model::{CertFiles, TlsFiles};
use crate::config::Boot;
use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::sync::Arc;
use zeroize::Zeroizing;

/// Why a certificate or key file was refused. Never holds key material.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("`{setting}` {path}: {problem}")]
    File {
        setting: &'static str,
        path: String,
        problem: String,
    },
    #[error(
        "`{key_setting}` {key}: the private key does not belong to the certificate in `{cert_setting}` {cert}"
    )]
    Mismatch {
        cert_setting: &'static str,
        cert: String,
        key_setting: &'static str,
        key: String,
    },
}

/// What a served certificate says about itself (logs, the reload answer, metrics).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CertInfo {
    /// E.g. `CN=gw.example.com`.
    pub subject: String,
    /// Hex bytes separated by `:`, as x509 tools print it.
    pub serial: String,
    /// Unix time at which it stops being valid.
    pub not_after: i64,
}

/// A checked certificate chain with its signing key.
pub struct LoadedCert {
    key: Arc<CertifiedKey>,
    info: CertInfo,
}

impl LoadedCert {
    pub fn info(&self) -> &CertInfo {
        &self.info
    }
}

/// The crypto the listeners use: ring, as everywhere else in the process.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads `files` and checks them: a PEM chain whose certificates all parse, the first
/// one not expired at `now_unix`, and a private key that rustls can sign with and that
/// belongs to that certificate.
pub fn load(files: &CertFiles, now_unix: i64) -> Result<LoadedCert, CertError> {
    let cert_error = |problem: String| CertError::File {
        setting: files.cert_setting,
        path: files.cert.display().to_string(),
        problem,
    };
    let key_error = |problem: String| CertError::File {
        setting: files.key_setting,
        path: files.key.display().to_string(),
        problem,
    };
    let cert_pem =
        std::fs::read(&files.cert).map_err(|e| cert_error(format!("cannot read it: {e}")))?;
    let key_pem = Zeroizing::new(
        std::fs::read(&files.key).map_err(|e| key_error(format!("cannot read it: {e}")))?,
    );

    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_error(pem_problem(&e)))?;
    let Some(leaf) = chain.first() else {
        return Err(cert_error(
            "no certificate in it (a PEM \"BEGIN CERTIFICATE\" section)".into(),
        ));
    };
    for (i, der) in chain.iter().enumerate() {
        x509_parser::parse_x509_certificate(der).map_err(|e| {
            cert_error(format!(
                "certificate {} of the chain does not parse: {e}",
                i + 1
            ))
        })?;
    }
    let info = match x509_parser::parse_x509_certificate(leaf) {
        Ok((_, cert)) => CertInfo {
            subject: cert.subject().to_string(),
            serial: cert.raw_serial_as_string(),
            not_after: cert.validity().not_after.timestamp(),
        },
        Err(e) => return Err(cert_error(format!("the certificate does not parse: {e}"))),
    };
    if info.not_after < now_unix {
        return Err(cert_error(format!(
            "the certificate ({}, serial {}) expired at {}",
            info.subject,
            info.serial,
            crate::time::rfc3339(info.not_after)
        )));
    }

    // The key's own parse errors are not passed on: they could quote its bytes.
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        pem::Error::NoItemsFound => {
            key_error("no private key in it (PEM PKCS#8, PKCS#1 or SEC1)".into())
        }
        other => key_error(pem_problem(&other)),
    })?;
    let key = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            CertError::Mismatch {
                cert_setting: files.cert_setting,
                cert: files.cert.display().to_string(),
                key_setting: files.key_setting,
                key: files.key.display().to_string(),
            }
        }
        rustls::Error::InvalidCertificate(_) => {
            cert_error("the certificate's public key cannot be read".into())
        }
        _ => key_error(
            "the private key cannot be used (an RSA of 2048+ bits, ECDSA P-256/P-384 or Ed25519 key is needed)"
                .into(),
        ),
    })?;
    Ok(LoadedCert {
        key: Arc::new(key),
        info,
    })
}

/// A PEM syntax problem in words, without quoting the file.
fn pem_problem(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { .. } => "a PEM section has no END line",
        pem::Error::IllegalSectionStart { .. } => "a PEM BEGIN line is malformed",
        pem::Error::Base64Decode(_) => "a PEM section is not valid base64",
        pem::Error::NoItemsFound => "nothing in it is PEM",
        _ => "it cannot be read as PEM",
    }
    .into()
}

/// Hands every handshake the certificate in effect; a reload replaces it.
pub struct CertResolver {
    current: ArcSwap<LoadedCert>,
}

impl CertResolver {
    pub fn new(cert: Arc<LoadedCert>) -> Arc<Self> {
        Arc::new(CertResolver {
            current: ArcSwap::new(cert),
        })
    }

    /// New handshakes get `cert` from now on.
    pub fn store(&self, cert: Arc<LoadedCert>) {
        self.current.store(cert);
    }

    pub fn info(&self) -> CertInfo {
        self.current.load().info.clone()
    }
}

impl std::fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cert = self.current.load();
        f.debug_struct("CertResolver")
            .field("subject", &cert.info.subject)
            .field("serial", &cert.info.serial)
            .finish()
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.current.load().key))
    }
}

/// Every pair a configuration names, loaded and checked, not served yet.
pub struct Prepared {
    certificate: Option<Arc<LoadedCert>>,
    admin_certificate: Option<Arc<LoadedCert>>,
}

impl Prepared {
    /// `tls.cert_file`'s, when named.
    pub fn certificate(&self) -> Option<&LoadedCert> {
        self.certificate.as_deref()
    }

    /// `tls.admin_cert_file`'s, when named.
    pub fn admin_certificate(&self) -> Option<&LoadedCert> {
        self.admin_certificate.as_deref()
    }

    fn admin(&self) -> Option<&Arc<LoadedCert>> {
        self.admin_certificate
            .as_ref()
            .or(self.certificate.as_ref())
    }
}

/// Loads and checks every pair `tls` names (reads files: call off the async threads).
/// One bad pair refuses the whole.
pub fn prepare(tls: &TlsFiles, now_unix: i64) -> Result<Prepared, CertError> {
    let load_pair = |files: &Option<CertFiles>| {
        files
            .as_ref()
            .map(|f| load(f, now_unix).map(Arc::new))
            .transpose()
    };
    Ok(Prepared {
        certificate: load_pair(&tls.certificate)?,
        admin_certificate: load_pair(&tls.admin_certificate)?,
    })
}

/// The certificates this process serves: a resolver for each TLS listener it opened.
#[derive(Default)]
pub struct ServingCerts {
    proxy: Option<Arc<CertResolver>>,
    admin: Option<Arc<CertResolver>>,
}

/// A listener's certificate in effect.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServedCert {
    /// `proxy` or `admin`.
    pub listener: &'static str,
    #[serde(flatten)]
    pub info: CertInfo,
}

impl ServingCerts {
    /// The resolvers of the TLS listeners `boot` opens, with the pairs `tls` names
    /// (validation makes sure each listener has one).
    pub fn start(boot: &Boot, tls: &TlsFiles, now_unix: i64) -> Result<Self, CertError> {
        let prepared = prepare(tls, now_unix)?;
        Ok(ServingCerts {
            proxy: boot
                .listen_proxy_tls
                .and(prepared.certificate.clone())
                .map(CertResolver::new),
            admin: prepared
                .admin()
                .filter(|_| boot.listen_admin_tls)
                .cloned()
                .map(CertResolver::new),
        })
    }

    pub fn proxy(&self) -> Option<&Arc<CertResolver>> {
        self.proxy.as_ref()
    }

    pub fn admin(&self) -> Option<&Arc<CertResolver>> {
        self.admin.as_ref()
    }

    /// Serves the prepared pairs on the listeners that exist. A listener whose pair
    /// the new configuration no longer names keeps its certificate (removing TLS from
    /// a listener takes a restart).
    pub fn apply(&self, prepared: &Prepared) {
        if let (Some(resolver), Some(cert)) = (&self.proxy, &prepared.certificate) {
            resolver.store(Arc::clone(cert));
        }
        if let (Some(resolver), Some(cert)) = (&self.admin, prepared.admin()) {
            resolver.store(Arc::clone(cert));
        }
    }

    /// The certificate each TLS listener serves now.
    pub fn in_use(&self) -> Vec<ServedCert> {
        [("proxy", &self.proxy), ("admin", &self.admin)]
            .into_iter()
            .filter_map(|(listener, resolver)| {
                resolver.as_ref().map(|r| ServedCert {
                    listener,
                    info: r.info(),
                })
            })
            .collect()
    }

    /// Sets `wpgate_tls_certificate_expiry_timestamp_seconds` for each TLS listener.
    pub fn record(&self, metrics: &crate::metrics::Metrics) {
        for served in self.in_use() {
            metrics
                .tls_certificate_expiry
                .with_label_values(&[served.listener])
                .set(served.info.not_after);
        }
    }
}

/// The proxy's TLS listener settings for Pingora: TLS 1.2 and 1.3 (Pingora's rustls
/// listener allows no other), ALPN `h2` then `http/1.1`, the certificate from
/// `resolver`. Pingora reads no file when a resolver is set.
pub fn proxy_settings(
    files: &CertFiles,
    resolver: Arc<CertResolver>,
) -> pingora::Result<pingora::listeners::tls::TlsSettings> {
    let mut settings = pingora::listeners::tls::TlsSettings::intermediate(
        &files.cert.to_string_lossy(),
        &files.key.to_string_lossy(),
    )?;
    settings.set_cert_resolver(resolver);
    settings.enable_h2();
    Ok(settings)
}

/// The admin listener's TLS: TLS 1.2 and 1.3, HTTP/1.1 only, the certificate from
/// `resolver`.
pub fn admin_acceptor(
    resolver: Arc<CertResolver>,
) -> Result<tokio_rustls::TlsAcceptor, rustls::Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair, SerialNumber};
    use std::path::Path;

    const NOW: i64 = 1_800_000_000;

    /// A self-signed certificate for `cn` with serial `serial`, valid around NOW unless
    /// `expired`: (chain PEM, key PEM).
    fn self_signed(cn: &str, serial: u8, expired: bool) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![cn.to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.serial_number = Some(SerialNumber::from(vec![serial]));
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = if expired {
            rcgen::date_time_ymd(2021, 1, 1)
        } else {
            rcgen::date_time_ymd(2040, 1, 1)
        };
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn files(dir: &Path, cert: &str, key: &str) -> CertFiles {
        let (c, k) = (dir.join("chain.pem"), dir.join("key.pem"));
        std::fs::write(&c, cert).unwrap();
        std::fs::write(&k, key).unwrap();
        CertFiles {
            cert: c,
            key: k,
            cert_setting: "tls.cert_file",
            key_setting: "tls.key_file",
        }
    }

    #[test]
    fn a_good_pair_loads_with_what_it_says_about_itself() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed("gw.example", 0x2a, false);
        let loaded = load(&files(dir.path(), &cert, &key), NOW).unwrap();
        assert_eq!(loaded.info().subject, "CN=gw.example");
        assert_eq!(loaded.info().serial, "2a");
        assert_eq!(loaded.info().not_after, 2_208_988_800);
    }

    #[test]
    fn bad_pairs_are_refused_naming_the_setting_and_file_never_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed("gw.example", 1, false);
        let (_, other_key) = self_signed("other.example", 2, false);
        let (expired, expired_key) = self_signed("old.example", 3, true);
        let key_body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
        let cases = [
            (
                "garbage".to_string(),
                key.clone(),
                "tls.cert_file",
                "no certificate",
            ),
            (
                cert.replace("-----END CERTIFICATE-----", ""),
                key.clone(),
                "tls.cert_file",
                "no END line",
            ),
            (
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into(),
                key.clone(),
                "tls.cert_file",
                "does not parse",
            ),
            (
                cert.clone(),
                "not a key".into(),
                "tls.key_file",
                "no private key",
            ),
            (cert.clone(), cert.clone(), "tls.key_file", "no private key"),
            (
                cert.clone(),
                key.replace(&key_body[10..20], "!!!!!!!!!!"),
                "tls.key_file",
                "base64",
            ),
            (cert.clone(), other_key, "does not belong", "tls.cert_file"),
            (
                expired,
                expired_key,
                "tls.cert_file",
                "expired at 2021-01-01",
            ),
        ];
        for (cert, key, want1, want2) in cases {
            let f = files(dir.path(), &cert, &key);
            let err = load(&f, NOW).err().unwrap().to_string();
            assert!(err.contains(want1) && err.contains(want2), "{err}");
            assert!(err.contains(&*dir.path().to_string_lossy()), "{err}");
            assert!(!err.contains(&key_body[..16]), "key material in: {err}");
        }
        let missing = CertFiles {
            cert: dir.path().join("nope.pem"),
            ..files(dir.path(), &cert, &key)
        };
        let err = load(&missing, NOW).err().unwrap().to_string();
        assert!(
            err.contains("nope.pem") && err.contains("cannot read"),
            "{err}"
        );
    }

    #[test]
    fn a_reload_swaps_what_new_handshakes_get() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed("one.example", 1, false);
        let first = Arc::new(load(&files(dir.path(), &cert, &key), NOW).unwrap());
        let resolver = CertResolver::new(Arc::clone(&first));
        let held = resolver.current.load().key.clone();
        let (cert, key) = self_signed("two.example", 2, false);
        resolver.store(Arc::new(
            load(&files(dir.path(), &cert, &key), NOW).unwrap(),
        ));
        assert_eq!(resolver.info().serial, "02");
        assert!(!Arc::ptr_eq(&held, &resolver.current.load().key));
        assert!(format!("{resolver:?}").contains("two.example"));
    }
}
