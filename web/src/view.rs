//! What the page draws: the swarm's nodes, services and live tasks, as JSON, read through
//! the Control API at each request.

use serde::Serialize;
use shoal_dockerapi::backend::call;
use shoal_dockerapi::Backend;
use shoal_proto::{
    ListNodesRequest, ListServicesRequest, ListTasksRequest, NodeRole, NodeState, TaskState,
    UpdateState,
};

#[derive(Debug, Serialize)]
pub struct View {
    pub nodes: Vec<NodeView>,
    pub services: Vec<ServiceView>,
    pub tasks: Vec<TaskView>,
}

#[derive(Debug, Serialize)]
pub struct NodeView {
    pub id: String,
    pub name: String,
    /// "manager" or "worker".
    pub role: &'static str,
    pub leader: bool,
    /// "ready", "down", "disconnected", "unknown".
    pub state: String,
    /// "active", "pause", "drain".
    pub availability: String,
}

#[derive(Debug, Serialize)]
pub struct ServiceView {
    pub id: String,
    pub name: String,
    /// "replicated", "global", "replicated-job", "global-job".
    pub mode: String,
    pub image: String,
    pub running: u64,
    pub desired: u64,
    /// The rolling update or rollback in progress, or last finished.
    pub update: Option<UpdateView>,
}

#[derive(Debug, Serialize)]
pub struct UpdateView {
    /// "updating", "paused", "completed", "rollback_started", ...
    pub state: String,
    pub message: String,
}

#[derive(Debug, Serialize)]
pub struct TaskView {
    pub id: String,
    pub service_id: String,
    pub service: String,
    pub slot: u64,
    pub node_id: String,
    /// docker's lowercase state name: "preparing", "running", ...
    pub state: &'static str,
    pub desired: &'static str,
    pub message: String,
    pub err: String,
    pub image: String,
    /// When it entered its state (ms since the Unix epoch, the agent's clock).
    pub since_ms: i64,
}

/// An enum's protobuf name without its prefix, lowercased: `NODE_STATE_READY` -> `ready`.
fn short(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or(name)
        .to_ascii_lowercase()
}

/// An image as the page shows it: without its pinned digest.
fn shown_image(image: &str) -> String {
    image.split('@').next().unwrap_or("").to_string()
}

/// The view now, or why it cannot be had (in the Control API's words).
pub async fn read(backend: &Backend) -> Result<View, tonic::Status> {
    let mut control = backend.control.clone();
    let nodes = control
        .list_nodes(call(ListNodesRequest {}))
        .await?
        .into_inner()
        .nodes;
    let listed = control
        .list_services(call(ListServicesRequest {}))
        .await?
        .into_inner();
    let tasks = control
        .list_tasks(call(ListTasksRequest::default()))
        .await?
        .into_inner()
        .tasks;
    let mut nodes: Vec<NodeView> = nodes
        .into_iter()
        .map(|n| {
            let spec = n.spec.clone().unwrap_or_default();
            let state = n
                .status
                .as_ref()
                .map(|s| s.state())
                .unwrap_or(NodeState::Unknown);
            NodeView {
                name: n
                    .description
                    .as_ref()
                    .map(|d| d.hostname.clone())
                    .unwrap_or_default(),
                role: if spec.role() == NodeRole::Manager {
                    "manager"
                } else {
                    "worker"
                },
                leader: n.manager_status.as_ref().is_some_and(|m| m.leader),
                state: short(state.as_str_name(), "NODE_STATE_"),
                availability: short(spec.availability().as_str_name(), "AVAILABILITY_"),
                id: n.id,
            }
        })
        .collect();
    // Managers first, then by name: the columns stay put as the swarm changes.
    nodes.sort_by(|a, b| (a.role, &a.name).cmp(&(b.role, &b.name)));
    let mut services: Vec<ServiceView> = listed
        .services
        .iter()
        .map(|s| {
            let spec = s.spec.clone().unwrap_or_default();
            let count = listed.replicas.get(&s.id).cloned().unwrap_or_default();
            ServiceView {
                id: s.id.clone(),
                name: spec.name.clone(),
                mode: short(spec.mode().as_str_name(), "SERVICE_MODE_").replace('_', "-"),
                image: spec
                    .task
                    .as_ref()
                    .and_then(|t| t.container.as_ref())
                    .map(|c| shown_image(&c.image))
                    .unwrap_or_default(),
                running: count.running,
                desired: count.desired,
                update: s.update_status.as_ref().and_then(|u| {
                    (u.state() != UpdateState::Unknown).then(|| UpdateView {
                        state: short(u.state().as_str_name(), "UPDATE_STATE_"),
                        message: u.message.clone(),
                    })
                }),
            }
        })
        .collect();
    services.sort_by(|a, b| a.name.cmp(&b.name));
    let mut tasks: Vec<TaskView> = tasks
        .into_iter()
        .filter(|t| t.desired() <= TaskState::Running && !t.node_id.is_empty())
        .map(|t| {
            let status = t.status.clone().unwrap_or_default();
            TaskView {
                service: t.service_name.clone(),
                service_id: t.service_id.clone(),
                slot: t.slot,
                node_id: t.node_id.clone(),
                state: t.state().docker_name(),
                desired: t.desired().docker_name(),
                message: status.message,
                err: status.err,
                image: t
                    .spec
                    .as_ref()
                    .and_then(|s| s.container.as_ref())
                    .map(|c| shown_image(&c.image))
                    .unwrap_or_default(),
                since_ms: status.timestamp_ms,
                id: t.id,
            }
        })
        .collect();
    tasks.sort_by(|a, b| (&a.service, a.slot, &a.id).cmp(&(&b.service, b.slot, &b.id)));
    Ok(View {
        nodes,
        services,
        tasks,
    })
}

#[cfg(test)]
mod tests {
    use super::short;

    #[test]
    fn enum_names_read_as_the_page_shows_them() {
        assert_eq!(short("NODE_STATE_READY", "NODE_STATE_"), "ready");
        assert_eq!(short("AVAILABILITY_DRAIN", "AVAILABILITY_"), "drain");
        assert_eq!(
            short("UPDATE_STATE_ROLLBACK_STARTED", "UPDATE_STATE_"),
            "rollback_started"
        );
    }
}
