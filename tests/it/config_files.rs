//! Configuration: every shipped config file validates, `wpgate check` refuses what it
//! must, environment overrides and `--data-dir` take effect.

use std::path::{Path, PathBuf};

use crate::harness::{free_port, run_wpgate, toml_str, Gateway, GatewayConfig};

fn shipped_config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

/// `wpgate check --config <file>` run from an empty temp dir, so relative paths in a
/// config (e.g. `./data`) never touch the repository.
fn check(config: &Path) -> crate::harness::CliOutput {
    let cwd = tempfile::TempDir::new().unwrap();
    let config = config.to_string_lossy().into_owned();
    let args = ["--config", config.as_str(), "check"];
    let mut cmd = crate::harness::wpgate_command(&args);
    cmd.current_dir(cwd.path());
    crate::harness::run_within(cmd, &args, None, crate::harness::CLI_DEADLINE)
        .unwrap_or_else(|| panic!("`wpgate check --config {config}` hung"))
}

#[test]
fn every_shipped_config_file_validates() {
    let dir = shipped_config_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no config files (*.toml) in {}: the examples must ship and be validated",
        dir.display()
    );
    for file in &files {
        let out = check(file);
        assert!(
            out.success(),
            "`wpgate check --config {}` failed:\n{}{}",
            file.display(),
            out.stdout,
            out.stderr
        );
    }
}

/// `check` on `body` written as `wpgate.toml` in `dir`.
fn check_text(dir: &Path, body: &str) -> crate::harness::CliOutput {
    let path = dir.join("wpgate.toml");
    std::fs::write(&path, body).unwrap();
    check(&path)
}

/// A temp dir and a config in it that `check` must accept, as the base for the
/// refusals below.
fn valid_config() -> (tempfile::TempDir, String) {
    let dir = tempfile::TempDir::new().unwrap();
    let body = format!(
        "data_dir = {}\n\n[listen]\nproxy = \"127.0.0.1:{}\"\nadmin = \"127.0.0.1:{}\"\n\n[cache]\nttl = \"1s\"\nnegative_ttl = \"1s\"\n",
        toml_str(&dir.path().join("data").to_string_lossy()),
        free_port(),
        free_port()
    );
    (dir, body)
}

#[test]
fn check_accepts_a_valid_config() {
    let (dir, body) = valid_config();
    let out = check_text(dir.path(), &body);
    assert!(out.success(), "valid config refused:\n{}", out.stderr);
}

#[test]
fn unknown_keys_are_refused_by_name() {
    let (dir, base) = valid_config();
    for (body, key) in [
        // Top-level keys must come before the first table.
        (format!("bogus_top_level = 1\n{base}"), "bogus_top_level"),
        (
            format!("{base}\n[upstream]\nread_timout = \"5s\"\n"),
            "read_timout",
        ),
        (format!("{base}\n[log]\nformatt = \"json\"\n"), "formatt"),
    ] {
        let out = check_text(dir.path(), &body);
        assert!(!out.success(), "config with unknown key `{key}` accepted");
        assert!(
            out.stderr.contains(key),
            "error for unknown key `{key}` does not name it:\n{}",
            out.stderr
        );
    }
}

#[test]
fn bad_values_are_refused() {
    let (dir, base) = valid_config();
    for (extra, what) in [
        ("\n[upstream]\nread_timeout = \"soon\"\n", "duration"),
        ("\n[log]\nformat = \"xml\"\n", "log format"),
        ("\n[proxy]\nthreads = \"many\"\n", "thread count"),
    ] {
        let out = check_text(dir.path(), &format!("{base}{extra}"));
        assert!(!out.success(), "config with a bad {what} accepted");
        assert!(
            !out.stderr.trim().is_empty(),
            "no reason given for a bad {what}"
        );
    }
    let body = format!(
        "data_dir = {}\n\n[listen]\nproxy = \"127.0.0.1:99999\"\n",
        toml_str(&dir.path().join("data").to_string_lossy())
    );
    assert!(
        !check_text(dir.path(), &body).success(),
        "listen port 99999 accepted"
    );
}

#[test]
fn environment_overrides_the_file() {
    let (dir, body) = valid_config();
    let path = dir.path().join("wpgate.toml");
    std::fs::write(&path, body).unwrap();
    let config = path.to_string_lossy().into_owned();
    let out = run_wpgate(
        &["--config", &config, "check"],
        None,
        &[("WPGATE_LOG__FORMAT", "xml")],
    );
    assert!(
        !out.success(),
        "WPGATE_LOG__FORMAT=xml did not reach the config"
    );
}

#[test]
fn environment_overrides_the_listen_address() {
    let mut gw = Gateway::prepare(GatewayConfig::default());
    let from_file = gw.proxy_addr;
    let port = free_port();
    gw.env
        .push(("WPGATE_LISTEN__PROXY".into(), format!("127.0.0.1:{port}")));
    gw.proxy_addr = format!("127.0.0.1:{port}").parse().unwrap();
    gw.serve(); // waits for HTTP on the overridden address
    assert!(
        !crate::harness::http_answers(from_file),
        "still listening on {from_file}"
    );
}

#[test]
fn data_dir_flag_overrides_the_file() {
    let gw = Gateway::prepare(GatewayConfig::default());
    let other = gw.dir.path().join("other-data");
    let config = gw.config_path.to_string_lossy().into_owned();
    let mut child = crate::harness::wpgate_command(&[
        "--config",
        &config,
        "--data-dir",
        &other.to_string_lossy(),
        "serve",
    ])
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let ready = crate::harness::poll_until_blocking(
        "the gateway to answer",
        crate::harness::STARTUP_DEADLINE,
        || match child.try_wait().unwrap() {
            Some(status) => Ok(Err(status)),
            None if crate::harness::http_answers(gw.proxy_addr) => Ok(Ok(())),
            None => Err("not yet".into()),
        },
    );
    let _ = child.kill();
    let _ = child.wait();
    ready.unwrap_or_else(|status| panic!("serve --data-dir exited with {status}"));
    assert!(
        other.join("keyring.toml").exists(),
        "no keyring in --data-dir"
    );
    assert!(
        other.join("wpgate.db").exists(),
        "no database in --data-dir"
    );
    assert!(
        !gw.data_dir.exists(),
        "the config's data_dir was used anyway"
    );
}
