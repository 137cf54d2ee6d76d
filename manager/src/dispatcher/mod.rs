//! The dispatcher: the managers' side of every agent's session.
//!
//! An agent opens a session (its node is registered or refreshed and marked ready), sends
//! heartbeats, receives the complete set of tasks assigned to its node whenever that set
//! changes, and reports task status. Status reports from all nodes are batched into one
//! store transaction every few milliseconds ([`batcher`]). A node whose heartbeats stop is
//! marked down by the leader's liveness loop ([`Dispatcher::run_liveness`]).
//!
//! gRPC types end here: the rest of the manager sees only the store.

mod batcher;
pub mod images;
pub mod networks;
mod service;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_proto::{FileContent, NodeState, NodeStatus, Task, TaskState};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::store::{Object, ReadTx, Store, StoreError};

pub use service::DispatcherApi;

/// How often agents beat by default.
pub const DEFAULT_HEARTBEAT_PERIOD: Duration = Duration::from_secs(5);
/// A node is down after this many missed periods.
const GRACE_PERIODS: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum DispatcherError {
    #[error("unknown session {0}: open a new session")]
    UnknownSession(String),
    #[error("node {0} is not part of the swarm")]
    NotInSwarm(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the dispatcher is shutting down")]
    Closed,
}

/// Shared state of the dispatcher; cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    period: Duration,
    /// Session id -> node id.
    sessions: Mutex<HashMap<String, String>>,
    /// Node id -> when it is declared down unless it beats.
    deadlines: Mutex<HashMap<String, Instant>>,
    statuses: batcher::Handle,
    managers: Mutex<Vec<String>>,
}

