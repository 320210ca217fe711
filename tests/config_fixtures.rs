//! Configuration fixtures.
//!
//! * `tests/fixtures/config/invalid/*.toml`: one file per validation rule. Each starts with
//!   `# error: …` lines: the exact error lines the file produces, in order, without the
//!   file's own path (`42: targets[3].probe.url: relative URL without a base`, `6: invalid
//!   TOML: …`), no more. Editing a fixture above its errors moves their line numbers.
//! * `tests/fixtures/config/valid/*.toml`: valid files; a `# expect: services=N groups=N
//!   targets=N receivers=N` line gives the counts.
//! * `config/tocsin.example.toml` and `config/minimal.toml` must be valid as shipped.
//!
//! Fixtures name `*_file` paths relative to their own directory: relative paths are taken
//! from the configuration file's directory, wherever the binary runs.
//!
//! Environment overrides (`TOCSIN__SERVER__LISTEN`) are tested in-process in
//! `tests/config_env.rs`, alone in its binary, because the environment is process-global; here
//! they are only passed to child processes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use tocsin::alert::{ReceiverKind, WebhookSpec};
use tocsin::config::{self, ConfigError, ConfigSource, Settings, StorageBackend};
use tocsin::incident::ReportingSpec;
use tocsin::incident::reporting::{CustomRule, RuleSet};
use tocsin::topology::{GroupMode, ServiceClass};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = root().join("tests/fixtures/config").join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

fn load(path: &Path) -> Result<Settings, ConfigError> {
    config::load(&ConfigSource::File(path.to_path_buf()))
}

fn load_ok(path: &Path) -> Settings {
    load(path).unwrap_or_else(|e| panic!("{} should be valid, got:\n{e}", path.display()))
}

fn name(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The `# error: …` lines at the top of a fixture; `{dir}` stands for the fixture's
/// directory (relative paths in a file are taken from there). Read lossily: one fixture is
/// not UTF-8, past its header.
fn expected_errors(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).expect("fixture readable");
    let text = String::from_utf8_lossy(&bytes);
    let dir = path
        .parent()
        .expect("a fixture is in a directory")
        .display()
        .to_string();
    let expected: Vec<String> = text
        .lines()
        .take_while(|l| l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("# error: "))
        .map(|l| l.replace("{dir}", &dir))
        .collect();
    assert!(
        !expected.is_empty(),
        "{} must start with `# error: …` lines",
        name(path)
    );
    expected
}

/// The `# expect: services=N groups=N targets=N receivers=N` line of a valid fixture.
fn expected_counts(path: &Path) -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(path).expect("fixture readable");
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("# expect: "))
        .unwrap_or_else(|| panic!("{} has no `# expect:` line", name(path)));
    line.split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("key=value");
            (k.to_string(), v.parse().expect("a count"))
        })
        .collect()
}

fn counts(settings: &Settings) -> BTreeMap<String, usize> {
    let t = &settings.topology;
    BTreeMap::from([
        ("services".to_string(), t.services.len()),
        ("groups".to_string(), t.groups.len()),
        ("targets".to_string(), t.targets.len()),
        ("receivers".to_string(), settings.receivers.len()),
    ])
}

/// The error lines of a configuration, each without the file's own path: `42: key.path:
/// message`, or `TOCSIN__…: key.path: message` for a value from the environment.
fn error_lines(path: &Path, error: &ConfigError) -> Vec<String> {
    let prefix = format!("{}:", path.display());
    error
        .to_string()
        .lines()
        .map(|l| {
            l.strip_prefix(&prefix)
                .map_or(l, str::trim_start)
                .to_string()
        })
        .collect()
}

/// Checks one invalid fixture against its `# error:` lines; returns a problem description.
fn check_invalid(path: &Path) -> Result<(), String> {
    let expected = expected_errors(path);
    match load(path) {
        Ok(_) => Err("loaded without error".to_string()),
        Err(e) => {
            let got = error_lines(path, &e);
            if got == expected {
                Ok(())
            } else {
                Err(format!(
                    "errors differ\n  expected:\n    {}\n  got:\n    {}",
                    expected.join("\n    "),
                    got.join("\n    ")
                ))
            }
        }
    }
}

