//! `GET /probe`: the first line is the query string, each further `name: value` line a
//! header, through `exporter::probe_request` with a module of each probe type. Any
//! request may be refused (a 400); none may panic, and the timeout stays the module's at
//! most.
#![no_main]

use std::sync::OnceLock;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tocsin::config::{ConfigSource, Settings, load};
use tocsin::http_parsers::probe_request;

const MODULES: &str = r#"
[modules.http_2xx]
probe = { type = "http", valid_status = [200, 204], body_regex = "ok|ready" }
[modules.tcp]
probe = { type = "tcp", send = "PING\r\n", expect_regex = "PONG" }
timeout = "3s"
[modules.tls]
probe = { type = "tls", cert_expiry_warning = "14d" }
[modules.dns]
probe = { type = "dns", name = "tocsin.test", record_type = "AAAA" }
[modules.sip]
probe = { type = "sip", valid_status = [200, 404] }
[modules.smtp]
probe = { type = "smtp" }
[modules.icmp]
probe = { type = "icmp" }
"#;

fn settings() -> &'static Settings {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get_or_init(|| load(&ConfigSource::Inline(MODULES.into())).expect("valid"))
}

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|&b| b == b'\n');
    let query = lines.next().and_then(|q| std::str::from_utf8(q).ok());
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            headers.append(name, value);
        }
    }
    let modules = &settings().modules;
    if let Ok(request) = probe_request(modules, query, &headers) {
        assert!(modules.values().any(|m| request.timeout <= m.timeout));
        assert!(!request.timeout.is_zero());
    }
});
