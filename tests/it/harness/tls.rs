//! TLS: a throw-away CA; the HTTPS upstream's listener; the gateway's own TLS
//! listeners (certificate files a test replaces, clients that report the certificate
//! they were served, an HTTP/2 client negotiated by ALPN).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};

/// A throw-away CA and a server certificate it signed for `localhost` and 127.0.0.1
/// (for an HTTPS upstream); it issues more on demand (for the gateway's listeners).
pub struct TestCa {
    pub ca_pem: String,
    pub server_cert_der: Vec<u8>,
    pub server_key_der: Vec<u8>,
    ca_cert: rcgen::Certificate,
    ca_key: KeyPair,
}

/// A server certificate and its key, as PEM.
#[derive(Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    /// As the gateway and x509 tools print it (`01`, `2a`...).
    pub serial: String,
}

impl TestCa {
    pub fn generate() -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "wpgate test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();

        let server_key = KeyPair::generate().unwrap();
        let server_cert = Self::server_params("localhost", None, false)
            .signed_by(&server_key, &ca_cert, &ca_key)
            .unwrap();

        TestCa {
            ca_pem: ca_cert.pem(),
            server_cert_der: server_cert.der().to_vec(),
            server_key_der: server_key.serialize_der(),
            ca_cert,
            ca_key,
        }
    }

    /// A server certificate for `localhost` and 127.0.0.1 with subject `CN=<cn>`.
    fn server_params(cn: &str, serial: Option<u8>, expired: bool) -> CertificateParams {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.serial_number = serial.map(|s| SerialNumber::from(vec![s]));
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        params
    }

    /// A server certificate signed by this CA, subject `CN=<cn>`, serial `serial`
    /// (below 0x80), with a new key.
    pub fn issue(&self, cn: &str, serial: u8) -> Issued {
        self.issue_inner(cn, serial, false)
    }

    /// Like [`TestCa::issue`], but it expired in 2021.
    pub fn issue_expired(&self, cn: &str, serial: u8) -> Issued {
        self.issue_inner(cn, serial, true)
    }

    fn issue_inner(&self, cn: &str, serial: u8, expired: bool) -> Issued {
        assert!(serial < 0x80, "one positive DER byte");
        let key = KeyPair::generate().unwrap();
        let cert = Self::server_params(cn, Some(serial), expired)
            .signed_by(&key, &self.ca_cert, &self.ca_key)
            .unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            serial: format!("{serial:02x}"),
        }
    }

    /// An HTTPS client that trusts this CA only and keeps the certificate each
    /// connection was served (see [`served_serial`]); HTTP/1.1 (reqwest is built
    /// without HTTP/2 here, as in the gateway). `fresh_connections`: no connection is
    /// reused, every request makes a new handshake. A client resumes its earlier TLS
    /// sessions, which carry no certificate (it reports the session's first one): to
    /// see the certificate a full handshake gets now, use a new client.
    pub fn https_client(&self, fresh_connections: bool) -> reqwest::Client {
        let mut b = reqwest::Client::builder()
            .no_proxy()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap())
            .tls_info(true)
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30));
        if fresh_connections {
            b = b.pool_max_idle_per_host(0);
        }
        b.build().unwrap()
    }

    /// A rustls client configuration that trusts this CA only, offering `alpn`.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<tokio_rustls::rustls::ClientConfig> {
        use tokio_rustls::rustls;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from(
                self.ca_cert.der().to_vec(),
            ))
            .unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    pub(super) fn server_config(&self) -> Arc<tokio_rustls::rustls::ServerConfig> {
        use tokio_rustls::rustls;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(self.server_cert_der.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key_der.clone())),
            )
            .unwrap();
        Arc::new(config)
    }
}

/// A TLS listener for `axum::serve`: accepts TCP, completes the handshake, and skips
/// connections whose handshake fails (e.g. a client that refuses our certificate).
pub(super) struct TlsListener {
    pub(super) tcp: tokio::net::TcpListener,
    pub(super) acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            let handshake = self.acceptor.accept(tcp);
            if let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(5), handshake).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// The serial of the certificate the response's connection was served, as the gateway
/// prints it (needs a client with `tls_info(true)`).
pub fn served_serial(response: &reqwest::Response) -> String {
    let info = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .expect("a client with tls_info(true), over https");
    let der = info.peer_certificate().expect("a server certificate");
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    cert.raw_serial_as_string()
}

/// A gateway certificate and key as files in a temp dir, for `[tls]`, which a test
/// replaces while the gateway runs.
pub struct CertOnDisk {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    dir: tempfile::TempDir,
}

impl CertOnDisk {
    pub fn write(issued: &Issued) -> Self {
        let dir = tempfile::TempDir::new().unwrap();
        let on_disk = CertOnDisk {
            cert_file: dir.path().join("chain.pem"),
            key_file: dir.path().join("key.pem"),
            dir,
        };
        on_disk.replace(&issued.cert_pem, &issued.key_pem);
        on_disk
    }

