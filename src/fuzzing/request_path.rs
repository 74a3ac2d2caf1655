//! The proxy's request target check (`proxy::route::check_target`): any target against
//! three allow-lists. What it lets through must be what a web server in front of
//! WordPress sees (no dot segment, backslash or control character survives decoding)
//! and lie under an allowed prefix; the check must never panic.

use crate::proxy::route::check_target;
use crate::site::RouteAllow;

/// First byte: the allow-list (REST API only; `/xmlrpc.php` and `/a/`; everything).
/// The rest: the request target, byte for byte.
pub fn request_path(data: &[u8]) {
    let Some((&which, target)) = data.split_first() else {
        return;
    };
    let prefixes: &[&str] = match which % 3 {
        0 => &[],
        1 => &["/xmlrpc.php", "/a/"],
        _ => &["/"],
    };
    let Ok(allow) = RouteAllow::parse(prefixes) else {
        panic!("the fixed allow-lists parse");
    };
    if check_target(target, &allow).is_err() {
        return;
    }
    let shown = String::from_utf8_lossy(target);
    assert!(
        target.first() == Some(&b'/'),
        "{shown:?} passed without a leading /"
    );
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    let Some(decoded) = percent_decoded(path) else {
        panic!("{shown:?} passed but does not decode");
    };
    let Ok(text) = String::from_utf8(decoded) else {
        panic!("{shown:?} passed but is not UTF-8 once decoded");
    };
    // What a server or PHP could read as structure: ASCII control characters (NUL, CR,
    // LF, ...) and backslashes. (Other Unicode, C1 controls included, is only text in a
    // route name: the fuzzer's first find was a U+0089 that this target, not the check,
    // got wrong.)
    assert!(
        !text.bytes().any(|b| b < 0x20 || b == 0x7f || b == b'\\'),
        "{shown:?} passed with a control character or backslash once decoded"
    );
    // A server resolves dot segments: what passes must have none to resolve.
    assert!(
        !text.split('/').any(|seg| seg == "." || seg == ".."),
        "{shown:?} passed with a dot segment"
    );
    let inside = which % 3 == 2
        || text == "/"
        || text == "/index.php"
        || ["/wp-json"].iter().chain(prefixes.iter()).any(|p| {
            let p = p.trim_end_matches('/');
            text == p || text.starts_with(&format!("{p}/"))
        });
    assert!(
        inside,
        "{shown:?} passed outside the allowed prefixes ({text:?})"
    );
}

/// An independent percent-decoder (not the check's own): `None` for a `%` without two
/// hex digits.
fn percent_decoded(path: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        if path[i] == b'%' {
            let hex = path.get(i + 1..i + 3)?;
            let text = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(text, 16).ok()?);
            i += 3;
        } else {
            out.push(path[i]);
            i += 1;
        }
    }
    Some(out)
}