#[test]
fn every_invalid_fixture_reports_exactly_its_errors() {
    let mut failures = Vec::new();
    for path in fixtures("invalid") {
        if let Err(why) = check_invalid(&path) {
            failures.push(format!("{}: {why}", name(&path)));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

#[test]
fn several_errors_are_all_reported_at_once_down_the_file() {
    for fixture in ["several-errors.toml", "every-kind-of-error.toml"] {
        let path = root().join("tests/fixtures/config/invalid").join(fixture);
        let expected = expected_errors(&path);
        assert!(expected.len() >= 10, "{fixture} should hold many errors");
        let issues = match load(&path) {
            Err(ConfigError::Invalid(issues)) => issues,
            other => panic!("{fixture}: expected Invalid, got {other:?}"),
        };
        // The Display form is one `file:line: path: message` line per issue, as check-config
        // prints it; each issue says where it is.
        assert_eq!(issues.to_string().lines().count(), expected.len());
        let lines: Vec<usize> = issues
            .iter()
            .map(|i| {
                let location = i.location.as_deref().expect("located");
                let (file, line) = location.rsplit_once(':').expect("file:line");
                assert_eq!(file, path.display().to_string());
                line.parse().expect("a line number")
            })
            .collect();
        assert!(lines.is_sorted(), "{fixture}: not in file order: {lines:?}");
    }
}

/// Every kind of problem of one file, structural and semantic, comes in one run: none hides
/// another.
#[test]
fn no_kind_of_error_hides_another() {
    let path = root().join("tests/fixtures/config/invalid/every-kind-of-error.toml");
    let Err(e) = load(&path) else {
        panic!("should be invalid")
    };
    let text = e.to_string();
    for kind in [
        "invalid type: string \"lots\", expected a non-negative integer",
        "server.page_titel: unknown key, did you mean page_title?",
        "targets[0].probe.type: unknown value \"gopher\", expected one of",
        "receivers[0].min_severity: unknown value \"sev9\", expected one of sev1, sev2, sev3, sev4",
        "groups[0].subscribers: missing",
        "server.listen: `0.0.0.0`: invalid socket address syntax",
        "targets[2]: set `groups` or `service`",
        "targets[3].probe.url: relative URL without a base",
    ] {
        assert!(text.contains(kind), "`{kind}` missing from:\n{text}");
    }
}

#[test]
fn every_valid_fixture_loads_with_the_expected_counts() {
    for path in fixtures("valid") {
        let settings = load_ok(&path);
        assert_eq!(counts(&settings), expected_counts(&path), "{}", name(&path));
    }
}

#[test]
fn the_shipped_example_is_valid() {
    let settings = load_ok(&root().join("config/tocsin.example.toml"));
    assert_eq!(
        counts(&settings),
        BTreeMap::from([
            ("services".to_string(), 4),
            ("groups".to_string(), 9),
            ("targets".to_string(), 19),
            ("receivers".to_string(), 2),
        ])
    );
    let topo = &settings.topology;
    let ids: Vec<&str> = topo.services.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["voicemail", "data", "voice", "web"]);
    let kinds: Vec<&str> = topo.targets.iter().map(|t| t.probe.kind()).collect();
    assert!(
        kinds.contains(&"http") && kinds.contains(&"tcp"),
        "{kinds:?}"
    );
    // `data` has no explicit subscribers: the sum of its two groups.
    let data = &topo.services[topo.service_index("data").unwrap()];
    assert_eq!(data.subscribers, 17_500_000);
    // The `service` shorthand target `www` has an implicit group of 1.
    let www = &topo.groups[topo.group_index("www").expect("implicit group www")];
    assert_eq!(www.subscribers, 1);
    assert_eq!(www.platform.as_deref(), Some("cdn"));
    // One target watches two groups.
    let portal = &topo.targets[topo.target_index("vm-b-portal").unwrap()];
    assert_eq!(portal.groups.len(), 2);
    assert_eq!(topo.maintenances.len(), 1);
    assert_eq!(settings.vantage, "paris-1");
}

#[test]
fn the_example_keeps_secrets_in_files_and_those_keys_commented_out() {
    let text = std::fs::read_to_string(root().join("config/tocsin.example.toml")).unwrap();
    for line in text.lines() {
        let code = line.split('#').next().unwrap_or("").trim();
        for secret in ["secret =", "token =", "password ="] {
            assert!(!code.starts_with(secret), "inline secret: {line}");
        }
        if code.contains("_file") {
            panic!("a *_file key left active in the example: {line}");
        }
    }
    for key in ["admin_token_file", "secret_file", "url_file", "token_file"] {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(&format!("# {key} ="))),
            "the example should show `{key}` (commented out)"
        );
    }
}

