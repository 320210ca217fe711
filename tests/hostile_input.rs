//! Hostile input at the daemon's HTTP edge: values no client should send, sent anyway,
//! against the real daemon on 127.0.0.1:0. Each must get an answer, never a dropped
//! connection from a panicking handler.

mod common;

use common::{Daemon, Target, metric_sum, path_str, temp_dir};

fn config(dir: &std::path::Path, target: &Target) -> String {
    format!(
        r#"
[storage]
sqlite = "{db}"
[defaults]
interval = "1s"
timeout = "500ms"
[[services]]
id = "web"
[[targets]]
id = "www"
service = "web"
probe = {{ type = "http", url = "{url}" }}

[modules.tcp_connect]
probe = {{ type = "tcp" }}
timeout = "2s"
"#,
        db = path_str(&dir.join("tocsin.db")),
        url = target.url(),
    )
}

/// `X-Prometheus-Scrape-Timeout-Seconds` is a float from the network: too large for a
/// Duration, infinite, NaN, negative or not a number, it leaves the module's timeout alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_survives_any_scrape_timeout_header() {
    let dir = temp_dir();
    let target = Target::start().await;
    let daemon = Daemon::start(&config(dir.path(), &target), dir.path()).await;
    let client = reqwest::Client::new();
    let url = daemon.url(&format!("/probe?module=tcp_connect&target={}", target.addr));
    for (value, expected) in [
        ("1e20", 2.0),
        ("1.8e308", 2.0),
        ("1e400", 2.0),
        ("18446744073709551616", 2.0),
        ("inf", 2.0),
        ("-inf", 2.0),
        ("NaN", 2.0),
        ("-1", 2.0),
        ("0", 2.0),
        ("0.5", 2.0),
        ("5e-324", 2.0),
        ("soon", 2.0),
        ("1.5", 1.0),
    ] {
        let response = client
            .get(&url)
            .header("X-Prometheus-Scrape-Timeout-Seconds", value)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{value}: {e}"));
        assert_eq!(response.status(), 200, "{value}");
        let text = response.text().await.unwrap();
        assert_eq!(
            metric_sum(&text, "probe_timeout_seconds", &[]),
            expected,
            "{value}: {text}"
        );
        assert_eq!(metric_sum(&text, "probe_success", &[]), 1.0, "{value}");
    }
    daemon.stop().await;
}
