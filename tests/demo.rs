//! `tocsin demo` end to end, sped up: the scripted vm-a outage is detected, sized as the
//! The reference example (900 000 voicemail subscribers, 3%, every region, one platform), alerted
//! on the built-in sink, and resolved after recovery.

mod common;

use common::{metric_sum, wait_for};
use tokio_util::sync::CancellationToken;

async fn get(addr: std::net::SocketAddr, path: &str) -> serde_json::Value {
    reqwest::get(format!("http://{addr}{path}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_outage_is_detected_sized_alerted_and_resolved() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let token = CancellationToken::new();
    let demo = tokio::spawn(tocsin::demo::run(listener, 10.0, token.clone()));

    let voicemail_incident = || async {
        let list = get(addr, "/api/v1/incidents?service=voicemail").await;
        list["incidents"].as_array().unwrap().first().cloned()
    };
    wait_for("the voicemail incident to resolve", || async {
        voicemail_incident()
            .await
            .is_some_and(|i| i["status"] == "resolved")
    })
    .await;
    let incident = voicemail_incident().await.unwrap();
    assert_eq!(incident["services"], serde_json::json!(["voicemail"]));
    assert_eq!(incident["platforms"], serde_json::json!(["vm-a"]));
    assert_eq!(
        incident["regions"],
        serde_json::json!(["east", "north", "south", "west"])
    );
    assert_eq!(incident["peak_affected"], 900_000);
    assert_eq!(incident["per_service"]["voicemail"]["peak_share"], 0.03);
    assert_eq!(incident["scope"], "distributed");
    assert_eq!(incident["platform_concentrated"], true);
    assert_eq!(incident["severity"], "sev2");
    assert_eq!(incident["suspected_cause"]["change_id"], "chg-42");
    assert_eq!(incident["suspected_cause"]["confidence"], "high");
    let changes = get(addr, "/api/v1/changes").await;
    assert_eq!(changes["changes"][0]["platform"], "vm-a");

    let page = reqwest::get(format!("http://{addr}/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Example Telecom status (demo)"));
    assert!(page.contains("Voicemail"));

    wait_for("the sink to receive opened and resolved", || async {
        let text = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        metric_sum(
            &text,
            "tocsin_alert_deliveries_total",
            &[("result", "delivered")],
        ) >= 2.0
    })
    .await;
    token.cancel();
    demo.await.unwrap().unwrap();
}
