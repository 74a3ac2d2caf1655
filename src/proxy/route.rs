//! Which requests may reach a site with its credential: never `TRACE`, `TRACK` or
//! `CONNECT`, and only a request target that stays where the site allows once the web
//! server in front of WordPress has decoded it.
//!
//! [`check_target`] reads the target (path and query, as received) in one pass over its
//! bytes, percent-decoding as it goes, and allocates nothing. The path is checked
//! first, then the route on the decoded path:
//!
//! - Malformed (400 `request.malformed_path`): a target that is not origin-form (does
//!   not start with `/`); a `.` or `..` segment in any spelling (`%2e`, `.%2E`, ...); an
//!   encoded slash or backslash (`%2f`, `%5c`); a literal backslash; a control character,
//!   literal or encoded (`%00`, `%0a`, ...); a `%` not followed by two hex digits; double
//!   encoding (`%25` followed by two hex digits, e.g. `%252e`); a path that is not UTF-8
//!   once decoded (so overlong forms such as `%c0%ae` for `.` are refused too); anywhere
//!   in the target, a literal space, `#` or control character. The query is otherwise
//!   not decoded or checked: it is forwarded byte for byte, whatever its encoding.
//! - Not allowed (403 `route.not_allowed`): a decoded path outside the REST API
//!   (`/wp-json` and below; `/` or `/index.php` with a `rest_route` parameter among the
//!   first 100 of the query) and outside the site's allowed path prefixes (matched on
//!   segment boundaries). Also, on every path: a `rest_route` parameter, in any spelling
//!   PHP reads as that name (`rest.route`, `rest+route`, `%72est_route`, ...), whose value
//!   does not start with `/`. WordPress renders its front end instead of the REST API
//!   for an empty or missing route, and a query parameter overrides the route the
//!   permalink gave.

use crate::error::ErrorCode;
use crate::site::RouteAllow;

/// Methods never forwarded: `TRACE`/`TRACK` echo the request (credential included) on
/// servers that answer them; `CONNECT` would make the gateway a tunnel.
const NEVER_FORWARDED: [&[u8]; 3] = [b"TRACE", b"TRACK", b"CONNECT"];

/// True for a method the gateway answers 405 itself (method names compared
/// case-insensitively, so `trace` is refused too).
pub fn method_refused(method: &[u8]) -> bool {
    NEVER_FORWARDED
        .iter()
        .any(|m| method.eq_ignore_ascii_case(m))
}

/// Why a request target is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetRefused {
    /// 400 `request.malformed_path`.
    Malformed(Malformed),
    /// 403 `route.not_allowed`.
    NotAllowed(NotAllowed),
}

/// What makes a target malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Not origin-form: the target does not start with `/` (absolute-form,
    /// authority-form, `*`).
    NotOriginForm,
    DotSegment,
    /// `%2f` or `%5c` in the path.
    EncodedSlash,
    Backslash,
    /// A control character (0x00-0x1f, 0x7f), literal or encoded.
    ControlChar,
    /// A `%` not followed by two hex digits, in the path.
    BadEscape,
    /// `%25` followed by two hex digits, in the path.
    DoubleEncoded,
    /// A literal space or `#`.
    Unencoded,
    /// The decoded path is not UTF-8.
    NotUtf8,
}

/// What makes a target not allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotAllowed {
    /// The path is neither the REST API nor one of the site's allowed prefixes.
    Route,
    /// A `rest_route` parameter that is not a route (empty, not starting with `/`, an
    /// array).
    RestRoute,
}

impl TargetRefused {
    pub fn code(self) -> ErrorCode {
        match self {
            TargetRefused::Malformed(_) => ErrorCode::MalformedPath,
            TargetRefused::NotAllowed(_) => ErrorCode::RouteNotAllowed,
        }
    }

    /// The exact reason, for the access log.
    pub fn reason(self) -> &'static str {
        match self {
            TargetRefused::Malformed(m) => match m {
                Malformed::NotOriginForm => "path_not_origin_form",
                Malformed::DotSegment => "path_dot_segment",
                Malformed::EncodedSlash => "path_encoded_slash",
                Malformed::Backslash => "path_backslash",
                Malformed::ControlChar => "path_control_char",
                Malformed::BadEscape => "path_bad_escape",
                Malformed::DoubleEncoded => "path_double_encoded",
                Malformed::Unencoded => "path_unencoded_char",
                Malformed::NotUtf8 => "path_not_utf8",
            },
            TargetRefused::NotAllowed(NotAllowed::Route) => "route_not_allowed",
            TargetRefused::NotAllowed(NotAllowed::RestRoute) => "rest_route_not_a_route",
        }
    }
}