/// The keys a table accepts, read from the "unknown key, expected one of …" issue of a key
/// `zzz` (itself read from the strict deserializer), so that a key added to the code and
/// forgotten in the example fails this test.
fn accepted_keys(toml: &str) -> Vec<String> {
    let issues = match config::load(&ConfigSource::Inline(toml.to_string())) {
        Err(ConfigError::Invalid(issues)) => issues,
        other => panic!("expected an unknown-key error for\n{toml}\ngot {other:?}"),
    };
    let issue = issues
        .iter()
        .find(|i| i.path.ends_with("zzz"))
        .unwrap_or_else(|| panic!("no issue for `zzz` in:\n{issues}"));
    let keys: Vec<String> = issue
        .message
        .strip_prefix("unknown key, expected one of ")
        .unwrap_or_else(|| panic!("unexpected message: {issue}"))
        .split(", ")
        .map(str::to_string)
        .collect();
    assert!(!keys.is_empty(), "no keys in: {issue}");
    keys
}

#[test]
fn the_example_documents_every_key() {
    let example = std::fs::read_to_string(root().join("config/tocsin.example.toml")).unwrap();
    // `key =` at the start of a line (possibly commented out) or inside an inline table.
    let documented = |key: &str| {
        example.lines().any(|line| {
            let line = line.trim_start().trim_start_matches('#').trim_start();
            line.starts_with(&format!("{key} ="))
                || line.contains(&format!("{{ {key} ="))
                || line.contains(&format!(", {key} ="))
        })
    };
    let target = "[[services]]\nid = \"web\"\n[[targets]]\nid = \"www\"\nservice = \"web\"\n";
    let tables = [
        ("", "zzz = 1".to_string()),
        ("server", "[server]\nzzz = 1".to_string()),
        ("exporter", "[exporter]\nzzz = 1".to_string()),
        ("storage", "[storage]\nzzz = 1".to_string()),
        ("vantage", "[vantage]\nzzz = 1".to_string()),
        ("defaults", "[defaults]\nzzz = 1".to_string()),
        ("incidents", "[incidents]\nzzz = 1".to_string()),
        ("reporting", "[reporting]\nzzz = 1".to_string()),
        (
            "reporting.custom",
            "[[reporting.custom]]\nzzz = 1".to_string(),
        ),
        ("services", "[[services]]\nzzz = 1".to_string()),
        ("groups", "[[groups]]\nzzz = 1".to_string()),
        ("targets", "[[targets]]\nzzz = 1".to_string()),
        ("maintenances", "[[maintenances]]\nzzz = 1".to_string()),
        ("receivers", "[[receivers]]\nzzz = 1".to_string()),
        ("subscriptions", "[subscriptions]\nzzz = 1".to_string()),
        (
            "http probe",
            format!("{target}probe = {{ type = \"http\", zzz = 1 }}"),
        ),
        (
            "tcp probe",
            format!("{target}probe = {{ type = \"tcp\", zzz = 1 }}"),
        ),
        (
            "tls probe",
            format!("{target}probe = {{ type = \"tls\", zzz = 1 }}"),
        ),
        (
            "dns probe",
            format!("{target}probe = {{ type = \"dns\", zzz = 1 }}"),
        ),
        (
            "sip probe",
            format!("{target}probe = {{ type = \"sip\", zzz = 1 }}"),
        ),
        (
            "imap probe",
            format!("{target}probe = {{ type = \"imap\", zzz = 1 }}"),
        ),
        (
            "smtp probe",
            format!("{target}probe = {{ type = \"smtp\", zzz = 1 }}"),
        ),
        (
            "icmp probe",
            format!("{target}probe = {{ type = \"icmp\", zzz = 1 }}"),
        ),
        (
            "diameter probe",
            format!("{target}probe = {{ type = \"diameter\", zzz = 1 }}"),
        ),
        (
            "gtp probe",
            format!("{target}probe = {{ type = \"gtp\", zzz = 1 }}"),
        ),
        (
            "radius probe",
            format!("{target}probe = {{ type = \"radius\", zzz = 1 }}"),
        ),
    ];
    let mut missing = Vec::new();
    for (table, toml) in &tables {
        for key in accepted_keys(toml) {
            let found = if table.is_empty() {
                example.contains(&format!("[{key}]"))
                    || example.contains(&format!("[[{key}]]"))
                    || example.contains(&format!("[{key}."))
            } else {
                // A key holding tables (`[reporting] custom`) is shown as `[[reporting.custom]]`.
                documented(&key)
                    || example.contains(&format!("[{table}.{key}]"))
                    || example.contains(&format!("[[{table}.{key}]]"))
            };
            if !found {
                missing.push(format!("{table}: {key}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "undocumented in the example: {missing:?}"
    );
    for probe_type in ["http", "tcp", "tls", "dns", "sip", "imap", "smtp", "icmp"] {
        assert!(example.contains(&format!("type = \"{probe_type}\"")));
    }
}

#[test]
fn the_minimal_config_is_valid() {
    let settings = load_ok(&root().join("config/minimal.toml"));
    assert_eq!(
        counts(&settings),
        BTreeMap::from([
            ("services".to_string(), 1),
            ("groups".to_string(), 1),
            ("targets".to_string(), 1),
            ("receivers".to_string(), 0),
        ])
    );
    assert_eq!(settings.topology.targets[0].probe.kind(), "http");
}

#[test]
fn defaults_apply_when_keys_are_omitted() {
    let settings = load_ok(&root().join("config/minimal.toml"));
    let target = &settings.topology.targets[0];
    assert_eq!(target.interval, Duration::from_secs(30));
    assert_eq!(target.timeout, Duration::from_secs(5));
    assert_eq!(target.failure_threshold, 3);
    assert_eq!(target.success_threshold, 2);
    assert_eq!(target.degraded_latency, Duration::from_secs(2));
    assert_eq!(
        settings.incidents.resolve_after,
        Duration::from_secs(5 * 60)
    );
    assert_eq!(
        settings.incidents.correlation_window,
        Duration::from_secs(15 * 60)
    );
    assert_eq!(settings.incidents.affected_change, 0.25);
    assert_eq!(settings.server.listen, "127.0.0.1:9898".parse().unwrap());
    assert_eq!(settings.server.page_title, "Service status");
    assert_eq!(settings.server.external_url, None);
    assert_eq!(settings.server.admin_token, None);
    assert_eq!(
        settings.storage.backend,
        StorageBackend::Sqlite(PathBuf::from("/var/lib/tocsin/tocsin.db"))
    );
    assert_eq!(
        settings.storage.raw_retention,
        Duration::from_secs(48 * 3600)
    );
    assert_eq!(
        settings.storage.rollup_retention,
        Duration::from_secs(400 * 86400)
    );
    assert_eq!(settings.vantage, "default");
    let service = &settings.topology.services[0];
    assert_eq!(service.name, "web", "the name defaults to the id");
    assert_eq!(service.class, ServiceClass::Feature);
    assert_eq!(settings.topology.groups[0].mode, GroupMode::Any);
    assert_eq!(
        settings.incidents.reporting,
        ReportingSpec {
            rule_sets: vec![RuleSet::FccNors, RuleSet::EuEnisa, RuleSet::Ofcom]
        },
        "every built-in rule set"
    );
}

#[test]
fn the_example_reporting_rules_are_read() {
    let settings = load_ok(&root().join("config/tocsin.example.toml"));
    assert_eq!(
        settings.incidents.reporting.rule_sets,
        [
            RuleSet::FccNors,
            RuleSet::EuEnisa,
            RuleSet::Custom(CustomRule {
                name: "noc_major".to_string(),
                min_duration: Some(Duration::from_secs(2 * 3600)),
                min_share: Some(0.05),
                min_affected: Some(10_000),
                min_user_hours: Some(50_000.0),
                notify_within: Some(Duration::from_secs(4 * 3600)),
            }),
        ]
    );
}

#[test]
fn receiver_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tocsin.toml");
    std::fs::write(
        &path,
        r#"
[[services]]
id = "web"

[[targets]]
id = "www"
service = "web"
probe = { type = "http", url = "https://www.example.net/" }

[[receivers]]
name = "noc"
type = "webhook"
url = "https://noc.example.net/hooks/tocsin"
"#,
    )
    .unwrap();
    let settings = load_ok(&path);
    let r = &settings.receivers[0];
    assert_eq!(r.name, "noc");
    assert_eq!(r.min_severity, tocsin::incident::Severity::Sev4);
    assert!(r.send_resolved);
    assert_eq!(r.repeat_interval, None);
    assert_eq!(r.update_interval, Duration::from_secs(60));
    assert_eq!(r.timeout, Duration::from_secs(10));
    assert_eq!(r.max_retry_age, Duration::from_secs(24 * 3600));
}

/// Every relative path of a file (`*_file` keys of the server, receivers, probes and
/// `/probe` modules, and `storage.sqlite`) is taken from the file's directory, not from the
/// working directory (the crate root here).
#[test]
fn relative_paths_are_taken_from_the_configuration_directory() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    std::fs::create_dir(&conf).unwrap();
    for (name, content) in [
        ("vm.pass", "secret\n"),
        ("pd.key", "0123456789abcdef0123456789abcdef\n"),
        ("admin.token", "t\n"),
    ] {
        std::fs::write(conf.join(name), content).unwrap();
    }
    let toml = r#"
[server]
admin_token_file = "admin.token"
[storage]
sqlite = "state/tocsin.db"
[[services]]
id = "voicemail"
[[targets]]
id = "vm"
service = "voicemail"
probe = { type = "imap", address = "127.0.0.1:993", username = "probe", password_file = "vm.pass" }
[[receivers]]
name = "pager"
type = "pagerduty"
routing_key_file = "pd.key"
[modules.imap_login]
probe = { type = "imap", username = "probe", password_file = "vm.pass" }
"#;
    let path = conf.join("tocsin.toml");
    std::fs::write(&path, toml).unwrap();
    let settings = load_ok(&path);
    assert_eq!(
        settings.storage.backend,
        StorageBackend::Sqlite(conf.join("state/tocsin.db"))
    );
    assert_eq!(
        settings.modules["imap_login"].probe["password_file"],
        conf.join("vm.pass").display().to_string()
    );
    // From the working directory none of them exists: the anchoring is what makes it valid.
    assert!(!Path::new("vm.pass").exists());
}

/// `storage.postgres_file` is read (relative to the file's directory) and the password it
/// may hold stays out of debug output.
#[test]
fn the_postgres_url_is_read_from_its_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pg.url"),
        "postgres://tocsin:hunter2@db.example.net/tocsin\n",
    )
    .unwrap();
    let path = dir.path().join("tocsin.toml");
    std::fs::write(&path, "[storage]\npostgres_file = \"pg.url\"\n").unwrap();
    let settings = load_ok(&path);
    let StorageBackend::Postgres(url) = &settings.storage.backend else {
        panic!("not PostgreSQL: {:?}", settings.storage.backend);
    };
    let shown = format!("{settings:?}");
    assert!(shown.contains("db.example.net"), "{shown}");
    assert!(!shown.contains("hunter2"), "the password shows: {url:?}");
}

