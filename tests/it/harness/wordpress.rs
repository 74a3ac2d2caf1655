//! The real WordPress sites `tests/wordpress/setup.sh` runs on loopback: where they are
//! (`sites.env`), requests straight to them, and guards that put them back.
//!
//! The sites are shared by every test that uses them (and by later runs and developers):
//! a test that breaks a site on purpose takes [`SITES`] for writing and restores it on the
//! way out, panics included; every other test takes it for reading.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;

use super::answer::Answer;
use super::cli::run_within;
use super::wait::block_on_thread;

/// Shared WordPress state: write-locked by the test that breaks sites on purpose.
pub static SITES: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// One WordPress site as `sites.env` describes it.
#[derive(Clone, Debug)]
pub struct WpSite {
    /// setup.sh's name: site1, site2.
    pub name: String,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    pub port: u16,
    pub user: String,
    pub user_id: u64,
    pub app_password: String,
}

#[derive(Clone, Debug)]
pub struct WpEnv {
    pub state_dir: PathBuf,
    pub sites: Vec<WpSite>,
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

fn setup_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/wordpress/setup.sh")
}

/// The `sites.env` to read: `WPGATE_WP_ENV`, else `$WPGATE_WP_STATE/sites.env`, else
/// `/tmp/wpgate-wordpress/sites.env` (setup.sh's default).
fn env_path() -> PathBuf {
    if let Some(p) = std::env::var_os("WPGATE_WP_ENV").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let state = std::env::var_os("WPGATE_WP_STATE")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/wpgate-wordpress"));
    state.join("sites.env")
}

/// Run `tests/wordpress/setup.sh <args>` (at most 10 minutes: a first run installs
/// packages); panics with its output when it fails.
fn setup_sh(state_dir: Option<&Path>, args: &[&str]) {
    let mut cmd = Command::new("bash");
    cmd.arg(setup_script()).args(args);
    if let Some(dir) = state_dir {
        cmd.env("WPGATE_WP_STATE", dir);
    }
    let started = Instant::now();
    let out = run_within(cmd, args, None, Duration::from_secs(600))
        .unwrap_or_else(|| panic!("tests/wordpress/setup.sh {args:?} ran for 10 minutes"));
    out.assert_ran(&format!("tests/wordpress/setup.sh {args:?}"));
    eprintln!("setup.sh {args:?}: {:.1}s", started.elapsed().as_secs_f64());
}

/// `KEY='value'` lines as setup.sh writes them (`'` inside a value as `'\''`).
pub fn parse_env_file(text: &str) -> HashMap<String, String> {
    let mut vars = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, raw)) = line.split_once('=') else {
            continue;
        };
        let value = match raw.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
            Some(inner) => inner.replace("'\\''", "'"),
            None => raw.to_owned(),
        };
        vars.insert(key.to_owned(), value);
    }
    vars
}

fn load_env(path: &Path) -> WpEnv {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let vars = parse_env_file(&text);
    let var = |k: &str| -> String {
        vars.get(k)
            .filter(|v| !v.is_empty())
            .cloned()
            .unwrap_or_else(|| panic!("{k} missing from {}", path.display()))
    };
    let sites: Vec<WpSite> = (1..=2)
        .map(|n| {
            let p = format!("WPGATE_WP_SITE{n}_");
            let url = var(&format!("{p}URL"));
            assert!(
                url.starts_with("http://127.0.0.1:") || url.starts_with("http://localhost:"),
                "only loopback WordPress sites are used; {p}URL is {url}"
            );
            WpSite {
                name: var(&format!("{p}NAME")),
                port: var(&format!("{p}PORT")).parse().unwrap(),
                url,
                user: var(&format!("{p}USER")),
                user_id: var(&format!("{p}USER_ID")).parse().unwrap(),
                app_password: var(&format!("{p}APP_PASSWORD")),
            }
        })
        .collect();
    WpEnv {
        state_dir: vars
            .get("WPGATE_WP_STATE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| path.parent().unwrap().to_path_buf()),
        sites,
    }
}

/// The sites, read afresh from `sites.env` (credentials change: new-app-password).
/// The first call makes sure they run: under tests/run (`WPGATE_WP_ENV` set) or in CI
/// `sites.env` must exist; otherwise setup.sh runs once (idempotent, ~1 s when all is up).
pub fn wp_env() -> WpEnv {
    static READY: OnceLock<PathBuf> = OnceLock::new();
    let path = READY.get_or_init(|| {
        let path = env_path();
        let given = std::env::var_os("WPGATE_WP_ENV").is_some_and(|p| !p.is_empty());
        if given || in_ci() {
            assert!(
                path.is_file(),
                "{} is missing: run tests/wordpress/setup.sh first (tests/run does); \
                 the real-WordPress suite is never skipped in CI",
                path.display()
            );
        } else {
            let state = path.parent().map(Path::to_path_buf);
            setup_sh(state.as_deref(), &[]);
            assert!(path.is_file(), "setup.sh did not write {}", path.display());
        }
        path
    });
    load_env(path)
}

pub fn wp_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

impl WpSite {
    /// A request straight to WordPress (not through wpgate) as the admin user.
    pub fn direct(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        wp_client()
            .request(method, format!("{}{path}", self.url))
            .basic_auth(&self.user, Some(&self.app_password))
    }

    pub async fn direct_json(&self, method: Method, path: &str) -> (u16, Value) {
        self.direct_json_with(method, path, None).await
    }

    /// [`WpSite::direct_json`] with `body` sent as JSON, when given.
    pub async fn direct_json_with(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.direct(method.clone(), path);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "{method} {}{path} (direct) answered {status} without JSON ({e}): {}",
                self.url,
                text.chars().take(300).collect::<String>()
            )
        });
        (status, value)
    }
}

