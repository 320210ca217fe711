//! The alert event: what the engine queues for a receiver in the durable outbox and what a
//! receiver gets, `{"type", "id", "occurred_at", "incident"}`. Its own leaf so that the
//! store can keep events without knowing how they are delivered.

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::incident::IncidentView;

/// The alert events receivers get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AlertType {
    #[serde(rename = "incident.opened")]
    Opened,
    #[serde(rename = "incident.updated")]
    Updated,
    #[serde(rename = "incident.reminder")]
    Reminder,
    #[serde(rename = "incident.resolved")]
    Resolved,
    /// A vantage sees most of its targets fail while the others see them fine.
    #[serde(rename = "vantage.impaired")]
    VantageImpaired,
    #[serde(rename = "vantage.recovered")]
    VantageRecovered,
}

/// One event for one receiver: `{"type", "id", "occurred_at", "incident"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    #[serde(rename = "type")]
    pub kind: AlertType,
    /// Stable across retries: receivers deduplicate on it.
    pub id: String,
    pub occurred_at: Timestamp,
    /// `None` for a vantage event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<IncidentView>,
    /// For a vantage event: its name and status (`impaired`, `ok`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vantage: Option<VantageNews>,
}

/// What a vantage event says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VantageNews {
    pub name: String,
    pub status: String,
}

/// A fresh event id (`evt_` + 26 random base32 characters).
pub fn new_event_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut id = String::with_capacity(30);
    id.push_str("evt_");
    for _ in 0..26 {
        id.push(ALPHABET[fastrand::usize(..ALPHABET.len())] as char);
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_unique_and_shaped() {
        let a = new_event_id();
        assert!(a.starts_with("evt_") && a.len() == 30);
        assert_ne!(a, new_event_id());
    }
}
