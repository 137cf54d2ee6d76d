//! Label keys and display helpers shared by the agent, the manager and the CLI.

/// Container label naming the task a container runs.
pub const LABEL_TASK_ID: &str = "shoal.task.id";
/// Container label naming the service of the task.
pub const LABEL_SERVICE_NAME: &str = "shoal.service.name";
/// Container label naming the service id of the task.
pub const LABEL_SERVICE_ID: &str = "shoal.service.id";
/// Container label naming the node whose agent created the container.
pub const LABEL_NODE_ID: &str = "shoal.node.id";

/// The host part of a node address "10.78.0.12:4242" (an address without a port is
/// returned as it is).
pub fn host_of(addr: &str) -> &str {
    match addr.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => addr,
    }
}

/// docker's short form of an id: its first 12 characters.
pub fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// docker's task name: `<service>.<slot>` for replicated tasks, `<service>.<node id>` for
/// global ones.
pub fn task_name(service_name: &str, slot: u64, node_id: &str) -> String {
    if slot > 0 {
        format!("{service_name}.{slot}")
    } else {
        format!("{service_name}.{node_id}")
    }
}
