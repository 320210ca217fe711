//! Builds every component's part of the file and checks what spans components (a
//! receiver naming a service). Collects every problem.

use std::collections::HashMap;
use std::sync::Arc;

use super::{FileConfig, Settings};
use crate::alert::subscribers;
use crate::probe::module;
use crate::topology::config::{self as topology, Tables};
use crate::validation::Issues;

/// Takes the file: the topology is built from its targets as they go.
pub(super) fn validate(file: FileConfig) -> Result<Settings, Issues> {
    let mut issues = Issues::default();
    let server = file.server.build("server", &mut issues);
    let page = file.page.build("page", &mut issues);
    let storage = file.storage.build("storage", &mut issues);
    let cluster = file.cluster.build("cluster", &mut issues);
    let incidents = file
        .incidents
        .build(file.defaults.resolve_after, &file.reporting, &mut issues);
    let topology = topology::build(
        Tables {
            defaults: &file.defaults,
            services: &file.services,
            groups: &file.groups,
            targets: file.targets,
            maintenances: &file.maintenances,
        },
        &mut issues,
    );
    let mut receivers = Vec::new();
    let mut receiver_names = HashMap::new();
    for (i, r) in file.receivers.iter().enumerate() {
        let path = format!("receivers[{i}]");
        if r.name == subscribers::RECEIVER {
            issues.push(
                format!("{path}.name"),
                format!(
                    "`{}` is the name of the subscribers' own receiver ([subscriptions]): choose another",
                    subscribers::RECEIVER
                ),
            );
        }
        if let Some(first) = receiver_names.insert(r.name.as_str(), i) {
            issues.push(
                format!("{path}.name"),
                format!("duplicate name `{}` (first at receivers[{first}])", r.name),
            );
        }
        for (j, service) in r.services.iter().enumerate() {
            if topology.service_index(service).is_none() {
                issues.push(
                    format!("{path}.services[{j}]"),
                    format!("unknown service `{service}`"),
                );
            }
        }
        if let Some(spec) = r.build(&path, &mut issues) {
            receivers.push(spec);
        }
    }
    let subscriptions = file.subscriptions.build("subscriptions", &mut issues);
    receivers.extend(subscriptions.as_ref().map(|s| s.receiver()));
    let modules = module::build_all(&file.modules, &mut issues);
    let exporter = file.exporter.build("exporter", &mut issues);
    if !issues.is_empty() {
        return Err(issues);
    }
    let (Some(server), Some(page), Some(storage), Some(cluster), Some(incidents), Some(exporter)) =
        (server, page, storage, cluster, incidents, exporter)
    else {
        unreachable!("a component that fails to build records an issue");
    };
    Ok(Settings {
        modules,
        exporter,
        server,
        page,
        storage,
        vantage: file.vantage.name.clone(),
        cluster,
        topology: Arc::new(topology),
        receivers,
        incidents,
        subscriptions,
        metrics: file.metrics.build(),
    })
}
