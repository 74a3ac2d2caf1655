//! Sites: their ids, upstreams and upstream credentials, as validated values.

use std::fmt;
use std::str::FromStr;

/// A site id: `[A-Za-z0-9_-]{1,64}`. Parsed once where it enters (CLI argument, admin
/// API path or body) and passed on as this type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct SiteId(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("site id must be 1-64 characters of [A-Za-z0-9_-]")]
pub struct InvalidSiteId;

/// True when `s` is a well-formed site id; used on the request path without allocating.
pub fn is_valid_site_id(s: &[u8]) -> bool {
    (1..=64).contains(&s.len())
        && s.iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
}

impl SiteId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for SiteId {
    type Err = InvalidSiteId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if is_valid_site_id(s.as_bytes()) {
            Ok(SiteId(s.to_string()))
        } else {
            Err(InvalidSiteId)
        }
    }
}

impl fmt::Display for SiteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The longest name or label an operator may give (characters).
pub const MAX_TEXT_CHARS: usize = 200;

/// A text field an operator gave that is refused, naming the field as the admin API
/// spells it (`name`, `label`, `credential.username`, `credential.secret`, ...).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {problem}")]
pub struct InvalidText {
    pub field: &'static str,
    pub problem: &'static str,
}

/// A name or label (a site's name, a key's label, a user or header name): not blank,
/// at most [`MAX_TEXT_CHARS`] characters, no control characters. Checked once here, for
/// the CLI and the admin API alike.
pub fn check_text(field: &'static str, value: &str) -> Result<(), InvalidText> {
    let problem = if value.trim().is_empty() {
        "must not be empty or only whitespace"
    } else if value.chars().count() > MAX_TEXT_CHARS {
        "must be at most 200 characters"
    } else if value.chars().any(char::is_control) {
        "must not contain control characters"
    } else {
        return Ok(());
    };
    Err(InvalidText { field, problem })
}

/// A secret (an application password, a token, an HMAC secret): not empty and not only
/// whitespace. Never repeated in the error.
pub fn check_secret(field: &'static str, secret: &[u8]) -> Result<(), InvalidText> {
    if secret.iter().all(u8::is_ascii_whitespace) {
        return Err(InvalidText {
            field,
            problem: "must not be empty or only whitespace",
        });
    }
    Ok(())
}

/// How wpgate authenticates to a site's WordPress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// HTTP Basic `user:application password` (WordPress core Application Passwords).
    AppPassword,
    /// `Authorization: Bearer <token>` (e.g. a JWT-auth plugin's token).
    Bearer,
    /// A plugin's own header, `<name>: <value>`.
    Header,
    /// Nothing is added.
    None,
}

impl CredentialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::AppPassword => "app_password",
            CredentialKind::Bearer => "bearer",
            CredentialKind::Header => "header",
            CredentialKind::None => "none",
        }
    }

    pub fn needs_secret(self) -> bool {
        !matches!(self, CredentialKind::None)
    }
}

impl FromStr for CredentialKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "app_password" | "app-password" => Ok(CredentialKind::AppPassword),
            "bearer" => Ok(CredentialKind::Bearer),
            "header" => Ok(CredentialKind::Header),
            "none" => Ok(CredentialKind::None),
            other => Err(format!(
                "unknown credential kind {other:?} (app-password, bearer, header, none)"
            )),
        }
    }
}

/// A site's upstream, parsed from its base URL: `http(s)://host[:port][/prefix]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTarget {
    pub tls: bool,
    /// Host name or IP literal (without brackets), also the TLS SNI.
    pub host: String,
    pub port: u16,
    /// The value for the `Host` header: `host[:port]` as the URL wrote it, built once as
    /// the header value it is sent as.
    pub authority: http::HeaderValue,
    /// Path prefix without a trailing slash ("" for none), e.g. "/blog".
    pub path_prefix: String,
    /// `scheme://host:port`, normalised (host lowercased, IPv6 in brackets, the default
    /// port written out): what the site's upstream credential is bound to.
    pub origin: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidUpstream {
    #[error("upstream URL is not a valid URL")]
    Unparsable,
    #[error("upstream URL must use http or https")]
    Scheme,
    #[error("upstream URL must name a host")]
    NoHost,
    #[error("upstream URL must not carry a user or password: set the credential instead")]
    UserInfo,
    #[error("upstream URL must not carry a query or fragment")]
    QueryOrFragment,
}

