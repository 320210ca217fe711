//! What an SMTP server says, through `smtp::parse_replies` (the line parser the probe reads
//! replies with). Errors quote the peer: they must come out sanitized.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tocsin::probe::parsers::parse_smtp_replies;

fuzz_target!(|data: &[u8]| {
    match parse_smtp_replies(data) {
        Ok(replies) => {
            for reply in replies {
                assert!((200..600).contains(&reply.code), "{reply:?}");
                assert!(!reply.text.is_empty());
            }
        }
        Err(failure) => assert!(
            !failure.detail.chars().any(char::is_control),
            "{:?}",
            failure.detail
        ),
    }
});
