//! Where a node finds an image it lacks and cannot pull: the other ready nodes, those
//! running a task of that image first (they surely hold it). The nodes themselves serve
//! the image; the manager only says whom to ask.

use shoal_proto::{ImageHolder, Node, NodeState, Task, TaskState};

/// At most this many nodes are named: a node that holds none of the first ones rarely
/// holds an image at all.
pub const MAX_HOLDERS: usize = 64;

/// The nodes `caller` may fetch `image` from, the likeliest first.
pub fn holders<'a>(
    nodes: impl Iterator<Item = &'a Node>,
    tasks: impl Iterator<Item = &'a Task>,
    caller: &str,
    image: &str,
) -> Vec<ImageHolder> {
    let running: std::collections::HashSet<&str> = tasks
        .filter(|t| t.state() == TaskState::Running && t.node_id != caller)
        .filter(|t| {
            t.spec
                .as_ref()
                .and_then(|s| s.container.as_ref())
                .is_some_and(|c| c.image == image)
        })
        .map(|t| t.node_id.as_str())
        .collect();
    let mut candidates: Vec<(bool, &str, ImageHolder)> = nodes
        .filter(|n| n.id != caller)
        .filter_map(|n| {
            let status = n.status.as_ref()?;
            if status.state != NodeState::Ready as i32 || status.addr.is_empty() {
                return None;
            }
            let name = n
                .description
                .as_ref()
                .map(|d| d.hostname.clone())
                .unwrap_or_default();
            Some((
                !running.contains(n.id.as_str()),
                n.id.as_str(),
                ImageHolder {
                    node_id: n.id.clone(),
                    name,
                    addr: status.addr.clone(),
                },
            ))
        })
        .collect();
    candidates.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    candidates
        .into_iter()
        .take(MAX_HOLDERS)
        .map(|(_, _, holder)| holder)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil;
    use shoal_proto::{ContainerSpec, TaskSpec, TaskStatus};

    fn ready(id: &str, addr: &str) -> Node {
        let mut node = testutil::node(id);
        if let Some(status) = node.status.as_mut() {
            status.addr = addr.into();
        }
        node
    }

    fn task(node: &str, image: &str, state: TaskState) -> Task {
        Task {
            id: format!("t-{node}-{image}"),
            node_id: node.into(),
            spec: Some(TaskSpec {
                container: Some(ContainerSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            status: Some(TaskStatus {
                state: state as i32,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn nodes_running_the_image_come_first_and_the_caller_and_unready_nodes_never() {
        let mut down = ready("d", "10.0.0.4:4242");
        if let Some(status) = down.status.as_mut() {
            status.state = NodeState::Down as i32;
        }
        let nodes = [
            ready("a", "10.0.0.1:4242"),
            ready("b", "10.0.0.2:4242"),
            ready("c", "10.0.0.3:4242"),
            down,
            ready("me", "10.0.0.9:4242"),
            ready("noaddr", ""),
        ];
        let tasks = [
            task("c", "app:1", TaskState::Running),
            task("b", "app:1", TaskState::Preparing),
            task("a", "other:1", TaskState::Running),
            task("me", "app:1", TaskState::Running),
        ];
        let found = holders(nodes.iter(), tasks.iter(), "me", "app:1");
        let ids: Vec<&str> = found.iter().map(|h| h.node_id.as_str()).collect();
        assert_eq!(ids, ["c", "a", "b"]);
        assert_eq!(found[0].addr, "10.0.0.3:4242");
        assert_eq!(found[0].name, "c");
    }
}
