//! `depends_on` end to end: a core DNS target and a voicemail target behind it, on real
//! HTTP servers on loopback. While the core is down, voicemail's failure joins the core's
//! incident and the receiver routed by voicemail hears nothing (it is inhibited); once
//! the core incident is over, a failure of voicemail alone reaches it.

mod common;

use common::test_config::TestConfig;
use common::{Daemon, Receiver, Target, metric_sum, temp_dir, wait_for};

fn config(
    dir: &std::path::Path,
    core: &Target,
    vm: &Target,
    noc: &Receiver,
    team: &Receiver,
) -> TestConfig {
    TestConfig::new(dir)
        .instant_thresholds()
        .default("resolve_after", "\"1s\"")
        .body(&format!(
            r#"
[[services]]
id = "core"

[[services]]
id = "voicemail"

[[groups]]
id = "core-dns"
service = "core"
subscribers = 1

[[groups]]
id = "vm-north"
service = "voicemail"
region = "north"
subscribers = 1000
depends_on = ["core-dns"]

[[targets]]
id = "resolver"
groups = ["core-dns"]
probe = {{ type = "http", url = "{core}" }}

[[targets]]
id = "vm-store"
groups = ["vm-north"]
probe = {{ type = "http", url = "{vm}" }}

[[receivers]]
name = "noc"
type = "webhook"
url = "{noc}"
services = ["core"]
update_interval = "100ms"

[[receivers]]
name = "vm-team"
type = "webhook"
url = "{team}"
services = ["voicemail"]
"#,
            core = core.url(),
            vm = vm.url(),
            noc = noc.url(),
            team = team.url(),
        ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependents_failure_joins_the_dependencys_incident_and_is_inhibited() {
    let dir = temp_dir();
    let core = Target::start().await;
    let vm = Target::start().await;
    let mut noc = Receiver::start().await;
    let mut team = Receiver::start().await;
    let daemon = Daemon::start(config(dir.path(), &core, &vm, &noc, &team), dir.path()).await;
    wait_for("both targets up", || async {
        let status = daemon.get_json("/api/v1/status").await;
        status["targets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["state"] == "up")
    })
    .await;

    core.set_status(503);
    let opened = noc.next().await;
    assert_eq!(opened.kind(), "incident.opened");
    assert_eq!(
        opened.event["incident"]["services"],
        serde_json::json!(["core"])
    );
    vm.set_status(503);
    // The update that tells the NOC voicemail joined through the core group.
    let joined = loop {
        let d = noc.next().await;
        if d.event["incident"]["services"].as_array().unwrap().len() == 2 {
            break d;
        }
    };
    let incident = &joined.event["incident"];
    assert_eq!(joined.kind(), "incident.updated");
    assert_eq!(
        incident["services"],
        serde_json::json!(["core", "voicemail"])
    );
    assert_eq!(incident["caused_by"], serde_json::json!(["core-dns"]));
    assert_eq!(incident["per_service"]["voicemail"]["through"], "core-dns");
    assert_eq!(incident["per_service"]["voicemail"]["affected"], 1000);
    // Routing to both receivers happens in the one pass that queued the NOC's update:
    // nothing was queued or sent for the voicemail team.
    let metrics = daemon.metrics().await;
    let team_labels = [("receiver", "vm-team")];
    assert_eq!(
        metric_sum(&metrics, "tocsin_alert_deliveries_total", &team_labels),
        0.0
    );
    assert_eq!(
        metric_sum(&metrics, "tocsin_alert_outbox_pending", &team_labels),
        0.0
    );
    assert!(team.drain().is_empty());
    let open = daemon.get_json("/api/v1/incidents?status=open").await;
    assert_eq!(open["incidents"].as_array().unwrap().len(), 1, "{open}");

    // Both recover; the incident resolves. Then voicemail fails alone: its own incident,
    // and its team hears of it.
    core.set_status(200);
    vm.set_status(200);
    loop {
        if noc.next().await.kind() == "incident.resolved" {
            break;
        }
    }
    vm.set_status(503);
    let own = team.next().await;
    assert_eq!(own.kind(), "incident.opened");
    assert_eq!(
        own.event["incident"]["services"],
        serde_json::json!(["voicemail"])
    );
    assert!(own.event["incident"].get("caused_by").is_none());
    assert_ne!(own.event["incident"]["id"], opened.event["incident"]["id"]);
    daemon.stop().await;
}
