//! A one-site set-up's environment as a site (`wpgate site import-env`): the variables
//! a single-site WordPress client or proxy commonly reads — `WORDPRESS_API_URL`, and
//! either `WORDPRESS_USERNAME` with `WORDPRESS_APP_PASSWORD` (an Application Password)
//! or `WORDPRESS_AUTH_TOKEN` (a bearer token). Every refusal has a stable code.

use crate::fleet::CredentialInput;
use crate::secret::Secret;
use crate::site::{CredentialKind, UpstreamTarget};

pub const API_URL: &str = "WORDPRESS_API_URL";
pub const USERNAME: &str = "WORDPRESS_USERNAME";
pub const APP_PASSWORD: &str = "WORDPRESS_APP_PASSWORD";
pub const AUTH_TOKEN: &str = "WORDPRESS_AUTH_TOKEN";

/// The REST API suffixes a `WORDPRESS_API_URL` may end in, longest first.
const REST_SUFFIXES: [&str; 2] = ["/wp-json/wp/v2", "/wp-json"];

/// Why the environment does not describe one site. The codes are stable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LegacyEnvError {
    #[error("import_env.missing_url: WORDPRESS_API_URL is not set (the site's REST API URL, e.g. https://shop.example.com/wp-json)")]
    MissingUrl,
    /// The URL is never repeated: it may carry a password.
    #[error("import_env.invalid_url: WORDPRESS_API_URL is not usable: {0}")]
    InvalidUrl(String),
    #[error("import_env.empty_variable: {0} is set but empty")]
    Empty(&'static str),
    #[error("import_env.missing_credential: no credential: set WORDPRESS_USERNAME and WORDPRESS_APP_PASSWORD (an Application Password), or WORDPRESS_AUTH_TOKEN (a bearer token), or give the secret with --secret-stdin")]
    MissingCredential,
    #[error("import_env.ambiguous_credential: {0} and {1} are both given: keep only the one the site uses")]
    Ambiguous(&'static str, &'static str),
    #[error("import_env.incomplete_credential: {0}")]
    Incomplete(&'static str),
}

impl LegacyEnvError {
    /// The stable code (the message's first word).
    pub fn code(&self) -> &'static str {
        match self {
            LegacyEnvError::MissingUrl => "import_env.missing_url",
            LegacyEnvError::InvalidUrl(_) => "import_env.invalid_url",
            LegacyEnvError::Empty(_) => "import_env.empty_variable",
            LegacyEnvError::MissingCredential => "import_env.missing_credential",
            LegacyEnvError::Ambiguous(..) => "import_env.ambiguous_credential",
            LegacyEnvError::Incomplete(_) => "import_env.incomplete_credential",
        }
    }
}

/// What the environment says about the site.
#[derive(Debug)]
pub struct LegacyEnv {
    /// The site's base URL (what `--upstream` takes).
    pub upstream: String,
    /// The REST API suffix removed from `WORDPRESS_API_URL` to get it (`None`: the URL
    /// was the base URL already).
    pub removed_suffix: Option<&'static str>,
    pub credential: CredentialInput,
    /// Where the credential came from (variable names, or `standard input`).
    pub sources: Vec<&'static str>,
    /// Variables that were set but are not used (a user name beside a bearer token).
    pub ignored: Vec<&'static str>,
}

impl LegacyEnv {
    /// The credential as the operator reads it, without the secret: e.g. `app-password
    /// for user api, 24 chars`.
    pub fn credential_summary(&self) -> String {
        let chars = self
            .credential
            .secret
            .as_ref()
            .and_then(Secret::expose_str)
            .map_or(0, |s| s.chars().count());
        match (self.credential.kind, &self.credential.username) {
            (CredentialKind::AppPassword, Some(user)) => {
                format!("app-password for user {user}, {chars} chars")
            }
            (kind, _) => format!("{} token, {chars} chars", super::rows::auth_name(kind)),
        }
    }
}

