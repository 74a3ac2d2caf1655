//! The real gateway: `wpgate serve` started as a process with its own temp dir, config,
//! data dir, ports and log, set up through the CLI and driven over HTTP.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::answer::Answer;
use super::cli::{run_wpgate, wpgate_command, CliOutput};
use super::credentials::{ApiKey, SiteAuth, KEY_HEADER, SITE_HEADER};
use super::ports::{free_port, http_answers};
use super::text::toml_str;
use super::tls::TlsListen;
use super::wait::{poll_until, CHANGE_DEADLINE};

/// How long a gateway may take to come up.
pub const STARTUP_DEADLINE: Duration = Duration::from_secs(20);

/// Settings written into a gateway's temporary config file.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub ttl: String,
    pub negative_ttl: String,
    pub connect_timeout: String,
    pub read_timeout: String,
    pub log_level: String,
    pub ca_file: Option<PathBuf>,
    /// Extra TOML appended verbatim (must not repeat a table written above).
    pub extra_toml: String,
    /// Extra lines written inside the `[proxy]` table (e.g. `trusted_proxies = [...]`).
    pub proxy_toml: String,
    /// TLS listeners (`listen.proxy_tls`, `listen.admin_tls`, `[tls]`).
    pub tls: Option<TlsListen>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            ttl: "1s".into(),
            negative_ttl: "1s".into(),
            connect_timeout: "2s".into(),
            read_timeout: "30s".into(),
            log_level: "info".into(),
            ca_file: None,
            extra_toml: String::new(),
            proxy_toml: String::new(),
            tls: None,
        }
    }
}

impl GatewayConfig {
    pub fn render(&self, data_dir: &Path, proxy: SocketAddr, admin: SocketAddr) -> String {
        let mut s = String::new();
        writeln!(s, "data_dir = {}", toml_str(&data_dir.to_string_lossy())).unwrap();
        writeln!(s, "\n[listen]").unwrap();
        let plain = self.tls.as_ref().is_none_or(|t| t.plain_too);
        let proxy = if plain {
            proxy.to_string()
        } else {
            String::new()
        };
        writeln!(s, "proxy = {}", toml_str(&proxy)).unwrap();
        writeln!(s, "admin = {}", toml_str(&admin.to_string())).unwrap();
        if let Some(tls) = &self.tls {
            s.push_str(&tls.listen_toml());
            s.push_str(&tls.tls_toml());
        }
        writeln!(s, "\n[cache]").unwrap();
        writeln!(s, "ttl = {}", toml_str(&self.ttl)).unwrap();
        writeln!(s, "negative_ttl = {}", toml_str(&self.negative_ttl)).unwrap();
        writeln!(s, "\n[upstream]").unwrap();
        writeln!(s, "connect_timeout = {}", toml_str(&self.connect_timeout)).unwrap();
        writeln!(s, "read_timeout = {}", toml_str(&self.read_timeout)).unwrap();
        if let Some(ca) = &self.ca_file {
            writeln!(s, "ca_file = {}", toml_str(&ca.to_string_lossy())).unwrap();
        }
        writeln!(s, "\n[proxy]").unwrap();
        writeln!(s, "threads = 2").unwrap();
        if !self.proxy_toml.is_empty() {
            writeln!(s, "{}", self.proxy_toml.trim_end()).unwrap();
        }
        // The background health prober would add its own requests to the recording
        // upstreams; tests that want it write their own [health] table.
        if !self.extra_toml.contains("[health]") {
            writeln!(s, "\n[health]\nenabled = false").unwrap();
        }
        writeln!(s, "\n[log]").unwrap();
        writeln!(s, "format = \"json\"").unwrap();
        writeln!(s, "level = {}", toml_str(&self.log_level)).unwrap();
        s.push('\n');
        s.push_str(&self.extra_toml);
        s
    }
}

