//! The admin web console at `/ui/`: static assets embedded in the binary, served
//! without a token (the page signs in itself) and with strict headers. The console is
//! only a client of `/admin/v1`: a Bearer token held in `sessionStorage`, never a
//! cookie, and the API's authorization applies unchanged.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

/// No inline script or style, no other origin, never framed.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; \
base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Fixed assets: the page reloads them after this long at most (the index, which is
/// never cached, names them with the build version so an upgrade is seen at once).
const ASSET_MAX_AGE: &str = "public, max-age=3600";

const INDEX: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const APP_CSS: &str = include_str!("app.css");

/// `/ui` (redirects to `/ui/`), `/ui/` and `/ui/<asset>`.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(index))
        .route("/ui/{asset}", get(asset))
}

fn respond(content_type: &'static str, cache: &'static str, body: Vec<u8>) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    secure(h);
    resp
}

fn secure(h: &mut axum::http::HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

async fn index() -> Response {
    let page = INDEX.replace("{{VERSION}}", env!("CARGO_PKG_VERSION"));
    respond("text/html; charset=utf-8", "no-cache", page.into_bytes())
}

async fn asset(Path(name): Path<String>) -> Response {
    match name.as_str() {
        "index.html" => index().await,
        "app.js" => respond(
            "text/javascript; charset=utf-8",
            ASSET_MAX_AGE,
            APP_JS.as_bytes().to_vec(),
        ),
        "app.css" => respond(
            "text/css; charset=utf-8",
            ASSET_MAX_AGE,
            APP_CSS.as_bytes().to_vec(),
        ),
        _ => {
            let mut resp = (StatusCode::NOT_FOUND, "no such console asset").into_response();
            secure(resp.headers_mut());
            resp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::extract::Request;
    use tower::ServiceExt;

    async fn get(path: &str) -> Response {
        let app: Router = router();
        app.oneshot(Request::builder().uri(path).body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn assets_are_served_with_strict_headers_and_no_token() {
        for (path, ty, cache) in [
            ("/ui/", "text/html", "no-cache"),
            ("/ui/index.html", "text/html", "no-cache"),
            ("/ui/app.js", "text/javascript", ASSET_MAX_AGE),
            ("/ui/app.css", "text/css", ASSET_MAX_AGE),
        ] {
            let resp = get(path).await;
            assert_eq!(resp.status(), StatusCode::OK, "{path}");
            let h = resp.headers();
            assert!(h[header::CONTENT_TYPE].to_str().unwrap().starts_with(ty));
            assert_eq!(h[header::CACHE_CONTROL], cache, "{path}");
            assert_eq!(h[header::CONTENT_SECURITY_POLICY], CSP);
            assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
            assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        }
        let resp = get("/ui").await;
        assert_eq!(resp.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(resp.headers()[header::LOCATION], "/ui/");
        assert_eq!(get("/ui/nope.js").await.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn no_inline_script_or_style_and_no_other_origin() {
        let page = INDEX.to_ascii_lowercase();
        assert!(!page.contains("<script>"), "inline script");
        assert!(!page.contains("<style"), "inline style");
        assert!(!page.contains(" style="), "inline style attribute");
        for (i, _) in page.match_indices(" on") {
            let rest = &page[i + 3..];
            let name_len = rest.chars().take_while(char::is_ascii_lowercase).count();
            assert!(
                name_len == 0 || !rest[name_len..].starts_with('='),
                "inline event handler at {i}"
            );
        }
        // No absolute URL at all, but the example in the upstream field's placeholder.
        for text in [INDEX, APP_JS, APP_CSS] {
            let text = text.replace("'https://shop.example.com'", "");
            assert!(!text.contains("http://") && !text.contains("https://"));
            assert!(!text.contains("//cdn") && !text.contains("@import"));
        }
        assert!(!APP_JS.contains("document.cookie"));
        assert!(
            !APP_JS.contains("innerHTML"),
            "build the DOM, never parse strings"
        );
    }
}
