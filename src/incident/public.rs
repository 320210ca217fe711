//! What the public sees of an incident, shared by the status page, the Statuspage API,
//! the Atom feed and the subscribers' notices: its name, the customer-facing updates, and
//! escaping for HTML and XML. Never platforms, regions, causes or regulatory figures.

use super::{ComponentStatus, Impact, IncidentView};
use crate::clock::Timestamp;

/// "Voicemail: partial outage", "Voicemail, Mobile data: major outage".
pub fn incident_name(view: &IncidentView) -> String {
    let names: Vec<&str> = view.per_service.values().map(|s| s.name.as_str()).collect();
    let worst = view
        .per_service
        .values()
        .map(|s| s.component_status)
        .max()
        .unwrap_or(ComponentStatus::Operational);
    let what = match worst {
        ComponentStatus::MajorOutage => "major outage",
        ComponentStatus::PartialOutage => "partial outage",
        ComponentStatus::DegradedPerformance => "degraded performance",
        _ => match view.impact {
            Impact::Critical => "major outage",
            Impact::Major => "partial outage",
            _ => "degraded performance",
        },
    };
    format!("{}: {what}", names.join(", "))
}

/// One update customers are told of.
pub struct PublicUpdate {
    pub at: Timestamp,
    /// The Statuspage incident status after it: `investigating`, `identified`,
    /// `monitoring`, `resolved`.
    pub status: &'static str,
    pub text: String,
}

/// The updates customers are told of, oldest first: the timeline steps with a public text.
/// Incidents stored before steps had one get updates from their status times.
pub fn public_updates(view: &IncidentView) -> Vec<PublicUpdate> {
    let mut status = "investigating";
    let mut out: Vec<PublicUpdate> = view
        .timeline
        .iter()
        .filter_map(|entry| {
            status = match entry.event.as_str() {
                "opened" | "reopened" => "investigating",
                "acknowledged" => "identified",
                "recovered" => "monitoring",
                "resolved" => "resolved",
                _ => status,
            };
            Some(PublicUpdate {
                at: entry.at,
                status,
                text: entry.public_message.clone()?,
            })
        })
        .collect();
    if out.is_empty() {
        out.push(PublicUpdate {
            at: view.detected_at,
            status: "investigating",
            text: format!(
                "We are investigating a problem with {}.",
                service_names(view)
            ),
        });
        if let Some(at) = view.resolved_at {
            out.push(PublicUpdate {
                at,
                status: "resolved",
                text: "This incident is resolved.".to_string(),
            });
        }
    }
    out
}

fn service_names(view: &IncidentView) -> String {
    let names: Vec<&str> = view.per_service.values().map(|s| s.name.as_str()).collect();
    names.join(", ")
}

/// HTML (and XML) escaping for text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
    }
}
