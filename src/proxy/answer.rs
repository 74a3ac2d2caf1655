//! What changes between the site's answer and the one the client receives: the request's
//! id added (CORS and legacy mode add theirs after, see `cors.rs`, `legacy.rs`).

use pingora::http::ResponseHeader;

/// Adds `X-Request-ID` to the site's answer.
///
/// The header map is edited as `http::response::Parts`, as `inject::prepare` does for the
/// request: Pingora keeps a second map with each name's original spelling, and an insert
/// through `ResponseHeader` parses the name and grows both maps. So header names reach
/// the client as HTTP/2 sends them (custom names in lower case, standard ones titled by
/// Pingora's HTTP/1 writer), as HAProxy forwards them. A reason phrase other than the
/// status's standard one is kept.
pub fn prepare(resp: &mut ResponseHeader, request_id: &http::HeaderValue) -> pingora::Result<()> {
    let reason = resp
        .get_reason_phrase()
        .filter(|r| Some(*r) != resp.status.canonical_reason())
        .map(str::to_owned);
    let blank = ResponseHeader::from(http::Response::new(()).into_parts().0);
    let mut parts: http::response::Parts = std::mem::replace(resp, blank).into();
    parts
        .headers
        .insert(super::request_id::NAME, request_id.clone());
    *resp = ResponseHeader::from(parts);
    if let Some(reason) = reason {
        resp.set_reason_phrase(Some(&reason))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_the_id_and_keeps_everything_else() {
        let mut resp = ResponseHeader::build(299, None).unwrap();
        resp.set_reason_phrase(Some("Custom Reason")).unwrap();
        resp.insert_header("X-WP-Total", "12").unwrap();
        resp.append_header("Set-Cookie", "a=1").unwrap();
        resp.append_header("Set-Cookie", "b=2").unwrap();
        resp.insert_header("X-Request-ID", "from-the-site").unwrap();
        prepare(&mut resp, &http::HeaderValue::from_static("rid")).unwrap();
        assert_eq!(resp.status, 299);
        assert_eq!(resp.get_reason_phrase(), Some("Custom Reason"));
        assert_eq!(resp.headers.get("x-wp-total").unwrap(), "12");
        assert_eq!(resp.headers.get_all("set-cookie").iter().count(), 2);
        let ids: Vec<_> = resp.headers.get_all("x-request-id").iter().collect();
        assert_eq!(ids, ["rid"]);
        let mut wire = Vec::new();
        resp.header_to_h1_wire(&mut wire);
        let wire = String::from_utf8(wire).unwrap();
        assert!(wire.contains("x-wp-total: 12\r\n"), "{wire}");
        assert!(wire.contains("Set-Cookie: b=2\r\n"), "{wire}");
        assert_eq!(wire.matches("\r\n").count(), resp.headers.len());
    }

    #[test]
    fn a_standard_reason_is_not_stored() {
        let mut resp = ResponseHeader::build(404, None).unwrap();
        prepare(&mut resp, &http::HeaderValue::from_static("rid")).unwrap();
        assert_eq!(resp.get_reason_phrase(), Some("Not Found"));
    }
}
