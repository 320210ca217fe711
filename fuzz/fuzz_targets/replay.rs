//! Replay input: every line through `replay::parse_line`, then, when the lines parse and
//! span at most an hour, the whole input through `replay::run` against a small topology.
//! (A longer span is only slower: replay ticks once per second while an incident is open.)
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tocsin::config::{ConfigSource, Settings, load};
use tocsin::replay;

const TOPOLOGY: &str = r#"
[defaults]
interval = "30s"
failure_threshold = 2
success_threshold = 2
resolve_after = "1m"
[[services]]
id = "voice"
class = "telephony"
[[groups]]
id = "west"
service = "voice"
platform = "sbc-1"
region = "west"
subscribers = 1000
[[groups]]
id = "east"
service = "voice"
platform = "sbc-2"
region = "east"
subscribers = 3000
[[targets]]
id = "a"
groups = ["west"]
probe = { type = "tcp", address = "127.0.0.1:9" }
[[targets]]
id = "b"
groups = ["east"]
probe = { type = "tcp", address = "127.0.0.1:9" }
[[receivers]]
name = "noc"
type = "webhook"
url = "http://127.0.0.1:9/"
repeat_interval = "1m"
"#;

fn settings() -> &'static Settings {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get_or_init(|| load(&ConfigSource::Inline(TOPOLOGY.into())).expect("valid"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut times = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match replay::parse_line(line) {
            Ok(entry) => times.push(entry.at),
            Err(_) => return,
        }
    }
    let (Some(first), Some(last)) = (times.iter().min(), times.iter().max()) else {
        return;
    };
    if *last - *first > chrono::Duration::hours(1) {
        return;
    }
    let _ = replay::run(settings().clone(), text.as_bytes(), std::io::sink());
});
