//! A whole response from the gateway, with the checks every error answer must pass.

use std::fmt::Write as _;

use reqwest::header::HeaderMap;

/// A whole response from the gateway.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub async fn read(resp: reqwest::Response) -> Self {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.text().await.unwrap();
        Answer {
            status,
            headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn request_id(&self) -> Option<&str> {
        self.header("x-request-id")
    }

    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.body).ok()
    }

    pub fn error_code(&self) -> Option<String> {
        self.json()?
            .pointer("/error/code")?
            .as_str()
            .map(str::to_owned)
    }

    /// Status, code, and a short body for assertion messages.
    pub fn summary(&self) -> String {
        let body: String = self.body.chars().take(300).collect();
        format!("{} {}", self.status, body)
    }

    /// Everything a client sees: status line bits, every header, the body.
    pub fn all_text(&self) -> String {
        let mut s = String::new();
        for (k, v) in &self.headers {
            writeln!(s, "{}: {}", k, String::from_utf8_lossy(v.as_bytes())).unwrap();
        }
        s.push_str(&self.body);
        s
    }

    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        assert_eq!(self.status, 200, "expected 200, got {}", self.summary());
        self
    }

    /// Check the documented error shape and return the `error` object:
    /// `{"error":{"code","message","request_id"}}`, `application/json`, the request id
    /// in the body equal to the `X-Request-ID` header, `WWW-Authenticate` on 401s.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) -> serde_json::Value {
        assert_eq!(
            self.status,
            status,
            "expected {status} {code}, got {}",
            self.summary()
        );
        let ct = self.header("content-type").unwrap_or("");
        assert!(
            ct.starts_with("application/json"),
            "error content-type should be application/json, got {ct:?} ({})",
            self.summary()
        );
        let json = self
            .json()
            .unwrap_or_else(|| panic!("error body is not JSON: {}", self.summary()));
        let err = json
            .get("error")
            .unwrap_or_else(|| panic!("no `error` object in {json}"))
            .clone();
        assert_eq!(
            err.get("code").and_then(|c| c.as_str()),
            Some(code),
            "wrong error code in {json}"
        );
        let message = err.get("message").and_then(|m| m.as_str()).unwrap_or("");
        assert!(!message.is_empty(), "error message missing in {json}");
        let rid = self
            .request_id()
            .unwrap_or_else(|| panic!("no X-Request-ID on error response {}", self.summary()));
        assert_eq!(
            err.get("request_id").and_then(|r| r.as_str()),
            Some(rid),
            "request_id in the body differs from the X-Request-ID header in {json}"
        );
        if status == 401 {
            assert!(
                self.header("www-authenticate").is_some(),
                "401 without WWW-Authenticate: {}",
                self.summary()
            );
        }
        err
    }
}