impl From<TargetRefused> for super::ctx::Rejection {
    fn from(t: TargetRefused) -> Self {
        super::ctx::Rejection::new(t.code(), t.reason())
    }
}

/// A `rest_route` counts for `/` and `/index.php` only among this many first query
/// parameters: PHP drops parameters past `max_input_vars` (1000 by default), and a
/// route it never sees would leave WordPress rendering its front end.
const REST_ROUTE_WITHIN: usize = 100;

/// Checks a request target (path and query as received) for the site that allows
/// `allow`. Total: any bytes give an answer, none a panic.
pub fn check_target(target: &[u8], allow: &RouteAllow) -> Result<(), TargetRefused> {
    let (path, query) = match memchr::memchr(b'?', target) {
        Some(q) => (&target[..q], &target[q + 1..]),
        None => (target, &target[target.len()..]),
    };
    // Most paths hold nothing to decode or refuse but dot segments: for those, one
    // table scan stands in for the byte-by-byte check, and the route is compared as is.
    let plain = is_plain(path);
    if !(plain && path.first() == Some(&b'/') && !has_dot_segment(path)) {
        check_path(path).map_err(TargetRefused::Malformed)?;
    }
    let rest_route = check_query(query)?;
    let (under, decoded_eq): (Prefix, Prefix) = if plain {
        (under_plain, eq_plain)
    } else {
        (under, decoded_eq)
    };
    let rest = under(path, b"/wp-json")
        || (rest_route && (decoded_eq(path, b"/") || decoded_eq(path, b"/index.php")));
    if rest || allow.paths().iter().any(|p| under(path, p.prefix())) {
        Ok(())
    } else {
        Err(TargetRefused::NotAllowed(NotAllowed::Route))
    }
}

/// A comparison of a path with a route prefix or a whole route.
type Prefix = fn(&[u8], &[u8]) -> bool;

/// Bytes a path may hold literally that need neither decoding nor a closer look:
/// printable ASCII but `%`, `\\`, `#` (space and controls are outside the range).
/// [`is_plain`] checks the same set by comparisons (a test holds them equal).
#[cfg(test)]
const PLAIN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0x21;
    while b < 0x7f {
        table[b] = !matches!(b as u8, b'%' | b'\\' | b'#');
        b += 1;
    }
    table
};

/// True when every byte of `path` is `PLAIN`: it then reads the same decoded, and only
/// its start and its dot segments can make it malformed.
fn is_plain(path: &[u8]) -> bool {
    // Comparisons without a branch per byte, which the compiler does 16 bytes at a time;
    // the same set as the table.
    path.iter().fold(true, |ok, &b| {
        ok & (b > b' ') & (b < 0x7f) & (b != b'%') & (b != b'\\') & (b != b'#')
    })
}

/// True when some segment of `path` is `.` or `..` (as written).
fn has_dot_segment(path: &[u8]) -> bool {
    // Most paths have no dot at all: one memchr says so.
    memchr::memchr(b'.', path).is_some()
        && path
            .split(|&b| b == b'/')
            .any(|seg| seg == b"." || seg == b"..")
}

/// [`under`] for a plain path.
fn under_plain(path: &[u8], prefix: &[u8]) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.first().is_none_or(|&b| b == b'/'))
}

/// [`decoded_eq`] for a plain path.
fn eq_plain(path: &[u8], want: &[u8]) -> bool {
    path == want
}

