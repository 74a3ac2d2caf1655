//! The onboarding file: one site per JSON line or CSV record, its fields named as the
//! CLI's flags (`id`, `name`, `upstream`, `auth`, `username`, `header_name`, `secret`).
//! Reading a file into rows, each with its line number; checking a row into an
//! [`ImportSite`]; writing sites back out (never a secret).

use super::LineError;
use crate::credential::{credential_header, InvalidCredential};
use crate::secret::Secret;
use crate::site::{check_secret, check_text, CredentialKind, SiteId, UpstreamTarget};
use serde::{Deserialize, Deserializer, Serialize};
use std::path::Path;

/// How an onboarding file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line (blank lines are skipped).
    JsonLines,
    /// A header row naming the columns, then one site per record.
    Csv,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::JsonLines => "jsonl",
            Format::Csv => "csv",
        }
    }

    /// The media type of an export.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::JsonLines => "application/jsonl",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }

    /// By a file name's extension (`.csv`; `.jsonl`, `.ndjson`, `.json`).
    pub fn of_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        ext.parse().ok()
    }

    /// By content: a first non-blank character `{` is JSON lines, anything else CSV.
    pub fn detect(text: &str) -> Format {
        match text
            .trim_start_matches('\u{feff}')
            .trim_start()
            .chars()
            .next()
        {
            Some('{') => Format::JsonLines,
            _ => Format::Csv,
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "jsonl" | "ndjson" | "json" => Ok(Format::JsonLines),
            "csv" => Ok(Format::Csv),
            other => Err(format!("unknown format {other:?} (jsonl, csv)")),
        }
    }
}

/// The columns an export writes, in order (`secret` is read, never written).
pub const COLUMNS: [&str; 6] = ["id", "name", "upstream", "auth", "username", "header_name"];
/// The column that only an import reads.
pub const SECRET_COLUMN: &str = "secret";

/// A secret as a file gives it: the value, or `env:NAME` / `file:PATH`. Never printed.
pub struct RowSecret(Secret);

impl std::fmt::Debug for RowSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<'de> Deserialize<'de> for RowSecret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = zeroize::Zeroizing::new(String::deserialize(d)?);
        Ok(RowSecret(Secret::from_string(text.to_string())))
    }
}

/// One site as a file gives it. Every field may be missing here; [`SiteRow::check`]
/// says what a site needs. In CSV an empty cell is a missing field.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename = "site", deny_unknown_fields)]
pub struct SiteRow {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// `app-password`, `bearer`, `header` or `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_name: Option<String>,
    #[serde(default, skip_serializing)]
    pub secret: Option<RowSecret>,
}

/// Whether `env:` and `file:` secret references are read (the CLI) or refused (the
/// admin API: a remote caller must not read the gateway's environment or files).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretRefs {
    Resolve,
    Refuse,
}

/// A row checked as `site add` checks its input: a site to create, or to compare with
/// the stored one.
#[derive(Debug)]
pub struct ImportSite {
    pub line: u64,
    pub id: SiteId,
    /// `None`: the id for a new site, unchanged for a stored one.
    pub name: Option<String>,
    pub upstream: String,
    /// The origin the credential is bound to.
    pub origin: String,
    pub kind: CredentialKind,
    /// The user (app password) or header name (header).
    pub username: Option<String>,
    /// `None`: a stored site keeps its credential; a new one needing a secret is refused.
    pub secret: Option<Secret>,
}

/// The spelling of `auth` in files and in the CLI.
pub fn auth_name(kind: CredentialKind) -> &'static str {
    match kind {
        CredentialKind::AppPassword => "app-password",
        CredentialKind::Bearer => "bearer",
        CredentialKind::Header => "header",
        CredentialKind::None => "none",
    }
}

impl SiteRow {
    /// The row as an export writes it: no secret.
    pub fn of_site(site: &crate::store::SiteRecord) -> SiteRow {
        let kind = site.credential.kind;
        let name = |k| {
            (kind == k)
                .then(|| site.credential.username.clone())
                .flatten()
        };
        SiteRow {
            id: Some(site.id.clone()),
            name: Some(site.name.clone()),
            upstream: Some(site.upstream_url.clone()),
            auth: Some(auth_name(kind).to_string()),
            username: name(CredentialKind::AppPassword),
            header_name: name(CredentialKind::Header),
            secret: None,
        }
    }

