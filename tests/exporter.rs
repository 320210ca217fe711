//! The blackbox_exporter-compatible `/probe`, scraped by a real Prometheus with the
//! multi-target relabelling its users already have, linted by promtool; and `tocsin probe`.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use common::test_config::TestConfig;
use common::{Daemon, Target, metric_sum, path_str, temp_dir, wait_for, write};

fn config(dir: &std::path::Path, target: &Target) -> TestConfig {
    TestConfig::new(dir)
        .default("interval", "\"1s\"")
        .default("timeout", "\"500ms\"")
        .body(&format!(
            r#"
[[services]]
id = "web"
[[targets]]
id = "www"
service = "web"
probe = {{ type = "http", url = "{url}" }}

[modules.http_2xx]
probe = {{ type = "http" }}

[modules.http_ready]
probe = {{ type = "http", body_contains = "ready", valid_status = [200] }}
timeout = "2s"

[modules.tcp_connect]
probe = {{ type = "tcp" }}
"#,
            url = target.url(),
        ))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_endpoint_speaks_blackbox() {
    let dir = temp_dir();
    let target = Target::start().await;
    let daemon = Daemon::start(&config(dir.path(), &target), dir.path()).await;
    let get = |query: String| {
        let url = daemon.url(&format!("/probe?{query}"));
        async move { reqwest::get(url).await.unwrap() }
    };

    let ok = get(format!("module=http_ready&target={}", target.url())).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["content-type"], "text/plain; version=0.0.4");
    let text = ok.text().await.unwrap();
    assert_eq!(metric_sum(&text, "probe_success", &[]), 1.0, "{text}");
    assert_eq!(metric_sum(&text, "probe_http_status_code", &[]), 200.0);
    assert_eq!(metric_sum(&text, "probe_http_ssl", &[]), 0.0);
    assert_eq!(metric_sum(&text, "probe_timeout_seconds", &[]), 2.0);
    for phase in ["resolve", "connect", "tls", "processing", "transfer"] {
        assert!(
            text.contains(&format!("probe_http_duration_seconds{{phase=\"{phase}\"}}")),
            "{phase} missing:\n{text}"
        );
    }
    assert!(metric_sum(&text, "probe_duration_seconds", &[]) > 0.0);

    // Lint it like /metrics.
    common::assert_promtool_accepts(&text);

    // The scrape timeout header shortens the module's timeout (minus blackbox's offset).
    let client = reqwest::Client::new();
    let short = client
        .get(daemon.url(&format!("/probe?module=http_ready&target={}", target.url())))
        .header("X-Prometheus-Scrape-Timeout-Seconds", "1.5")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(metric_sum(&short, "probe_timeout_seconds", &[]), 1.0);

    target.set_status(503);
    let failing = get(format!("module=http_2xx&target={}", target.url()))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(metric_sum(&failing, "probe_success", &[]), 0.0);
    assert_eq!(metric_sum(&failing, "probe_http_status_code", &[]), 503.0);

    let tcp = get(format!("module=tcp_connect&target={}", target.addr))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(metric_sum(&tcp, "probe_success", &[]), 1.0);

    let unknown = get("module=nope&target=x".into()).await;
    assert_eq!(unknown.status(), 400);
    assert_eq!(unknown.text().await.unwrap(), "Unknown module \"nope\"");
    let missing = get("module=http_2xx".into()).await;
    assert_eq!(missing.status(), 400);
    let bad = get("module=tcp_connect&target=no-port".into()).await;
    assert_eq!(bad.status(), 400);
    assert_eq!(
        bad.text().await.unwrap(),
        "modules.tcp_connect.probe.address: `no-port` is not host:port"
    );
    daemon.stop().await;
}