/// A running `wpgate serve` with its own temp dir, config, data dir and log file.
/// Killed when dropped.
pub struct Gateway {
    child: Option<Child>,
    pub config_path: PathBuf,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// `listen.proxy_tls`, when the config has one.
    pub tls_addr: Option<SocketAddr>,
    /// Whether the plain-HTTP proxy listener is on (else the gateway is ready once its
    /// TLS listener accepts).
    plain: bool,
    pub client: reqwest::Client,
    /// Extra environment for `serve` and for CLI commands.
    pub env: Vec<(String, String)>,
    starts: u32,
    // Last: removed after the process is gone.
    pub dir: TempDir,
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(180))
        .build()
        .unwrap()
}

impl Gateway {
    /// Defaults: cache ttl 1 s, info logs in JSON.
    pub fn start() -> Self {
        Self::start_with(GatewayConfig::default())
    }

    pub fn start_with(config: GatewayConfig) -> Self {
        let mut gw = Self::prepare(config);
        gw.serve();
        gw
    }

    /// Write the config and pick ports, without starting anything.
    pub fn prepare(config: GatewayConfig) -> Self {
        let dir = TempDir::new().unwrap();
        let data_dir = dir.path().join("data");
        let proxy_port = free_port();
        // Two picks in a row can return the same released port.
        let admin_port = std::iter::repeat_with(free_port)
            .find(|p| *p != proxy_port)
            .unwrap();
        let proxy_addr: SocketAddr = format!("127.0.0.1:{proxy_port}").parse().unwrap();
        let admin_addr: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
        let config_path = dir.path().join("wpgate.toml");
        std::fs::write(
            &config_path,
            config.render(&data_dir, proxy_addr, admin_addr),
        )
        .unwrap();
        Gateway {
            child: None,
            config_path,
            log_path: dir.path().join("gateway-0.log"),
            data_dir,
            proxy_addr,
            admin_addr,
            tls_addr: config.tls.as_ref().map(|t| t.addr),
            plain: config.tls.as_ref().is_none_or(|t| t.plain_too),
            client: http_client(),
            env: Vec::new(),
            starts: 0,
            dir,
        }
    }

    fn env_pairs(&self) -> Vec<(&str, &str)> {
        self.env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// Start `wpgate --config F serve` and wait until the proxy answers HTTP.
    pub fn serve(&mut self) {
        assert!(self.child.is_none(), "gateway already running");
        self.log_path = self.dir.path().join(format!("gateway-{}.log", self.starts));
        self.starts += 1;
        let log = std::fs::File::create(&self.log_path).unwrap();
        let out = std::fs::File::create(self.dir.path().join("serve.stdout")).unwrap();
        let config = self.config_path.to_string_lossy().into_owned();
        let mut cmd = wpgate_command(&["--config", &config, "serve"]);
        cmd.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(log);
        let mut child = cmd.spawn().unwrap();
        let deadline = Instant::now() + STARTUP_DEADLINE;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "`wpgate serve` exited early with {status}; its log:\n{}",
                    std::fs::read_to_string(&self.log_path).unwrap_or_default()
                );
            }
            let ready = match self.tls_addr {
                Some(tls) if !self.plain => {
                    std::net::TcpStream::connect_timeout(&tls, Duration::from_millis(500)).is_ok()
                }
                _ => http_answers(self.proxy_addr),
            };
            if ready {
                break;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "`wpgate serve` did not answer HTTP on {} within {STARTUP_DEADLINE:?}; its log:\n{}",
                    self.proxy_addr,
                    std::fs::read_to_string(&self.log_path).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
    }

