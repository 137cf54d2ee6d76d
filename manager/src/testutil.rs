//! Fixtures for the manager's unit tests and benchmarks: nodes, services, and waiting on store conditions.

use std::time::Duration;

use shoal_proto::{
    Availability, ContainerSpec, EndpointMode, EndpointSpec, IpamConfig, Network, NetworkSpec,
    Node, NodeDescription, NodeRole, NodeSpec, NodeState, NodeStatus, PortConfig, PortProtocol,
    PublishMode, Resources, RestartPolicy, Service, ServiceMode, ServiceSpec, TaskSpec, TaskState,
    TaskStatus,
};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use prost::Message;
use shoal_proto::StoreEntry;

use crate::store::{LocalProposer, Object, Proposer, ReadTx, Store, StoreError, StoreState};

/// A store whose entries apply at once ([`LocalProposer`]), with the size of every entry
/// recorded: for tests and benchmarks of how writers split large work.
pub fn measured_store() -> (Store, Arc<MeasuredProposer>) {
    let state = Arc::new(StoreState::new());
    let proposer = Arc::new(MeasuredProposer {
        inner: LocalProposer::new(state.clone()),
        largest: AtomicUsize::new(0),
        entries: AtomicUsize::new(0),
    });
    (Store::new(state, proposer.clone()), proposer)
}

/// See [`measured_store`].
pub struct MeasuredProposer {
    inner: LocalProposer,
    largest: AtomicUsize,
    entries: AtomicUsize,
}

impl MeasuredProposer {
    /// The largest entry proposed so far, encoded, in bytes.
    pub fn largest(&self) -> usize {
        self.largest.load(Ordering::SeqCst)
    }