#[test]
fn overrides_and_files_are_read() {
    let path = root().join("tests/fixtures/config/valid/files-and-overrides.toml");
    let settings = load_ok(&path);
    assert_eq!(settings.server.listen, "[::1]:19898".parse().unwrap());
    assert_eq!(
        settings.server.admin_token.as_deref(),
        Some("test-admin-token")
    );
    assert_eq!(
        settings.server.external_url.as_ref().map(|u| u.as_str()),
        Some("https://status.example.net/")
    );
    assert_eq!(settings.vantage, "lyon-2");
    assert_eq!(settings.incidents.resolve_after, Duration::from_secs(600));
    assert_eq!(
        settings.incidents.correlation_window,
        Duration::from_secs(1800)
    );
    assert_eq!(settings.incidents.affected_change, 0.5);
    let topo = &settings.topology;
    let own = &topo.targets[0];
    assert_eq!(own.interval, Duration::from_secs(10));
    assert_eq!(own.timeout, Duration::from_secs(2));
    assert_eq!((own.failure_threshold, own.success_threshold), (2, 4));
    assert_eq!(own.degraded_latency, Duration::from_millis(500));
    let inherited = &topo.targets[1];
    assert_eq!(inherited.interval, Duration::from_secs(60));
    assert_eq!(inherited.timeout, Duration::from_secs(10));
    assert_eq!(
        (inherited.failure_threshold, inherited.success_threshold),
        (5, 1)
    );
    assert_eq!(inherited.degraded_latency, Duration::from_secs(3));
    assert_eq!(topo.services[0].subscribers, 17_500_000, "explicit wins");
    let m = &topo.maintenances[0];
    assert_eq!(
        (m.ends_at - m.starts_at).num_hours(),
        1,
        "offsets are honoured"
    );

    let noc = &settings.receivers[0];
    assert_eq!(noc.min_severity, tocsin::incident::Severity::Sev2);
    assert!(!noc.send_resolved);
    assert_eq!(noc.repeat_interval, Some(Duration::from_secs(4 * 3600)));
    assert_eq!(noc.update_interval, Duration::from_secs(5 * 60));
    assert_eq!(noc.timeout, Duration::from_secs(5));
    assert_eq!(noc.max_retry_age, Duration::from_secs(12 * 3600));
    let hook = webhook(&noc.kind);
    assert!(hook.key.as_ref().is_some_and(|k| !k.is_empty()));
    let chat = webhook(&settings.receivers[1].kind);
    assert_eq!(
        chat.url.as_str(),
        "https://noc.example.net/hooks/tocsin?token=test-only"
    );
    assert_eq!(chat.key, None);
}

