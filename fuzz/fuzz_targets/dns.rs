//! A DNS message from the server through `dns::classify` (id, QR, opcode, question, TC),
//! and an answer on through `dns::check_answer` (rcode, answer_regex). The query id is
//! taken from the input's first two bytes, so the fuzzer gets past the id check at once.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tocsin::probe::parsers::{DnsProbeConfig, DnsSpec, Verdict, check_answer, classify};

fn spec() -> &'static DnsSpec {
    static SPEC: OnceLock<DnsSpec> = OnceLock::new();
    SPEC.get_or_init(|| {
        let config: DnsProbeConfig = serde_json::from_value(serde_json::json!({
            "server": "127.0.0.1:53",
            "name": "www.tocsin.test",
            "answer_regex": r"\bA\s+127\.0\.0\.\d+$",
        }))
        .expect("valid config");
        config
            .build("fuzz", &mut Default::default())
            .expect("valid spec")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(id) = data.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]])) else {
        return;
    };
    let detail = match classify(spec(), id, data) {
        Ok(Verdict::Answer(message)) => match check_answer(spec(), &message) {
            Ok(()) => return,
            Err(failure) => failure.detail,
        },
        Ok(Verdict::Truncated | Verdict::NotOurs) => return,
        Err(failure) => failure.detail,
    };
    assert!(!detail.chars().any(char::is_control), "{detail:?}");
});
