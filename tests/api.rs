//! The HTTP API contract: shapes, errors, authorization of write endpoints, the page.

mod common;

use common::test_config::{ADMIN_TOKEN, TestConfig};
use common::{Daemon, InProcess, Target, json, temp_dir, wait_for};

fn config(dir: &std::path::Path, target: &Target, token: bool) -> TestConfig {
    let config = TestConfig::new(dir).server("page_title", "\"Ops <status> & more\"");
    let config = if token { config.admin_token() } else { config };
    config.body(&format!(
        r#"
[[services]]
id = "web"
name = "<script>alert('x')</script>"
subscribers = 1000
[[targets]]
id = "www"
service = "web"
probe = {{ type = "http", url = "{url}" }}
"#,
        url = target.url(),
    ))
}

/// Error shapes, authorization and validation of the write API: requests made in-process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_and_write_authorization_in_process() {
    let dir = temp_dir();
    let target = Target::start().await;
    let app = InProcess::start(config(dir.path(), &target, true), dir.path()).await;
    let get = |path: &'static str| app.request("GET", path, None, None);

    let (status, content_type, body) = get("/api/v1/incidents/inc-999999").await;
    assert_eq!(status, 404);
    assert_eq!(content_type, "application/json");
    let body = json(&body);
    assert_eq!(body["error"]["code"], "not_found");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("inc-999999")
    );
    let (status, _, body) = get("/api/v1/incidents?status=sideways").await;
    assert_eq!(status, 400);
    assert_eq!(json(&body)["error"]["code"], "bad_request");
    let (status, _, body) = get("/api/v1/nowhere").await;
    assert_eq!(status, 404);
    assert_eq!(json(&body)["error"]["code"], "not_found");
    assert_eq!(get("/healthz").await.0, 200);
    assert_eq!(get("/readyz").await.0, 200);

    // Names from the configuration are text, never markup.
    let (status, content_type, html) = get("/").await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/html; charset=utf-8");
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
    assert!(!html.contains("<script>"));
    assert!(html.contains("<title>Ops &lt;status&gt; &amp; more</title>"));

    // Write endpoints: 401 without a token, 403 with a wrong one, then validation.
    let change = serde_json::json!({"summary": "x"});
    let post = |token: Option<&'static str>, body: serde_json::Value| {
        app.request("POST", "/api/v1/changes", token, Some(body))
    };
    assert_eq!(post(None, change.clone()).await.0, 401);
    let (status, _, body) = post(Some("guess"), change.clone()).await;
    assert_eq!(status, 403);
    assert_eq!(json(&body)["error"]["code"], "forbidden");
    let (status, _, _) = post(Some(ADMIN_TOKEN), serde_json::json!({"platform": "p"})).await;
    assert_eq!(status, 400, "summary is required");
    let unknown = serde_json::json!({"summary": "x", "colour": "red"});
    assert_eq!(
        post(Some(ADMIN_TOKEN), unknown).await.0,
        400,
        "unknown fields are refused"
    );
    let (status, _, body) = post(Some(ADMIN_TOKEN), change).await;
    assert_eq!(status, 201);
    assert!(json(&body)["id"].as_str().unwrap().starts_with("chg-"));
    app.stop().await;

    // Without a configured token the write API is disabled altogether.
    let dir = temp_dir();
    let app = InProcess::start(config(dir.path(), &target, false), dir.path()).await;
    let (status, _, body) = app
        .request("POST", "/-/reload", Some("anything"), None)
        .await;
    assert_eq!(status, 403);
    assert!(
        json(&body)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("admin_token_file")
    );
    app.stop().await;
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

    let html = get("/").await.unwrap().text().await.unwrap();
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

    let ok = reload(Some(ADMIN_TOKEN)).await.unwrap();
    assert_eq!(ok.status(), 200);

    std::fs::write(
        dir.path().join("tocsin.toml"),
        good.to_string()
            .replace("timeout = \"80ms\"", "timeout = \"2s\""),
    )
    .unwrap();
    let refused = reload(Some(ADMIN_TOKEN)).await.unwrap();
    assert_eq!(refused.status(), 422);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_config");
    // The same lines as check-config: where, then the key path and the problem.
    let message = body["error"]["message"].as_str().unwrap();
    let (location, issue) = message.split_once(": ").unwrap();
    let file = format!("{}:", dir.path().join("tocsin.toml").display());
    let line = location
        .strip_prefix(&file)
        .unwrap_or_else(|| panic!("{message}"));
    assert!(line.parse::<usize>().is_ok(), "{message}");
    assert_eq!(
        issue,
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
async fn changes_are_registered_and_become_suspected_causes_acknowledge_identifies() {
    let dir = temp_dir();
    let target = Target::start().await;
    let toml = config(dir.path(), &target, true).to_string().replace(
        "[[targets]]\nid = \"www\"\nservice = \"web\"",
        "[[targets]]\nid = \"www\"\nservice = \"web\"\nplatform = \"cms-1\"",
    );
    let daemon = Daemon::start(&toml, dir.path()).await;
    let client = reqwest::Client::new();
    let post = |path: &str, body: serde_json::Value| {
        client
            .post(daemon.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
    };

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

/// `[page]` opts the operator's detail into the public page: counts, platforms, causes
/// and regulatory reporting, each by its own key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_shows_operator_detail_only_when_configured() {
    let dir = temp_dir();
    let target = Target::start().await;
    target.set_status(500);
    let toml = TestConfig::new(dir.path())
        .instant_thresholds()
        .body(&format!(
            r#"
[page]
show_subscriber_counts = true
show_platforms = true
show_reporting = true
show_regions = false
[[services]]
id = "voicemail"
name = "Voicemail"
subscribers = 30_000_000
[[groups]]
id = "north"
service = "voicemail"
platform = "vm-a"
region = "north"
subscribers = 900_000
[[targets]]
id = "vm"
groups = ["north"]
probe = {{ type = "http", url = "{url}" }}
"#,
            url = target.url()
        ));
    let app = InProcess::start(toml, dir.path()).await;
    let open = || async {
        let (_, _, body) = app
            .request("GET", "/api/v1/incidents?status=open", None, None)
            .await;
        json(&body)["incidents"][0]["id"].as_str().map(String::from)
    };
    wait_for("an incident", || async { open().await.is_some() }).await;
    let id = open().await.unwrap();
    let (_, _, index) = app.request("GET", "/", None, None).await;
    assert!(index.contains("900\u{202f}000"), "counts shown: {index}");
    assert!(index.contains("vm-a"), "platforms shown");
    assert!(!index.contains("Regions"), "regions hidden");
    let (_, _, page) = app
        .request("GET", &format!("/incidents/{id}"), None, None)
        .await;
    assert!(page.contains("Regulatory reporting"), "{page}");
    assert!(page.contains("ofcom"), "{page}");
    assert!(page.contains("User-minutes"), "{page}");
    assert!(!page.contains("Suspected cause"), "causes stay hidden");
    app.stop().await;
}

/// Hostile or broken input to the API (issue 14), in-process: every error is the JSON
/// error shape with a fitting status, bodies are bounded, re-posting an id is idempotent or
/// a conflict, and times that would silence a service for ever are refused by field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_gets_json_errors_bounded_bodies_and_idempotent_ids() {
    let dir = temp_dir();
    let target = Target::start().await;
    let app = InProcess::start(config(dir.path(), &target, true), dir.path()).await;
    let token = Some(ADMIN_TOKEN);
    let error_code = |status: axum::http::StatusCode, content_type: &str, body: &str| {
        assert_eq!(content_type, "application/json", "{status}: {body}");
        let body = json(body);
        assert!(body["error"]["message"].is_string(), "{body}");
        body["error"]["code"].as_str().unwrap().to_string()
    };
    let content_type = |headers: &axum::http::HeaderMap| {
        headers
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };

    // A body over the limit (64 KiB) is 413, not 400.
    let big = serde_json::json!({"summary": "x".repeat(65 * 1024)});
    let (status, ct, body) = app
        .request("POST", "/api/v1/changes", token, Some(big))
        .await;
    assert_eq!(status, 413, "{}", &body[..body.len().min(200)]);
    assert_eq!(error_code(status, &ct, &body), "payload_too_large");

    // The extractors' rejections are JSON too.
    let (status, headers, body) = app
        .raw(
            "POST",
            "/api/v1/changes",
            token,
            Some("text/plain"),
            br#"{"summary": "x"}"#.to_vec(),
        )
        .await;
    assert_eq!(status, 415);
    assert_eq!(
        error_code(status, &content_type(&headers), &body),
        "unsupported_media_type"
    );
    let (status, headers, body) = app
        .raw(
            "POST",
            "/api/v1/incidents/inc-000001/acknowledge",
            token,
            Some("text/plain"),
            b"alice".to_vec(),
        )
        .await;
    assert_eq!(status, 415);
    assert_eq!(
        error_code(status, &content_type(&headers), &body),
        "unsupported_media_type"
    );
    let (status, headers, body) = app
        .raw(
            "POST",
            "/api/v1/changes",
            token,
            Some("application/json"),
            b"{\"summary\":".to_vec(),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        error_code(status, &content_type(&headers), &body),
        "bad_request"
    );
    for path in [
        "/api/v1/incidents?limit=abc",
        "/api/v1/changes?limit=-1",
        "/api/v1/incidents/%FF",
    ] {
        let (status, ct, body) = app.request("GET", path, None, None).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(error_code(status, &ct, &body), "bad_request", "{path}");
    }
    let (status, headers, body) = app
        .raw("DELETE", "/api/v1/changes", token, None, Vec::new())
        .await;
    assert_eq!(status, 405);
    assert_eq!(
        error_code(status, &content_type(&headers), &body),
        "method_not_allowed"
    );
    let allow = headers["allow"].to_str().unwrap();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    let (status, ct, body) = app.request("GET", "/nowhere", None, None).await;
    assert_eq!(status, 404);
    assert_eq!(error_code(status, &ct, &body), "not_found");

    // Re-posting a change id: the same body is an idempotent retry (200 with the stored
    // change), another body is a conflict; a retry without `at` matches any `at`.
    let at = chrono::Utc::now() - chrono::Duration::hours(1);
    let change = serde_json::json!({"id": "chg-1", "summary": "CMS upgrade", "at": at});
    let post =
        |path: &'static str, body: serde_json::Value| app.request("POST", path, token, Some(body));
    let (status, _, first) = post("/api/v1/changes", change.clone()).await;
    assert_eq!(status, 201, "{first}");
    let (status, _, again) = post("/api/v1/changes", change.clone()).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(json(&again), json(&first));
    let (status, _, body) = post(
        "/api/v1/changes",
        serde_json::json!({"id": "chg-1", "summary": "CMS upgrade"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body), json(&first));
    let (status, ct, body) = post(
        "/api/v1/changes",
        serde_json::json!({"id": "chg-1", "summary": "something else"}),
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(error_code(status, &ct, &body), "conflict");
    let (_, _, list) = app.request("GET", "/api/v1/changes", None, None).await;
    let list = json(&list);
    assert_eq!(list["changes"].as_array().unwrap().len(), 1);
    assert_eq!(list["changes"][0]["summary"], "CMS upgrade");

    // The same for maintenance ids.
    let now = chrono::Utc::now();
    let window = serde_json::json!({
        "id": "mnt-1", "services": ["web"],
        "starts_at": now + chrono::Duration::hours(1),
        "ends_at": now + chrono::Duration::hours(2),
    });
    let (status, _, first) = post("/api/v1/maintenances", window.clone()).await;
    assert_eq!(status, 201, "{first}");
    let (status, _, again) = post("/api/v1/maintenances", window.clone()).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(json(&again), json(&first));
    let mut longer = window.clone();
    longer["ends_at"] = serde_json::json!(now + chrono::Duration::hours(3));
    let (status, ct, body) = post("/api/v1/maintenances", longer).await;
    assert_eq!(status, 409);
    assert_eq!(error_code(status, &ct, &body), "conflict");

    // Absurd times: 400, naming the field.
    let refused = |body: serde_json::Value, field: &'static str| {
        let path = if body.get("services").is_some() {
            "/api/v1/maintenances"
        } else {
            "/api/v1/changes"
        };
        async move {
            let (status, ct, text) = post(path, body).await;
            assert_eq!(status, 400, "{text}");
            assert_eq!(error_code(status, &ct, &text), "bad_request");
            let message = json(&text)["error"]["message"]
                .as_str()
                .unwrap()
                .to_string();
            assert!(message.starts_with(&format!("{field}: ")), "{message}");
        }
    };
    refused(
        serde_json::json!({"services": ["web"], "starts_at": "0001-01-01T00:00:00Z",
                           "ends_at": "9999-12-31T23:59:59Z"}),
        "ends_at",
    )
    .await;
    refused(
        serde_json::json!({"services": ["web"],
                           "starts_at": now + chrono::Duration::days(800),
                           "ends_at": now + chrono::Duration::days(801)}),
        "starts_at",
    )
    .await;
    refused(
        serde_json::json!({"summary": "x", "at": "1990-01-01T00:00:00Z"}),
        "at",
    )
    .await;
    refused(
        serde_json::json!({"summary": "x", "at": now + chrono::Duration::days(1)}),
        "at",
    )
    .await;
    let (status, _, _) = post(
        "/api/v1/changes",
        serde_json::json!({"summary": "x", "at": "-0001-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(status, 400);
    let (_, _, list) = app.request("GET", "/api/v1/maintenances", None, None).await;
    assert_eq!(json(&list)["maintenances"].as_array().unwrap().len(), 1);
    app.stop().await;
}
