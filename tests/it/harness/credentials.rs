//! Credentials: the client's API key (as issued) and how a site authenticates to its
//! WordPress upstream (as the CLI takes it and the upstream must receive it).

use super::text::base64_std;

/// Header names the clients use.
pub const SITE_HEADER: &str = "X-Website-ID";
pub const KEY_HEADER: &str = "X-API-Key";

/// An issued API key, `wpg_<12-char key id>_<43-char secret>`.
#[derive(Clone, Debug)]
pub struct ApiKey {
    pub full: String,
    pub key_id: String,
    pub secret: String,
}

impl ApiKey {
    #[track_caller]
    pub fn parse(s: &str) -> Self {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        assert!(
            s.len() == 4 + 12 + 1 + 43
                && s.starts_with("wpg_")
                && s.as_bytes()[16] == b'_'
                && s.chars().all(ok_char),
            "not an API key of the form wpg_<12-char id>_<43-char secret>: {s:?}"
        );
        ApiKey {
            full: s.to_owned(),
            key_id: s[4..16].to_owned(),
            secret: s[17..].to_owned(),
        }
    }

    /// The same key id with a different (wrong) secret of the right shape.
    pub fn with_wrong_secret(&self) -> String {
        let mut wrong: Vec<char> = self.secret.chars().collect();
        wrong[0] = if wrong[0] == 'A' { 'B' } else { 'A' };
        wrong[42] = if wrong[42] == 'A' { 'B' } else { 'A' };
        format!(
            "wpg_{}_{}",
            self.key_id,
            wrong.into_iter().collect::<String>()
        )
    }
}

/// How a site authenticates to its WordPress upstream.
#[derive(Clone, Debug)]
pub enum SiteAuth {
    AppPassword { username: String, password: String },
    Bearer(String),
    Header { name: String, value: String },
    None,
}

impl SiteAuth {
    pub fn app_password(username: &str, password: &str) -> Self {
        SiteAuth::AppPassword {
            username: username.to_owned(),
            password: password.to_owned(),
        }
    }

    pub fn bearer(token: &str) -> Self {
        SiteAuth::Bearer(token.to_owned())
    }

    pub fn header(name: &str, value: &str) -> Self {
        SiteAuth::Header {
            name: name.to_owned(),
            value: value.to_owned(),
        }
    }

    /// CLI arguments (`--auth ...`) and the secret to feed on stdin, if any.
    pub fn cli_args(&self) -> (Vec<String>, Option<String>) {
        let v = |xs: &[&str]| xs.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        match self {
            SiteAuth::AppPassword { username, password } => (
                v(&[
                    "--auth",
                    "app-password",
                    "--username",
                    username,
                    "--secret-stdin",
                ]),
                Some(format!("{password}\n")),
            ),
            SiteAuth::Bearer(token) => (
                v(&["--auth", "bearer", "--secret-stdin"]),
                Some(format!("{token}\n")),
            ),
            SiteAuth::Header { name, value } => (
                v(&["--auth", "header", "--header-name", name, "--secret-stdin"]),
                Some(format!("{value}\n")),
            ),
            SiteAuth::None => (v(&["--auth", "none"]), None),
        }
    }

    /// The header the upstream must receive: (lower-case name, value).
    pub fn expected_upstream_header(&self) -> Option<(String, String)> {
        match self {
            SiteAuth::AppPassword { username, password } => Some((
                "authorization".into(),
                format!("Basic {}", base64_std(&format!("{username}:{password}"))),
            )),
            SiteAuth::Bearer(t) => Some(("authorization".into(), format!("Bearer {t}"))),
            SiteAuth::Header { name, value } => Some((name.to_ascii_lowercase(), value.clone())),
            SiteAuth::None => None,
        }
    }

    /// Every string that must never leak (secret, and for app passwords the Basic
    /// credential it becomes).
    pub fn secrets(&self) -> Vec<String> {
        match self {
            SiteAuth::AppPassword { username, password } => vec![
                password.clone(),
                base64_std(&format!("{username}:{password}")),
            ],
            SiteAuth::Bearer(t) => vec![t.clone()],
            SiteAuth::Header { value, .. } => vec![value.clone()],
            SiteAuth::None => vec![],
        }
    }
}