impl UpstreamTarget {
    pub fn parse(raw: &str) -> Result<Self, InvalidUpstream> {
        let url = url::Url::parse(raw).map_err(|_| InvalidUpstream::Unparsable)?;
        let tls = match url.scheme() {
            "http" => false,
            "https" => true,
            _ => return Err(InvalidUpstream::Scheme),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(InvalidUpstream::UserInfo);
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(InvalidUpstream::QueryOrFragment);
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(InvalidUpstream::NoHost),
        };
        let port = url.port_or_known_default().ok_or(InvalidUpstream::Scheme)?;
        let host_text = url.host_str().ok_or(InvalidUpstream::NoHost)?;
        let authority = match url.port() {
            Some(p) => format!("{host_text}:{p}"),
            None => host_text.to_string(),
        };
        let authority =
            http::HeaderValue::from_str(&authority).map_err(|_| InvalidUpstream::Unparsable)?;
        let path_prefix = url.path().trim_end_matches('/').to_string();
        // `url` has already lowercased and IDNA-encoded a domain, and put an IPv6
        // address in its shortest form with brackets.
        let origin = format!(
            "{}://{}:{port}",
            url.scheme(),
            host_text.to_ascii_lowercase()
        );
        Ok(UpstreamTarget {
            tls,
            host,
            port,
            authority,
            path_prefix,
            origin,
        })
    }
}

/// A path prefix a site allows besides the WordPress REST API, e.g. `/xmlrpc.php` or
/// `/wp-content/uploads/`. It matches on segment boundaries: `/xmlrpc.php` allows
/// `/xmlrpc.php` and `/xmlrpc.php/...`, never `/xmlrpc.phpx`; a trailing slash changes
/// nothing. Compared with the request path after percent-decoding (see
/// `proxy::route::check_target`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct AllowPath(String);

/// Longest allow-path, in bytes.
pub const ALLOW_PATH_MAX_LEN: usize = 256;
/// Most allow-paths one site may have.
pub const ALLOW_PATHS_MAX: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidAllowPath {
    #[error("allow-path {0:?} must start with /")]
    NoLeadingSlash(String),
    #[error("allow-path {0:?} is longer than {ALLOW_PATH_MAX_LEN} bytes")]
    TooLong(String),
    #[error(
        "allow-path {0:?} may hold only visible ASCII characters without % ? # \\ \
         (write the path decoded)"
    )]
    Characters(String),
    #[error("allow-path {0:?} must not hold empty, . or .. segments")]
    Segments(String),
    #[error("a site may allow at most {ALLOW_PATHS_MAX} paths")]
    TooMany,
}

impl AllowPath {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The prefix as compared: without its trailing slash (`/` becomes empty, so it
    /// allows every path).
    pub fn prefix(&self) -> &[u8] {
        self.0.strip_suffix('/').unwrap_or(&self.0).as_bytes()
    }
}

impl FromStr for AllowPath {
    type Err = InvalidAllowPath;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |e: fn(String) -> InvalidAllowPath| Err(e(s.to_string()));
        if !s.starts_with('/') {
            return bad(InvalidAllowPath::NoLeadingSlash);
        }
        if s.len() > ALLOW_PATH_MAX_LEN {
            return bad(InvalidAllowPath::TooLong);
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'%' | b'?' | b'#' | b'\\'))
        {
            return bad(InvalidAllowPath::Characters);
        }
        // Segments between the slashes; one empty one at the end is the trailing slash.
        let inner = s[1..].strip_suffix('/').unwrap_or(&s[1..]);
        if s != "/" && inner.split('/').any(|seg| matches!(seg, "" | "." | "..")) {
            return bad(InvalidAllowPath::Segments);
        }
        Ok(AllowPath(s.to_string()))
    }
}