fn webhook(kind: &ReceiverKind) -> &WebhookSpec {
    #[allow(unreachable_patterns)]
    match kind {
        ReceiverKind::Webhook(w) => w,
        _ => panic!("expected a webhook receiver"),
    }
}

#[test]
fn service_subscribers_default_to_the_sum_of_their_groups() {
    let settings = load_ok(&root().join("tests/fixtures/config/valid/multiple-groups.toml"));
    let topo = &settings.topology;
    let voicemail = &topo.services[topo.service_index("voicemail").unwrap()];
    let voice = &topo.services[topo.service_index("voice").unwrap()];
    assert_eq!(voicemail.subscribers, 7_400_000 + 7_200_000);
    assert_eq!(voice.subscribers, 9_500_000 + 9_000_000);
    // A target in two services' groups is listed by each of its groups, and labelled with both.
    let access = &topo.targets[topo.target_index("north-access").unwrap()];
    assert_eq!(access.groups.len(), 2);
    assert_eq!(access.labels.service, "voice,voicemail");
    assert_eq!(access.labels.region, "north");
    assert_eq!(access.labels.platform, "ims-1,vm-b");
    for &g in &access.groups {
        assert!(
            topo.groups[g]
                .targets
                .contains(&topo.target_index("north-access").unwrap())
        );
    }
}

