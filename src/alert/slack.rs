//! `slack` receiver: an incoming webhook, `{"text": …}` with one useful line.

use crate::incident::IncidentView;
use serde_json::json;
use url::Url;

use super::{SendContext, SendError, classify_status, incident_link, summary_line};
use crate::event::{AlertEvent, AlertType};

#[derive(Debug, Clone, PartialEq)]
pub struct SlackSpec {
    /// The incoming-webhook URL (a secret: prefer `url_file`).
    pub url: Url,
}

impl SlackSpec {
    pub async fn send(
        &self,
        event: &AlertEvent,
        inc: &IncidentView,
        cx: &SendContext<'_>,
    ) -> Result<(), SendError> {
        let response = cx
            .http
            .post(self.url.clone())
            .timeout(cx.timeout)
            .json(&json!({ "text": text(event, inc, cx) }))
            .send()
            .await
            .map_err(SendError::network)?;
        classify_status(response.status())
    }
}

/// `:red_circle: [sev2] inc-000123 opened: Voicemail — 900000 subscribers …`, with a link.
pub fn text(event: &AlertEvent, inc: &IncidentView, cx: &SendContext<'_>) -> String {
    let icon = match event.kind {
        AlertType::Resolved => ":large_green_circle:",
        _ => match inc.severity {
            crate::incident::Severity::Sev1 | crate::incident::Severity::Sev2 => ":red_circle:",
            _ => ":large_orange_circle:",
        },
    };
    let mut text = format!("{icon} {}", summary_line(event, inc));
    if let Some(link) = incident_link(cx.external_url, &inc.id) {
        text.push_str(&format!(" <{link}|details>"));
    }
    text
}