    /// How many entries were proposed.
    pub fn entries(&self) -> usize {
        self.entries.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Proposer for MeasuredProposer {
    async fn propose(&self, entry: StoreEntry) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        self.largest
            .fetch_max(entry.encoded_len(), Ordering::SeqCst);
        self.entries.fetch_add(1, Ordering::SeqCst);
        self.inner.propose(entry).await
    }
}

pub fn node(id: &str) -> Node {
    Node {
        id: id.into(),
        meta: None,
        spec: Some(NodeSpec {
            role: NodeRole::Worker as i32,
            availability: Availability::Active as i32,
            labels: Default::default(),
        }),
        description: Some(NodeDescription {
            hostname: id.into(),
            resources: Some(Resources {
                nano_cpus: 2_000_000_000,
                memory_bytes: 4 << 30,
            }),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            state: NodeState::Ready as i32,
            ..Default::default()
        }),
        manager_status: None,
        attachments: Vec::new(),
        cert_root_digest: String::new(),
    }
}

pub fn service(id: &str, replicas: u64) -> Service {
    Service {
        id: id.into(),
        meta: None,
        spec: Some(ServiceSpec {
            name: format!("{id}-name"),
            labels: Default::default(),
            task: Some(TaskSpec {
                container: Some(ContainerSpec {
                    image: "shoal-test/busybox:a".into(),
                    ..Default::default()
                }),
                restart: Some(RestartPolicy {
                    delay_ms: Some(0),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            mode: ServiceMode::Replicated as i32,
            replicas,
            ..Default::default()
        }),
        spec_version: 1,
        previous_spec: None,
        ..Default::default()
    }
}

pub async fn put(store: &Store, objects: Vec<Object>) {
    store
        .update(|tx| {
            for o in objects {
                tx.create(o)?;
            }
            Ok::<_, StoreError>(())
        })
        .await
        .expect("fixture write");
}

/// Create `objects`, as many per transaction as one holds ([`crate::store::WriteTx::is_full`]).
pub async fn put_many(store: &Store, objects: impl IntoIterator<Item = Object>) {
    let mut objects = objects.into_iter().peekable();
    while objects.peek().is_some() {
        store
            .update(|tx| {
                while !tx.is_full() {
                    match objects.next() {
                        Some(o) => tx.create(o)?,
                        None => break,
                    }
                }
                Ok::<_, StoreError>(())
            })
            .await
            .expect("fixture write");
    }
}

/// Set a task's observed state, as an agent would report it.
pub async fn report(store: &Store, task_id: &str, state: TaskState) {
    store
        .update(|tx| {
            let mut t = tx.task(task_id).expect("task exists");
            t.status = Some(TaskStatus {
                state: state as i32,
                ..Default::default()
            });
            tx.update(Object::Task(t))
        })
        .await
        .expect("report");
}

/// Wait until `cond` holds on the store (checked on every change), or panic after 10 s.
pub async fn wait_for(store: &Store, what: &str, cond: impl Fn(&ReadTx<'_>) -> bool) {
    wait_for_within(store, what, Duration::from_secs(10), cond).await
}

/// [`wait_for`], for up to `limit`. The condition is checked once per burst of changes
/// (whatever arrived while it was last checked), so a check that walks many objects
/// does not run once per change.
pub async fn wait_for_within(
    store: &Store,
    what: &str,
    limit: Duration,
    cond: impl Fn(&ReadTx<'_>) -> bool,
) {
    let mut events = store.watch();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if store.view(&cond) {
            return;
        }
        tokio::select! {
            _ = events.recv() => while events.try_recv().is_ok() {},
            _ = tokio::time::sleep_until(deadline) => panic!("timed out waiting for {what}"),
        }
    }
}

/// Tasks of a service desired to run.
pub fn live(r: &ReadTx<'_>, service_id: &str) -> usize {
    r.tasks_of_service(service_id)
        .filter(|t| t.desired() <= TaskState::Running)
        .count()
}

/// Change a node in place (availability, labels, state), as an operator or the dispatcher would.
pub async fn change_node(store: &Store, id: &str, change: impl FnOnce(&mut Node)) {
    store
        .update(|tx| {
            let mut n = tx.node(id).expect("node exists");
            change(&mut n);
            tx.update(Object::Node(n))
        })
        .await
        .expect("change node");
}

/// Tasks of a service desired to run that run: what serves.
pub fn serving(r: &ReadTx<'_>, service_id: &str) -> usize {
    r.tasks_of_service(service_id)
        .filter(|t| t.desired() == TaskState::Running && t.state() == TaskState::Running)
        .count()
}

/// Run the orchestrator, allocator and scheduler loops on `store`, as a leader does; cancel the token
/// to stop them.
pub fn start_leader_loops(store: &Store) -> tokio_util::sync::CancellationToken {
    let cancel = tokio_util::sync::CancellationToken::new();
    tokio::spawn(crate::orchestrator::Orchestrator::new(store.clone()).run(cancel.clone()));
    tokio::spawn(crate::allocator::Allocator::new(store.clone()).run(cancel.clone()));
    tokio::spawn(crate::scheduler::Scheduler::new(store.clone()).run(cancel.clone()));
    cancel
}

/// An overlay network's spec, with `subnet` ("" for one from the pool).
pub fn network_spec(name: &str, subnet: &str) -> NetworkSpec {
    NetworkSpec {
        name: name.into(),
        driver: "overlay".into(),
        ipam: Some(IpamConfig {
            subnet: subnet.into(),
            gateway: String::new(),
        }),
        ..Default::default()
    }
}

/// The routing mesh's ingress network, with id `id` (not allocated).
pub fn ingress_network(id: &str) -> Network {
    Network {
        id: id.into(),
        spec: Some(NetworkSpec {
            name: "ingress".into(),
            ingress: true,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A TCP port published as `published` for the container's `target`, in `mode`.
pub fn port(published: u32, target: u32, mode: PublishMode) -> PortConfig {
    PortConfig {
        published_port: published,
        target_port: target,
        publish_mode: mode as i32,
        protocol: PortProtocol::Tcp as i32,
        host_ip: String::new(),
    }
}

/// `service` publishing `ports` (VIP mode).
pub fn publish(mut service: Service, ports: Vec<PortConfig>) -> Service {
    if let Some(spec) = service.spec.as_mut() {
        spec.endpoint = Some(EndpointSpec {
            mode: EndpointMode::Vip as i32,
            ports,
        });
    }
    service
}
