//! The JSON bodies of `POST /api/v1/changes` (first byte even), `POST
//! /api/v1/maintenances` (first byte 1 modulo 4) and `POST /api/v1/targets/{id}/results`
//! (3 modulo 4): deserialized as the handlers do, then validated. Any body may be refused;
//! none may panic, and what is accepted has its timestamps in range and its detail bounded.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tocsin::clock::check_input_time;
use tocsin::config::{ConfigSource, Settings, load};
use tocsin::http_parsers::{ChangeRequest, MaintenanceRequest, PushedResult};
use tocsin::probe::parsers::Secrets;

fn settings() -> &'static Settings {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get_or_init(|| {
        let toml = "[[services]]\nid = \"web\"\n[[services]]\nid = \"voice\"\n";
        load(&ConfigSource::Inline(toml.into())).expect("valid")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let now = chrono::DateTime::from_timestamp(1_783_000_000, 0).expect("valid");
    if selector % 2 == 0 {
        if let Ok(request) = serde_json::from_slice::<ChangeRequest>(body)
            && let Ok(change) = request.into_change(now)
        {
            assert!(check_input_time(change.at).is_ok(), "{change:?}");
            assert!(!change.summary.trim().is_empty());
        }
    } else if selector % 4 == 3 {
        let last = chrono::DateTime::from_timestamp(1_782_999_900, 0);
        if let Ok(request) = serde_json::from_slice::<PushedResult>(body)
            && let Ok((at, result)) = request.into_result(now, last, &Secrets::new(["s3cret"]))
        {
            assert!(last.is_none_or(|last| last <= at), "{at}");
            assert!(
                (now - at).num_minutes() <= 15 && (at - now).num_minutes() <= 1,
                "{at}"
            );
            assert!(result.latency.as_secs() <= 3600, "{result:?}");
            if let Some(failure) = &result.failure {
                assert!(failure.detail.chars().count() <= 601, "{failure:?}");
                assert!(!failure.detail.contains("s3cret"), "{failure:?}");
            }
        }
    } else if let Ok(request) = serde_json::from_slice::<MaintenanceRequest>(body)
        && let Ok(window) = request.into_window(&settings().topology, now)
    {
        assert!(window.starts_at < window.ends_at, "{window:?}");
        assert!(check_input_time(window.ends_at).is_ok(), "{window:?}");
    }
});
