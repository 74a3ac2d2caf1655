//! The gateway's access log: the JSON line of one request, and the reason it gives.

use std::time::Duration;

use super::answer::Answer;
use super::gateway::Gateway;
use super::wait::poll_until;

/// A field of a JSON log line: under `fields` (tracing's JSON layout) or at the top
/// level (a flattened event); numbers and booleans as text.
pub fn log_field(line: &serde_json::Value, key: &str) -> Option<String> {
    let v = line
        .get("fields")
        .and_then(|f| f.get(key))
        .or_else(|| line.get(key))?;
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

impl Gateway {
    /// The access-log line (target `wpgate::access`) of request `request_id`, waiting
    /// up to 5 s for it to be written; panics unless exactly one is found.
    pub async fn access_line(&self, request_id: &str) -> serde_json::Value {
        let find = || -> Vec<serde_json::Value> {
            self.log_json()
                .into_iter()
                .filter(|l| {
                    l.get("target").and_then(|t| t.as_str()) == Some("wpgate::access")
                        && log_field(l, "request_id").as_deref() == Some(request_id)
                })
                .collect()
        };
        poll_until(
            &format!("the access log line of request {request_id}"),
            Duration::from_secs(5),
            || async {
                if find().is_empty() {
                    Err("none yet".to_owned())
                } else {
                    Ok(())
                }
            },
        )
        .await;
        let mut found = find();
        assert_eq!(
            found.len(),
            1,
            "request {request_id} should have one access log line, got {found:#?}"
        );
        found.remove(0)
    }

    /// The `reason` the access log gives for the request that got `answer`.
    pub async fn logged_reason(&self, answer: &Answer) -> String {
        let rid = answer
            .request_id()
            .unwrap_or_else(|| panic!("no X-Request-ID on {}", answer.summary()))
            .to_owned();
        let line = self.access_line(&rid).await;
        log_field(&line, "reason").unwrap_or_else(|| panic!("no reason in {line}"))
    }
}
