//! `TOCSIN__SECTION__KEY` environment overrides, in-process.
//!
//! The environment is process-global and tests run on parallel threads, so this binary holds
//! a single test: nothing else reads the environment while it is changed. Changing it is
//! `unsafe` for that reason, the only unsafe code of the tests.

use std::path::PathBuf;
use std::time::Duration;

use tocsin::config::{self, ConfigError, ConfigSource};

#[allow(unsafe_code)]
fn set(key: &str, value: &str) {
    // SAFETY: the only test of this binary; no other thread reads or writes the environment.
    unsafe { std::env::set_var(key, value) }
}

#[allow(unsafe_code)]
fn unset(key: &str) {
    // SAFETY: as in `set`.
    unsafe { std::env::remove_var(key) }
}

#[test]
fn environment_overrides_the_file() {
    let source =
        ConfigSource::File(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/minimal.toml"));

    let settings = config::load(&source).expect("minimal config is valid");
    assert_eq!(settings.server.listen, "127.0.0.1:9898".parse().unwrap());

    set("TOCSIN__SERVER__LISTEN", "0.0.0.0:19898");
    set("TOCSIN__DEFAULTS__INTERVAL", "1m");
    set("TOCSIN__DEFAULTS__FAILURE_THRESHOLD", "5");
    set("TOCSIN__VANTAGE__NAME", "lyon-2");
    let loaded = config::load(&source);
    unset("TOCSIN__SERVER__LISTEN");
    unset("TOCSIN__DEFAULTS__INTERVAL");
    unset("TOCSIN__DEFAULTS__FAILURE_THRESHOLD");
    unset("TOCSIN__VANTAGE__NAME");
    let settings = loaded.expect("overridden config is valid");
    assert_eq!(settings.server.listen, "0.0.0.0:19898".parse().unwrap());
    assert_eq!(settings.vantage, "lyon-2");
    let target = &settings.topology.targets[0];
    assert_eq!(target.interval, Duration::from_secs(60));
    assert_eq!(target.failure_threshold, 5);

    // An override is validated like the file; its errors name the variable, not the file.
    set("TOCSIN__SERVER__LISTEN", "localhost");
    let loaded = config::load(&source);
    unset("TOCSIN__SERVER__LISTEN");
    assert_eq!(
        errors(loaded),
        ["TOCSIN__SERVER__LISTEN: server.listen: `localhost`: invalid socket address syntax"]
    );

    // Unknown keys and values that cannot be read are errors from the environment too, all
    // of them at once, after those of the file (listed by variable).
    let invalid = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config/invalid/server-bad-listen.toml");
    set("TOCSIN__SERVER__LISTN", "0.0.0.0:9898");
    set("TOCSIN__DEFAULTS__INTERVAL", "5 parsecs");
    let loaded = config::load(&ConfigSource::File(invalid.clone()));
    unset("TOCSIN__SERVER__LISTN");
    unset("TOCSIN__DEFAULTS__INTERVAL");
    assert_eq!(
        errors(loaded),
        [
            format!(
                "{}:6: server.listen: `localhost:9898`: invalid socket address syntax",
                invalid.display()
            ),
            "TOCSIN__DEFAULTS__INTERVAL: defaults.interval: invalid duration \"5 parsecs\""
                .to_string(),
            "TOCSIN__SERVER__LISTN: server.listn: unknown key, did you mean listen?".to_string(),
        ]
    );

    // A variable is read as the type of its key: a string stays as written.
    set("TOCSIN__VANTAGE__NAME", "007");
    let loaded = config::load(&source);
    unset("TOCSIN__VANTAGE__NAME");
    assert_eq!(loaded.expect("valid").vantage, "007");

    // Back to the file's values once the environment is clean.
    let settings = config::load(&source).expect("minimal config is valid");
    assert_eq!(settings.server.listen, "127.0.0.1:9898".parse().unwrap());
}

/// The error lines of a load that should fail.
fn errors(loaded: Result<config::Settings, ConfigError>) -> Vec<String> {
    match loaded {
        Err(e @ ConfigError::Invalid(_)) => e.to_string().lines().map(str::to_string).collect(),
        other => panic!("expected invalid values, got {other:?}"),
    }
}
