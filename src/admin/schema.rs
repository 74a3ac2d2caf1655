//! The admin API's input rules as its OpenAPI description states them. Each pattern is
//! the rule the server applies (`site::check_text`, `SiteId`, `credential_header`, ...)
//! written as a regular expression, so a generated client or validator accepts what the
//! server accepts and refuses what it refuses. Used with `#[schema(schema_with = ...)]`
//! and `#[param(schema_with = ...)]`.

use crate::credential::GATEWAY_HEADERS;
use crate::site::MAX_TEXT_CHARS;
use utoipa::openapi::schema::{ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{KnownFormat, Object};

/// `SiteId`: what clients send as `X-Website-ID`.
pub const SITE_ID: &str = "^[A-Za-z0-9_-]{1,64}$";
/// An API key's or admin token's id.
pub const KEY_ID: &str = "^[a-z0-9]{12}$";
/// A duration the API takes: 1-6 digits and one unit (`s`, `m`, `h`, `d`).
pub const DURATION: &str = "^[0-9]{1,6}[smhd]$";
/// A host as the admin API takes it: a name whose last label starts with a letter, or
/// an IPv4 address.
macro_rules! host {
    () => {
        concat!(
            "(?:(?:[A-Za-z0-9-]{1,63}\\.)*[A-Za-z][A-Za-z0-9-]{0,62}",
            "|(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\\.){3}",
            "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9]))"
        )
    };
}

/// An optional port, 1-65535.
macro_rules! port {
    () => {
        "(?::(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?"
    };
}

/// An upstream base URL: http or https, a host, an optional port, an optional path; no
/// user, query or fragment.
pub const UPSTREAM: &str = concat!(
    "^https?://",
    host!(),
    port!(),
    "(?:/[A-Za-z0-9._~!$&'()*+,;=:@/-]*)?$"
);

/// A browser origin: http or https (any case), a host, an optional port, at most a
/// trailing `/`.
pub const ORIGIN: &str = concat!("^[Hh][Tt][Tt][Pp][Ss]?://", host!(), port!(), "/?$");

/// A path prefix a site forwards (`AllowPath`): `/`, or `/`-separated segments of
/// visible ASCII without `%`, `?`, `#`, `\\`, none of them empty, `.` or `..`, and an
/// optional trailing `/`.
pub const ALLOW_PATH: &str = "^(?:/|(?:/(?!\\.{1,2}(?:/|$))[!\"$&-.0->@-\\[\\]-~]+)+/?)$";

/// A REST namespace a site must offer, e.g. `myplugin/v1`.
pub const NAMESPACE: &str = "^[A-Za-z0-9/._-]{1,128}$";

/// Unicode control characters (Cc), which no text field may hold.
const CONTROL: &str = "\\u0000-\\u001f\\u007f-\\u009f";

/// Not blank, no control character, none of `also_refused`.
fn text_pattern(also_refused: &str) -> String {
    format!("^[^{CONTROL}{also_refused}]*[^\\s{CONTROL}{also_refused}][^{CONTROL}{also_refused}]*$")
}

fn string(pattern: String, max: Option<usize>, description: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(max)
        .pattern(Some(pattern))
        .description(Some(description))
        .build()
}

/// A name or label: 1-200 characters, not blank, no control characters.
pub fn text() -> Object {
    string(
        text_pattern(""),
        Some(MAX_TEXT_CHARS),
        "1-200 characters, not blank, no control characters",
    )
}

/// The most characters a site search may have.
pub const MAX_SEARCH_CHARS: usize = 100;

/// A site search: 1-100 characters, not blank, no control characters.
pub fn search() -> Object {
    string(
        text_pattern(""),
        Some(MAX_SEARCH_CHARS),
        "Text found in the site's id or name (letters in either case): 1-100 \
         characters, not blank, no control characters",
    )
}

/// A health state, as the API writes it.
pub fn health_state() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(
            crate::health::HealthState::ALL
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>(),
        ))
        .description(Some("A health state (see the site health endpoint)"))
        .build()
}

/// A WordPress user name: as `text`, without `:`.
pub fn username() -> Object {
    string(
        text_pattern(":"),
        Some(MAX_TEXT_CHARS),
        "WordPress user name (`app_password`): 1-200 characters, not blank, no control \
         characters or `:`",
    )
}

/// A secret: not blank, no control characters. Write-only.
pub fn secret() -> Object {
    let mut o = string(
        text_pattern(""),
        None,
        "Write-only: never returned. Not blank, no control characters",
    );
    o.format = Some(SchemaFormat::KnownFormat(KnownFormat::Password));
    o
}

/// A header a `header` credential is sent in: an HTTP token, not one the gateway sets.
pub fn header_name() -> Object {
    let reserved: Vec<String> = GATEWAY_HEADERS
        .iter()
        .map(|name| {
            name.chars()
                .map(|c| {
                    if c.is_ascii_alphabetic() {
                        format!("[{}{}]", c.to_ascii_uppercase(), c)
                    } else {
                        // Only `-`: literal outside a class.
                        c.to_string()
                    }
                })
                .collect()
        })
        .collect();
    string(
        format!(
            "^(?!(?:{})$)[!#$%&'*+.^_`|~0-9A-Za-z-]{{1,200}}$",
            reserved.join("|")
        ),
        Some(MAX_TEXT_CHARS),
        "Header name (`header`), e.g. `X-Plugin-Auth`: an HTTP token, not a header the \
         gateway sets (Host, X-Request-ID, X-Forwarded-*, Content-Length, \
         Transfer-Encoding, Connection)",
    )
}