/// A real Prometheus on loopback, killed on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_probe_with_the_multi_target_pattern() {
    let dir = temp_dir();
    let healthy = Target::start().await;
    let failing = Target::start().await;
    failing.set_status(500);
    let daemon = Daemon::start(&config(dir.path(), &healthy), dir.path()).await;

    let prom_dir = temp_dir();
    let config = write(
        prom_dir.path(),
        "prometheus.yml",
        &format!(
            r#"
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: tocsin_probe
    metrics_path: /probe
    params:
      module: [http_2xx]
    static_configs:
      - targets: ["{healthy}", "{failing}"]
    relabel_configs:
      - source_labels: [__address__]
        target_label: __param_target
      - source_labels: [__param_target]
        target_label: instance
      - target_label: __address__
        replacement: "{daemon}"
"#,
            healthy = healthy.url(),
            failing = failing.url(),
            daemon = daemon.addr,
        ),
    );
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let prometheus = Prometheus {
        child: Command::new("prometheus")
            .arg(format!("--config.file={}", path_str(&config)))
            .arg(format!(
                "--storage.tsdb.path={}",
                path_str(&prom_dir.path().join("data"))
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus is installed by the README's test command"),
        addr,
        _dir: prom_dir,
    };
    let query = || async {
        let url = format!(
            "http://{}/api/v1/query?query=probe_success",
            prometheus.addr
        );
        match reqwest::get(url).await {
            Ok(r) => r.json::<serde_json::Value>().await.ok(),
            Err(_) => None,
        }
    };
    wait_for("Prometheus to have scraped both targets", || async {
        query()
            .await
            .is_some_and(|v| v["data"]["result"].as_array().is_some_and(|r| r.len() == 2))
    })
    .await;
    let answer = query().await.unwrap();
    let mut by_instance: Vec<(String, String)> = answer["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["metric"]["instance"].as_str().unwrap().to_string(),
                r["value"][1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    by_instance.sort();
    let mut expected = vec![
        (healthy.url(), "1".to_string()),
        (failing.url(), "0".to_string()),
    ];
    expected.sort();
    assert_eq!(by_instance, expected);
    drop(prometheus);
    daemon.stop().await;
}

#[test]
fn tocsin_probe_prints_and_exits_by_the_result() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let open = listener.local_addr().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tocsin"))
            .arg("probe")
            .args(args)
            .output()
            .unwrap()
    };
    let ok = run(&["--type", "tcp", "--target", &open.to_string()]);
    assert_eq!(ok.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(stdout.starts_with(&format!("ok    tcp {open}")), "{stdout}");
    assert!(stdout.contains("phases: dns"), "{stdout}");

    let refused = run(&["--type", "tcp", "--target", &closed.to_string()]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stdout).contains("reason=connect_refused"));

    let invalid = run(&["--type", "tcp", "--target", "no-port"]);
    assert_eq!(invalid.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&invalid.stderr)
            .contains("probe.address: `no-port` is not host:port")
    );

    let option = run(&[
        "--type",
        "tcp",
        "--target",
        &open.to_string(),
        "--option",
        "expect_regex=never",
        "--timeout",
        "300ms",
    ]);
    assert_eq!(option.status.code(), Some(1), "the option was applied");
    assert!(String::from_utf8_lossy(&option.stdout).contains("reason=timeout"));
    drop(listener);
}

