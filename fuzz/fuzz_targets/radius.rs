//! A datagram from the peer through `radius::parse_packet`, the parser the probe reads
//! Access-Accept, Access-Reject and Accounting-Response with.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tocsin::probe::parsers::parse_radius_packet;

fuzz_target!(|data: &[u8]| {
    if let Ok(packet) = parse_radius_packet(data) {
        // The probe verifies the authenticator over these bytes: they must be in the packet.
        assert!(packet.length <= data.len(), "{packet:?}");
        if let Some(at) = packet.message_authenticator_at {
            assert!(at + 16 <= packet.length, "{packet:?}");
        }
    }
});
