//! `opsgenie` receiver: Alert API v2 with `alias` = incident id, so that every request
//! after the opening addresses the same alert. Opened creates the alert; an update or a
//! reminder adds a note, or acknowledges (with the note) once the incident is
//! acknowledged (`identified`: the acknowledgement reaches receivers as an update); the
//! resolution closes it.

use crate::incident::IncidentView;
use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;

use super::{SendContext, SendError, classify_status, incident_link, summary_line};
use crate::event::{AlertEvent, AlertType};
use crate::incident::{IncidentStatus, Severity};
use crate::validation::{Issues, read_secret_file};

/// Which Opsgenie instance the account lives on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpsgenieRegion {
    #[default]
    Us,
    Eu,
}

impl OpsgenieRegion {
    fn base(self) -> &'static str {
        match self {
            OpsgenieRegion::Us => "https://api.opsgenie.com/",
            OpsgenieRegion::Eu => "https://api.eu.opsgenie.com/",
        }
    }
}

/// The Alert API's documented limits, in characters: kept to, rather than left to chance.
const MESSAGE_MAX_CHARS: usize = 130;
const DESCRIPTION_MAX_CHARS: usize = 15_000;
const NOTE_MAX_CHARS: usize = 25_000;

#[derive(Debug, Clone, PartialEq)]
pub struct OpsgenieSpec {
    /// The API's base URL: the region's, or `url` (a proxy, a test server).
    pub base: Url,
    pub api_key: String,
}

/// One Alert API request: where, and the JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub url: Url,
    pub body: Value,
}

impl OpsgenieSpec {
    pub fn build(
        url: Option<Url>,
        region: Option<OpsgenieRegion>,
        api_key_file: Option<&Path>,
        path: &str,
        issues: &mut Issues,
    ) -> Option<OpsgenieSpec> {
        if url.is_some() && region.is_some() {
            issues.push(path.to_string(), "set `url` or `region`, not both");
        }
        let Some(file) = api_key_file else {
            issues.push(format!("{path}.api_key_file"), "required for opsgenie");
            return None;
        };
        let api_key = read_secret_file(file)
            .map_err(|e| issues.push(format!("{path}.api_key_file"), e))
            .ok()?;
        let mut base = url.unwrap_or_else(|| {
            Url::parse(region.unwrap_or_default().base()).expect("valid base URLs")
        });
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        Some(OpsgenieSpec { base, api_key })
    }

    pub async fn send(
        &self,
        event: &AlertEvent,
        inc: &IncidentView,
        cx: &SendContext<'_>,
    ) -> Result<(), SendError> {
        let request = self.request(event, inc, cx);
        let response = cx
            .http
            .post(request.url)
            .timeout(cx.timeout)
            .header("authorization", format!("GenieKey {}", self.api_key))
            .json(&request.body)
            .send()
            .await
            .map_err(SendError::network)?;
        classify_status(response.status())
    }

    /// The request an event makes: create, note, acknowledge or close.
    pub fn request(&self, event: &AlertEvent, inc: &IncidentView, cx: &SendContext<'_>) -> Request {
        let summary = summary_line(event, inc);
        let action = match (event.kind, inc.status) {
            (AlertType::Opened, _) => None,
            (AlertType::Resolved, _) => Some("close"),
            (_, IncidentStatus::Identified) => Some("acknowledge"),
            _ => Some("notes"),
        };
        let Some(action) = action else {
            return Request {
                url: self.base.join("v2/alerts").expect("a relative path joins"),
                body: create(inc, &summary, cx),
            };
        };
        let mut url = self
            .base
            .join(&format!("v2/alerts/{}/{action}", encode_segment(&inc.id)))
            .expect("a relative path joins");
        url.query_pairs_mut().append_pair("identifierType", "alias");
        Request {
            url,
            body: json!({
                "source": "tocsin",
                "user": "tocsin",
                "note": cut(&summary, NOTE_MAX_CHARS),
            }),
        }
    }
}

fn create(inc: &IncidentView, summary: &str, cx: &SendContext<'_>) -> Value {
    let priority = match inc.severity {
        Severity::Sev1 => "P1",
        Severity::Sev2 => "P2",
        Severity::Sev3 => "P3",
        Severity::Sev4 => "P4",
    };
    let scope = super::word(&inc.scope);
    // `details` takes string values only.
    let mut details = BTreeMap::from([
        ("incident_id", inc.id.clone()),
        ("services", inc.services.join(",")),
        ("severity", inc.severity.as_str().to_string()),
        ("scope", scope.clone()),
        ("affected", inc.affected.to_string()),
        ("peak_affected", inc.peak_affected.to_string()),
        ("onset_at", super::utc_seconds(inc.onset_at)),
    ]);
    if !inc.platforms.is_empty() {
        details.insert("platforms", inc.platforms.join(","));
    }
    if !inc.regions.is_empty() {
        details.insert("regions", inc.regions.join(","));
    }
    let mut description = summary.to_string();
    if let Some(link) = incident_link(cx.external_url, &inc.id) {
        description.push_str(&format!("\n\n{link}"));
        details.insert("link", link);
    }
    let mut tags = vec![
        "tocsin".to_string(),
        inc.severity.as_str().to_string(),
        scope,
    ];
    tags.extend(inc.services.iter().cloned());
    json!({
        "message": cut(summary, MESSAGE_MAX_CHARS),
        "alias": inc.id,
        "description": cut(&description, DESCRIPTION_MAX_CHARS),
        "tags": tags,
        "details": details,
        "entity": inc.services.join(","),
        "source": "tocsin",
        "priority": priority,
    })
}

/// At most `max` characters (Opsgenie counts characters, not bytes).
fn cut(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// An alias as one path segment (incident ids are already safe; this keeps them so).
fn encode_segment(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_by_characters() {
        let text = "é".repeat(200);
        assert_eq!(cut(&text, MESSAGE_MAX_CHARS).chars().count(), 130);
        assert_eq!(cut("short", MESSAGE_MAX_CHARS), "short");
    }

    #[test]
    fn the_region_picks_the_endpoint_and_a_url_overrides_it() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        std::fs::write(&key, "k\n").unwrap();
        let mut issues = Issues::default();
        let eu = OpsgenieSpec::build(None, Some(OpsgenieRegion::Eu), Some(&key), "r", &mut issues)
            .unwrap();
        assert_eq!(eu.base.as_str(), "https://api.eu.opsgenie.com/");
        let us = OpsgenieSpec::build(None, None, Some(&key), "r", &mut issues).unwrap();
        assert_eq!(us.base.as_str(), "https://api.opsgenie.com/");
        let proxy = Url::parse("http://gw.example.net/opsgenie").unwrap();
        let proxied = OpsgenieSpec::build(Some(proxy), None, Some(&key), "r", &mut issues).unwrap();
        assert_eq!(proxied.base.as_str(), "http://gw.example.net/opsgenie/");
        assert!(issues.is_empty(), "{issues}");
        assert_eq!(proxied.api_key, "k");
    }
}
