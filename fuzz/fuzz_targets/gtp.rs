//! A datagram from the peer through `gtp::parse_echo_response`, the parser the probe reads
//! Echo Responses (GTPv1 and GTPv2) with.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tocsin::probe::parsers::parse_gtp_echo_response;

fuzz_target!(|data: &[u8]| {
    let _ = parse_gtp_echo_response(data);
});