    /// Checks the row with the rules of `site add` (id, name, upstream, credential
    /// kind, names, secret hygiene, a header that can be sent), resolving its secret
    /// reference as `refs` allows. Every problem is named with its field.
    pub fn check(self, line: u64, refs: SecretRefs) -> Result<ImportSite, Vec<String>> {
        let mut problems = Vec::new();
        let id = match self.id.as_deref().map(str::parse::<SiteId>) {
            None => {
                problems.push("id: required".to_string());
                None
            }
            Some(Err(e)) => {
                problems.push(format!("id: {e}"));
                None
            }
            Some(Ok(id)) => Some(id),
        };
        if let Some(name) = &self.name {
            if let Err(e) = check_text("name", name) {
                problems.push(e.to_string());
            }
        }
        let origin = match self.upstream.as_deref().map(UpstreamTarget::parse) {
            None => {
                problems.push("upstream: required".to_string());
                None
            }
            Some(Err(e)) => {
                problems.push(format!("upstream: {e}"));
                None
            }
            Some(Ok(target)) => Some(target.origin),
        };
        let kind = match self.auth.as_deref() {
            None => {
                problems.push("auth: required (app-password, bearer, header or none)".into());
                None
            }
            Some(a @ ("app-password" | "app_password" | "bearer" | "header" | "none")) => {
                a.parse::<CredentialKind>().ok()
            }
            Some(other) => {
                problems.push(format!(
                    "auth: must be app-password, bearer, header or none, got {other:?}"
                ));
                None
            }
        };
        let username = kind.and_then(|kind| names(kind, &self, &mut problems));
        let secret = self
            .secret
            .and_then(|s| resolve(s.0, refs).map_err(|p| problems.push(p)).ok());
        if let (Some(kind), Some(secret)) = (kind, &secret) {
            if !kind.needs_secret() {
                problems.push("secret: auth none takes no secret".into());
            } else if let Err(e) = check_secret("secret", secret.expose()) {
                problems.push(e.to_string());
            } else if let Err(e) = credential_header(kind, username.as_deref(), secret) {
                if matches!(e, InvalidCredential::Secret) {
                    problems.push(format!("secret: {e}"));
                }
            }
        }
        match (id, origin, kind) {
            (Some(id), Some(origin), Some(kind)) if problems.is_empty() => Ok(ImportSite {
                line,
                id,
                name: self.name,
                upstream: self.upstream.unwrap_or_default(),
                origin,
                kind,
                username,
                secret,
            }),
            _ => Err(problems),
        }
    }
}

/// The user or header name the credential kind needs (and no other), checked as
/// `site add` checks it; `None` with the problem recorded, or for kinds without one.
fn names(kind: CredentialKind, row: &SiteRow, problems: &mut Vec<String>) -> Option<String> {
    let (wanted, field, other, other_field) = match kind {
        CredentialKind::AppPassword => (&row.username, "username", &row.header_name, "header_name"),
        CredentialKind::Header => (&row.header_name, "header_name", &row.username, "username"),
        CredentialKind::Bearer | CredentialKind::None => {
            for (given, field) in [
                (&row.username, "username"),
                (&row.header_name, "header_name"),
            ] {
                if given.is_some() {
                    problems.push(format!("{field}: not used with auth {}", auth_name(kind)));
                }
            }
            return None;
        }
    };
    if other.is_some() {
        problems.push(format!(
            "{other_field}: not used with auth {}",
            auth_name(kind)
        ));
    }
    let Some(name) = wanted else {
        problems.push(format!("{field}: required with auth {}", auth_name(kind)));
        return None;
    };
    if let Err(e) = check_text(field, name) {
        problems.push(e.to_string());
        return None;
    }
    // Rendered once with a stand-in secret: the name alone can make it unsendable.
    match credential_header(kind, Some(name), &Secret::from_string("x".into())) {
        Ok(_) => Some(name.clone()),
        Err(e) => {
            problems.push(format!("{field}: {e}"));
            None
        }
    }
}