impl Dispatcher {
    pub fn new(store: Store, period: Duration) -> Self {
        let statuses = batcher::spawn(store.clone());
        Self {
            inner: Arc::new(Inner {
                store,
                period,
                sessions: Mutex::new(HashMap::new()),
                deadlines: Mutex::new(HashMap::new()),
                statuses,
                managers: Mutex::new(Vec::new()),
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn period(&self) -> Duration {
        self.inner.period
    }

    /// Manager addresses handed to agents for failover.
    pub fn set_managers(&self, addrs: Vec<String>) {
        *lock(&self.inner.managers) = addrs;
    }

    /// Manager addresses for agents to fail over to: the leader first, then the others as
    /// the store knows them, then the configured ones.
    pub fn managers(&self) -> Vec<String> {
        let mut known: Vec<(bool, String)> = self.inner.store.view(|r| {
            r.nodes()
                .filter_map(|n| n.manager_status.as_ref())
                .filter(|m| !m.addr.is_empty())
                .map(|m| (!m.leader, m.addr.clone()))
                .collect()
        });
        known.sort();
        let mut addrs: Vec<String> = known.into_iter().map(|(_, a)| a).collect();
        for addr in lock(&self.inner.managers).iter() {
            if !addrs.contains(addr) {
                addrs.push(addr.clone());
            }
        }
        addrs
    }

    pub(crate) fn node_of(&self, session_id: &str) -> Result<String, DispatcherError> {
        lock(&self.inner.sessions)
            .get(session_id)
            .cloned()
            .ok_or_else(|| DispatcherError::UnknownSession(session_id.to_string()))
    }

    pub(crate) fn open_session(&self, session_id: String, node_id: String) {
        self.beat(&node_id);
        lock(&self.inner.sessions).insert(session_id, node_id);
    }

    /// Agents' sessions open here now.
    pub fn session_count(&self) -> usize {
        lock(&self.inner.sessions).len()
    }

    pub(crate) fn close_session(&self, session_id: &str) {
        lock(&self.inner.sessions).remove(session_id);
    }

    pub(crate) fn beat(&self, node_id: &str) {
        let deadline = Instant::now() + self.inner.period * GRACE_PERIODS;
        lock(&self.inner.deadlines).insert(node_id.to_string(), deadline);
    }

    pub(crate) fn statuses(&self) -> &batcher::Handle {
        &self.inner.statuses
    }

    /// Leader loop: mark nodes down whose heartbeats stopped. Nodes the loop has not heard
    /// of yet get a full grace period from its start.
    pub async fn run_liveness(self, cancel: CancellationToken) {
        let start = Instant::now();
        let grace = self.inner.period * GRACE_PERIODS;
        let mut tick = tokio::time::interval(self.inner.period / 2);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = Instant::now();
            let expired: Vec<String> = self.inner.store.view(|r| {
                let deadlines = lock(&self.inner.deadlines);
                r.nodes()
                    .filter(|n| n.state() == NodeState::Ready)
                    .filter(|n| now > deadlines.get(&n.id).copied().unwrap_or(start + grace))
                    .map(|n| n.id.clone())
                    .collect()
            });
            if expired.is_empty() {
                continue;
            }
            let result = self
                .inner
                .store
                .update(|tx| {
                    for id in &expired {
                        if let Some(mut node) = tx.node(id) {
                            node.status = Some(NodeStatus {
                                state: NodeState::Down as i32,
                                message: "heartbeat failure".into(),
                                addr: node
                                    .status
                                    .as_ref()
                                    .map(|s| s.addr.clone())
                                    .unwrap_or_default(),
                            });
                            tx.update(Object::Node(node))?;
                        }
                    }
                    Ok::<_, StoreError>(())
                })
                .await;
            match result {
                Ok(()) => {
                    crate::metrics::recorded()
                        .heartbeat_misses
                        .inc_by(expired.len() as u64);
                    tracing::warn!(nodes = ?expired, "nodes missed their heartbeats: marked down")
                }
                Err(e) => tracing::warn!(error = %e, "marking nodes down failed"),
            }
        }
    }
}

/// A secret or config a node's tasks use: ("secret" or "config", id, version).
pub type FileRef = (&'static str, String, u64);

/// The secrets and configs the node's `tasks` use (those still wanted), at the version the
/// store holds now (a version only grows: a task of an older one is being replaced).
/// Cheap: no content is read or opened.
pub fn file_refs(r: &ReadTx<'_>, tasks: &[Task]) -> Vec<FileRef> {
    let mut wanted: BTreeSet<(&'static str, &str)> = BTreeSet::new();
    for task in tasks.iter().filter(|t| t.desired() <= TaskState::Running) {
        let Some(container) = task.spec.as_ref().and_then(|s| s.container.as_ref()) else {
            continue;
        };
        wanted.extend(container.secrets.iter().map(|s| ("secret", s.id.as_str())));
        wanted.extend(container.configs.iter().map(|c| ("config", c.id.as_str())));
    }
    let tables = r.tables();
    wanted
        .into_iter()
        .filter_map(|(kind, id)| {
            let version = match kind {
                "secret" => tables.secrets.get(id)?.version,
                _ => tables.configs.get(id)?.version,
            };
            Some((kind, id.to_string(), version))
        })
        .collect()
}

/// The content of `refs`, a secret's opened from its sealed form.
pub fn file_contents(r: &ReadTx<'_>, refs: &[FileRef]) -> Vec<FileContent> {
    let tables = r.tables();
    let key = secrets_key(r);
    refs.iter()
        .filter_map(|(kind, id, version)| {
            let data = if *kind == "secret" {
                let sealed = tables.secrets.get(id)?.spec.as_ref()?.data.as_slice();
                match crate::seal::open(&key, sealed) {
                    Ok(plain) => plain,
                    Err(e) => {
                        tracing::error!(secret = %id, "{e}");
                        return None;
                    }
                }
            } else {
                tables.configs.get(id)?.spec.as_ref()?.data.clone()
            };
            Some(FileContent {
                kind: (*kind).to_string(),
                id: id.clone(),
                version: *version,
                data,
            })
        })
        .collect()
}

/// The tasks a node must know about: assigned to it by the scheduler and not yet deleted.
pub fn assignments(r: &ReadTx<'_>, node_id: &str) -> Vec<Task> {
    r.tasks()
        .filter(|t| t.node_id == node_id && t.state() >= TaskState::Assigned)
        .cloned()
        .collect()
}

/// `tasks` with their registry credentials opened, for the node that runs them (and no
/// other node: they travel only in that node's assignments).
pub fn with_credentials(r: &ReadTx<'_>, mut tasks: Vec<Task>) -> Vec<Task> {
    let key = secrets_key(r);
    for t in &mut tasks {
        let Some(c) = t.spec.as_mut().and_then(|s| s.container.as_mut()) else {
            continue;
        };
        if c.sealed_registry_auth.is_empty() {
            continue;
        }
        match crate::seal::open(&key, &c.sealed_registry_auth) {
            Ok(plain) => c.registry_auth = prost::Message::decode(plain.as_slice()).ok(),
            Err(e) => tracing::error!(task = %t.id, "registry credentials: {e}"),
        }
        c.sealed_registry_auth.clear();
    }
    tasks
}

/// The key secrets and registry credentials are sealed with (empty before the first).
fn secrets_key(r: &ReadTx<'_>) -> Vec<u8> {
    r.cluster()
        .map(|c| c.secrets_key.clone())
        .unwrap_or_default()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