/// Reads the environment through `var` (a variable set to an empty or blank value is a
/// refusal, not an absence); `stdin_secret` is a secret given on standard input instead
/// of `WORDPRESS_APP_PASSWORD` or `WORDPRESS_AUTH_TOKEN` (an Application Password when
/// `WORDPRESS_USERNAME` is set, else a bearer token).
pub fn read(
    var: impl Fn(&str) -> Option<String>,
    stdin_secret: Option<Secret>,
) -> Result<LegacyEnv, LegacyEnvError> {
    let get = |name: &'static str| -> Result<Option<zeroize::Zeroizing<String>>, LegacyEnvError> {
        match var(name).map(zeroize::Zeroizing::new) {
            None => Ok(None),
            Some(v) if v.trim().is_empty() => Err(LegacyEnvError::Empty(name)),
            Some(v) => Ok(Some(zeroize::Zeroizing::new(v.trim().to_string()))),
        }
    };
    let url = get(API_URL)?.ok_or(LegacyEnvError::MissingUrl)?;
    let (upstream, removed_suffix) = base_url(&url)?;
    let username = get(USERNAME)?;
    let password = get(APP_PASSWORD)?;
    let token = get(AUTH_TOKEN)?;
    let mut ignored = Vec::new();
    let secret_of = |s: &zeroize::Zeroizing<String>| Secret::from_string(s.to_string());
    let (kind, secret, sources) = match (&password, &token, stdin_secret) {
        (Some(_), Some(_), _) => return Err(LegacyEnvError::Ambiguous(APP_PASSWORD, AUTH_TOKEN)),
        (Some(_), None, Some(_)) => {
            return Err(LegacyEnvError::Ambiguous(APP_PASSWORD, "--secret-stdin"))
        }
        (None, Some(_), Some(_)) => {
            return Err(LegacyEnvError::Ambiguous(AUTH_TOKEN, "--secret-stdin"))
        }
        (Some(p), None, None) => {
            if username.is_none() {
                return Err(LegacyEnvError::Incomplete(
                    "WORDPRESS_APP_PASSWORD is set but WORDPRESS_USERNAME is not (an Application Password belongs to a user)",
                ));
            }
            (CredentialKind::AppPassword, secret_of(p), vec![USERNAME, APP_PASSWORD])
        }
        (None, Some(t), None) => {
            if username.is_some() {
                ignored.push(USERNAME);
            }
            (CredentialKind::Bearer, secret_of(t), vec![AUTH_TOKEN])
        }
        (None, None, Some(s)) if username.is_some() => {
            (CredentialKind::AppPassword, s, vec![USERNAME, "standard input"])
        }
        (None, None, Some(s)) => (CredentialKind::Bearer, s, vec!["standard input"]),
        (None, None, None) if username.is_some() => {
            return Err(LegacyEnvError::Incomplete(
                "WORDPRESS_USERNAME is set but WORDPRESS_APP_PASSWORD is not (or give the password with --secret-stdin)",
            ))
        }
        (None, None, None) => return Err(LegacyEnvError::MissingCredential),
    };
    let username = match kind {
        CredentialKind::AppPassword => username.map(|u| u.to_string()),
        _ => None,
    };
    Ok(LegacyEnv {
        upstream,
        removed_suffix,
        credential: CredentialInput {
            kind,
            username,
            secret: Some(secret),
        },
        sources,
        ignored,
    })
}

