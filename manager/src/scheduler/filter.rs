//! The filter pipeline and the spread choice, as pure functions over nodes and their load.

use std::collections::HashMap;
use std::fmt;

use std::collections::HashSet;

use shoal_proto::{Availability, Node, NodeState, PublishMode, Task};

use super::constraint::Constraint;

/// What is already placed on a node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeLoad {
    pub tasks: usize,
    pub by_service: HashMap<String, usize>,
    pub nano_cpus: i64,
    pub memory_bytes: i64,
    /// Host-mode ports bound on the node: (host address, port, protocol).
    pub host_ports: HashSet<HostPort>,
}

/// A port a task binds on its node (host mode): address ("" = all), port, protocol.
pub type HostPort = (String, u32, i32);

/// The host-mode ports `task` binds (an engine-chosen port, 0, never clashes).
pub fn host_ports(task: &Task) -> impl Iterator<Item = HostPort> + '_ {
    task.ports
        .iter()
        .filter(|p| p.publish_mode == PublishMode::Host as i32 && p.published_port != 0)
        .map(|p| (p.host_ip.clone(), p.published_port, p.protocol))
}

/// Whether two host bindings clash: same port and protocol, and one of them on every
/// address or both on the same one.
fn clashes(a: &HostPort, b: &HostPort) -> bool {
    a.1 == b.1 && a.2 == b.2 && (a.0.is_empty() || b.0.is_empty() || a.0 == b.0)
}

impl NodeLoad {
    pub fn add(&mut self, task: &Task) {
        self.add_share(&Share::of(task));
    }

    /// Count one task's share of the node.
    pub fn add_share(&mut self, share: &Share) {
        self.host_ports.extend(share.host_ports.iter().cloned());
        self.tasks += 1;
        match self.by_service.get_mut(&share.service_id) {
            Some(count) => *count += 1,
            None => {
                self.by_service.insert(share.service_id.clone(), 1);
            }
        }
        self.nano_cpus += share.nano_cpus;
        self.memory_bytes += share.memory_bytes;
    }

    /// Take back what [`NodeLoad::add_share`] counted.
    pub fn remove_share(&mut self, share: &Share) {
        for port in &share.host_ports {
            self.host_ports.remove(port);
        }
        self.tasks = self.tasks.saturating_sub(1);
        if let Some(count) = self.by_service.get_mut(&share.service_id) {
            *count -= 1;
            if *count == 0 {
                self.by_service.remove(&share.service_id);
            }
        }
        self.nano_cpus -= share.nano_cpus;
        self.memory_bytes -= share.memory_bytes;
    }
}

/// What one task takes of its node, kept so it can be given back when the task changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Share {
    pub node_id: String,
    pub service_id: String,
    pub nano_cpus: i64,
    pub memory_bytes: i64,
    pub host_ports: Vec<HostPort>,
}

impl Share {
    pub fn of(task: &Task) -> Self {
        let (nano_cpus, memory_bytes) = reservations(task);
        Self {
            node_id: task.node_id.clone(),
            service_id: task.service_id.clone(),
            nano_cpus,
            memory_bytes,
            host_ports: host_ports(task).collect(),
        }
    }
}

/// Why a node cannot take a task. The order is the order filters run in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// Not ready, paused or drained.
    Unavailable,
    /// A placement constraint does not hold (the expression).
    Constraint(String),
    /// The node already runs `Placement.max_replicas` tasks of the service (the limit).
    MaxReplicas(u64),
    /// A host-mode port the task publishes is bound there already ("8080/tcp").
    Port(String),
    Cpu,
    Memory,
}

