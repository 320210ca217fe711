//! `alertmanager` receiver: POST `{url}/api/v2/alerts` (Alertmanager API v2). The alert is
//! `alertname="TocsinIncident"` with labels `incident_id, service, severity, scope`; it is
//! re-posted while open (Alertmanager resolves alerts it stops hearing about) and posted
//! with `endsAt` when the incident resolves.

use crate::incident::IncidentView;
use std::time::Duration;

use serde_json::json;
use url::Url;

use super::{SendContext, SendError, classify_status, incident_link, summary_line};
use crate::event::{AlertEvent, AlertType};

/// Below Alertmanager's default `resolve_timeout` of 5 min, with room for retries.
pub const RESEND_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq)]
pub struct AlertmanagerSpec {
    /// `{base}/api/v2/alerts`.
    pub endpoint: Url,
}

impl AlertmanagerSpec {
    pub fn new(mut base: Url) -> Self {
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        Self {
            endpoint: base.join("api/v2/alerts").expect("a relative path joins"),
        }
    }

    pub async fn send(
        &self,
        event: &AlertEvent,
        inc: &IncidentView,
        cx: &SendContext<'_>,
    ) -> Result<(), SendError> {
        let mut alert = json!({
            "labels": {
                "alertname": "TocsinIncident",
                "incident_id": inc.id,
                "service": inc.services.join(","),
                "severity": inc.severity.as_str(),
                "scope": serde_json::to_value(inc.scope).expect("scope serializes"),
            },
            "annotations": {
                "summary": summary_line(event, inc),
                "peak_affected": inc.peak_affected.to_string(),
                "platforms": inc.platforms.join(","),
                "regions": inc.regions.join(","),
            },
            "startsAt": inc.onset_at,
        });
        if event.kind == AlertType::Resolved {
            alert["endsAt"] = json!(inc.resolved_at.unwrap_or(event.occurred_at));
        }
        if let Some(link) = incident_link(cx.external_url, &inc.id) {
            alert["generatorURL"] = json!(link);
        }
        let response = cx
            .http
            .post(self.endpoint.clone())
            .timeout(cx.timeout)
            .json(&[alert])
            .send()
            .await
            .map_err(SendError::network)?;
        classify_status(response.status())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_keeps_a_path_prefix() {
        let am = AlertmanagerSpec::new(Url::parse("http://am:9093").unwrap());
        assert_eq!(am.endpoint.as_str(), "http://am:9093/api/v2/alerts");
        let am = AlertmanagerSpec::new(Url::parse("http://gw/alertmanager").unwrap());
        assert_eq!(am.endpoint.as_str(), "http://gw/alertmanager/api/v2/alerts");
    }
}
