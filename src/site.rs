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

/// A browser origin a site lets call it (CORS): `scheme://host[:port]`, http or https,
/// without user, path, query, fragment or wildcard. Held normalised as browsers send the
/// `Origin` header (scheme and host lower case, an international domain name in its
/// `xn--` form, IPv6 in brackets, the scheme's default port left out), so a request's
/// `Origin` is compared byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct AllowOrigin(String);

/// Longest allowed origin as given, in bytes.
pub const ALLOW_ORIGIN_MAX_LEN: usize = 256;
/// Most origins one site may allow.
pub const ALLOW_ORIGINS_MAX: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidOrigin {
    #[error("origin {0:?} is not scheme://host[:port]")]
    Unparsable(String),
    #[error("origin {0:?} must use http or https")]
    Scheme(String),
    #[error(
        "origin {0:?}: wildcards are not allowed; list each origin (credentials are sent \
         by header, never to any origin)"
    )]
    Wildcard(String),
    #[error("origin {0:?} must not hold spaces, control characters or backslashes")]
    Characters(String),
    #[error("origin {0:?} must not carry a user or password")]
    UserInfo(String),
    #[error("origin {0:?} must not carry a path, query or fragment: scheme://host[:port] only")]
    PathQueryOrFragment(String),
    #[error("origin {0:?} is longer than {ALLOW_ORIGIN_MAX_LEN} bytes")]
    TooLong(String),
    #[error("a site may allow at most {ALLOW_ORIGINS_MAX} origins")]
    TooMany,
}

impl AllowOrigin {
    /// The normalised origin, as a browser's `Origin` header writes it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for AllowOrigin {
    type Err = InvalidOrigin;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |e: fn(String) -> InvalidOrigin| Err(e(s.to_string()));
        if s.len() > ALLOW_ORIGIN_MAX_LEN {
            return bad(InvalidOrigin::TooLong);
        }
        if s.contains('*') {
            return bad(InvalidOrigin::Wildcard);
        }
        // `url` would drop or rewrite these silently.
        if s.chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
        {
            return bad(InvalidOrigin::Characters);
        }
        let Some((scheme, rest)) = s.split_once("://") else {
            return bad(InvalidOrigin::Unparsable);
        };
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return bad(InvalidOrigin::Scheme);
        }
        // Nothing after the authority but one trailing slash (`url` would remove dot
        // segments and the like before we could see them).
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#']) {
            return bad(InvalidOrigin::PathQueryOrFragment);
        }
        if authority.contains('@') {
            return bad(InvalidOrigin::UserInfo);
        }
        let url = url::Url::parse(s).map_err(|_| InvalidOrigin::Unparsable(s.to_string()))?;
        if url.host().is_none() {
            return bad(InvalidOrigin::Unparsable);
        }
        // Lower case, IDNA, IPv6 brackets, default port dropped: the Origin header's form.
        match url.origin() {
            url::Origin::Tuple(..) => Ok(AllowOrigin(url.origin().ascii_serialization())),
            url::Origin::Opaque(_) => bad(InvalidOrigin::Unparsable),
        }
    }
}

impl fmt::Display for AllowOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The browser origins a site lets call it (CORS). Empty by default: browsers may not
/// call the site, and a request that carries an `Origin` header is refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CorsAllow {
    origins: Vec<AllowOrigin>,
}

impl CorsAllow {
    /// No origin: no browser app may call the site.
    pub fn none() -> Self {
        Self::default()
    }

    /// `origins`, duplicates (after normalisation) dropped, order kept.
    pub fn new(origins: Vec<AllowOrigin>) -> Result<Self, InvalidOrigin> {
        let mut unique: Vec<AllowOrigin> = Vec::with_capacity(origins.len());
        for o in origins {
            if !unique.contains(&o) {
                unique.push(o);
            }
        }
        if unique.len() > ALLOW_ORIGINS_MAX {
            return Err(InvalidOrigin::TooMany);
        }
        Ok(CorsAllow { origins: unique })
    }

    /// Parses stored or given text.
    pub fn parse<S: AsRef<str>>(origins: &[S]) -> Result<Self, InvalidOrigin> {
        Self::new(
            origins
                .iter()
                .map(|o| o.as_ref().parse())
                .collect::<Result<_, _>>()?,
        )
    }