/// The path part: origin-form, no dot segment, no encoded or literal backslash, no
/// encoded slash, no control character, well-formed escapes, UTF-8 once decoded.
fn check_path(path: &[u8]) -> Result<(), Malformed> {
    if path.first() != Some(&b'/') {
        return Err(Malformed::NotOriginForm);
    }
    let mut utf8 = Utf8::default();
    // The current segment: its decoded length, and whether it is dots only.
    let (mut len, mut dots) = (0usize, true);
    let mut i = 1;
    while let Some(&raw) = path.get(i) {
        if raw == b'/' {
            dot_segment(len, dots)?;
            (len, dots) = (0, true);
            utf8.push(raw)?;
            i += 1;
            continue;
        }
        let (b, encoded) = if raw == b'%' {
            let b = hex_pair(path, i + 1).ok_or(Malformed::BadEscape)?;
            i += 3;
            (b, true)
        } else {
            i += 1;
            (raw, false)
        };
        match b {
            b'/' => return Err(Malformed::EncodedSlash),
            b'\\' if encoded => return Err(Malformed::EncodedSlash),
            b'\\' => return Err(Malformed::Backslash),
            0x00..=0x1f | 0x7f => return Err(Malformed::ControlChar),
            b' ' | b'#' if !encoded => return Err(Malformed::Unencoded),
            b'%' if encoded && hex_pair(path, i).is_some() => return Err(Malformed::DoubleEncoded),
            _ => {}
        }
        utf8.push(b)?;
        len += 1;
        dots &= b == b'.';
    }
    dot_segment(len, dots)?;
    utf8.finish()
}

fn dot_segment(len: usize, dots: bool) -> Result<(), Malformed> {
    if dots && (len == 1 || len == 2) {
        Err(Malformed::DotSegment)
    } else {
        Ok(())
    }
}

/// The query: no literal control, space or `#`; every parameter PHP reads as
/// `rest_route` names a route. Returns whether one does among the first
/// [`REST_ROUTE_WITHIN`] parameters.
fn check_query(query: &[u8]) -> Result<bool, TargetRefused> {
    if query.iter().any(|&b| b <= b' ' || b == 0x7f || b == b'#') {
        return Err(TargetRefused::Malformed(if query.contains(&b'#') {
            Malformed::Unencoded
        } else {
            Malformed::ControlChar
        }));
    }
    let mut found = false;
    for (n, param) in query.split(|&b| b == b'&').enumerate() {
        let (name, value) = match param.iter().position(|&b| b == b'=') {
            Some(eq) => (&param[..eq], &param[eq + 1..]),
            None => (param, &param[param.len()..]),
        };
        match rest_route_name(name) {
            Name::Other => {}
            Name::RestRouteArray => return Err(TargetRefused::NotAllowed(NotAllowed::RestRoute)),
            Name::RestRoute => {
                if Decoded::form(value).next() != Some(b'/') {
                    return Err(TargetRefused::NotAllowed(NotAllowed::RestRoute));
                }
                found |= n < REST_ROUTE_WITHIN;
            }
        }
    }
    Ok(found)
}

/// How PHP reads a query parameter's name, as far as `rest_route` goes.
enum Name {
    Other,
    RestRoute,
    RestRouteArray,
}

/// PHP decodes the name, drops leading spaces, reads ` ` and `.` (and an unclosed `[`)
/// as `_`, ends the name at a NUL, and makes `name[...]` an array.
fn rest_route_name(name: &[u8]) -> Name {
    let mut d = Decoded::form(name).skip_while(|&b| b == b' ');
    for &want in b"rest_route" {
        match d.next() {
            Some(b) if b == want => {}
            Some(b' ' | b'.' | b'[') if want == b'_' => {}
            _ => return Name::Other,
        }
    }
    match d.next() {
        None | Some(0) => Name::RestRoute,
        Some(b'[') => Name::RestRouteArray,
        Some(_) => Name::Other,
    }
}

/// True when the decoded `path` is `prefix` or lies below it (the next byte is `/`).
fn under(path: &[u8], prefix: &[u8]) -> bool {
    let mut d = Decoded::path(path);
    prefix.iter().all(|&p| d.next() == Some(p)) && matches!(d.next(), None | Some(b'/'))
}

/// True when the decoded `path` is exactly `want`.
fn decoded_eq(path: &[u8], want: &[u8]) -> bool {
    let mut d = Decoded::path(path);
    want.iter().all(|&w| d.next() == Some(w)) && d.next().is_none()
}

/// The value of the two hex digits at `raw[at..at + 2]`.
fn hex_pair(raw: &[u8], at: usize) -> Option<u8> {
    let hi = hex(*raw.get(at)?)?;
    let lo = hex(*raw.get(at + 1)?)?;
    Some(hi << 4 | lo)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decoded bytes of `raw`, without allocating. A `%` without two hex digits is
/// itself; in form encoding (query) `+` is a space.
struct Decoded<'a> {
    raw: &'a [u8],
    i: usize,
    form: bool,
}