    /// Replaces the key, then the certificate, each with an atomic rename (as
    /// certificate tools do): the file watcher never sees half a file.
    pub fn replace(&self, cert_pem: &str, key_pem: &str) {
        for (path, text) in [(&self.key_file, key_pem), (&self.cert_file, cert_pem)] {
            let tmp = self.dir.path().join("incoming.tmp");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, path).unwrap();
        }
    }

    pub fn replace_with(&self, issued: &Issued) {
        self.replace(&issued.cert_pem, &issued.key_pem);
    }
}

/// One HTTP/2 connection over TLS to the gateway, negotiated by ALPN.
pub struct H2Connection {
    send: h2::client::SendRequest<bytes::Bytes>,
    authority: String,
    /// The protocol ALPN chose.
    pub alpn: Option<Vec<u8>>,
}

/// An answer over HTTP/2.
pub struct H2Answer {
    pub status: u16,
    pub version: http::Version,
    pub body: String,
}

impl H2Connection {
    /// Connects to `addr` offering `h2` and `http/1.1` (as browsers do); the
    /// connection runs on the caller's runtime.
    pub async fn connect(ca: &TestCa, addr: SocketAddr) -> Self {
        let connector = tokio_rustls::TlsConnector::from(ca.client_config(&[b"h2", b"http/1.1"]));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = tokio_rustls::rustls::pki_types::ServerName::IpAddress(addr.ip().into());
        let tls = connector.connect(name, tcp).await.unwrap();
        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let (send, connection) = h2::client::handshake(tls).await.unwrap();
        tokio::spawn(async move {
            let _ = connection.await;
        });
        H2Connection {
            send,
            authority: addr.to_string(),
            alpn,
        }
    }

    /// GET `path` with `headers` as one stream of this connection.
    pub async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> H2Answer {
        let mut req = http::Request::get(format!("https://{}{path}", self.authority));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let send = self.send.clone().ready().await.unwrap();
        self.send = send;
        let (response, _) = self.send.send_request(req.body(()).unwrap(), true).unwrap();
        let response = response.await.unwrap();
        let (status, version) = (response.status().as_u16(), response.version());
        let mut body = response.into_body();
        let mut bytes = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.unwrap();
            let _ = body.flow_control().release_capacity(chunk.len());
            bytes.extend_from_slice(&chunk);
        }
        H2Answer {
            status,
            version,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }
}

/// The gateway's TLS listeners, written into its config (`listen.proxy_tls`,
/// `listen.admin_tls`, `[tls]`).
#[derive(Clone, Debug)]
pub struct TlsListen {
    /// `listen.proxy_tls` (a free loopback port).
    pub addr: SocketAddr,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Keep the plain-HTTP proxy listener (`listen.proxy`) beside HTTPS.
    pub plain_too: bool,
    pub admin: AdminTls,
}

#[derive(Clone, Debug)]
pub enum AdminTls {
    Off,
    /// `listen.admin_tls = true` with `tls.cert_file`/`key_file`.
    SameCertificate,
    /// `listen.admin_tls = true` with `tls.admin_cert_file`/`admin_key_file`.
    Own {
        cert_file: PathBuf,
        key_file: PathBuf,
    },
}

impl TlsListen {
    /// HTTPS beside plain HTTP on the proxy, with `cert`; plain admin listener.
    pub fn new(cert: &CertOnDisk) -> Self {
        TlsListen {
            addr: format!("127.0.0.1:{}", super::ports::free_port())
                .parse()
                .unwrap(),
            cert_file: cert.cert_file.clone(),
            key_file: cert.key_file.clone(),
            plain_too: true,
            admin: AdminTls::Off,
        }
    }

    /// Lines for the `[listen]` table.
    pub(super) fn listen_toml(&self) -> String {
        let mut s = format!(
            "proxy_tls = {}\n",
            super::text::toml_str(&self.addr.to_string())
        );
        if !matches!(self.admin, AdminTls::Off) {
            s.push_str("admin_tls = true\n");
        }
        s
    }

    /// The `[tls]` table.
    pub(super) fn tls_toml(&self) -> String {
        let path = |p: &PathBuf| super::text::toml_str(&p.to_string_lossy());
        let mut s = format!(
            "\n[tls]\ncert_file = {}\nkey_file = {}\n",
            path(&self.cert_file),
            path(&self.key_file)
        );
        if let AdminTls::Own {
            cert_file,
            key_file,
        } = &self.admin
        {
            s.push_str(&format!(
                "admin_cert_file = {}\nadmin_key_file = {}\n",
                path(cert_file),
                path(key_file)
            ));
        }
        s
    }
}