/// The site's base URL from its REST API URL: `/wp-json/wp/v2` or `/wp-json` (and a
/// trailing slash) removed; a URL without them is taken as the base URL. The error never
/// repeats the URL.
pub fn base_url(api_url: &str) -> Result<(String, Option<&'static str>), LegacyEnvError> {
    let invalid = |why: &str| LegacyEnvError::InvalidUrl(why.to_string());
    let mut url = url::Url::parse(api_url).map_err(|_| invalid("it is not a URL"))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            "it has a query or fragment (e.g. ?rest_route=): give the /wp-json URL or the site's base URL",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "it carries a user or password: set WORDPRESS_USERNAME and WORDPRESS_APP_PASSWORD instead",
        ));
    }
    let path = url.path().trim_end_matches('/').to_string();
    let removed = REST_SUFFIXES.into_iter().find(|s| path.ends_with(s));
    let base_path = removed.map_or(path.as_str(), |s| &path[..path.len() - s.len()]);
    url.set_path(base_path);
    let base = url.as_str().trim_end_matches('/').to_string();
    UpstreamTarget::parse(&base).map_err(|e| invalid(&e.to_string()))?;
    Ok((base, removed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn the_base_url_is_derived_from_the_rest_url() {
        for (given, base, removed) in [
            (
                "https://shop.example.com/wp-json/wp/v2",
                "https://shop.example.com",
                Some("/wp-json/wp/v2"),
            ),
            (
                "https://shop.example.com/wp-json/wp/v2/",
                "https://shop.example.com",
                Some("/wp-json/wp/v2"),
            ),
            (
                "https://shop.example.com/wp-json",
                "https://shop.example.com",
                Some("/wp-json"),
            ),
            (
                "http://127.0.0.1:8081/blog/wp-json/",
                "http://127.0.0.1:8081/blog",
                Some("/wp-json"),
            ),
            (
                "https://shop.example.com/",
                "https://shop.example.com",
                None,
            ),
            (
                "https://shop.example.com/blog",
                "https://shop.example.com/blog",
                None,
            ),
        ] {
            assert_eq!(
                base_url(given).unwrap(),
                (base.to_string(), removed),
                "{given}"
            );
        }
        for bad in [
            "shop.example.com/wp-json",
            "https://shop.example.com/?rest_route=/wp/v2",
            "https://api:s3cret-pw@shop.example.com/wp-json",
            "ftp://shop.example.com/wp-json",
        ] {
            let e = base_url(bad).unwrap_err();
            assert_eq!(e.code(), "import_env.invalid_url");
            assert!(!e.to_string().contains("s3cret"), "{e}");
        }
    }

    #[test]
    fn credentials_are_found_or_refused_with_a_code() {
        let url = (API_URL, "https://shop.example.com/wp-json");
        let app = read(
            env(&[
                url,
                (USERNAME, "api"),
                (APP_PASSWORD, "abcd efgh ijkl mnop qrst uvwx\n"),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(app.credential.kind, CredentialKind::AppPassword);
        assert_eq!(
            app.credential_summary(),
            "app-password for user api, 29 chars"
        );
        assert_eq!(app.upstream, "https://shop.example.com");
        let bearer = read(env(&[url, (USERNAME, "api"), (AUTH_TOKEN, "tok")]), None).unwrap();
        assert_eq!(bearer.credential.kind, CredentialKind::Bearer);
        assert_eq!(bearer.credential.username, None);
        assert_eq!(bearer.ignored, vec![USERNAME]);
        assert_eq!(bearer.credential_summary(), "bearer token, 3 chars");
        let piped = read(
            env(&[url, (USERNAME, "api")]),
            Some(Secret::from_string("pw".into())),
        )
        .unwrap();
        assert_eq!(piped.credential.kind, CredentialKind::AppPassword);
        for (pairs, stdin, code) in [
            (
                vec![(USERNAME, "api"), (APP_PASSWORD, "pw")],
                false,
                "import_env.missing_url",
            ),
            (vec![url], false, "import_env.missing_credential"),
            (
                vec![
                    url,
                    (APP_PASSWORD, "pw"),
                    (AUTH_TOKEN, "t"),
                    (USERNAME, "u"),
                ],
                false,
                "import_env.ambiguous_credential",
            ),
            (
                vec![url, (AUTH_TOKEN, "t")],
                true,
                "import_env.ambiguous_credential",
            ),
            (
                vec![url, (APP_PASSWORD, "pw")],
                false,
                "import_env.incomplete_credential",
            ),
            (
                vec![url, (USERNAME, "u")],
                false,
                "import_env.incomplete_credential",
            ),
            (
                vec![url, (AUTH_TOKEN, "  ")],
                false,
                "import_env.empty_variable",
            ),
            (vec![(API_URL, "")], false, "import_env.empty_variable"),
        ] {
            let stdin = stdin.then(|| Secret::from_string("s".into()));
            let e = read(env(&pairs), stdin).unwrap_err();
            assert_eq!(e.code(), code, "{pairs:?}: {e}");
            assert!(e.to_string().starts_with(code), "{e}");
        }
    }
}
