//! A SIP datagram from the peer through `sip::parse_message`, the parser the probe reads
//! responses with. Errors quote the peer: they must come out sanitized.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tocsin::probe::parsers::{MAX_EXCERPT_CHARS, parse_sip_message};

fuzz_target!(|data: &[u8]| {
    if let Err(detail) = parse_sip_message(data) {
        assert!(!detail.chars().any(char::is_control), "{detail:?}");
        assert!(detail.chars().count() <= MAX_EXCERPT_CHARS + 40, "{detail}");
    }
});