    pub fn origins(&self) -> &[AllowOrigin] {
        &self.origins
    }

    pub fn is_empty(&self) -> bool {
        self.origins.is_empty()
    }

    /// Whether a request's `Origin` header value (as sent) is one of these, byte for
    /// byte. No allocation.
    pub fn allows(&self, origin: &[u8]) -> bool {
        self.origins.iter().any(|o| o.0.as_bytes() == origin)
    }

    /// The origins as text, as stored.
    pub fn to_strings(&self) -> Vec<String> {
        self.origins.iter().map(|o| o.0.clone()).collect()
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

    #[test]
    fn allow_origins_are_normalised_as_browsers_send_them() {
        for (given, held) in [
            ("https://app.example.com", "https://app.example.com"),
            ("https://app.example.com/", "https://app.example.com"),
            ("HTTPS://App.Example.COM", "https://app.example.com"),
            ("https://app.example.com:443", "https://app.example.com"),
            ("http://app.example.com:80", "http://app.example.com"),
            (
                "https://app.example.com:8443",
                "https://app.example.com:8443",
            ),
            ("http://localhost:3000", "http://localhost:3000"),
            ("http://127.0.0.1:5173", "http://127.0.0.1:5173"),
            ("http://[0:0::1]:8080", "http://[::1]:8080"),
            (
                "https://b\u{fc}cher.example",
                "https://xn--bcher-kva.example",
            ),
        ] {
            let o: AllowOrigin = given.parse().unwrap_or_else(|e| panic!("{given}: {e}"));
            assert_eq!(o.as_str(), held, "{given}");
        }
        for (bad, why) in [
            ("*", "wildcard"),
            ("https://*.example.com", "wildcard"),
            ("null", "scheme://host"),
            ("app.example.com", "scheme://host"),
            ("https://", "scheme://host"),
            ("ftp://app.example.com", "http or https"),
            ("chrome-extension://abcdef", "http or https"),
            ("file:///tmp/x", "http or https"),
            ("https://app.example.com/x", "path"),
            ("https://app.example.com/.", "path"),
            ("https://app.example.com//", "path"),
            ("https://app.example.com?", "path"),
            ("https://app.example.com/?a=1", "path"),
            ("https://app.example.com#x", "path"),
            ("https://u:p@app.example.com", "user"),
            ("https://u@app.example.com", "user"),
            ("https://app.example.com\\", "backslashes"),
            (" https://app.example.com", "spaces"),
            ("https://app.exa\tmple.com", "spaces"),
            ("https://app.example.com:99999", "scheme://host"),
        ] {
            let e = bad.parse::<AllowOrigin>().unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        let long = format!("https://{}.example", "a".repeat(ALLOW_ORIGIN_MAX_LEN));
        assert!(matches!(
            long.parse::<AllowOrigin>(),
            Err(InvalidOrigin::TooLong(_))
        ));
    }

    #[test]
    fn a_site_allows_exactly_its_origins() {
        let c = CorsAllow::parse(&[
            "https://app.example.com",
            "HTTPS://APP.example.com:443/",
            "http://localhost:3000",
        ])
        .unwrap();
        assert_eq!(
            c.to_strings(),
            vec!["https://app.example.com", "http://localhost:3000"]
        );
        assert!(c.allows(b"https://app.example.com"));
        assert!(c.allows(b"http://localhost:3000"));
        for other in [
            &b"https://app.example.com/"[..],
            b"https://APP.example.com",
            b"https://app.example.com:443",
            b"http://app.example.com",
            b"https://app.example.co",
            b"https://app.example.com.evil.test",
            b"http://localhost:3001",
            b"null",
            b"",
        ] {
            assert!(!c.allows(other), "{}", String::from_utf8_lossy(other));
        }
        assert!(CorsAllow::none().is_empty());
        assert!(!CorsAllow::none().allows(b"https://app.example.com"));
        let many: Vec<String> = (0..=ALLOW_ORIGINS_MAX)
            .map(|i| format!("https://a{i}.example"))
            .collect();
        assert_eq!(CorsAllow::parse(&many), Err(InvalidOrigin::TooMany));
    }
}
