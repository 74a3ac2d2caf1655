//! HTTPS upstreams: verified against `upstream.ca_file` when configured, refused when
//! the certificate does not chain to a trusted root.

use crate::harness::{marker, Gateway, GatewayConfig, SiteAuth, TestCa, Upstream};

#[tokio::test]
async fn https_upstream_trusted_through_ca_file() {
    let ca = TestCa::generate();
    let up = Upstream::start_tls(&ca);
    let ca_dir = tempfile::TempDir::new().unwrap();
    let ca_file = ca_dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).unwrap();

    let gw = Gateway::start_with(GatewayConfig {
        ca_file: Some(ca_file),
        ..GatewayConfig::default()
    });
    let auth = SiteAuth::bearer("tls-upstream-token");
    gw.add_site("tls", &up.url(), &auth);
    let key = gw.issue_key("tls", &[]);

    let m = marker();
    gw.get_as("tls", &key.full, &format!("/wp-json/?{m}"))
        .await
        .assert_ok();
    let r = up.one_with(&m);
    assert_eq!(
        r.header_values("authorization"),
        vec!["Bearer tls-upstream-token"]
    );
    let host = format!("localhost:{}", up.port());
    assert_eq!(r.header_values("host"), vec![host.as_str()], "{r:#?}");
}

#[tokio::test]
async fn https_upstream_with_untrusted_certificate_is_502() {
    let ca = TestCa::generate();
    let up = Upstream::start_tls(&ca);
    let gw = Gateway::start(); // no ca_file: the system roots do not know our CA
    gw.add_site("tls", &up.url(), &SiteAuth::bearer("never-sent-token"));
    let key = gw.issue_key("tls", &[]);

    let a = gw.get_as("tls", &key.full, "/wp-json/").await;
    assert_eq!(a.status, 502, "{}", a.summary());
    let code = a.error_code().unwrap_or_default();
    assert!(
        code.starts_with("upstream."),
        "code {code:?}: {}",
        a.summary()
    );
    assert!(
        up.requests().is_empty(),
        "a request reached an upstream whose certificate was not trusted"
    );
}
