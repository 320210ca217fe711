//! What an IMAP server says: the first line through `imap::parse_greeting`, each further
//! line through `imap::parse_line` as the answer to LOGIN. Whatever it says, the texts the
//! probe would publish carry no control character and never the password, plain or base64.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tocsin::probe::parsers::Secrets;
use tocsin::probe::parsers::{ServerLine, parse_greeting, parse_imap_line};

const PASSWORD: &str = "Hunter2-Secret";

fn secrets() -> &'static Secrets {
    static SECRETS: OnceLock<Secrets> = OnceLock::new();
    SECRETS.get_or_init(|| Secrets::new([PASSWORD]))
}

/// Published text must be clean; the base64 check itself is the sanitizer's unit tests'.
fn check(text: &str) {
    assert!(!text.chars().any(char::is_control), "{text:?}");
    let upper = text.to_ascii_uppercase();
    assert!(!upper.contains(&PASSWORD.to_ascii_uppercase()), "{text}");
}

fuzz_target!(|data: &[u8]| {
    let mut lines = data
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let Some(first) = lines.next() else {
        return;
    };
    if let Err(failure) = parse_greeting(first, secrets()) {
        check(&failure.detail);
    }
    for line in lines {
        match parse_imap_line(line, "t2", "LOGIN", secrets()) {
            Ok(ServerLine::Done(_, text)) => check(&text),
            Ok(_) => {}
            Err(failure) => check(&failure.detail),
        }
    }
});