/// Run the filters for `task` on `node`.
pub fn check(
    task: &Task,
    constraints: &[Constraint],
    node: &Node,
    load: &NodeLoad,
) -> Result<(), Rejection> {
    if node.state() != NodeState::Ready || node.availability() != Availability::Active {
        return Err(Rejection::Unavailable);
    }
    if let Some(c) = constraints.iter().find(|c| !c.matches(node)) {
        return Err(Rejection::Constraint(c.expr().to_string()));
    }
    let max = max_replicas(task);
    if max > 0 && load.by_service.get(&task.service_id).copied().unwrap_or(0) as u64 >= max {
        return Err(Rejection::MaxReplicas(max));
    }
    if let Some(port) =
        host_ports(task).find(|want| load.host_ports.iter().any(|have| clashes(want, have)))
    {
        return Err(Rejection::Port(format!(
            "{}/{}",
            port.1,
            shoal_proto::protocol_name(port.2)
        )));
    }
    let (cpu, mem) = reservations(task);
    let (cpu_total, mem_total) = node
        .description
        .as_ref()
        .and_then(|d| d.resources.as_ref())
        .map_or((0, 0), |r| (r.nano_cpus, r.memory_bytes));
    if cpu > 0 && load.nano_cpus + cpu > cpu_total {
        return Err(Rejection::Cpu);
    }
    if mem > 0 && load.memory_bytes + mem > mem_total {
        return Err(Rejection::Memory);
    }
    Ok(())
}

/// Among the nodes that passed the filters, the one the task should go to: fewest tasks of
/// the same service, then fewest tasks in all, then the lowest id (so ties are stable).
pub fn spread<'a>(
    service_id: &str,
    fits: impl Iterator<Item = (&'a Node, &'a NodeLoad)>,
) -> Option<&'a Node> {
    fits.min_by(|(a, la), (b, lb)| {
        let key = |n: &Node, l: &NodeLoad| {
            (
                l.by_service.get(service_id).copied().unwrap_or(0),
                l.tasks,
                n.id.clone(),
            )
        };
        key(a, la).cmp(&key(b, lb))
    })
    .map(|(n, _)| n)
}

/// Counts of rejections over all nodes, printed as the reason a task is pending.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Explanation {
    pub nodes: usize,
    pub unavailable: usize,
    pub constraints: usize,
    /// Nodes at the service's per-node limit, and that limit.
    pub max_replicas: usize,
    pub max_replicas_limit: u64,
    /// Nodes where a host-mode port is taken, and that port.
    pub ports: usize,
    pub port: String,
    pub cpu: usize,
    pub memory: usize,
}

impl Explanation {
    pub fn add(&mut self, rejection: &Rejection) {
        self.nodes += 1;
        match rejection {
            Rejection::Unavailable => self.unavailable += 1,
            Rejection::Constraint(_) => self.constraints += 1,
            Rejection::MaxReplicas(limit) => {
                self.max_replicas += 1;
                self.max_replicas_limit = *limit;
            }
            Rejection::Port(port) => {
                self.ports += 1;
                self.port.clone_from(port);
            }
            Rejection::Cpu => self.cpu += 1,
            Rejection::Memory => self.memory += 1,
        }
    }
}

fn nodes(n: usize) -> String {
    if n == 1 {
        "1 node".to_string()
    } else {
        format!("{n} nodes")
    }
}

fn has(n: usize) -> &'static str {
    if n == 1 {
        "has"
    } else {
        "have"
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nodes == 0 {
            return write!(f, "no suitable node (the cluster has no nodes)");
        }
        let mut parts = Vec::new();
        if self.unavailable > 0 {
            parts.push(format!(
                "{} not available for new tasks",
                nodes(self.unavailable)
            ));
        }
        if self.constraints > 0 {
            parts.push(format!(
                "scheduling constraints not satisfied on {}",
                nodes(self.constraints)
            ));
        }
        if self.max_replicas > 0 {
            let limit = self.max_replicas_limit;
            parts.push(format!(
                "{} already {} the maximum of {limit} {} of this service",
                nodes(self.max_replicas),
                if self.max_replicas == 1 {
                    "runs"
                } else {
                    "run"
                },
                if limit == 1 { "task" } else { "tasks" },
            ));
        }
        if self.ports > 0 {
            parts.push(format!(
                "host-mode port {} already in use on {}",
                self.port,
                nodes(self.ports)
            ));
        }
        if self.cpu > 0 {
            parts.push(format!(
                "{} {} insufficient CPU",
                nodes(self.cpu),
                has(self.cpu)
            ));
        }
        if self.memory > 0 {
            parts.push(format!(
                "{} {} insufficient memory",
                nodes(self.memory),
                has(self.memory)
            ));
        }
        write!(f, "no suitable node ({})", parts.join("; "))
    }
}