    /// The running `serve` process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("gateway not running").id()
    }

    /// Send `signal` (e.g. "HUP", "QUIT") to the running `serve` process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Start another `wpgate --config F serve <extra>` on the same config (e.g.
    /// `--upgrade`), logging to `<name>.log`; the caller owns the process.
    pub fn spawn_serve(&self, extra: &[&str], name: &str) -> (Child, PathBuf) {
        let log_path = self.dir.path().join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path).unwrap();
        let config = self.config_path.to_string_lossy().into_owned();
        let mut args = vec!["--config", config.as_str(), "serve"];
        args.extend_from_slice(extra);
        let mut cmd = wpgate_command(&args);
        cmd.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        (cmd.spawn().unwrap(), log_path)
    }

    /// Forget the running process without killing it (it was replaced, e.g. by a
    /// graceful upgrade, and exits by itself); returns it.
    pub fn take_child(&mut self) -> Option<Child> {
        self.child.take()
    }

    /// Stop the gateway process (SIGKILL) and wait for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Run `wpgate --config F <args>`, feeding `stdin`.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> CliOutput {
        let config = self.config_path.to_string_lossy().into_owned();
        let mut all = vec!["--config", config.as_str()];
        all.extend_from_slice(args);
        run_wpgate(&all, stdin, &self.env_pairs())
    }

    /// Run `wpgate --config F --json <args>`.
    pub fn cli_json(&self, args: &[&str]) -> CliOutput {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        self.cli(&all, None)
    }

    /// The gateway's stderr so far (the current run's).
    pub fn logs(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    /// Log lines that parse as JSON objects.
    pub fn log_json(&self) -> Vec<serde_json::Value> {
        self.logs()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v.is_object())
            .collect()
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.proxy_addr, path_and_query)
    }

    /// `https://<listen.proxy_tls><path_and_query>`.
    pub fn https_url(&self, path_and_query: &str) -> String {
        let addr = self.tls_addr.expect("a gateway with listen.proxy_tls");
        format!("https://{addr}{path_and_query}")
    }

    pub fn keyring_path(&self) -> PathBuf {
        self.data_dir.join("keyring.toml")
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("wpgate.db")
    }

    // --- setup through the CLI ---

    /// `site add <id> --upstream <url> <auth...>`; asserts success.
    pub fn add_site(&self, id: &str, upstream: &str, auth: &SiteAuth) -> CliOutput {
        let out = self.cli_with_auth(&["site", "add", id, "--upstream", upstream], auth, &[]);
        out.assert_success();
        out
    }

    /// `site set-credential <id> <auth...> <extra...>` (the caller checks the outcome).
    pub fn set_credential(&self, id: &str, auth: &SiteAuth, extra: &[&str]) -> CliOutput {
        self.cli_with_auth(&["site", "set-credential", id], auth, extra)
    }

    /// `<command> <auth...> <extra...>`, the secret fed on stdin.
    fn cli_with_auth(&self, command: &[&str], auth: &SiteAuth, extra: &[&str]) -> CliOutput {
        let (auth_args, stdin) = auth.cli_args();
        let mut args = command.to_vec();
        args.extend(auth_args.iter().map(String::as_str));
        args.extend_from_slice(extra);
        self.cli(&args, stdin.as_deref())
    }

    /// `key issue <site> <extra...>`; asserts success and the documented output.
    pub fn issue_key(&self, site: &str, extra: &[&str]) -> ApiKey {
        let mut args = vec!["key", "issue", site];
        args.extend_from_slice(extra);
        let out = self.cli(&args, None);
        ApiKey::parse(&out.assert_success().single_line())
    }

    // --- requests through the proxy ---

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path))
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path))
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Answer {
        Answer::read(req.send().await.unwrap()).await
    }

    /// GET `path` for `site` with `X-API-Key: key`.
    pub async fn get_as(&self, site: &str, key: &str, path: &str) -> Answer {
        self.send(
            self.get(path)
                .header(SITE_HEADER, site)
                .header(KEY_HEADER, key),
        )
        .await
    }

    /// Poll GET `path` (site + key) until the status is `status` (within
    /// [`CHANGE_DEADLINE`]); returns that answer.
    pub async fn poll_status(&self, site: &str, key: &str, path: &str, status: u16) -> Answer {
        self.poll_status_within(site, key, path, status, CHANGE_DEADLINE)
            .await
    }

    /// [`Gateway::poll_status`] with a deadline of the caller's.
    pub async fn poll_status_within(
        &self,
        site: &str,
        key: &str,
        path: &str,
        status: u16,
        timeout: Duration,
    ) -> Answer {
        poll_until(
            &format!("GET {path} on site {site} to answer {status}"),
            timeout,
            || async {
                let a = self.get_as(site, key, path).await;
                if a.status == status {
                    Ok(a)
                } else {
                    Err(a.summary())
                }
            },
        )
        .await
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            let logs = self.logs();
            let tail: Vec<&str> = logs.lines().rev().take(40).collect();
            eprintln!(
                "---- last gateway log lines ({}) ----",
                self.log_path.display()
            );
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}
