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

    // An override is validated like the file.
    set("TOCSIN__SERVER__LISTEN", "localhost");
    let loaded = config::load(&source);
    unset("TOCSIN__SERVER__LISTEN");
    match loaded {
        Err(ConfigError::Invalid(issues)) => assert_eq!(
            issues.to_string(),
            "server.listen: `localhost`: invalid socket address syntax"
        ),
        other => panic!("expected an invalid listen address, got {other:?}"),
    }

    // Unknown keys are errors from the environment too.
    set("TOCSIN__SERVER__LISTN", "0.0.0.0:9898");
    let loaded = config::load(&source);
    unset("TOCSIN__SERVER__LISTN");
    match loaded {
        Err(ConfigError::Load(e)) => {
            assert!(e.to_string().contains("unknown field `listn`"), "{e}")
        }
        other => panic!("expected an unknown-key error, got {other:?}"),
    }

    // Back to the file's values once the environment is clean.
    let settings = config::load(&source).expect("minimal config is valid");
    assert_eq!(settings.server.listen, "127.0.0.1:9898".parse().unwrap());
}