impl<'a> Decoded<'a> {
    fn path(raw: &'a [u8]) -> Self {
        Decoded {
            raw,
            i: 0,
            form: false,
        }
    }

    fn form(raw: &'a [u8]) -> Self {
        Decoded {
            raw,
            i: 0,
            form: true,
        }
    }
}

impl Iterator for Decoded<'_> {
    type Item = u8;
    fn next(&mut self) -> Option<u8> {
        let b = *self.raw.get(self.i)?;
        if b == b'%' {
            if let Some(d) = hex_pair(self.raw, self.i + 1) {
                self.i += 3;
                return Some(d);
            }
        }
        self.i += 1;
        Some(if self.form && b == b'+' { b' ' } else { b })
    }
}

/// UTF-8 validation one byte at a time (RFC 3629: no overlong forms, no surrogates,
/// nothing past U+10FFFF).
#[derive(Default)]
struct Utf8 {
    /// Continuation bytes still expected, and the range the next one must lie in.
    need: u8,
    lo: u8,
    hi: u8,
}

impl Utf8 {
    fn push(&mut self, b: u8) -> Result<(), Malformed> {
        if self.need > 0 {
            if b < self.lo || b > self.hi {
                return Err(Malformed::NotUtf8);
            }
            self.need -= 1;
            (self.lo, self.hi) = (0x80, 0xbf);
            return Ok(());
        }
        (self.need, self.lo, self.hi) = match b {
            0x00..=0x7f => return Ok(()),
            0xc2..=0xdf => (1, 0x80, 0xbf),
            0xe0 => (2, 0xa0, 0xbf),
            0xe1..=0xec | 0xee..=0xef => (2, 0x80, 0xbf),
            0xed => (2, 0x80, 0x9f),
            0xf0 => (3, 0x90, 0xbf),
            0xf1..=0xf3 => (3, 0x80, 0xbf),
            0xf4 => (3, 0x80, 0x8f),
            _ => return Err(Malformed::NotUtf8),
        };
        Ok(())
    }