/// A target that redirects to `/probe` on tocsin itself, asking it to probe that target
/// again (issue 14): the loop is refused at its first turn (508 from tocsin's own `/probe`),
/// so one scrape costs the target a request or two, not thousands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_back_into_probe_is_refused_as_a_loop() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let dir = temp_dir();
    let target = Target::start().await;
    let toml = TestConfig::new(dir.path()).body(&format!(
        r#"
[[services]]
id = "web"
[[targets]]
id = "www"
service = "web"
probe = {{ type = "http", url = "{url}" }}

[modules.http_2xx]
probe = {{ type = "http" }}
timeout = "1s"
"#,
        url = target.url()
    ));
    let daemon = Daemon::start(&toml, dir.path()).await;

    // The hostile target: every request is redirected to tocsin's /probe of itself.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let itself = format!("http://{}/loop", listener.local_addr().unwrap());
    let back = format!(
        "{}?module=http_2xx&target={}",
        daemon.url("/probe"),
        url_escape(&itself)
    );
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&hits);
    let app = axum::Router::new().route(
        "/loop",
        axum::routing::get(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            let back = back.clone();
            async move { (axum::http::StatusCode::FOUND, [("location", back)]) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });

    let answer = reqwest::get(daemon.url(&format!(
        "/probe?module=http_2xx&target={}",
        url_escape(&itself)
    )))
    .await
    .unwrap();
    assert_eq!(answer.status(), 200);
    let text = answer.text().await.unwrap();
    assert_eq!(metric_sum(&text, "probe_success", &[]), 0.0, "{text}");
    assert_eq!(
        metric_sum(&text, "probe_http_status_code", &[]),
        508.0,
        "{text}"
    );
    let hits = hits.load(Ordering::SeqCst);
    assert!(hits <= 2, "the target was asked {hits} times");
    daemon.stop().await;
}

/// `target` as a query-string value.
fn url_escape(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// `[exporter]`: a bearer token, the targets allowed, and a cap on `/probe` runs at once
/// (which also count as probes in flight).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporter_settings_restrict_who_probes_what_and_how_many_at_once() {
    let dir = temp_dir();
    let target = Target::start().await;
    let token = write(dir.path(), "probe.token", "probe-secret\n");
    let toml = TestConfig::new(dir.path()).body(&format!(
        r#"
[[services]]
id = "web"
[[targets]]
id = "www"
service = "web"
probe = {{ type = "http", url = "{url}" }}

[modules.http_2xx]
probe = {{ type = "http" }}
timeout = "5s"

[exporter]
max_concurrent = 1
allowed_targets = ["127.0.0.1", "*.allowed.invalid"]
token_file = "{token}"
"#,
        url = target.url(),
        token = path_str(&token),
    ));
    let daemon = Daemon::start(&toml, dir.path()).await;
    let client = reqwest::Client::new();
    let probe = |target: String, token: Option<&'static str>| {
        let mut request = client.get(daemon.url(&format!(
            "/probe?module=http_2xx&target={}",
            url_escape(&target)
        )));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };

    let (status, body) = probe(target.url(), None).await;
    assert_eq!((status, body.as_str()), (401, "Bearer token required"));
    let (status, _) = probe(target.url(), Some("guess")).await;
    assert_eq!(status, 403);
    let (status, body) = probe(target.url(), Some("probe-secret")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(metric_sum(&body, "probe_success", &[]), 1.0, "{body}");
    // Loopback, but not the address allowed: refused before anything is sent.
    let elsewhere = format!("http://127.0.0.2:{}/health", target.addr.port());
    let (status, body) = probe(elsewhere.clone(), Some("probe-secret")).await;
    assert_eq!(status, 403);
    assert_eq!(
        body,
        format!("Target \"{elsewhere}\" is not in exporter.allowed_targets")
    );

    // A target that accepts and never answers holds the one slot.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}/", silent.local_addr().unwrap());
    let first = tokio::spawn(probe(silent_url.clone(), Some("probe-secret")));
    let (held, _) = tokio::time::timeout(common::PATIENCE, silent.accept())
        .await
        .expect("the first probe connects")
        .unwrap();
    let (status, body) = probe(target.url(), Some("probe-secret")).await;
    assert_eq!(status, 503);
    assert_eq!(
        body,
        "Too many probes at once (exporter.max_concurrent = 1)"
    );
    assert!(
        metric_sum(&daemon.metrics().await, "tocsin_probes_in_flight", &[]) >= 1.0,
        "a /probe run is a probe in flight"
    );
    drop(held);
    let (status, body) = first.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(metric_sum(&body, "probe_success", &[]), 0.0);
    let (status, _) = probe(target.url(), Some("probe-secret")).await;
    assert_eq!(status, 200, "the slot is free again");
    daemon.stop().await;
}
