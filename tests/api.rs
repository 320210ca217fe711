//! The HTTP API contract: shapes, errors, authorization of write endpoints, the page.

mod common;

use common::{Daemon, Target, path_str, temp_dir, wait_for, write};

fn config(dir: &std::path::Path, target: &Target, token: bool) -> String {
    let token_line = if token {
        let file = write(dir, "admin.token", "s3cret-token\n");
        format!("admin_token_file = \"{}\"", path_str(&file))
    } else {
        String::new()
    };
    format!(
        r#"
[server]
page_title = "Ops <status> & more"
{token_line}
[storage]
sqlite = "{db}"
[defaults]
interval = "100ms"
timeout = "80ms"
[[services]]
id = "web"
name = "<script>alert('x')</script>"
subscribers = 1000
[[targets]]
id = "www"
service = "web"
probe = {{ type = "http", url = "{url}" }}
"#,
        db = path_str(&dir.join("tocsin.db")),
        url = target.url(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_errors_page_and_health() {
    let dir = temp_dir();
    let target = Target::start().await;
    let daemon = Daemon::start(&config(dir.path(), &target, false), dir.path()).await;
    wait_for("a first result", || async {
        !daemon.get_json("/api/v1/status").await["targets"][0]["last_result"].is_null()
    })
    .await;

    let status = daemon.get_json("/api/v1/status").await;
    let service = &status["services"][0];
    assert_eq!(service["id"], "web");
    assert_eq!(service["status"], "operational");
    assert_eq!(service["affected"], 0);
    assert_eq!(service["share"], 0.0);
    assert_eq!(service["subscribers"], 1000);
    assert_eq!(status["groups"][0]["id"], "www");
    assert_eq!(status["groups"][0]["health"], "ok");
    let target_view = &status["targets"][0];
    assert_eq!(target_view["probe"], "http");
    assert_eq!(target_view["last_result"]["ok"], true);
    assert!(
        target_view["last_result"]["latency_seconds"]
            .as_f64()
            .unwrap()
            > 0.0
    );

    let client = reqwest::Client::new();
    let get = |path: &str| client.get(daemon.url(path)).send();
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    assert_eq!(get("/readyz").await.unwrap().status(), 200);

    let not_found = get("/api/v1/incidents/inc-999999").await.unwrap();
    assert_eq!(not_found.status(), 404);
    let body: serde_json::Value = not_found.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("inc-999999")
    );

    let bad = get("/api/v1/incidents?status=sideways").await.unwrap();
    assert_eq!(bad.status(), 400);
    let body: serde_json::Value = bad.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_request");

    let nowhere = get("/api/v1/nowhere").await.unwrap();
    assert_eq!(nowhere.status(), 404);
    let body: serde_json::Value = nowhere.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");

    // Names from the configuration are text, never markup.
    let page = get("/").await.unwrap();
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let html = page.text().await.unwrap();
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
    assert!(!html.contains("<script>"));
    assert!(html.contains("<title>Ops &lt;status&gt; &amp; more</title>"));
    assert!(html.contains("All systems operational"));

    // Filters: nothing for another service, a limit of one.
    target.set_status(500);
    wait_for("an incident", || async {
        !daemon.get_json("/api/v1/incidents?status=open").await["incidents"]
            .as_array()
            .unwrap()
            .is_empty()
    })
    .await;
    let other = daemon.get_json("/api/v1/incidents?service=voice").await;
    assert_eq!(other["incidents"], serde_json::json!([]));
    let web = daemon
        .get_json("/api/v1/incidents?service=web&limit=1")
        .await;
    assert_eq!(web["incidents"].as_array().unwrap().len(), 1);
    let html = get("/").await.unwrap().text().await.unwrap();
    assert!(html.contains("inc-000001"));
    assert!(html.contains("Partial outage") || html.contains("Major outage"));
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_endpoint_needs_the_token_and_refuses_a_bad_file() {
    let dir = temp_dir();
    let target = Target::start().await;
    let good = config(dir.path(), &target, true);
    let daemon = Daemon::start(&good, dir.path()).await;
    let client = reqwest::Client::new();
    let reload = |token: Option<&str>| {
        let mut request = client.post(daemon.url("/-/reload"));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        request.send()
    };

    let missing = reload(None).await.unwrap();
    assert_eq!(missing.status(), 401);
    let wrong = reload(Some("guess")).await.unwrap();
    assert_eq!(wrong.status(), 403);
    let body: serde_json::Value = wrong.json().await.unwrap();
    assert_eq!(body["error"]["code"], "forbidden");

    let ok = reload(Some("s3cret-token")).await.unwrap();
    assert_eq!(ok.status(), 200);

    std::fs::write(
        dir.path().join("tocsin.toml"),
        good.replace("timeout = \"80ms\"", "timeout = \"2s\""),
    )
    .unwrap();
    let refused = reload(Some("s3cret-token")).await.unwrap();
    assert_eq!(refused.status(), 422);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_config");
    assert_eq!(
        body["error"]["message"],
        "defaults.timeout: 2s must be shorter than the interval (100ms)"
    );
    let metrics = daemon.metrics().await;
    assert_eq!(
        common::metric_sum(&metrics, "tocsin_config_last_reload_successful", &[]),
        0.0
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_api_is_forbidden_without_a_configured_token() {
    let dir = temp_dir();
    let target = Target::start().await;
    let daemon = Daemon::start(&config(dir.path(), &target, false), dir.path()).await;
    let response = reqwest::Client::new()
        .post(daemon.url("/-/reload"))
        .bearer_auth("anything")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_are_registered_and_become_suspected_causes_acknowledge_identifies() {
    let dir = temp_dir();
    let target = Target::start().await;
    let toml = config(dir.path(), &target, true).replace(
        "[[targets]]\nid = \"www\"\nservice = \"web\"",
        "[[targets]]\nid = \"www\"\nservice = \"web\"\nplatform = \"cms-1\"",
    );
    let daemon = Daemon::start(&toml, dir.path()).await;
    let client = reqwest::Client::new();
    let post = |path: &str, body: serde_json::Value| {
        client
            .post(daemon.url(path))
            .bearer_auth("s3cret-token")
            .json(&body)
            .send()
    };

    // Write endpoints need the token.
    let anonymous = client
        .post(daemon.url("/api/v1/changes"))
        .json(&serde_json::json!({"summary": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let bad = post("/api/v1/changes", serde_json::json!({"platform": "cms-1"}))
        .await
        .unwrap();
    assert_eq!(bad.status(), 400, "summary is required");
    let unknown = post(
        "/api/v1/changes",
        serde_json::json!({"summary": "x", "colour": "red"}),
    )
    .await
    .unwrap();
    assert_eq!(unknown.status(), 400, "unknown fields are refused");

    let registered = post(
        "/api/v1/changes",
        serde_json::json!({"id": "chg-42", "platform": "cms-1", "summary": "CMS upgrade"}),
    )
    .await
    .unwrap();
    assert_eq!(registered.status(), 201);
    let change: serde_json::Value = registered.json().await.unwrap();
    assert_eq!(change["id"], "chg-42");
    assert_eq!(change["platform"], "cms-1");
    assert!(change["at"].is_string(), "`at` defaults to now");
    let generated = post(
        "/api/v1/changes",
        serde_json::json!({"service": "web", "summary": "DNS TTL"}),
    )
    .await
    .unwrap();
    let generated: serde_json::Value = generated.json().await.unwrap();
    assert!(generated["id"].as_str().unwrap().starts_with("chg-"));
    let list = daemon.get_json("/api/v1/changes").await;
    let ids: Vec<&str> = list["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&"chg-42"));

    target.set_status(500);
    let incident = loop {
        let open = daemon.get_json("/api/v1/incidents?status=open").await;
        if let Some(inc) = open["incidents"].as_array().unwrap().first() {
            break inc.clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    };
    let id = incident["id"].as_str().unwrap();
    assert_eq!(incident["suspected_cause"]["confidence"], "high");
    assert!(
        ["chg-42", generated["id"].as_str().unwrap()]
            .contains(&incident["suspected_cause"]["change_id"].as_str().unwrap()),
        "the most recent change on the platform or service"
    );
    assert_eq!(incident["recurrence"]["count_30d"], 1);

    let acked = post(
        &format!("/api/v1/incidents/{id}/acknowledge"),
        serde_json::json!({"by": "alice"}),
    )
    .await
    .unwrap();
    assert_eq!(acked.status(), 200);
    let acked: serde_json::Value = acked.json().await.unwrap();
    assert_eq!(acked["status"], "identified");
    let last = acked["timeline"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["event"], "acknowledged");
    assert_eq!(last["message"], "acknowledged by alice");
    let missing = post(
        "/api/v1/incidents/inc-999999/acknowledge",
        serde_json::json!({}),
    )
    .await
    .unwrap();
    assert_eq!(missing.status(), 404);

    // The acknowledgement and the changes survive a restart.
    daemon.stop().await;
    let daemon = Daemon::start(&toml, dir.path()).await;
    let incident = daemon.get_json(&format!("/api/v1/incidents/{id}")).await;
    assert_eq!(incident["status"], "identified");
    assert!(!incident["suspected_cause"].is_null());
    assert_eq!(
        daemon.get_json("/api/v1/changes").await["changes"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    daemon.stop().await;
}
