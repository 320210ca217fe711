//! `webhook` receiver: POST the event as JSON, signed per Standard Webhooks when a secret
//! is set (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>`).

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use url::Url;

use super::{SendContext, SendError, classify_status};
use crate::event::AlertEvent;
use crate::validation::{Issues, read_secret_file};

#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSpec {
    pub url: Url,
    /// The decoded signing key, when `secret_file` is set.
    pub key: Option<Vec<u8>>,
}

impl WebhookSpec {
    pub fn build(
        url: Option<Url>,
        secret_file: Option<&Path>,
        path: &str,
        issues: &mut Issues,
    ) -> Option<WebhookSpec> {
        let key = match secret_file {
            None => None,
            Some(file) => match read_secret_file(file).and_then(|s| decode_secret(&s)) {
                Ok(key) => Some(key),
                Err(e) => {
                    issues.push(format!("{path}.secret_file"), e);
                    return None;
                }
            },
        };
        Some(WebhookSpec { url: url?, key })
    }

    pub async fn send(&self, event: &AlertEvent, cx: &SendContext<'_>) -> Result<(), SendError> {
        let body = serde_json::to_vec(event).expect("events serialize");
        let timestamp = cx.now.timestamp();
        let mut request = cx
            .http
            .post(self.url.clone())
            .timeout(cx.timeout)
            .header("content-type", "application/json")
            .header("webhook-id", &event.id)
            .header("webhook-timestamp", timestamp.to_string());
        if let Some(key) = &self.key {
            request = request.header("webhook-signature", sign(key, &event.id, timestamp, &body));
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(SendError::network)?;
        classify_status(response.status())
    }
}

/// `whsec_<base64>` (the prefix is optional) to key bytes.
pub fn decode_secret(secret: &str) -> Result<Vec<u8>, String> {
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    STANDARD
        .decode(b64)
        .map_err(|e| format!("not a Standard Webhooks secret (whsec_ + base64): {e}"))
        .and_then(|key| {
            if key.is_empty() {
                Err("the secret decodes to an empty key".to_string())
            } else {
                Ok(key)
            }
        })
}

/// `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector published with the Standard Webhooks specification.
    #[test]
    fn standard_webhooks_test_vector() {
        let key = decode_secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        let signature = sign(
            &key,
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1649367553,
            br#"{"email":"test@example.com","username":"test_user"}"#,
        );
        assert_eq!(signature, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
    }

    #[test]
    fn bad_secret_is_refused() {
        assert!(decode_secret("whsec_!!!").is_err());
        assert!(decode_secret("whsec_").is_err());
    }
}