/// Deletes WordPress objects (posts, media, users) straight on their site when dropped, so a
/// failing test leaves nothing behind.
#[derive(Default)]
pub struct WpCleanup {
    /// (site, REST path of the object)
    objects: Vec<(WpSite, String)>,
}

impl WpCleanup {
    /// The JSON answer to `POST <collection>` through the gateway; the object it
    /// created, if any, is deleted later (`<collection>/<id>`) whatever else the answer
    /// says.
    pub fn created(&mut self, a: &Answer, site: &WpSite, collection: &str) -> Value {
        let created = a
            .json()
            .unwrap_or_else(|| panic!("POST {collection} via wpgate: {}", a.summary()));
        if let Some(id) = created["id"].as_u64() {
            self.objects
                .push((site.clone(), format!("{collection}/{id}")));
        }
        created
    }

    /// A user created on `site` (id `id`), deleted later with their content given to
    /// the site's admin.
    pub fn user(&mut self, site: &WpSite, id: u64) {
        self.objects.push((
            site.clone(),
            format!("/wp-json/wp/v2/users/{id}?reassign={}", site.user_id),
        ));
    }

    /// Deletes the objects now, asserting that each delete succeeds (the guard has
    /// nothing left to do).
    pub async fn delete_now(&mut self) {
        for (site, path) in std::mem::take(&mut self.objects) {
            let sep = if path.contains('?') { '&' } else { '?' };
            let (status, body) = site
                .direct_json(Method::DELETE, &format!("{path}{sep}force=true"))
                .await;
            assert_eq!(status, 200, "DELETE {path}: {body}");
            assert_eq!(body["deleted"], true, "{body}");
        }
    }
}

impl Drop for WpCleanup {
    fn drop(&mut self) {
        let objects = std::mem::take(&mut self.objects);
        if objects.is_empty() {
            return;
        }
        block_on_thread(async move {
            for (site, path) in objects {
                let sep = if path.contains('?') { '&' } else { '?' };
                match site
                    .direct(Method::DELETE, &format!("{path}{sep}force=true"))
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() || r.status().as_u16() == 404 => {}
                    Ok(r) => {
                        eprintln!("cleanup: DELETE {}{path} answered {}", site.url, r.status())
                    }
                    Err(e) => eprintln!("cleanup: DELETE {}{path} failed: {e}", site.url),
                }
            }
        });
    }
}

/// Puts the shared sites back when the health test ends, however it ends.
pub struct RestoreSites {
    state_dir: PathBuf,
    /// The setup.sh commands that undo what the test did, with their site's setup.sh
    /// name: `start-site` for a stopped nginx, `new-app-password` for a revoked one.
    undo: Vec<(&'static str, String)>,
}

impl RestoreSites {
    /// Nothing to restore yet.
    pub fn new(env: &WpEnv) -> Self {
        RestoreSites {
            state_dir: env.state_dir.clone(),
            undo: Vec::new(),
        }
    }

    fn run(&self, args: &[&str]) {
        setup_sh(Some(&self.state_dir), args);
    }

    /// Runs `command` on site `name`, remembering `undo` for the drop.
    fn change(&mut self, command: &str, name: &str, undo: &'static str) {
        self.undo.push((undo, name.to_owned()));
        self.run(&[command, name]);
    }

    /// Runs `undo` on site `name` now, so the drop need not.
    fn restore(&mut self, undo: &'static str, name: &str) {
        self.run(&[undo, name]);
        self.undo.retain(|(u, n)| !(*u == undo && n == name));
    }

    pub fn stop_site(&mut self, name: &str) {
        self.change("stop-site", name, "start-site");
    }

    pub fn start_site(&mut self, name: &str) {
        self.restore("start-site", name);
    }

    pub fn revoke_app_password(&mut self, name: &str) {
        self.change("revoke-app-password", name, "new-app-password");
    }

    pub fn new_app_password(&mut self, name: &str) {
        self.restore("new-app-password", name);
    }
}

impl Drop for RestoreSites {
    fn drop(&mut self) {
        let mut undo = std::mem::take(&mut self.undo);
        // Sites are started before any Application Password is renewed.
        undo.sort_by_key(|(command, _)| *command != "start-site");
        for (command, name) in undo {
            let r = std::panic::catch_unwind(|| self.run(&[command, &name]));
            if r.is_err() {
                eprintln!("RESTORE FAILED: run tests/wordpress/setup.sh {command} {name}");
            }
        }
    }
}
