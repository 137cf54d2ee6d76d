//! `/tasks`: list with Docker's filters (the CLI's hidden `_up-to-date` included) and
//! inspect.

use std::collections::HashMap;

use shoal_proto as pb;

use crate::backend::Backend;
use crate::convert::{enums, to_docker};
use crate::error::{ApiError, ApiResult};
use crate::filters::{truth, Filters};
use crate::http::{Reply, Request};
use crate::model;

const FILTERS: &[&str] = &[
    "id",
    "label",
    "name",
    "service",
    "node",
    "desired-state",
    "_up-to-date",
];

pub async fn list(backend: &Backend, request: &Request) -> ApiResult<Reply> {
    let filters = Filters::parse(request.param("filters"), FILTERS)?;
    for state in filters.values("desired-state") {
        if !matches!(state.as_str(), "running" | "shutdown" | "accepted") {
            return Err(ApiError::bad_request(format!(
                "Invalid desired-state filter: {state:?}: use running, shutdown or accepted"
            )));
        }
    }
    let up_to_date = match filters.values("_up-to-date") {
        [] => false,
        [one] => truth(one).ok_or_else(|| {
            ApiError::bad_request(format!(
                "invalid filter '_up-to-date={one}': use true or false"
            ))
        })?,
        _ => true,
    };
    // One service or node: the manager filters; several: each is asked for.
    let services = filters.values("service");
    let nodes = filters.values("node");
    let mut tasks = Vec::new();
    let service_keys: Vec<&str> = if services.is_empty() {
        vec![""]
    } else {
        services.iter().map(String::as_str).collect()
    };
    let node_keys: Vec<&str> = if nodes.is_empty() {
        vec![""]
    } else {
        nodes.iter().map(String::as_str).collect()
    };
    for service in &service_keys {
        for node in &node_keys {
            tasks.extend(backend.tasks(service, node).await?);
        }
    }
    // Up to date: made from the service's current spec. Labels: the service's, as
    // swarmkit matches a task's labels (`stack ps` lists by the stack's label).
    let services: HashMap<String, pb::Service> = if up_to_date || filters.has("label") {
        backend
            .services()
            .await?
            .services
            .into_iter()
            .map(|s| (s.id.clone(), s))
            .collect()
    } else {
        HashMap::new()
    };
    let networks = networks_of(backend, &tasks).await?;
    let shown: Vec<model::Task> = tasks
        .iter()
        .filter(|t| {
            let name = pb::names::task_name(&t.service_name, t.slot, &t.node_id);
            filters.any("id", |v| t.id.starts_with(v))
                && filters.any("name", |v| name.starts_with(v))
                && filters.any("desired-state", |v| desired_matches(t.desired(), v))
                && (!up_to_date
                    || services.get(&t.service_id).map(|s| s.spec_version) == Some(t.spec_version))
                && filters.labels_match("label", |k| {
                    services
                        .get(&t.service_id)?
                        .spec
                        .as_ref()?
                        .labels
                        .get(k)
                        .map(String::as_str)
                })
        })
        .map(|t| to_docker::task(t, &networks))
        .collect();
    Ok(Reply::ok(&shown))
}

/// Docker's `desired-state` filter: "running" takes tasks meant to run (or be ready to),
/// "shutdown" tasks meant to stop, "accepted" those still being placed.
fn desired_matches(desired: pb::TaskState, wanted: &str) -> bool {
    match wanted {
        "running" => desired <= pb::TaskState::Running && desired >= pb::TaskState::Ready,
        "shutdown" => desired > pb::TaskState::Running,
        "accepted" => desired <= pb::TaskState::Accepted,
        other => enums::parse_task_state(other) == Some(desired),
    }
}

/// The networks the tasks are attached to, by id (asked for only when some are).
async fn networks_of(
    backend: &Backend,
    tasks: &[pb::Task],
) -> ApiResult<HashMap<String, pb::Network>> {
    if tasks.iter().all(|t| t.networks.is_empty()) {
        return Ok(HashMap::new());
    }
    Ok(backend
        .networks()
        .await?
        .into_iter()
        .map(|n| (n.id.clone(), n))
        .collect())
}

pub async fn inspect(backend: &Backend, id: &str) -> ApiResult<Reply> {
    let tasks = backend.tasks("", "").await?;
    let task = tasks
        .iter()
        .find(|t| t.id == id)
        .or_else(|| {
            let mut prefixed = tasks.iter().filter(|t| t.id.starts_with(id));
            match (prefixed.next(), prefixed.next()) {
                (Some(one), None) => Some(one),
                _ => None,
            }
        })
        .ok_or_else(|| ApiError::not_found(format!("task {id} not found")))?;
    let networks = networks_of(backend, std::slice::from_ref(task)).await?;
    Ok(Reply::ok(&to_docker::task(task, &networks)))
}