impl fmt::Display for AllowPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which request paths a site's requests may take: the WordPress REST API always
/// (`/wp-json`, `/wp-json/...`, and `/` or `/index.php` with a `rest_route`), and the
/// site's own [`AllowPath`]s. Empty by default: REST only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteAllow {
    paths: Vec<AllowPath>,
}

impl RouteAllow {
    /// Only the REST API.
    pub fn rest_only() -> Self {
        Self::default()
    }

    /// The REST API and `paths` (duplicates dropped, order kept).
    pub fn new(paths: Vec<AllowPath>) -> Result<Self, InvalidAllowPath> {
        let mut unique: Vec<AllowPath> = Vec::with_capacity(paths.len());
        for p in paths {
            if !unique.contains(&p) {
                unique.push(p);
            }
        }
        if unique.len() > ALLOW_PATHS_MAX {
            return Err(InvalidAllowPath::TooMany);
        }
        Ok(RouteAllow { paths: unique })
    }

    /// Parses stored or given text.
    pub fn parse<S: AsRef<str>>(paths: &[S]) -> Result<Self, InvalidAllowPath> {
        Self::new(
            paths
                .iter()
                .map(|p| p.as_ref().parse())
                .collect::<Result<_, _>>()?,
        )
    }

    pub fn paths(&self) -> &[AllowPath] {
        &self.paths
    }