pub fn site_id() -> Object {
    string(
        SITE_ID.to_string(),
        Some(64),
        "Site id: what clients send as X-Website-ID",
    )
}

pub fn key_id() -> Object {
    string(
        KEY_ID.to_string(),
        Some(12),
        "Key id: the 12 characters after `wpg_`",
    )
}

pub fn token_id() -> Object {
    string(
        KEY_ID.to_string(),
        Some(12),
        "Token id: the 12 characters after `wpgat_`",
    )
}

pub fn duration() -> Object {
    string(
        DURATION.to_string(),
        Some(7),
        "A duration: 1-6 digits and a unit, s, m, h or d, e.g. `90s`, `12h`, `30d`",
    )
}

pub fn upstream() -> Object {
    string(
        UPSTREAM.to_string(),
        None,
        "Base URL of the WordPress site: http or https, a host name or IPv4 address, an \
         optional port and path prefix; no user, query or fragment",
    )
}

fn list(item: Object, max: usize, description: &str) -> utoipa::openapi::schema::Array {
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(item)
        .max_items(Some(max))
        .description(Some(description))
        .build()
}

fn plain(pattern: &str, max: usize) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .max_length(Some(max))
        .build()
}

pub fn allow_paths() -> utoipa::openapi::schema::Array {
    list(
        plain(ALLOW_PATH, crate::site::ALLOW_PATH_MAX_LEN),
        crate::site::ALLOW_PATHS_MAX,
        "Path prefixes, each starting with `/`, decoded, without `.`/`..`/empty segments, \
         `%`, `?`, `#`, backslashes or spaces, at most 256 bytes; at most 32. Matched on \
         segment boundaries: `/xmlrpc.php` allows `/xmlrpc.php` and `/xmlrpc.php/...`. \
         Empty: the REST API only.",
    )
}

pub fn allow_origins() -> utoipa::openapi::schema::Array {
    list(
        plain(ORIGIN, crate::site::ALLOW_ORIGIN_MAX_LEN),
        crate::site::ALLOW_ORIGINS_MAX,
        "Origins `scheme://host[:port]`, http or https, a host name or IPv4 address, \
         without path, query, fragment, user or wildcard, at most 256 bytes; at most 32. \
         Stored normalised as browsers send the `Origin` header (lower case, default port \
         left out). Empty: none.",
    )
}

pub fn namespaces() -> utoipa::openapi::schema::Array {
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(plain(NAMESPACE, 128))
        .description(Some(
            "REST namespaces the site must offer, e.g. `myplugin/v1`: 1-128 characters of \
             `[A-Za-z0-9/._-]` each",
        ))
        .build()
}

/// Whether `value` matches `pattern` (one of the constants above, compiled once; a
/// pattern that does not compile matches nothing — the unit tests compile each).
pub fn matches(pattern: &'static str, value: &str) -> bool {
    use std::collections::HashMap;
    use std::sync::{LazyLock, Mutex, PoisonError};
    static COMPILED: LazyLock<Mutex<HashMap<&'static str, Option<regex::Regex>>>> =
        LazyLock::new(Mutex::default);
    let mut compiled = COMPILED.lock().unwrap_or_else(PoisonError::into_inner);
    compiled
        .entry(pattern)
        .or_insert_with(|| regex::Regex::new(pattern).ok())
        .as_ref()
        .is_some_and(|re| re.is_match(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_side_patterns_compile_and_say_what_they_mean() {
        for pattern in [UPSTREAM, ORIGIN] {
            assert!(regex::Regex::new(pattern).is_ok(), "{pattern}");
        }
        for ok in [
            "https://shop.example.com",
            "http://127.0.0.1:8080/blog/",
            "https://a-b.c9.example:65535/x",
        ] {
            assert!(matches(UPSTREAM, ok), "{ok}");
        }
        for bad in [
            "ftp://a.com",
            "https://user@a.com",
            "https://a.com?x=1",
            "https://1.2.3.999",
            "https://a.com:65536",
            "https://[::1]/",
            "https://a.com/a b",
        ] {
            assert!(!matches(UPSTREAM, bad), "{bad}");
        }
        assert!(matches(ORIGIN, "HTTPS://App.Example.com:8443/"));
        assert!(!matches(ORIGIN, "https://app.example.com/path"));
    }

    #[test]
    fn the_reserved_header_pattern_names_each_gateway_header_in_any_case() {
        let p = header_name().pattern.unwrap();
        assert!(p.contains("[Hh][Oo][Ss][Tt]"), "{p}");
        assert!(p.contains("[Xx]-[Rr]"), "{p}");
    }
}
