//! `msteams` receiver: a Teams Workflows webhook ("When a Teams webhook request is
//! received"), which takes a message with one Adaptive Card attachment. The old Office 365
//! connectors and their MessageCard are retired; Workflows answers 202.

use crate::incident::IncidentView;
use serde_json::{Value, json};
use url::Url;

use super::{SendContext, SendError, classify_status, incident_link, summary_line};
use crate::event::{AlertEvent, AlertType};
use crate::format;
use crate::incident::Severity;

/// Adaptive Card schema version: 1.4 renders in Teams on every client.
const CARD_VERSION: &str = "1.4";

#[derive(Debug, Clone, PartialEq)]
pub struct MsteamsSpec {
    /// The workflow's URL (it embeds a signature: prefer `url_file`).
    pub url: Url,
}

impl MsteamsSpec {
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
            .json(&message(event, inc, cx))
            .send()
            .await
            .map_err(SendError::network)?;
        classify_status(response.status())
    }
}

/// `{"type": "message", "attachments": [{"contentType":
/// "application/vnd.microsoft.card.adaptive", "content": <AdaptiveCard>}]}`.
pub fn message(event: &AlertEvent, inc: &IncidentView, cx: &SendContext<'_>) -> Value {
    let color = match (event.kind, inc.severity) {
        (AlertType::Resolved, _) => "Good",
        (_, Severity::Sev1 | Severity::Sev2) => "Attention",
        _ => "Warning",
    };
    let names: Vec<&str> = inc.per_service.values().map(|s| s.name.as_str()).collect();
    let share = inc
        .per_service
        .values()
        .map(|s| s.peak_share)
        .fold(0.0, f64::max);
    let fact = |title: &str, value: String| json!({ "title": title, "value": value });
    let mut facts = vec![
        fact("Status", super::word(&inc.status)),
        fact("Severity", inc.severity.as_str().to_string()),
        fact("Services", names.join(", ")),
        fact(
            "Subscribers",
            format!(
                "{} now, {} at peak ({})",
                format::count(inc.affected),
                format::count(inc.peak_affected),
                format::percent(share)
            ),
        ),
        fact("Onset", super::utc_seconds(inc.onset_at)),
    ];
    if !inc.platforms.is_empty() {
        facts.push(fact("Platforms", inc.platforms.join(", ")));
    }
    if !inc.regions.is_empty() {
        facts.push(fact("Regions", inc.regions.join(", ")));
    }
    if let Some(cause) = &inc.suspected_cause {
        facts.push(fact("Suspected cause", cause.change_id.clone()));
    }
    let mut card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "msteams": { "width": "Full" },
        "body": [
            {
                "type": "TextBlock",
                "text": summary_line(event, inc),
                "weight": "Bolder",
                "size": "Medium",
                "color": color,
                "wrap": true,
            },
            { "type": "FactSet", "facts": facts },
        ],
    });
    if let Some(link) = incident_link(cx.external_url, &inc.id) {
        card["actions"] =
            json!([{ "type": "Action.OpenUrl", "title": "Incident details", "url": link }]);
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card,
        }],
    })
}
