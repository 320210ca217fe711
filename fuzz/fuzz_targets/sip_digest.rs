//! A `WWW-Authenticate` / `Proxy-Authenticate` value from the peer through
//! `sip_digest::parse_challenge`, and the `Authorization` header tocsin answers it with: a
//! hostile challenge must not inject a line into the REGISTER it sends back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tocsin::probe::parsers::{parse_challenge, sip_authorization};

fuzz_target!(|data: &[u8]| {
    // A header value as the SIP parser hands it over: one line, no CR or LF.
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    if value.contains(['\r', '\n']) {
        return;
    }
    if let Some(challenge) = parse_challenge(value) {
        let header = sip_authorization(
            &challenge,
            "REGISTER",
            "sip:example.net",
            "probe",
            "secret",
            1,
            "0a4f113b",
        );
        assert!(!header.contains(['\r', '\n']), "{header:?}");
    }
});