#[test]
fn the_service_shorthand_creates_an_implicit_group() {
    let settings = load_ok(&root().join("tests/fixtures/config/valid/shorthand.toml"));
    let topo = &settings.topology;
    let web = topo.service_index("web").unwrap();
    let portal = topo.service_index("portal").unwrap();

    let www = &topo.groups[topo
        .group_index("www")
        .expect("implicit group named after the target")];
    assert_eq!(www.service, web);
    assert_eq!(www.subscribers, 1, "one subscriber by default");
    assert_eq!(
        (www.region.as_deref(), www.platform.as_deref()),
        (None, None)
    );
    assert_eq!(www.mode, GroupMode::Any);
    let target = topo.target_index("www").unwrap();
    assert_eq!(www.targets, [target]);
    assert_eq!(
        topo.targets[target].groups,
        [topo.group_index("www").unwrap()]
    );

    let north = &topo.groups[topo.group_index("portal-north").unwrap()];
    assert_eq!(north.service, portal);
    assert_eq!(north.subscribers, 120_000);
    assert_eq!(north.region.as_deref(), Some("north"));
    assert_eq!(north.platform.as_deref(), Some("portal-1"));

    assert_eq!(
        topo.services[web].subscribers, 2,
        "the sum of two implicit groups of 1"
    );
    assert_eq!(topo.services[portal].subscribers, 500_000, "explicit wins");
    assert_eq!(topo.services[portal].name, "Customer portal");
}

