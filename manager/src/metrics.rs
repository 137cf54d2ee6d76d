//! The manager's Prometheus metrics, with swarmkit's names where one exists.
//!
//! Two kinds. What happens is recorded as it happens, in [`recorded`]: Raft transaction
//! and snapshot latency, store transaction latency, scheduling delay, heartbeat misses,
//! proposals in flight. One shoald is one process and holds at most one manager, so these
//! are the process's own (tests that run several managers in one process see them summed).
//! What is, is read from the manager's state when scraped ([`Manager::register_metrics`]):
//! leadership, Raft's indexes, nodes, tasks, services and their updates.
//!
//! Serving them is shoald's; encoding is prometheus-client's.

use std::sync::OnceLock;
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use shoal_proto::{NodeState, TaskState, UpdateState};

use crate::store::ReadTx;
use crate::Manager;

/// What the manager records as it happens.
pub struct Recorded {
    pub raft_transaction: Histogram,
    pub raft_snapshot: Histogram,
    pub store_read_tx: Histogram,
    pub store_write_tx: Histogram,
    pub scheduling_delay: Histogram,
    pub proposals_in_flight: Gauge,
    pub heartbeat_misses: Counter,
}

/// The process's recorded metrics.
pub fn recorded() -> &'static Recorded {
    static RECORDED: OnceLock<Recorded> = OnceLock::new();
    RECORDED.get_or_init(|| Recorded {
        // 100 µs .. 3.3 s.
        raft_transaction: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
        raft_snapshot: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
        // 1 µs .. 33 ms: a read is a lookup in memory.
        store_read_tx: Histogram::new(exponential_buckets(0.000_001, 2.0, 16)),
        store_write_tx: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
        // 10 ms .. 164 s: an image pull is in it.
        scheduling_delay: Histogram::new(exponential_buckets(0.01, 2.0, 15)),
        proposals_in_flight: Gauge::default(),
        heartbeat_misses: Counter::default(),
    })
}

/// Seconds since `start`, for a histogram.
pub fn since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

/// Counts `proposals_in_flight` up while alive.
pub struct InFlight(());

