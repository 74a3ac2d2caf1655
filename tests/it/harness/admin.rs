//! The admin API: tokens minted through the CLI, authenticated requests.

use super::answer::Answer;
use super::gateway::Gateway;

impl Gateway {
    /// `http://<admin listener><path>`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin_addr, path)
    }

    /// GET `path` on the admin listener.
    pub async fn admin_get(&self, path: &str) -> Answer {
        self.send(self.client.get(self.admin_url(path))).await
    }

    /// `wpgate admin token create --scope <scope> [--label <label>]`; asserts success and
    /// that the token is printed alone on stdout, and returns it.
    pub fn admin_token(&self, scope: &str, label: Option<&str>) -> String {
        let mut args = vec!["admin", "token", "create", "--scope", scope];
        if let Some(l) = label {
            args.extend_from_slice(&["--label", l]);
        }
        let out = self.cli(&args, None);
        let token = out.assert_success().single_line();
        assert!(token.starts_with("wpgat_"), "not an admin token: {token:?}");
        token
    }

    /// A request to the admin listener with `Authorization: Bearer <token>`.
    pub fn admin_request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
    ) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.admin_url(path))
            .bearer_auth(token)
    }

    /// `method path` on the admin API with `Authorization: Bearer <token>` and `body`
    /// as JSON, when given.
    pub async fn admin_call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<serde_json::Value>,
    ) -> Answer {
        let mut req = self.admin_request(method, path, token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.send(req).await
    }
}