/// `Placement.max_replicas` of the task's spec; 0: no limit.
fn max_replicas(task: &Task) -> u64 {
    task.spec
        .as_ref()
        .and_then(|s| s.placement.as_ref())
        .map_or(0, |p| p.max_replicas)
}

fn reservations(task: &Task) -> (i64, i64) {
    task.spec
        .as_ref()
        .and_then(|s| s.reservations.as_ref())
        .map_or((0, 0), |r| (r.nano_cpus.max(0), r.memory_bytes.max(0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::{NodeDescription, NodeSpec, NodeStatus, Placement, Resources, TaskSpec};

    const GIB: i64 = 1 << 30;

    fn node(id: &str, state: NodeState, availability: Availability, label_zone: &str) -> Node {
        Node {
            id: id.into(),
            spec: Some(NodeSpec {
                availability: availability as i32,
                labels: [("zone".to_string(), label_zone.to_string())].into(),
                ..Default::default()
            }),
            description: Some(NodeDescription {
                hostname: id.into(),
                resources: Some(Resources {
                    nano_cpus: 2_000_000_000,
                    memory_bytes: 4 * GIB,
                }),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                state: state as i32,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn task(cpu: i64, mem: i64) -> Task {
        Task {
            service_id: "svc".into(),
            spec: Some(TaskSpec {
                reservations: Some(Resources {
                    nano_cpus: cpu,
                    memory_bytes: mem,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn task_max(max_replicas: u64) -> Task {
        let mut t = task(0, 0);
        if let Some(spec) = t.spec.as_mut() {
            spec.placement = Some(Placement {
                max_replicas,
                ..Default::default()
            });
        }
        t
    }

    fn running(of_service: usize) -> NodeLoad {
        NodeLoad {
            tasks: of_service,
            by_service: [("svc".to_string(), of_service)].into(),
            ..Default::default()
        }
    }

    #[test]
    fn filters_table() {
        use Availability::*;
        use NodeState::*;
        let zone_a = vec![Constraint::parse("node.labels.zone==a").expect("valid")];
        let loaded = NodeLoad {
            memory_bytes: 3 * GIB,
            nano_cpus: 1_500_000_000,
            ..Default::default()
        };
        type Case<'a> = (
            &'a str,
            Node,
            Task,
            &'a [Constraint],
            NodeLoad,
            Result<(), Rejection>,
        );
        let cases: Vec<Case> = vec![
            (
                "ready active fits",
                node("n", Ready, Active, "a"),
                task(0, 0),
                &[],
                NodeLoad::default(),
                Ok(()),
            ),
            (
                "down",
                node("n", Down, Active, "a"),
                task(0, 0),
                &[],
                NodeLoad::default(),
                Err(Rejection::Unavailable),
            ),
            (
                "drained",
                node("n", Ready, Drain, "a"),
                task(0, 0),
                &[],
                NodeLoad::default(),
                Err(Rejection::Unavailable),
            ),
            (
                "paused",
                node("n", Ready, Pause, "a"),
                task(0, 0),
                &[],
                NodeLoad::default(),
                Err(Rejection::Unavailable),
            ),
            (
                "constraint holds",
                node("n", Ready, Active, "a"),
                task(0, 0),
                &zone_a,
                NodeLoad::default(),
                Ok(()),
            ),
            (
                "constraint fails",
                node("n", Ready, Active, "b"),
                task(0, 0),
                &zone_a,
                NodeLoad::default(),
                Err(Rejection::Constraint("node.labels.zone==a".into())),
            ),
            (
                "memory fits",
                node("n", Ready, Active, "a"),
                task(0, GIB),
                &[],
                loaded.clone(),
                Ok(()),
            ),
            (
                "memory short",
                node("n", Ready, Active, "a"),
                task(0, 2 * GIB),
                &[],
                loaded.clone(),
                Err(Rejection::Memory),
            ),
            (
                "cpu short",
                node("n", Ready, Active, "a"),
                task(600_000_000, 0),
                &[],
                loaded.clone(),
                Err(Rejection::Cpu),
            ),
            (
                "cpu fits",
                node("n", Ready, Active, "a"),
                task(500_000_000, 0),
                &[],
                loaded,
                Ok(()),
            ),
            (
                "below the per-node maximum",
                node("n", Ready, Active, "a"),
                task_max(2),
                &[],
                running(1),
                Ok(()),
            ),
            (
                "at the per-node maximum",
                node("n", Ready, Active, "a"),
                task_max(2),
                &[],
                running(2),
                Err(Rejection::MaxReplicas(2)),
            ),
            (
                "no maximum",
                node("n", Ready, Active, "a"),
                task_max(0),
                &[],
                running(50),
                Ok(()),
            ),
            (
                "other services do not count toward the maximum",
                node("n", Ready, Active, "a"),
                task_max(1),
                &[],
                NodeLoad {
                    tasks: 3,
                    by_service: [("other".to_string(), 3)].into(),
                    ..Default::default()
                },
                Ok(()),
            ),
            (
                "constraints are checked before the maximum",
                node("n", Ready, Active, "b"),
                task_max(1),
                &zone_a,
                running(1),
                Err(Rejection::Constraint("node.labels.zone==a".into())),
            ),
        ];
        for (name, n, t, cs, load, want) in cases {
            assert_eq!(check(&t, cs, &n, &load), want, "{name}");
        }
    }

    #[test]
    fn spread_prefers_fewest_tasks_of_the_service_then_fewest_tasks() {
        let a = node("a", NodeState::Ready, Availability::Active, "");
        let b = node("b", NodeState::Ready, Availability::Active, "");
        let c = node("c", NodeState::Ready, Availability::Active, "");
        let mut la = NodeLoad::default();
        la.add(&task(0, 0));
        let lb = NodeLoad {
            tasks: 5,
            ..Default::default()
        };
        let lc = NodeLoad {
            tasks: 2,
            ..Default::default()
        };
        let chosen =
            spread("svc", [(&a, &la), (&b, &lb), (&c, &lc)].into_iter()).map(|n| n.id.as_str());
        assert_eq!(chosen, Some("c"));
    }

    #[test]
    fn explanations_read_like_swarm() {
        let mut e = Explanation::default();
        e.add(&Rejection::Unavailable);
        e.add(&Rejection::Memory);
        e.add(&Rejection::Memory);
        assert_eq!(
            e.to_string(),
            "no suitable node (1 node not available for new tasks; 2 nodes have insufficient memory)"
        );
        let mut e = Explanation::default();
        e.add(&Rejection::Constraint("node.role==worker".into()));
        e.add(&Rejection::Cpu);
        assert_eq!(
            e.to_string(),
            "no suitable node (scheduling constraints not satisfied on 1 node; 1 node has insufficient CPU)"
        );
        assert_eq!(
            Explanation::default().to_string(),
            "no suitable node (the cluster has no nodes)"
        );
        let mut e = Explanation::default();
        e.add(&Rejection::MaxReplicas(1));
        e.add(&Rejection::MaxReplicas(1));
        assert_eq!(
            e.to_string(),
            "no suitable node (2 nodes already run the maximum of 1 task of this service)"
        );
        let mut e = Explanation::default();
        e.add(&Rejection::Unavailable);
        e.add(&Rejection::MaxReplicas(3));
        assert_eq!(
            e.to_string(),
            "no suitable node (1 node not available for new tasks; 1 node already runs the maximum of 3 tasks of this service)"
        );
    }
}
