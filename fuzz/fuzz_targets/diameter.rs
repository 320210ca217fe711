//! A Diameter message from the peer through `diameter::parse_message`, the parser the probe
//! reads its CEA and DWA with: every AVP length is checked against the message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tocsin::probe::parsers::parse_diameter_message;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = parse_diameter_message(data) {
        // Nothing kept is longer than the message it came from.
        for text in [
            &message.origin_host,
            &message.product_name,
            &message.error_message,
        ]
        .into_iter()
        .flatten()
        {
            assert!(text.len() <= data.len(), "{message:?}");
        }
    }
});