/// The secret a row gives: the value itself, or read from `env:NAME` or `file:PATH`
/// (surrounding whitespace, e.g. a final newline, removed, as from standard input).
fn resolve(given: Secret, refs: SecretRefs) -> Result<Secret, String> {
    let text = given.expose_str().unwrap_or_default();
    let reference = text
        .strip_prefix("env:")
        .map(|name| (true, name))
        .or_else(|| text.strip_prefix("file:").map(|path| (false, path)));
    let value = match (reference, refs) {
        (None, _) => return Ok(Secret::from_string(text.trim().to_string())),
        (Some(_), SecretRefs::Refuse) => {
            return Err(
                "secret: env: and file: references are not accepted here (the admin \
                 API never reads the gateway's environment or files): give the value"
                    .into(),
            )
        }
        (Some((true, name)), SecretRefs::Resolve) => {
            let valid =
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !valid {
                return Err(format!(
                    "secret: {name:?} is not an environment variable name"
                ));
            }
            match std::env::var(name) {
                Ok(v) => zeroize::Zeroizing::new(v),
                Err(std::env::VarError::NotPresent) => {
                    return Err(format!("secret: environment variable {name} is not set"))
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(format!("secret: environment variable {name} is not UTF-8"))
                }
            }
        }
        (Some((false, path)), SecretRefs::Resolve) => match std::fs::read_to_string(path) {
            Ok(v) => zeroize::Zeroizing::new(v),
            Err(e) => return Err(format!("secret: cannot read {path:?}: {e}")),
        },
    };
    Ok(Secret::from_string(value.trim().to_string()))
}

/// Every row of `text` with its line number (the first line is 1; a CSV record's line
/// is where it starts), and the lines that cannot be read, each with its problem.
pub fn parse(text: &str, format: Format) -> (Vec<(u64, SiteRow)>, Vec<LineError>) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match format {
        Format::JsonLines => parse_json_lines(text),
        Format::Csv => parse_csv(text),
    }
}

fn parse_json_lines(text: &str) -> (Vec<(u64, SiteRow)>, Vec<LineError>) {
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i as u64 + 1;
        if raw.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<SiteRow>(raw) {
            Ok(row) => rows.push((line, row)),
            Err(e) => {
                // serde_json counts lines within the one line it read: say the column.
                let text = e.to_string();
                let at = format!(" at line {} column {}", e.line(), e.column());
                let message = match text.strip_suffix(&at) {
                    Some(m) => format!("{m} (column {})", e.column()),
                    None => text,
                };
                errors.push(LineError::new(line, message));
            }
        }
    }
    (rows, errors)
}

fn parse_csv(text: &str) -> (Vec<(u64, SiteRow)>, Vec<LineError>) {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(text.as_bytes());
    let headers = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => return (Vec::new(), vec![LineError::new(1, csv_problem(&e))]),
    };
    let mut errors = Vec::new();
    for name in headers.iter() {
        if !COLUMNS.contains(&name) && name != SECRET_COLUMN {
            errors.push(LineError::new(
                1,
                format!(
                    "unknown column {name:?} (the columns are {}, {SECRET_COLUMN})",
                    COLUMNS.join(", ")
                ),
            ));
        }
    }
    if headers.iter().all(|h| h != "id") {
        errors.push(LineError::new(
            1,
            "no \"id\" column: the first line names the columns",
        ));
    }
    if !errors.is_empty() {
        return (Vec::new(), errors);
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, csv::Position::line);
                errors.push(LineError::new(line, csv_problem(&e)));
                continue;
            }
        };
        let line = record.position().map_or(0, csv::Position::line);
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        match record.deserialize::<SiteRow>(Some(&headers)) {
            Ok(row) => rows.push((line, row)),
            Err(e) => errors.push(LineError::new(line, csv_problem(&e))),
        }
    }
    (rows, errors)
}

