//! `pagerduty` receiver: Events API v2 with `dedup_key` = incident id. Opened, updated and
//! reminders trigger (PagerDuty folds them into one alert), an acknowledged (`identified`)
//! incident acknowledges, and a resolved one resolves.

use crate::incident::IncidentView;
use std::path::Path;

use serde_json::json;
use url::Url;

use super::{SendContext, SendError, classify_status, incident_link, summary_line};
use crate::event::{AlertEvent, AlertType};
use crate::incident::{IncidentStatus, Severity};
use crate::validation::{Issues, read_secret_file};

pub const DEFAULT_ENDPOINT: &str = "https://events.pagerduty.com/v2/enqueue";

#[derive(Debug, Clone, PartialEq)]
pub struct PagerdutySpec {
    pub endpoint: Url,
    pub routing_key: String,
}

impl PagerdutySpec {
    pub fn build(
        url: Option<Url>,
        routing_key_file: Option<&Path>,
        path: &str,
        issues: &mut Issues,
    ) -> Option<PagerdutySpec> {
        let Some(file) = routing_key_file else {
            issues.push(format!("{path}.routing_key_file"), "required for pagerduty");
            return None;
        };
        let routing_key = match read_secret_file(file) {
            Ok(key) => key,
            Err(e) => {
                issues.push(format!("{path}.routing_key_file"), e);
                return None;
            }
        };
        Some(PagerdutySpec {
            endpoint: url.unwrap_or_else(|| Url::parse(DEFAULT_ENDPOINT).expect("valid")),
            routing_key,
        })
    }

    pub async fn send(
        &self,
        event: &AlertEvent,
        inc: &IncidentView,
        cx: &SendContext<'_>,
    ) -> Result<(), SendError> {
        let response = cx
            .http
            .post(self.endpoint.clone())
            .timeout(cx.timeout)
            .json(&self.body(event, inc, cx))
            .send()
            .await
            .map_err(SendError::network)?;
        classify_status(response.status())
    }

    pub fn body(
        &self,
        event: &AlertEvent,
        inc: &IncidentView,
        cx: &SendContext<'_>,
    ) -> serde_json::Value {
        let action = match (event.kind, inc.status) {
            (AlertType::Resolved, _) => "resolve",
            (_, IncidentStatus::Identified) => "acknowledge",
            _ => "trigger",
        };
        let mut body = json!({
            "routing_key": self.routing_key,
            "event_action": action,
            "dedup_key": inc.id,
        });
        if action == "trigger" {
            let severity = match inc.severity {
                Severity::Sev1 => "critical",
                Severity::Sev2 => "error",
                Severity::Sev3 => "warning",
                Severity::Sev4 => "info",
            };
            let mut summary = summary_line(event, inc);
            truncate_on_char(&mut summary, SUMMARY_MAX_BYTES);
            body["payload"] = json!({
                "summary": summary,
                "source": "tocsin",
                "severity": severity,
                "timestamp": inc.onset_at,
                "component": inc.services.join(","),
                "group": inc.platforms.join(","),
                "class": serde_json::to_value(inc.scope).expect("scope serializes"),
                "custom_details": inc,
            });
            if let Some(link) = incident_link(cx.external_url, &inc.id) {
                body["links"] = json!([{ "href": link, "text": "Incident details" }]);
            }
        }
        body
    }
}

/// PagerDuty refuses a longer `payload.summary`.
const SUMMARY_MAX_BYTES: usize = 1024;

/// Cuts `text` to at most `max` bytes without splitting a character (names from the
/// configuration and the summary's dash are not ASCII).
fn truncate_on_char(text: &mut String, max: usize) {
    if text.len() > max {
        let cut = (0..=max)
            .rev()
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        text.truncate(cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_summary_is_cut_between_characters() {
        let mut text = "é".repeat(600); // 1200 bytes; byte 1023 falls inside a character
        truncate_on_char(&mut text, 1023);
        assert_eq!(text.len(), 1022);
        assert!(text.chars().all(|c| c == 'é'));
        let mut short = "sev1 — voicemail".to_string();
        truncate_on_char(&mut short, SUMMARY_MAX_BYTES);
        assert_eq!(short, "sev1 — voicemail");
    }
}
