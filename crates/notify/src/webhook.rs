//! Webhooks: one POST per attempt, JSON, signed.
//!
//! The body ([`body`]) is kala's JSON, or with `format: "slack"` a
//! Slack/Mattermost incoming-webhook message (`{"text": …}`). Headers:
//! `Content-Type: application/json`, `Kala-Event`, `Kala-Delivery` (the
//! notice id: the same across retries, so a receiver can drop a
//! duplicate of an at-least-once delivery) and, with a secret,
//! `Kala-Signature`: the hex HMAC-SHA256 of the body's bytes.
//! A 2xx answer is delivered; a redirect is not followed.

use std::time::Duration;

use kala_store::Notice;
use ring::hmac;
use serde_json::json;

use crate::text::{OUTPUT_TAIL, line, tail};
use crate::{ConfigError, DeliveryError};

pub struct Webhooks {
    http: reqwest::Client,
    key: Option<hmac::Key>,
}

/// The body sent for `notice` at attempt `attempt` (1 for the first).
pub fn body(notice: &Notice, attempt: u32) -> serde_json::Value {
    if notice.target.format == "slack" {
        let output = tail(&notice.run.output, OUTPUT_TAIL / 4);
        let mut text = line(notice);
        if !output.trim().is_empty() {
            text.push_str(&format!("\n```\n{}\n```", output.trim_end()));
        }
        return json!({ "text": text });
    }
    json!({
        "id": notice.id,
        "event": notice.event,
        "job": { "id": notice.job_id, "name": notice.job_name },
        "run": notice.run,
        "node": notice.node,
        "created_at": notice.created_at,
        "attempt": attempt,
    })
}

/// The `Kala-Signature` of `body` with `secret`: lower-case hex of
/// HMAC-SHA256.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    hex(hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), body).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Webhooks {
    pub fn new(secret: Option<&str>, timeout: Duration) -> Result<Webhooks, ConfigError> {
        // reqwest is built without a default TLS provider; install aws-lc-rs once (rustls's own default).
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let http = reqwest::Client::builder()
            .user_agent(concat!("kala/", env!("CARGO_PKG_VERSION")))
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ConfigError::Http(e.to_string()))?;
        Ok(Webhooks {
            http,
            key: secret.map(|s| hmac::Key::new(hmac::HMAC_SHA256, s.as_bytes())),
        })
    }

    pub async fn send(&self, notice: &Notice) -> Result<(), DeliveryError> {
        let body = serde_json::to_vec(&body(notice, notice.attempts + 1))
            .map_err(|e| DeliveryError::permanent(format!("encoding the body: {e}")))?;
        let mut req = self
            .http
            .post(&notice.target.webhook)
            .header("Content-Type", "application/json")
            .header("Kala-Event", notice.event.as_str())
            .header("Kala-Delivery", &notice.id);
        if let Some(key) = &self.key {
            req = req.header("Kala-Signature", hex(hmac::sign(key, &body).as_ref()));
        }
        let answer = req.body(body).send().await.map_err(|e| {
            let what = if e.is_timeout() {
                "timed out".to_string()
            } else if e.is_builder() {
                return DeliveryError::permanent(format!("bad webhook URL: {e}"));
            } else {
                e.to_string()
            };
            DeliveryError::retry(format!("POST {}: {what}", notice.target.webhook))
        })?;
        let status = answer.status();
        if status.is_success() {
            return Ok(());
        }
        let message = format!("POST {}: HTTP {}", notice.target.webhook, status.as_u16());
        // A client error other than a timeout or a rate limit will not
        // change by itself: the target is wrong.
        let permanent = status.is_client_error() && ![408, 425, 429].contains(&status.as_u16());
        Err(DeliveryError { message, permanent })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_rfc_4231_hmac_sha256() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