/// A CSV error without the position (the line is given apart).
fn csv_problem(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("has {len} fields, the header row has {expected_len}"),
        csv::ErrorKind::Utf8 { .. } => "is not UTF-8".to_string(),
        csv::ErrorKind::Deserialize { err, .. } => err.to_string(),
        _ => e.to_string(),
    }
}

/// The rows as a file of `format` (a header row first for CSV); never a secret.
pub fn write(rows: &[SiteRow], format: Format) -> Result<String, String> {
    match format {
        Format::JsonLines => {
            let mut out = String::new();
            for row in rows {
                out.push_str(&serde_json::to_string(row).map_err(|e| e.to_string())?);
                out.push('\n');
            }
            Ok(out)
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record(COLUMNS).map_err(|e| e.to_string())?;
            for row in rows {
                let cell = |v: &Option<String>| v.clone().unwrap_or_default();
                w.write_record([
                    cell(&row.id),
                    cell(&row.name),
                    cell(&row.upstream),
                    cell(&row.auth),
                    cell(&row.username),
                    cell(&row.header_name),
                ])
                .map_err(|e| e.to_string())?;
            }
            let bytes = w.into_inner().map_err(|e| e.to_string())?;
            String::from_utf8(bytes).map_err(|e| e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str, format: Format) -> Result<ImportSite, Vec<String>> {
        let (mut rows, errors) = parse(text, format);
        if !errors.is_empty() {
            return Err(errors.iter().map(ToString::to_string).collect());
        }
        assert_eq!(rows.len(), 1, "{text}");
        let (line, row) = rows.remove(0);
        row.check(line, SecretRefs::Resolve)
    }

    fn problems(text: &str, format: Format) -> String {
        one(text, format).unwrap_err().join("; ")
    }

    #[test]
    fn formats_are_told_apart() {
        assert_eq!(Format::detect("\n  {\"id\":\"a\"}"), Format::JsonLines);
        assert_eq!(Format::detect("id,upstream\n"), Format::Csv);
        assert_eq!(Format::of_path(Path::new("x/sites.CSV")), Some(Format::Csv));
        assert_eq!(
            Format::of_path(Path::new("sites.ndjson")),
            Some(Format::JsonLines)
        );
        assert_eq!(Format::of_path(Path::new("sites")), None);
    }

    #[test]
    fn rows_read_alike_from_json_lines_and_csv() {
        let json = r#"{"id":"shop","upstream":"https://shop.example.com","auth":"app-password","username":"api","secret":"abcd efgh"}"#;
        let csv = "id,upstream,auth,username,secret,name\nshop,https://shop.example.com,app-password,api,abcd efgh,\n";
        for (text, format) in [(json, Format::JsonLines), (csv, Format::Csv)] {
            let s = one(text, format).unwrap();
            assert_eq!(s.id.as_str(), "shop");
            assert_eq!(s.line, if format == Format::Csv { 2 } else { 1 });
            assert_eq!(s.name, None, "an empty CSV cell is a missing field");
            assert_eq!(s.kind, CredentialKind::AppPassword);
            assert_eq!(s.username.as_deref(), Some("api"));
            assert_eq!(s.secret.unwrap().expose(), b"abcd efgh");
            assert_eq!(s.origin, "https://shop.example.com:443");
        }
    }

    #[test]
    fn rows_are_checked_like_site_add() {
        let long = "n".repeat(201);
        for (row, want) in [
            (r#"{"upstream":"http://a","auth":"none"}"#.to_string(), "id: required"),
            (r#"{"id":"a b","upstream":"http://a","auth":"none"}"#.into(), "id: site id"),
            (format!(r#"{{"id":"a","name":"{long}","upstream":"http://a","auth":"none"}}"#), "name: must be at most 200"),
            (r#"{"id":"a","name":"a\u0007","upstream":"http://a","auth":"none"}"#.into(), "name: must not contain control"),
            (r#"{"id":"a","upstream":"ftp://a","auth":"none"}"#.into(), "upstream: "),
            (r#"{"id":"a","upstream":"http://a"}"#.into(), "auth: required"),
            (r#"{"id":"a","upstream":"http://a","auth":"basic"}"#.into(), "auth: must be"),
            (r#"{"id":"a","upstream":"http://a","auth":"app-password","secret":"s"}"#.into(), "username: required"),
            (r#"{"id":"a","upstream":"http://a","auth":"bearer","username":"u","secret":"s"}"#.into(), "username: not used"),
            (r#"{"id":"a","upstream":"http://a","auth":"bearer","secret":"  "}"#.into(), "secret: must not be empty"),
            (r#"{"id":"a","upstream":"http://a","auth":"bearer","secret":""}"#.into(), "secret: must not be empty"),
            (r#"{"id":"a","upstream":"http://a","auth":"none","secret":"s"}"#.into(), "secret: auth none takes no secret"),
            (r#"{"id":"a","upstream":"http://a","auth":"header","header_name":"X-Forwarded-For","secret":"s"}"#.into(), "header_name: the header"),
            (r#"{"id":"a","upstream":"http://a","auth":"app-password","username":"a:b","secret":"s"}"#.into(), "username: "),
            (r#"{"id":"a","upstream":"http://a","auth":"bearer","secret":"env:WPGATE_TEST_SURELY_UNSET"}"#.into(), "environment variable WPGATE_TEST_SURELY_UNSET is not set"),
            (r#"{"id":"a","upstream":"http://a","auth":"bearer","secret":"file:/nonexistent/secret"}"#.into(), "secret: cannot read"),
            (r#"{"id":"a","upstream":"http://a","auth":"none","usrname":"x"}"#.into(), "unknown field `usrname`"),
        ] {
            let got = problems(&row, Format::JsonLines);
            assert!(got.contains(want), "{row}: {got}");
        }
        let got = problems("id,upstream,auth,usrname\na,http://a,none,x\n", Format::Csv);
        assert!(got.contains("line 1: unknown column \"usrname\""), "{got}");
        let got = problems("id,upstream,auth\na,http://a\n", Format::Csv);
        assert!(got.contains("line 2: has 2 fields"), "{got}");
    }

    #[test]
    fn references_are_read_or_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-a-file\n").unwrap();
        let row = |secret: &str| SiteRow {
            id: Some("a".into()),
            upstream: Some("http://a".into()),
            auth: Some("bearer".into()),
            secret: Some(RowSecret(Secret::from_string(secret.into()))),
            ..SiteRow::default()
        };
        let path = format!("file:{}", file.display());
        let s = row(&path).check(1, SecretRefs::Resolve).unwrap();
        assert_eq!(s.secret.unwrap().expose(), b"from-a-file");
        let refused = row(&path).check(1, SecretRefs::Refuse).unwrap_err();
        assert!(refused[0].contains("not accepted"), "{refused:?}");
        let refused = row("env:HOME").check(1, SecretRefs::Refuse).unwrap_err();
        assert!(refused[0].contains("not accepted"), "{refused:?}");
        // The problem never repeats the secret.
        let long = row("a\u{1}secret-value")
            .check(1, SecretRefs::Refuse)
            .unwrap_err();
        assert!(!long.join(" ").contains("secret-value"), "{long:?}");
    }

    #[test]
    fn exports_write_no_secret_and_read_back() {
        let rows = vec![SiteRow {
            id: Some("a".into()),
            name: Some("Shop, \"the\" one".into()),
            upstream: Some("http://a".into()),
            auth: Some("header".into()),
            header_name: Some("X-Key".into()),
            secret: Some(RowSecret(Secret::from_string("never".into()))),
            ..SiteRow::default()
        }];
        for format in [Format::JsonLines, Format::Csv] {
            let text = write(&rows, format).unwrap();
            assert!(
                !text.contains("never") && !text.contains("secret"),
                "{text}"
            );
            let (back, errors) = parse(&text, format);
            assert!(errors.is_empty(), "{errors:?}");
            assert_eq!(back.len(), 1);
            assert_eq!(back[0].1.name.as_deref(), Some("Shop, \"the\" one"));
            assert_eq!(back[0].1.header_name.as_deref(), Some("X-Key"));
        }
    }
}