    fn finish(&self) -> Result<(), Malformed> {
        if self.need == 0 {
            Ok(())
        } else {
            Err(Malformed::NotUtf8)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_plain_check_is_the_plain_table() {
        for b in 0..=255u8 {
            assert_eq!(is_plain(&[b]), PLAIN[usize::from(b)], "{b:#x}");
            assert_eq!(is_plain(&[b'/', b'a', b]), PLAIN[usize::from(b)], "{b:#x}");
        }
        assert!(is_plain(b"/wp-json/wp/v2/posts"));
        assert!(is_plain(b""));
    }

    use super::*;
    use Malformed::*;

    fn rest_only(t: &str) -> Result<(), TargetRefused> {
        check_target(t.as_bytes(), &RouteAllow::rest_only())
    }

    fn malformed(t: &[u8]) -> Malformed {
        match check_target(t, &RouteAllow::rest_only()) {
            Err(TargetRefused::Malformed(m)) => m,
            other => panic!(
                "{:?}: expected malformed, got {other:?}",
                String::from_utf8_lossy(t)
            ),
        }
    }

    const NOT_ALLOWED: Result<(), TargetRefused> =
        Err(TargetRefused::NotAllowed(NotAllowed::Route));
    const BAD_REST_ROUTE: Result<(), TargetRefused> =
        Err(TargetRefused::NotAllowed(NotAllowed::RestRoute));

    #[test]
    fn methods() {
        for m in ["TRACE", "TRACK", "CONNECT", "trace", "Track", "connect"] {
            assert!(method_refused(m.as_bytes()), "{m}");
        }
        for m in [
            "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PROPFIND", "TRACES", "",
        ] {
            assert!(!method_refused(m.as_bytes()), "{m}");
        }
    }

    #[test]
    fn the_rest_api_is_allowed() {
        for ok in [
            "/wp-json",
            "/wp-json/",
            "/wp-json/wp/v2/posts?per_page=2&_fields=id",
            "/wp-json/wp/v2/posts/%31",
            "/wp-%6Ason/wp/v2",
            "/wp-json/wp/v2/posts?search=caf%C3%A9&x=%00%2e%2e%2f",
            "/wp-json/wp/v2/users/me?context=edit",
            "/wp-json/wp/v2/posts/..x/...",
            "/wp-json/a..b/.x/x.",
            "/wp-json/caf\u{e9}/%E2%9C%93",
            "/wp-json//wp/v2",
            "/?rest_route=/wp/v2/posts",
            "/?rest_route=%2Fwp%2Fv2%2Fposts&page=2",
            "/index.php?rest_route=/",
            "/?_fields=id&rest_route=/wp/v2/posts",
            "/wp-json/wp/v2/posts?rest_route=/wp/v2/pages",
            "/wp-json/?rest_route_x=&rest=&route=&rest_routes=",
        ] {
            assert_eq!(rest_only(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn anything_else_is_not_allowed() {
        for no in [
            "/",
            "/index.php",
            "/wp-admin/",
            "/wp-login.php",
            "/xmlrpc.php",
            "/wp-jsonx",
            "/wp-json.php",
            "/WP-JSON/wp/v2",
            "/wp-content/uploads/x.png",
            "//wp-json/",
            "/index.php/wp-json/",
            "/?p=1",
            "/?rest_routex=/wp/v2",
            "/index.phpx?rest_route=/x",
            "/?rest_route[x]=/x",
        ] {
            let got = rest_only(no);
            assert!(got == NOT_ALLOWED || got == BAD_REST_ROUTE, "{no}: {got:?}");
        }
    }

    #[test]
    fn a_rest_route_must_name_a_route_on_every_path() {
        for no in [
            "/?rest_route=",
            "/?rest_route",
            "/?rest_route=0",
            "/?rest_route=wp/v2",
            "/?rest_route=/wp/v2&rest_route=",
            "/?rest_route=/wp/v2&rest.route=",
            "/?rest_route=/wp/v2&rest+route=",
            "/?rest_route=/wp/v2&rest%20route=",
            "/?rest_route=/wp/v2&+rest_route=",
            "/?rest_route=/wp/v2&%72est_route=",
            "/?rest_route=/wp/v2&rest[route=",
            "/?rest_route=/wp/v2&rest_route%00x=",
            "/?rest_route[]=/x",
            "/wp-json/wp/v2/posts?rest_route=",
            "/wp-json/wp/v2/posts?p=5&rest_route=",
        ] {
            assert_eq!(rest_only(no), BAD_REST_ROUTE, "{no}");
        }
        // Beyond the first 100 parameters PHP may never see it.
        let late = format!("/?{}rest_route=/wp/v2", "a=1&".repeat(100));
        assert_eq!(rest_only(&late), NOT_ALLOWED);
        let in_time = format!("/?{}rest_route=/wp/v2", "a=1&".repeat(99));
        assert_eq!(rest_only(&in_time), Ok(()));
    }

    #[test]
    fn dot_segments_in_every_spelling() {
        for t in [
            "/wp-json/../wp-admin/",
            "/wp-json/..",
            "/wp-json/.",
            "/wp-json/./x",
            "/wp-json/%2e%2e/x",
            "/wp-json/%2E%2E/x",
            "/wp-json/.%2E/",
            "/wp-json/%2e./",
            "/wp-json/%2e",
            "/..",
            "/../other/wp-json/",
            "/wp-json/x/..?rest_route=/a",
        ] {
            assert_eq!(malformed(t.as_bytes()), DotSegment, "{t}");
        }
    }

    #[test]
    fn slashes_backslashes_controls_and_escapes() {
        for (t, want) in [
            (&b"/wp-json/a%2fb"[..], EncodedSlash),
            (b"/wp-json%2F..", EncodedSlash),
            (b"/wp-json/%5c..%5cwp-admin", EncodedSlash),
            (b"/wp-json/%5C", EncodedSlash),
            (b"/wp-json/a\\b", Backslash),
            (b"/wp-json\\..\\wp-admin", Backslash),
            (b"/wp-json/a%00b", ControlChar),
            (b"/wp-json/a%0Ab", ControlChar),
            (b"/wp-json/a%7f", ControlChar),
            (b"/wp-json/a\x00", ControlChar),
            (b"/wp-json/a\tb", ControlChar),
            (b"/wp-json/?a=\x01", ControlChar),
            (b"/wp-json/a%", BadEscape),
            (b"/wp-json/a%2", BadEscape),
            (b"/wp-json/a%zz", BadEscape),
            (b"/wp-json/%252e%252e/x", DoubleEncoded),
            (b"/wp-json/%252f", DoubleEncoded),
            (b"/wp-json/a b", Unencoded),
            (b"/wp-json/a#b", Unencoded),
            (b"/wp-json/?a#b", Unencoded),
            (b"/wp-json/caf\xe9", NotUtf8),
            (b"/wp-json/caf%e9", NotUtf8),
            (b"/wp-json/%c0%ae%c0%ae/x", NotUtf8),
            (b"/wp-json/%c0%af", NotUtf8),
            (b"/wp-json/%e0%80%ae", NotUtf8),
            (b"/wp-json/%ed%a0%80", NotUtf8),
            (b"/wp-json/%f4%90%80%80", NotUtf8),
            (b"/wp-json/%e2%9c", NotUtf8),
            (b"/wp-json/%e2/%9c%93", NotUtf8),
            (b"", NotOriginForm),
            (b"*", NotOriginForm),
            (b"wp-json/", NotOriginForm),
            (b"http://evil/wp-json/", NotOriginForm),
            (b"?rest_route=/x", NotOriginForm),
        ] {
            assert_eq!(malformed(t), want, "{:?}", String::from_utf8_lossy(t));
        }
        // A query is not decoded: anything encoded passes, and bytes that are not UTF-8
        // are forwarded as they are.
        assert_eq!(
            check_target(
                b"/wp-json/?q=%2e%2e%2f%5c%00%zz%c0\xff",
                &RouteAllow::rest_only()
            ),
            Ok(())
        );
    }

    #[test]
    fn a_site_may_allow_more_on_segment_boundaries() {
        let allow = RouteAllow::parse(&["/xmlrpc.php", "/wp-content/uploads/"]).unwrap();
        let check = |t: &str| check_target(t.as_bytes(), &allow);
        for ok in [
            "/xmlrpc.php",
            "/xmlrpc.php/x",
            "/xmlrpc%2ephp",
            "/wp-content/uploads",
            "/wp-content/uploads/",
            "/wp-content/uploads/2024/a.png?x=1",
            "/wp-json/wp/v2",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
        for no in [
            "/xmlrpc.phpx",
            "/wp-content/uploadsx",
            "/wp-content/",
            "/wp-admin/",
            "/XMLRPC.php",
        ] {
            assert_eq!(check(no), NOT_ALLOWED, "{no}");
        }
        assert_eq!(
            malformed_with(b"/wp-content/uploads/../../wp-config.php", &allow),
            DotSegment
        );
        let everything = RouteAllow::parse(&["/"]).unwrap();
        assert_eq!(check_target(b"/wp-admin/x", &everything), Ok(()));
        assert_eq!(check_target(b"/", &everything), Ok(()));
    }

    fn malformed_with(t: &[u8], allow: &RouteAllow) -> Malformed {
        match check_target(t, allow) {
            Err(TargetRefused::Malformed(m)) => m,
            other => panic!("expected malformed, got {other:?}"),
        }
    }

    #[test]
    fn codes_and_reasons() {
        assert_eq!(
            TargetRefused::Malformed(DotSegment).code(),
            ErrorCode::MalformedPath
        );
        assert_eq!(
            TargetRefused::NotAllowed(NotAllowed::Route).code(),
            ErrorCode::RouteNotAllowed
        );
        assert_eq!(
            TargetRefused::Malformed(EncodedSlash).reason(),
            "path_encoded_slash"
        );
    }

    /// What a web server in front of WordPress makes of a path: decoded once, dot
    /// segments resolved (RFC 3986 5.2.4), backslashes read as slashes. `None` when it
    /// cannot be decoded.
    fn server_view(path: &[u8]) -> Option<Vec<u8>> {
        let mut decoded = Vec::new();
        let mut i = 0;
        while i < path.len() {
            if path[i] == b'%' {
                decoded.push(hex_pair(path, i + 1)?);
                i += 3;
            } else {
                decoded.push(path[i]);
                i += 1;
            }
        }
        let text = String::from_utf8(decoded).ok()?.replace('\\', "/");
        let mut out: Vec<&str> = Vec::new();
        for seg in text.split('/').skip(1) {
            match seg {
                "." => {}
                ".." => {
                    out.pop();
                }
                s => out.push(s),
            }
        }
        Some(format!("/{}", out.join("/")).into_bytes())
    }

    /// A reproducible stream of pseudo-random numbers (xorshift64).
    fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        }
    }

    /// Random targets over the bytes that matter: the check never panics, and what it
    /// lets through is what the server sees (no dot segment, backslash or control
    /// character survives decoding) and lies under an allowed prefix.
    #[test]
    fn random_targets_are_answered_and_what_passes_stays_inside() {
        const PIECES: [&[u8]; 24] = [
            b"/",
            b".",
            b"..",
            b"%2e",
            b"%2E",
            b"%2f",
            b"%5c",
            b"\\",
            b"%00",
            b"%",
            b"%25",
            b"wp-json",
            b"/wp-json",
            b"/wp-json/",
            b"xmlrpc.php",
            b"?",
            b"&",
            b"rest_route=",
            b"rest.route=/",
            b"a",
            b"%c0%ae",
            b"\xff",
            b"#",
            b"%41",
        ];
        let allow = RouteAllow::parse(&["/xmlrpc.php", "/a/"]).unwrap();
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        let mut passed = 0;
        for _ in 0..200_000 {
            let mut t = Vec::new();
            for _ in 0..(next() % 8) {
                t.extend_from_slice(PIECES[(next() % PIECES.len() as u64) as usize]);
            }
            if next().is_multiple_of(2) {
                t.insert(0, b'/');
            }
            if check_target(&t, &allow).is_err() {
                continue;
            }
            passed += 1;
            let path = t.split(|&b| b == b'?').next().unwrap_or_default();
            let seen = server_view(path).unwrap_or_else(|| panic!("{t:?} passed undecodable"));
            let decoded: Vec<u8> = Decoded::path(path).collect();
            assert_eq!(
                seen,
                decoded,
                "{:?}: the server sees another path",
                String::from_utf8_lossy(&t)
            );
            assert!(!decoded.iter().any(|&b| b < 0x20 || b == 0x7f), "{t:?}");
            let inside = ["/wp-json", "/xmlrpc.php", "/a"]
                .iter()
                .any(|p| seen == p.as_bytes() || seen.starts_with(format!("{p}/").as_bytes()))
                || seen == b"/"
                || seen == b"/index.php";
            assert!(inside, "{:?}", String::from_utf8_lossy(&t));
        }
        assert!(passed > 1000, "only {passed} targets passed");
    }

    /// The shortcut for plain paths answers exactly as the full check: every path over
    /// plain bytes, slashes and dots (and a few that are not plain), against prefixes
    /// compared decoded and as is.
    #[test]
    fn the_plain_path_shortcut_answers_as_the_full_check() {
        const PIECES: [&[u8]; 14] = [
            b"/",
            b".",
            b"..",
            b"...",
            b"wp-json",
            b"wp-jsonx",
            b"index.php",
            b"xmlrpc.php",
            b"a",
            b"~!$&'()*+,;=:@",
            b"-_",
            b"%41",
            b"#",
            b"\\",
        ];
        let mut next = xorshift(0x2545_f491_4f6c_dd1d);
        let prefixes: [&[u8]; 6] = [b"/wp-json", b"/", b"/index.php", b"/xmlrpc.php", b"/a", b""];
        for _ in 0..100_000 {
            let mut path = Vec::new();
            for _ in 0..(next() % 7) {
                path.extend_from_slice(PIECES[(next() % PIECES.len() as u64) as usize]);
            }
            if !next().is_multiple_of(4) {
                path.insert(0, b'/');
            }
            let shown = String::from_utf8_lossy(&path).into_owned();
            if !is_plain(&path) {
                continue;
            }
            let short = path.first() == Some(&b'/') && !has_dot_segment(&path);
            assert_eq!(short, check_path(&path).is_ok(), "{shown:?}");
            for prefix in prefixes {
                assert_eq!(
                    under_plain(&path, prefix),
                    under(&path, prefix),
                    "{shown:?} {prefix:?}"
                );
                assert_eq!(
                    eq_plain(&path, prefix),
                    decoded_eq(&path, prefix),
                    "{shown:?}"
                );
            }
        }
        assert!(is_plain(b"/wp-json/wp/v2/posts/1") && !is_plain(b"/wp-json/%41"));
        assert!(!is_plain(b"/a b") && !is_plain(b"/a\\b") && !is_plain("/caf\u{e9}".as_bytes()));
    }
}
