//! The admin listener's Prometheus exposition: parsed samples, and promtool's verdict.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::cli::run_within;
use super::gateway::Gateway;

/// Every state a site's health can be in: the `state` label of `wpgate_site_health`, the
/// admin API's `state`.
pub const HEALTH_STATES: [&str; 7] = [
    "unknown",
    "healthy",
    "degraded",
    "auth_failed",
    "unreachable",
    "disabled",
    "unusable",
];

/// One sample of the Prometheus text exposition: `name{labels} value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether every `(key, value)` of `want` is among the sample's labels.
    pub fn has_labels(&self, want: &[(&str, &str)]) -> bool {
        want.iter().all(|(k, v)| self.label(k) == Some(*v))
    }
}

/// Parse the label set after `{`, up to and including the closing `}`; returns the
/// labels and the rest of the line.
type Labels = Vec<(String, String)>;

fn parse_labels(mut s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start_matches([' ', ',']);
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((labels, rest));
        }
        let (key, rest) = s
            .split_once('=')
            .ok_or_else(|| format!("label without '=' in {s:?}"))?;
        let rest = rest
            .strip_prefix('"')
            .ok_or_else(|| format!("unquoted label value in {s:?}"))?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err(format!("dangling escape in {s:?}")),
                },
                Some((_, c)) => value.push(c),
                None => return Err(format!("unterminated label value in {s:?}")),
            }
        };
        labels.push((key.trim().to_owned(), value));
        s = &rest[end + 1..];
    }
}

/// Every sample of a Prometheus text exposition (comments skipped); panics on a line
/// it cannot read, quoting it.
pub fn parse_metrics(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed = (|| -> Result<Sample, String> {
            let name_end = line
                .find(|c: char| c == '{' || c.is_whitespace())
                .ok_or("no value")?;
            let name = line[..name_end].to_owned();
            let (labels, rest) = if line[name_end..].starts_with('{') {
                parse_labels(&line[name_end + 1..])?
            } else {
                (Vec::new(), &line[name_end..])
            };
            let value = rest
                .split_whitespace()
                .next()
                .ok_or("no value")?
                .parse::<f64>()
                .map_err(|e| e.to_string())?;
            Ok(Sample {
                name,
                labels,
                value,
            })
        })();
        match parsed {
            Ok(s) => out.push(s),
            Err(e) => panic!("unreadable metrics line {line:?}: {e}"),
        }
    }
    out
}

/// The value of the one sample named `name` whose labels include `labels`; `None` when
/// there is none, panics when several match.
pub fn metric_value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == name && s.has_labels(labels))
        .collect();
    assert!(
        found.len() <= 1,
        "several samples of {name} match {labels:?}: {found:#?}"
    );
    found.first().map(|s| s.value)
}

/// The sum of every sample named `name` whose labels include `labels` (0 if none).
pub fn metric_sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && s.has_labels(labels))
        .map(|s| s.value)
        .fold(0.0, |a, b| a + b)
}

impl Gateway {
    /// The body of `GET /metrics` on the admin listener (asserts 200).
    pub async fn metrics_text(&self) -> String {
        let a = self.admin_get("/metrics").await;
        assert_eq!(a.status, 200, "GET /metrics: {}", a.summary());
        a.body
    }

    /// The samples of `GET /metrics`.
    pub async fn metric_samples(&self) -> Vec<Sample> {
        parse_metrics(&self.metrics_text().await)
    }
}

/// What `promtool check metrics` said about an exposition.
#[derive(Debug)]
pub struct PromtoolReport {
    /// Exit code: 0 clean, 3 lint problems only, anything else an error.
    pub code: i32,
    /// stdout and stderr, in that order.
    pub output: String,
    /// Lines reporting errors (unparsable exposition, promtool failures).
    pub errors: Vec<String>,
    /// Lint problems (naming conventions and the like), one per line.
    pub lint: Vec<String>,
}

/// promtool: `WPGATE_PROMTOOL`, else `promtool` on the PATH. Panics when there is none,
/// saying how to get it (tests/run installs it).
pub fn promtool_path() -> PathBuf {
    if let Some(p) = std::env::var_os("WPGATE_PROMTOOL").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(p.exists(), "WPGATE_PROMTOOL={} does not exist", p.display());
        return p;
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("promtool"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "promtool not found (set WPGATE_PROMTOOL or install Debian's `prometheus` \
                 package: apt-get install --no-install-recommends prometheus; tests/run does)"
            )
        })
}

/// Pipe `text` to `promtool check metrics`.
pub fn promtool_check_metrics(text: &str) -> PromtoolReport {
    let tool = promtool_path();
    let mut cmd = Command::new(&tool);
    cmd.args(["check", "metrics"]);
    let out = run_within(
        cmd,
        &["check", "metrics"],
        Some(text),
        Duration::from_secs(60),
    )
    .unwrap_or_else(|| panic!("{} check metrics did not finish in 60s", tool.display()));
    let output = format!("{}{}", out.stdout, out.stderr);
    let code = out.status.code().unwrap_or(-1);
    let mut errors = Vec::new();
    let mut lint = Vec::new();
    for line in output.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let lower = line.to_ascii_lowercase();
        if lower.contains("error") || lower.contains("fail") || lower.contains("invalid") {
            errors.push(line.to_owned());
        } else {
            lint.push(line.to_owned());
        }
    }
    if code != 0 && code != 3 && errors.is_empty() {
        errors.push(format!("promtool exited with {code}"));
    }
    PromtoolReport {
        code,
        output,
        errors,
        lint,
    }
}
