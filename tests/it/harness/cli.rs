//! Running the `wpgate` binary as a command: a clean environment, a deadline, and what
//! it printed.

use std::io::Write;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The binary under test.
pub const WPGATE: &str = env!("CARGO_BIN_EXE_wpgate");

/// How long a CLI command may take before the test gives up on it.
pub const CLI_DEADLINE: Duration = Duration::from_secs(60);

/// What a finished `wpgate` command left behind.
#[derive(Debug)]
pub struct CliOutput {
    pub args: Vec<String>,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        assert!(
            self.status.success(),
            "`wpgate {}` failed with {}\nstdout:\n{}\nstderr:\n{}",
            self.args.join(" "),
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    /// `assert_success` for a program other than `wpgate`, named `what`.
    #[track_caller]
    pub fn assert_ran(&self, what: &str) -> &Self {
        assert!(
            self.status.success(),
            "{what} failed with {}\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    #[track_caller]
    pub fn assert_failure(&self) -> &Self {
        assert!(
            !self.status.success(),
            "`wpgate {}` should have failed but exited 0\nstdout:\n{}\nstderr:\n{}",
            self.args.join(" "),
            self.stdout,
            self.stderr
        );
        self
    }

    /// The one non-empty line of stdout, trimmed: a key or token is printed alone.
    #[track_caller]
    pub fn single_line(&self) -> String {
        let lines: Vec<&str> = self
            .stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "`wpgate {}` must print its result alone on one line, printed:\n{}",
            self.args.join(" "),
            self.stdout
        );
        lines[0].trim().to_owned()
    }

    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "`wpgate {}` did not print JSON ({e}):\n{}",
                self.args.join(" "),
                self.stdout
            )
        })
    }
}

/// A `wpgate` command with a clean environment: no inherited `WPGATE_*`/`RUST_LOG`.
pub fn wpgate_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(WPGATE);
    cmd.args(args);
    for (k, _) in std::env::vars_os() {
        let k_str = k.to_string_lossy();
        if k_str.starts_with("WPGATE_") || k_str == "RUST_LOG" {
            cmd.env_remove(&k);
        }
    }
    cmd
}

/// Run `wpgate <args>` to completion (at most [`CLI_DEADLINE`]), feeding `stdin`.
pub fn run_wpgate(args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> CliOutput {
    run_wpgate_within(args, stdin, env, CLI_DEADLINE).unwrap_or_else(|| {
        panic!(
            "`wpgate {}` did not finish within {CLI_DEADLINE:?}",
            args.join(" ")
        )
    })
}

/// Like [`run_wpgate`], but returns `None` (after killing it) when the command is
/// still running after `deadline`.
pub fn run_wpgate_within(
    args: &[&str],
    stdin: Option<&str>,
    env: &[(&str, &str)],
    deadline: Duration,
) -> Option<CliOutput> {
    let mut cmd = wpgate_command(args);
    cmd.envs(env.iter().copied());
    run_within(cmd, args, stdin, deadline)
}

/// Run a prepared command (stdout/stderr captured, `stdin` fed) for at most
/// `deadline`; `None` (after killing it) when it is still running then.
pub fn run_within(
    mut cmd: Command,
    args: &[&str],
    stdin: Option<&str>,
    deadline: Duration,
) -> Option<CliOutput> {
    let out_dir = TempDir::new().unwrap();
    let out_path = out_dir.path().join("stdout");
    let err_path = out_dir.path().join("stderr");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(std::fs::File::create(&out_path).unwrap())
    .stderr(std::fs::File::create(&err_path).unwrap());
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        // The command may exit without reading (e.g. a usage error); ignore EPIPE.
        let _ = pipe.write_all(input.as_bytes());
    }
    let until = Instant::now() + deadline;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let status = status?;
    Some(CliOutput {
        args: args.iter().map(|s| (*s).to_owned()).collect(),
        status,
        stdout: String::from_utf8_lossy(&std::fs::read(&out_path).unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&std::fs::read(&err_path).unwrap()).into_owned(),
    })
}
