//! A configuration file: TOML text through `config::load` (read, deserialize, validate).
//! Any text may be refused; none may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tocsin::config::{ConfigSource, load};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // `*_file` keys are read: a device or /proc file would block or never end, which
    // only an operator can ask for and no fuzzer needs.
    if ["/dev", "/proc", "/sys"].iter().any(|p| text.contains(p)) {
        return;
    }
    let _ = load(&ConfigSource::Inline(text.to_string()));
});