// === The binary: `tocsin check-config` ===

fn check_config(path: &Path) -> Output {
    tocsin_cmd()
        .args(["check-config", "--config"])
        .arg(path)
        .output()
        .expect("tocsin runs")
}

fn tocsin_cmd() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tocsin"));
    cmd.current_dir(root()).env_remove("RUST_LOG");
    cmd
}

#[test]
fn check_config_accepts_every_valid_file() {
    let mut files = fixtures("valid");
    files.push(root().join("config/tocsin.example.toml"));
    files.push(root().join("config/minimal.toml"));
    for path in files {
        let out = check_config(&path);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {stdout}{}",
            name(&path),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("valid ("), "{}: {stdout}", name(&path));
    }
}

#[test]
fn check_config_rejects_every_invalid_file_with_every_error_on_stderr() {
    let mut failures = Vec::new();
    for path in fixtures("invalid") {
        let out = check_config(&path);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() != Some(1) {
            failures.push(format!("{}: exit {:?}", name(&path), out.status.code()));
        }
        for e in expected_errors(&path) {
            if !stderr.contains(&e) {
                failures.push(format!("{}: stderr lacks `{e}`:\n{stderr}", name(&path)));
            }
        }
        if !out.stdout.is_empty() {
            failures.push(format!("{}: wrote to stdout", name(&path)));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn check_config_reports_a_missing_file() {
    let out = check_config(Path::new("/nonexistent/tocsin/tocsin.toml"));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "/nonexistent/tocsin/tocsin.toml: invalid configuration\n\
         cannot read /nonexistent/tocsin/tocsin.toml: No such file or directory (os error 2)\n"
    );
}

#[test]
fn check_config_says_a_directory_is_one() {
    let dir = root().join("tests/fixtures/config");
    let out = check_config(&dir);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot read {}: Is a directory", dir.display())),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

/// An empty file is a valid configuration that probes nothing, and `/dev/null` is one.
#[test]
fn check_config_accepts_an_empty_file_and_says_it_probes_nothing() {
    let out = check_config(Path::new("/dev/null"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "/dev/null: valid (0 services, 0 groups, 0 targets, 0 receivers); no target: nothing to probe\n"
    );
}

/// What an operator sees: a header, then one `file:line: key.path: message` line per
/// error, down the file, on stderr; nothing on stdout; exit 1.
#[test]
fn check_config_prints_every_error_with_its_line() {
    let path = Path::new("tests/fixtures/config/invalid/every-kind-of-error.toml");
    let out = check_config(path);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut lines = stderr.lines();
    assert_eq!(
        lines.next(),
        Some("tests/fixtures/config/invalid/every-kind-of-error.toml: invalid configuration")
    );
    let expected: Vec<String> = expected_errors(&root().join(path))
        .iter()
        .map(|e| format!("{}:{e}", path.display()))
        .collect();
    assert_eq!(lines.collect::<Vec<_>>(), expected);
}

#[test]
fn check_config_usage_errors_exit_2() {
    let out = tocsin_cmd()
        .args(["check-config", "--no-such-flag"])
        .output()
        .expect("tocsin runs");
    assert_eq!(out.status.code(), Some(2));
    let out = tocsin_cmd()
        .args(["check-config", "--config"])
        .output()
        .expect("tocsin runs");
    assert_eq!(out.status.code(), Some(2), "a flag without its value");
}

#[test]
fn reporting_rules_can_be_set_from_the_environment() {
    let minimal = root().join("config/minimal.toml");
    let out = tocsin_cmd()
        .args(["check-config", "--config"])
        .arg(&minimal)
        .env("TOCSIN__REPORTING__RULES", "ofcom,nors")
        .output()
        .expect("tocsin runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("reporting.rules[1]: unknown rule set `nors`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = tocsin_cmd()
        .args(["check-config", "--config"])
        .arg(&minimal)
        .env("TOCSIN__REPORTING__RULES", "fcc_nors, ofcom")
        .output()
        .expect("tocsin runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_config_applies_environment_overrides() {
    let minimal = root().join("config/minimal.toml");
    let out = tocsin_cmd()
        .args(["check-config", "--config"])
        .arg(&minimal)
        .env("TOCSIN__SERVER__LISTEN", "not-an-address")
        .output()
        .expect("tocsin runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("server.listen: `not-an-address`: invalid socket address syntax")
    );

    let invalid = root().join("tests/fixtures/config/invalid/server-bad-listen.toml");
    let out = tocsin_cmd()
        .args(["check-config", "--config"])
        .arg(&invalid)
        .env("TOCSIN__SERVER__LISTEN", "0.0.0.0:9898")
        .output()
        .expect("tocsin runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "the environment fixes the file's listen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_receivers_added_with_email_teams_opsgenie_and_command_build() {
    use tocsin::alert::OpsgenieSpec;
    use tocsin::probe::SmtpTls;
    let settings = load_ok(&root().join("tests/fixtures/config/valid/receivers.toml"));
    let kinds: Vec<&ReceiverKind> = settings.receivers.iter().map(|r| &r.kind).collect();
    let ReceiverKind::Email(mail) = kinds[0] else {
        panic!("expected an email receiver: {:?}", kinds[0]);
    };
    assert_eq!(
        (mail.mailer.host.as_str(), mail.mailer.port, mail.mailer.tls),
        ("mail.example.net", 587, SmtpTls::Starttls)
    );
    let login = mail.mailer.login.as_ref().expect("AUTH");
    assert_eq!(login.0, "tocsin");
    assert_eq!(format!("{:?}", login.1), "Secret(…)", "never printed");
    assert_eq!(mail.mailer.from.to_string(), "tocsin <tocsin@example.net>");
    assert_eq!(mail.to.len(), 2);
    let ReceiverKind::Email(relay) = kinds[1] else {
        panic!("expected an email receiver: {:?}", kinds[1]);
    };
    assert_eq!(
        (
            relay.mailer.host.as_str(),
            relay.mailer.port,
            relay.mailer.tls
        ),
        ("::1", 25, SmtpTls::None)
    );
    assert!(relay.mailer.login.is_none());
    assert!(matches!(kinds[2], ReceiverKind::Msteams(t) if t.url.query() == Some("sig=test-only")));
    let ReceiverKind::Opsgenie(OpsgenieSpec { base, api_key }) = kinds[3] else {
        panic!("expected an opsgenie receiver: {:?}", kinds[3]);
    };
    assert_eq!(base.as_str(), "https://api.eu.opsgenie.com/");
    assert_eq!(api_key, "eb243592-faa2-4ba2-a551q-1afdf565c889");
    let ReceiverKind::Command(command) = kinds[4] else {
        panic!("expected a command receiver: {:?}", kinds[4]);
    };
    assert_eq!(command.program, "/usr/local/bin/page-oncall");
    assert_eq!(command.args, ["--team", "noc"]);
    assert_eq!(settings.receivers[4].timeout, Duration::from_secs(5));
}
