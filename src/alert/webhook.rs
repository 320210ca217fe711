//! `webhook` receiver: POST the event as JSON, signed per Standard Webhooks when a secret
//! is set (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>`).

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use url::Url;

use super::{AlertEvent, SendError, read_secret_file};
use crate::clock::Timestamp;
use crate::config::Issues;

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

    pub async fn send(
        &self,
        http: &reqwest::Client,
        event: &AlertEvent,
        timeout: Duration,
        now: Timestamp,
    ) -> Result<(), SendError> {
        let body = serde_json::to_vec(event).expect("events serialize");
        let timestamp = now.timestamp();
        let mut request = http
            .post(self.url.clone())
            .timeout(timeout)
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
            .map_err(|e| SendError::Transient(e.without_url().to_string()))?;
        classify_status(response.status())
    }
}

/// 2xx is delivered; 408, 429 and 5xx are worth retrying; any other status is final.
pub fn classify_status(status: reqwest::StatusCode) -> Result<(), SendError> {
    let code = status.as_u16();
    match code {
        200..=299 => Ok(()),
        408 | 429 | 500..=599 => Err(SendError::Transient(format!("HTTP {code}"))),
        _ => Err(SendError::Permanent(format!("HTTP {code}"))),
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

    #[test]
    fn retry_classes() {
        use reqwest::StatusCode;
        assert!(classify_status(StatusCode::NO_CONTENT).is_ok());
        for code in [408, 429, 500, 503] {
            let status = StatusCode::from_u16(code).unwrap();
            assert!(matches!(
                classify_status(status),
                Err(SendError::Transient(_))
            ));
        }
        for code in [400, 401, 404, 410] {
            let status = StatusCode::from_u16(code).unwrap();
            assert!(matches!(
                classify_status(status),
                Err(SendError::Permanent(_))
            ));
        }
    }
}