impl InFlight {
    pub fn start() -> Self {
        recorded().proposals_in_flight.inc();
        Self(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        recorded().proposals_in_flight.dec();
    }
}

/// Register the recorded metrics in `registry` (which then shares them).
pub fn register_recorded(registry: &mut Registry) {
    let r = recorded();
    for (name, help, histogram) in [
        (
            "swarm_raft_transaction_latency",
            "Raft transaction latency: from proposal to applied",
            &r.raft_transaction,
        ),
        (
            "swarm_raft_snapshot_latency",
            "Raft snapshot create latency",
            &r.raft_snapshot,
        ),
        (
            "swarm_store_read_tx_latency",
            "Store read transaction latency",
            &r.store_read_tx,
        ),
        (
            "swarm_store_write_tx_latency",
            "Store write transaction latency: from begin to committed",
            &r.store_write_tx,
        ),
        (
            "swarm_dispatcher_scheduling_delay",
            "Scheduling delay: from a task's creation to its node reporting it running",
            &r.scheduling_delay,
        ),
    ] {
        registry.register_with_unit(name, help, Unit::Seconds, histogram.clone());
    }
    registry.register(
        "shoal_raft_proposals_in_flight",
        "Store entries proposed to Raft and not yet applied",
        r.proposals_in_flight.clone(),
    );
    registry.register(
        "shoal_dispatcher_heartbeat_misses",
        "Nodes marked down because their heartbeats stopped",
        r.heartbeat_misses.clone(),
    );
}

type Labelled = Family<Vec<(&'static str, String)>, Gauge>;

fn gauge(value: i64) -> Gauge {
    let g = Gauge::default();
    g.set(value);
    g
}

fn labelled(key: &'static str, values: impl IntoIterator<Item = (String, i64)>) -> Labelled {
    let family = Labelled::default();
    for (value, count) in values {
        family.get_or_create(&vec![(key, value)]).set(count);
    }
    family
}

/// A state's name as swarmkit's metrics label it: `running`, `ready`.
fn state_label(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or(name)
        .to_ascii_lowercase()
}

const NODE_STATES: [NodeState; 4] = [
    NodeState::Unknown,
    NodeState::Down,
    NodeState::Ready,
    NodeState::Disconnected,
];

const TASK_STATES: [TaskState; 14] = [
    TaskState::New,
    TaskState::Pending,
    TaskState::Assigned,
    TaskState::Accepted,
    TaskState::Preparing,
    TaskState::Ready,
    TaskState::Starting,
    TaskState::Running,
    TaskState::Complete,
    TaskState::Shutdown,
    TaskState::Failed,
    TaskState::Rejected,
    TaskState::Remove,
    TaskState::Orphaned,
];

/// What the store holds, counted: every state named, with 0 where none is.
struct Counts {
    nodes: Vec<(String, i64)>,
    tasks: Vec<(String, i64)>,
    services: i64,
    networks: i64,
    secrets: i64,
    configs: i64,
    /// (service name, update state, fraction of its tasks at the new spec and running).
    updates: Vec<(String, String, f64)>,
}

fn count(r: &ReadTx<'_>) -> Counts {
    let nodes = NODE_STATES
        .iter()
        .map(|state| {
            let n = r
                .nodes()
                .filter(|n| n.status.as_ref().map(|s| s.state).unwrap_or(0) == *state as i32)
                .count();
            (state_label(state.as_str_name(), "NODE_STATE_"), n as i64)
        })
        .collect();
    let mut by_state = [0i64; TASK_STATES.len()];
    for task in r.tasks() {
        if let Some(i) = TASK_STATES.iter().position(|s| *s == task.state()) {
            by_state[i] += 1;
        }
    }
    let tasks = TASK_STATES
        .iter()
        .zip(by_state)
        .map(|(state, n)| (state_label(state.as_str_name(), "TASK_STATE_"), n))
        .collect();
    let updates = r
        .services()
        .filter_map(|service| {
            let status = service.update_status.as_ref()?;
            let state = status.state();
            if !matches!(
                state,
                UpdateState::Updating
                    | UpdateState::Paused
                    | UpdateState::RollbackStarted
                    | UpdateState::RollbackPaused
            ) {
                return None;
            }
            let name = service.spec.as_ref()?.name.clone();
            let mut current = 0usize;
            let mut all = 0usize;
            for task in r
                .tasks_of_service(&service.id)
                .filter(|t| t.desired() <= TaskState::Running)
            {
                all += 1;
                if task.spec_version == service.spec_version && task.state() == TaskState::Running {
                    current += 1;
                }
            }
            let done = if all == 0 {
                0.0
            } else {
                current as f64 / all as f64
            };
            Some((
                name,
                state_label(state.as_str_name(), "UPDATE_STATE_"),
                done,
            ))
        })
        .collect();
    Counts {
        nodes,
        tasks,
        services: r.services().count() as i64,
        networks: r.networks().count() as i64,
        secrets: r.secrets().count() as i64,
        configs: r.configs().count() as i64,
        updates,
    }
}

impl Manager {
    /// Register what this manager's state says now in `registry`: leadership, Raft's
    /// term and indexes, the store's objects by kind and state, updates in progress,
    /// agents' sessions here.
    pub fn register_metrics(&self, registry: &mut Registry) {
        let status = self.raft().status();
        let leader = status.leader == Some(status.id);
        registry.register(
            "swarm_manager_leader",
            "Whether this manager is the Raft leader (1) or not (0)",
            gauge(leader as i64),
        );
        registry.register(
            "shoal_raft_term",
            "This manager's Raft term",
            gauge(status.term as i64),
        );
        registry.register(
            "shoal_raft_last_log_index",
            "The last entry in this manager's Raft log",
            gauge(status.last_log_index.unwrap_or(0) as i64),
        );
        if let Some(commit) = status.commit_index {
            registry.register(
                "shoal_raft_commit_index",
                "The last Raft entry a quorum holds (known on the leader)",
                gauge(commit as i64),
            );
        }
        registry.register(
            "shoal_raft_applied_index",
            "The last Raft entry applied to this manager's store",
            gauge(status.last_applied.unwrap_or(0) as i64),
        );
        registry.register(
            "shoal_dispatcher_sessions",
            "Agents' sessions open with this manager",
            gauge(self.dispatcher().session_count() as i64),
        );
        let counts = self.store().view(count);
        registry.register(
            "swarm_manager_nodes",
            "Nodes by state",
            labelled("state", counts.nodes),
        );
        registry.register(
            "swarm_manager_tasks_total",
            "Tasks by state",
            labelled("state", counts.tasks),
        );
        for (name, help, n) in [
            ("swarm_manager_services_total", "Services", counts.services),
            ("swarm_manager_networks_total", "Networks", counts.networks),
            ("swarm_manager_secrets_total", "Secrets", counts.secrets),
            ("swarm_manager_configs_total", "Configs", counts.configs),
        ] {
            registry.register(name, help, gauge(n));
        }
        let progress = Family::<
            Vec<(&'static str, String)>,
            Gauge<f64, std::sync::atomic::AtomicU64>,
        >::default();
        for (service, state, done) in counts.updates {
            progress
                .get_or_create(&vec![("service", service), ("state", state)])
                .set(done);
        }
        registry.register(
            "shoal_service_update_progress",
            "Services in a rolling update or rollback: the fraction of their tasks running at the new spec",
            progress,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_labels_are_swarmkits() {
        assert_eq!(state_label("TASK_STATE_RUNNING", "TASK_STATE_"), "running");
        assert_eq!(state_label("NODE_STATE_READY", "NODE_STATE_"), "ready");
        assert_eq!(
            state_label("UPDATE_STATE_ROLLBACK_STARTED", "UPDATE_STATE_"),
            "rollback_started"
        );
    }

    #[test]
    fn in_flight_counts_up_and_back_down() {
        let before = recorded().proposals_in_flight.get();
        let one = InFlight::start();
        let two = InFlight::start();
        assert!(recorded().proposals_in_flight.get() >= before + 2);
        drop(one);
        drop(two);
        // Other tests in this process may propose meanwhile; ours are gone.
        let mut registry = Registry::default();
        register_recorded(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry)
            .expect("encoding to a String");
        assert!(text.contains("# TYPE swarm_raft_transaction_latency_seconds histogram"));
        assert!(text.contains("# TYPE shoal_dispatcher_heartbeat_misses counter"));
        assert!(text.contains("shoal_dispatcher_heartbeat_misses_total "));
    }
}
