//! The admin API agrees with its own OpenAPI description: schemathesis (PyPI) reads
//! `/admin/v1/openapi.json` from the real gateway, generates requests from it (valid
//! and invalid ones) and checks every answer against it — status codes, content types,
//! bodies, headers — with a write token. `tests/run` installs it (pinned, in a
//! virtualenv) and names it in `WPGATE_SCHEMATHESIS`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::harness::{run_within, Gateway, GatewayConfig, SiteAuth, Upstream};

/// schemathesis: `WPGATE_SCHEMATHESIS`, else `schemathesis` on the PATH. Panics when there
/// is none: this test is never skipped.
fn schemathesis() -> PathBuf {
    if let Some(p) = std::env::var_os("WPGATE_SCHEMATHESIS").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(
            p.exists(),
            "WPGATE_SCHEMATHESIS={} does not exist",
            p.display()
        );
        return p;
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("schemathesis"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "schemathesis not found (set WPGATE_SCHEMATHESIS or run tests/run, which \
                 installs it in /var/tmp/wpgate-schemathesis)"
            )
        })
}

#[tokio::test]
async fn schemathesis_finds_no_difference_between_the_admin_api_and_its_description() {
    let tool = schemathesis();
    let up = Upstream::start();
    // The harness turns the background health prober off. schemathesis sends bad tokens
    // on purpose (each a failed check): a failure limit no run reaches.
    let gw = Gateway::start_with(GatewayConfig {
        extra_toml: "[admin]\nmax_failures = 1000000\n".into(),
        ..GatewayConfig::default()
    });
    // Something to read and change: a site (the generated ids rarely hit it, the
    // examples phase does), with a key.
    gw.add_site("shop", &up.url(), &SiteAuth::bearer("shop-secret"));
    gw.issue_key("shop", &[]);
    let token = gw.admin_token("write", Some("schemathesis"));
    let report_dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(&tool);
    let url = gw.admin_url("/admin/v1/openapi.json");
    let auth = format!("Authorization: Bearer {token}");
    let config = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/schemathesis/schemathesis.toml"
    );
    let args = [
        "--config-file",
        config,
        "run",
        url.as_str(),
        "--header",
        auth.as_str(),
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--max-examples",
        "30",
        "--workers",
        "1",
        "--seed",
        "20261205",
        "--no-color",
    ];
    // Hooks: every URL in a generated body points at loopback (see the file).
    let hooks = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/schemathesis");
    cmd.args(args)
        .current_dir(report_dir.path())
        .env("PYTHONPATH", hooks)
        .env("SCHEMATHESIS_HOOKS", "wpgate_hooks")
        .env("WPGATE_TEST_UPSTREAM_PORT", up.port().to_string())
        .env("NO_COLOR", "1");
    let out = run_within(cmd, &args, None, Duration::from_secs(600))
        .expect("schemathesis did not finish in 10 minutes");
    assert!(
        out.status.success(),
        "schemathesis found differences between the admin API and its OpenAPI \
         description:\n{}\n{}",
        out.stdout,
        out.stderr
    );
    // The gateway answered every generated request without an internal error.
    assert!(
        !gw.logs().contains("\"level\":\"ERROR\""),
        "the gateway logged an error:\n{}",
        gw.logs()
    );
}
