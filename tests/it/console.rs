//! The admin web console (`/ui/`) in a real browser: `tests/console/console.test.mjs`
//! (playwright-core driving Debian's headless Chromium, axe-core for accessibility) run
//! against a real gateway and the first real WordPress site. It signs in (a wrong token
//! is refused), adds the site with its Application Password checked before saving,
//! turns it healthy with "Test now", issues a key (shown once; 200 through the proxy),
//! revokes it (401), revokes the Application Password in WordPress (auth_failed with
//! doctor's fix), replaces the credential with confirmation (healthy again), checks a
//! read-only token sees no write control at 360 px, and that no request left the page's
//! origin. The WordPress sites are taken for writing ([`SITES`]); a failure after the
//! Application Password was revoked gets a new one on the way out.
//!
//! What the browser test needs is installed by `tests/console/setup.sh` (tests/run runs
//! it; this test runs it too, a quick no-op once installed).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::wordpress::{wp_env, SITES};
use crate::harness::{run_within, Gateway};

/// The browser test's whole budget (it takes about 10 s here).
const BROWSER_DEADLINE: Duration = Duration::from_secs(180);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs tests/console/setup.sh and returns the directory holding playwright-core and
/// axe-core.
fn browser_dir() -> PathBuf {
    let dir = std::env::var_os("WPGATE_BROWSER_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/wpgate-browser"));
    let mut cmd = Command::new("bash");
    cmd.arg(repo().join("tests/console/setup.sh"))
        .env("WPGATE_BROWSER_DIR", &dir);
    let out = run_within(cmd, &["setup.sh"], None, Duration::from_secs(900))
        .expect("tests/console/setup.sh ran for 15 minutes");
    out.assert_ran("tests/console/setup.sh");
    dir
}

/// Gives the WordPress site a new Application Password when the browser test failed
/// (it may have revoked the one every other test uses).
struct RenewOnFailure {
    state_dir: PathBuf,
    site: String,
    armed: bool,
}

impl Drop for RenewOnFailure {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut cmd = Command::new("bash");
        cmd.arg(repo().join("tests/wordpress/setup.sh"))
            .args(["new-app-password", &self.site])
            .env("WPGATE_WP_STATE", &self.state_dir);
        match run_within(cmd, &["new-app-password"], None, Duration::from_secs(300)) {
            Some(out) if out.status.success() => {}
            _ => eprintln!(
                "RESTORE FAILED: run tests/wordpress/setup.sh new-app-password {}",
                self.site
            ),
        }
    }
}

#[tokio::test]
async fn the_console_runs_the_fleet_in_a_real_browser() {
    let browser = tokio::task::spawn_blocking(browser_dir).await.unwrap();
    let _exclusive = SITES.write().await;
    let env = wp_env();
    let wp = env.sites[0].clone();
    let gw = Gateway::start();
    let write = gw.admin_token("write", Some("console-test"));
    let read = gw.admin_token("read", Some("console-readonly"));

    let mut renew = RenewOnFailure {
        state_dir: env.state_dir.clone(),
        site: wp.name.clone(),
        armed: true,
    };
    let mut cmd = Command::new("node");
    cmd.arg(repo().join("tests/console/console.test.mjs"))
        .env("WPGATE_BROWSER_DIR", &browser)
        .env("CONSOLE_ADMIN", gw.admin_url(""))
        .env("CONSOLE_PROXY", gw.url(""))
        .env("CONSOLE_WRITE_TOKEN", &write)
        .env("CONSOLE_READ_TOKEN", &read)
        .env("CONSOLE_WP_URL", &wp.url)
        .env("CONSOLE_WP_USER", &wp.user)
        .env("CONSOLE_WP_APP_PASSWORD", &wp.app_password)
        .env("CONSOLE_WP_SETUP", repo().join("tests/wordpress/setup.sh"))
        .env("CONSOLE_WP_SITE", &wp.name)
        .env("CONSOLE_WP_ENV", env.state_dir.join("sites.env"))
        .env("WPGATE_WP_STATE", &env.state_dir);
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        run_within(cmd, &["console.test.mjs"], None, BROWSER_DEADLINE)
    })
    .await
    .unwrap()
    .unwrap_or_else(|| panic!("the browser test ran for {BROWSER_DEADLINE:?}"));
    eprintln!(
        "console.test.mjs: {:.1}s\n{}{}",
        started.elapsed().as_secs_f64(),
        out.stdout,
        out.stderr
    );
    out.assert_ran("the browser test (see its steps above)");
    assert!(out.stdout.contains("all passed"), "{}", out.stdout);
    renew.armed = false;

    // Nothing secret reached the browser test's output or the gateway's log.
    let logs = gw.logs();
    for secret in [&write, &read, &wp.app_password] {
        assert!(!out.stdout.contains(secret.as_str()) && !out.stderr.contains(secret.as_str()));
        assert!(
            !logs.contains(secret.as_str()),
            "a secret reached the gateway log"
        );
    }
}