    /// The paths as text, as stored.
    pub fn to_strings(&self) -> Vec<String> {
        self.paths.iter().map(|p| p.0.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_ids() {
        for ok in ["shop", "a", "A-b_9", &"x".repeat(64)] {
            assert!(ok.parse::<SiteId>().is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a.b", "ä", "a/b", &"x".repeat(65), "@global"] {
            assert!(bad.parse::<SiteId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn upstreams() {
        let t = UpstreamTarget::parse("http://127.0.0.1:8081").unwrap();
        assert_eq!((t.tls, t.port, t.path_prefix.as_str()), (false, 8081, ""));
        assert_eq!(t.authority, "127.0.0.1:8081");
        let t = UpstreamTarget::parse("https://shop.example.com/blog/").unwrap();
        assert_eq!((t.tls, t.port), (true, 443));
        assert_eq!(t.path_prefix, "/blog");
        assert_eq!(t.authority, "shop.example.com");
        assert_eq!(t.host, "shop.example.com");
        let t = UpstreamTarget::parse("http://[::1]:9000/x").unwrap();
        assert_eq!(t.host, "::1");
        assert_eq!(t.authority, "[::1]:9000");
        for (a, b) in [
            ("http://127.0.0.1:8081", "http://127.0.0.1:8081/blog/"),
            ("https://Shop.Example.COM", "https://shop.example.com:443/x"),
            ("http://shop.example.com", "http://shop.example.com:80"),
            ("http://[0:0::1]:9000", "http://[::1]:9000/"),
            ("http://0x7f.1:80", "http://127.0.0.1"),
        ] {
            let (a, b) = (
                UpstreamTarget::parse(a).unwrap(),
                UpstreamTarget::parse(b).unwrap(),
            );
            assert_eq!(a.origin, b.origin);
        }
        assert_eq!(
            UpstreamTarget::parse("https://Shop.Example.com/blog")
                .unwrap()
                .origin,
            "https://shop.example.com:443"
        );
        assert_eq!(
            UpstreamTarget::parse("http://[::1]/").unwrap().origin,
            "http://[::1]:80"
        );
        for (a, b) in [
            ("http://shop.example.com", "https://shop.example.com"),
            ("http://shop.example.com", "http://shop.example.com:8080"),
            ("http://shop.example.com", "http://blog.example.com"),
            (
                "https://shop.example.com:443",
                "http://shop.example.com:443",
            ),
        ] {
            assert_ne!(
                UpstreamTarget::parse(a).unwrap().origin,
                UpstreamTarget::parse(b).unwrap().origin,
                "{a} {b}"
            );
        }
        for (url, refused) in [
            ("ftp://x", InvalidUpstream::Scheme),
            ("nope", InvalidUpstream::Unparsable),
            ("http://u:p@x/", InvalidUpstream::UserInfo),
            ("http://x/?a=1", InvalidUpstream::QueryOrFragment),
        ] {
            assert_eq!(UpstreamTarget::parse(url), Err(refused), "{url}");
        }
    }

    #[test]
    fn text_fields_name_the_field() {
        assert_eq!(check_text("name", "Shop ✓"), Ok(()));
        assert_eq!(check_text("name", &"é".repeat(200)), Ok(()));
        for (bad, problem) in [
            ("", "empty"),
            (" \t ", "empty"),
            (&"x".repeat(201) as &str, "200 characters"),
            ("a\nb", "control characters"),
            ("a\u{7f}", "control characters"),
            ("a\u{85}", "control characters"),
        ] {
            let e = check_text("label", bad).unwrap_err();
            assert_eq!(e.field, "label");
            assert!(e.to_string().starts_with("label: "), "{e}");
            assert!(e.problem.contains(problem), "{bad:?}: {e}");
        }
        assert!(check_secret("credential.secret", b"s3cret").is_ok());
        for blank in [&b""[..], b"  ", b"\n\t "] {
            let e = check_secret("credential.secret", blank).unwrap_err();
            assert_eq!(
                e.to_string(),
                "credential.secret: must not be empty or only whitespace"
            );
        }
    }

    #[test]
    fn allow_paths() {
        for ok in [
            "/",
            "/xmlrpc.php",
            "/wp-content/uploads/",
            "/a/b-c_d.e~f",
            "/.well-known/x",
        ] {
            assert!(ok.parse::<AllowPath>().is_ok(), "{ok}");
        }
        let p: AllowPath = "/wp-content/uploads/".parse().unwrap();
        assert_eq!(p.prefix(), b"/wp-content/uploads");
        assert_eq!("/".parse::<AllowPath>().unwrap().prefix(), b"");
        for (bad, why) in [
            ("", "start with /"),
            ("xmlrpc.php", "start with /"),
            ("/a b", "visible ASCII"),
            ("/a%2e", "visible ASCII"),
            ("/a?b", "visible ASCII"),
            ("/a#b", "visible ASCII"),
            ("/a\\b", "visible ASCII"),
            ("/a\u{0}", "visible ASCII"),
            ("/caf\u{e9}", "visible ASCII"),
            ("/a/../b", "segments"),
            ("/a/./b", "segments"),
            ("/..", "segments"),
            ("/a/..", "segments"),
            ("/a//b", "segments"),
            ("//", "segments"),
        ] {
            let e = bad.parse::<AllowPath>().unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        let long = format!("/{}", "a".repeat(ALLOW_PATH_MAX_LEN));
        assert!(matches!(
            long.parse::<AllowPath>(),
            Err(InvalidAllowPath::TooLong(_))
        ));
        let r = RouteAllow::parse(&["/a", "/b/", "/a"]).unwrap();
        assert_eq!(r.to_strings(), vec!["/a", "/b/"]);
        let many: Vec<String> = (0..=ALLOW_PATHS_MAX).map(|i| format!("/p{i}")).collect();
        assert_eq!(RouteAllow::parse(&many), Err(InvalidAllowPath::TooMany));
        assert_eq!(
            RouteAllow::parse::<&str>(&[]).unwrap(),
            RouteAllow::rest_only()
        );
    }
}
