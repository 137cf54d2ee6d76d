//! The manager's in-memory object store.
//!
//! Every manager holds the whole cluster state in memory: nodes, services, tasks and the
//! cluster object, each versioned by the store's sequence number of the batch that last
//! wrote it. Reads are synchronous views of the committed state ([`Store::view`]). Writes
//! are transactions ([`Store::update`]): the closure reads the leader's speculative state
//! (committed plus the writes still on their way through Raft) and stages changes; the
//! batch is applied to the speculative state, queued, and the writer released before its
//! commit is awaited, so the next transaction builds on it at once. Queued batches go to
//! a [`Proposer`] (Raft in production, [`LocalProposer`] in tests) in order, several to a
//! log entry (group commit), and become visible to views only when applied, on every
//! manager alike, through [`StoreState`]'s [`shoal_raft::Applier`] implementation. Each
//! applied change is published on a watch stream ([`Store::watch`]) that the
//! orchestrators, the scheduler and the dispatcher run on.
//!
//! The store knows nothing of gRPC or of the components that use it.

mod apply;
pub mod journal;
mod pipeline;
mod table;
mod tx;

use std::sync::{Arc, RwLock, RwLockReadGuard};

use async_trait::async_trait;
use shoal_proto::{Cluster, Config, Network, Node, Secret, Service, Stack, StoreEntry, Task};
use tokio::sync::broadcast;

pub use apply::{decode_response as apply_response, StoreState};
pub use pipeline::Commit;
pub use table::{Services, Table, Tasks};
pub(crate) use tx::lookup;
pub use tx::{Lookup, ReadTx, WriteTx};

/// Capacity of the watch stream; a consumer that falls further behind gets
/// [`Event::Resync`]-style handling through `RecvError::Lagged` and must re-read the store.
const WATCH_CAPACITY: usize = 16 * 1024;

/// Errors from store transactions.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// Raft refused the write because this manager does not lead.
    #[error("this manager is not the leader")]
    NotLeader { leader_addr: Option<String> },
    #[error("{kind} {id} already exists")]
    Exists { kind: &'static str, id: String },
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    /// The object changed since the transaction read it.
    #[error("{kind} {id} changed concurrently (version {expected} read, {found} stored)")]
    Conflict {
        kind: &'static str,
        id: String,
        expected: u64,
        found: u64,
    },
    /// A batch holds an action this manager's version does not know (a newer leader's):
    /// refused whole rather than guessed at.
    #[error("unknown store action kind {0}: this manager runs an older version than the leader; upgrade it")]
    UnknownAction(i32),
    #[error("proposing the change failed: {0}")]
    Propose(String),
    /// The change cannot commit now (no quorum, no leader): said as Raft says it.
    #[error("{0}")]
    Unavailable(String),
    /// The transaction was built on a write that did not commit (refused, or lost with a
    /// leader change): nothing of it was written.
    #[error("this change was built on an earlier one that did not commit (store batch {seq} after {applied}); nothing was written: retry it")]
    Stale { seq: u64, applied: u64 },
    /// One transaction wrote more than a log entry may hold ([`MAX_BATCH_BYTES`]):
    /// refused before it reached Raft; nothing was written.
    #[error("this change is {bytes} bytes, over the {limit}-byte limit for one store write; nothing was written: make it in smaller steps")]
    TooLarge { bytes: usize, limit: usize },
}

/// The most one transaction may write, encoded: a larger batch is refused
/// ([`StoreError::TooLarge`]); a log entry groups batches up to this size in all, so no
/// Raft entry is larger (with its framing, under Raft's own limit: `raft_proposer.rs`
/// checks). Writers of many objects stop when [`WriteTx::is_full`] says so and write
/// the rest in another transaction.
pub const MAX_BATCH_BYTES: usize = (1 << 20) - (64 << 10);

/// [`WriteTx::is_full`] from this many bytes on: a quarter of [`MAX_BATCH_BYTES`], so the
/// object written after the check (up to 720 KiB) still fits.
pub const BULK_BATCH_BYTES: usize = MAX_BATCH_BYTES / 4;

/// The format of the store batches this manager writes, and the newest it reads. Raise it
/// when a batch may hold what an older manager cannot read (a new action or object kind):
/// older managers then stop at the first such batch instead of diverging.
///
/// 2: log entries are [`StoreEntry`]s of several batches, each with its sequence number.
pub const STORE_FORMAT: u32 = 2;

/// One object, as a transaction writes it ([`WriteTx`]); stored, it is a [`Stored`].
#[allow(clippy::large_enum_variant)] // moved one at a time, into its `Arc` when stored
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    Node(Node),
    Service(Service),
    Task(Task),
    Cluster(Cluster),
    Network(Network),
    Stack(Stack),
    Secret(Secret),
    Config(Config),
}

impl Object {
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Node(_) => "node",
            Object::Service(_) => "service",
            Object::Task(_) => "task",
            Object::Cluster(_) => "cluster",
            Object::Network(_) => "network",
            Object::Stack(_) => "stack",
            Object::Secret(_) => "secret",
            Object::Config(_) => "config",
        }
    }
}

/// One stored object as the tables hold it, behind its `Arc`: an event carries the very
/// object its write put in the tables, shared rather than copied (the watch stream keeps
/// 16 Ki events and every subscriber gets each one; with the object inline, its buffer
/// alone took ~22 MiB, and every apply copied each object it wrote).
#[derive(Clone, Debug, PartialEq)]
pub enum Stored {
    Node(Arc<Node>),
    Service(Arc<Service>),
    Task(Arc<Task>),
    Cluster(Arc<Cluster>),
    Network(Arc<Network>),
    Stack(Arc<Stack>),
    Secret(Arc<Secret>),
    Config(Arc<Config>),
}

impl From<Object> for Stored {
    fn from(object: Object) -> Self {
        match object {
            Object::Node(o) => Stored::Node(Arc::new(o)),
            Object::Service(o) => Stored::Service(Arc::new(o)),
            Object::Task(o) => Stored::Task(Arc::new(o)),
            Object::Cluster(o) => Stored::Cluster(Arc::new(o)),
            Object::Network(o) => Stored::Network(Arc::new(o)),
            Object::Stack(o) => Stored::Stack(Arc::new(o)),
            Object::Secret(o) => Stored::Secret(Arc::new(o)),
            Object::Config(o) => Stored::Config(Arc::new(o)),
        }
    }
}

/// A change applied to the store.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Created(Stored),
    Updated(Stored),
    Removed(Stored),
    /// The whole state was replaced (snapshot restore): re-read everything.
    Resync,
}

impl Event {
    /// The object the event is about, if any.
    pub fn object(&self) -> Option<&Stored> {
        match self {
            Event::Created(o) | Event::Updated(o) | Event::Removed(o) => Some(o),
            Event::Resync => None,
        }
    }

    pub fn is_task(&self) -> bool {
        matches!(self.object(), Some(Stored::Task(_)))
    }
}

/// The tables, and which batch was applied to them last. Ordered maps
/// keep listings stable; cloning the whole is O(1) ([`Table`]).
#[derive(Clone, Debug, Default)]
pub struct Tables {
    pub nodes: Table<Node>,
    pub services: Services,
    pub tasks: Tasks,
    pub clusters: Table<Cluster>,
    pub networks: Table<Network>,
    pub stacks: Table<Stack>,
    pub secrets: Table<Secret>,
    pub configs: Table<Config>,
    /// The sequence number of the last batch applied: the version it gave its objects.
    pub seq: u64,
    /// The id of the last batch applied; the next applies only if built on it.
    pub last_batch: u64,
}

impl Tables {
    /// The highest version of any object.
    fn max_version(&self) -> u64 {
        fn top<'a, T: 'a>(
            objects: impl Iterator<Item = &'a T>,
            meta: impl Fn(&T) -> &Option<shoal_proto::Meta>,
        ) -> u64 {
            objects
                .filter_map(|o| meta(o).as_ref().map(|m| m.version))
                .max()
                .unwrap_or(0)
        }
        [
            top(self.nodes.values(), |o| &o.meta),
            top(self.services.values(), |o| &o.meta),
            top(self.tasks.values(), |o| &o.meta),
            top(self.clusters.values(), |o| &o.meta),
            top(self.networks.values(), |o| &o.meta),
            top(self.stacks.values(), |o| &o.meta),
            top(self.secrets.values(), |o| &o.meta),
            top(self.configs.values(), |o| &o.meta),
        ]
        .into_iter()
        .max()
        .unwrap_or(0)
    }
}

/// Where committed batches go. Raft in a real manager; [`LocalProposer`] in tests.
#[async_trait]
pub trait Proposer: Send + Sync + 'static {
    /// Replicate `entry` and apply it to this manager's store; returns once applied, with
    /// one result per batch, in order. `Err`: the entry as a whole was not committed, or
    /// it is not known whether it was (every batch of it fails with that error).
    async fn propose(&self, entry: StoreEntry) -> Result<Vec<Result<(), StoreError>>, StoreError>;

    /// `Ok` when this manager leads now, else `NotLeader` naming the leader. A follower's
    /// state may lag: what is missing there is not known missing.
    fn require_leader(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Returns once this manager, if it leads, has applied every entry committed before
    /// its term, so a transaction built on its state builds on all of them (or after a
    /// bound: the batch is then refused as stale at worst, never applied on a stale view).
    async fn settle(&self) {}
}

/// Applies entries straight to the local state, with no replication. For tests of the
/// components above the store, and nothing else.
pub struct LocalProposer {
    state: Arc<StoreState>,
    index: std::sync::atomic::AtomicU64,
}

impl LocalProposer {
    pub fn new(state: Arc<StoreState>) -> Self {
        Self {
            state,
            index: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

#[async_trait]
impl Proposer for LocalProposer {
    async fn propose(&self, entry: StoreEntry) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let index = self.index.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        Ok(self.state.apply_batches(index, entry.batches))
    }
}

/// Handle to the store: cheap to clone.
#[derive(Clone)]
pub struct Store {
    state: Arc<StoreState>,
    proposer: Arc<dyn Proposer>,
    pipeline: pipeline::Pipeline,
}

impl Store {
    pub fn new(state: Arc<StoreState>, proposer: Arc<dyn Proposer>) -> Self {
        Self {
            pipeline: pipeline::Pipeline::new(proposer.clone()),
            state,
            proposer,
        }
    }

    /// A store with no replication, for tests of the components above it.
    pub fn in_memory() -> Self {
        let state = Arc::new(StoreState::new());
        let proposer = Arc::new(LocalProposer::new(state.clone()));
        Self::new(state, proposer)
    }

    pub fn state(&self) -> &Arc<StoreState> {
        &self.state
    }

    /// `Ok` when this manager leads (so its state has every committed write), else
    /// `NotLeader` naming the leader: before saying something does not exist.
    pub fn require_leader(&self) -> Result<(), StoreError> {
        self.proposer.require_leader()
    }

    /// Run `f` on a consistent read-only view of the committed state.
    pub fn view<T>(&self, f: impl FnOnce(&ReadTx<'_>) -> T) -> T {
        let started = std::time::Instant::now();
        let tables = self.tables();
        let value = f(&ReadTx::new(&tables));
        crate::metrics::recorded()
            .store_read_tx
            .observe(crate::metrics::since(started));
        value
    }

    /// Run `f` as a transaction: it reads the committed state plus every write still
    /// pending (lookups, iterators, uniqueness and version checks alike) and stages
    /// changes; the batch is checked and queued, and the next transaction may start while
    /// this one commits. Returns `f`'s value once the change is applied here, or the
    /// typed error it was refused with. A transaction that staged nothing proposes
    /// nothing.
    pub async fn update<T, E>(
        &self,
        f: impl FnOnce(&mut WriteTx<'_>) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let started = std::time::Instant::now();
        let (value, committed) = self.submit(f).await?;
        committed.await?;
        crate::metrics::recorded()
            .store_write_tx
            .observe(crate::metrics::since(started));
        Ok(value)
    }

    /// [`Store::update`] without waiting for the commit: returns `f`'s value once the
    /// batch is queued, with the commit still to await. A caller with many independent
    /// transactions queues them all (each builds on the ones before) and then awaits them:
    /// they commit together, and one that `f` refuses leaves the others be.
    pub async fn submit<T, E>(
        &self,
        f: impl FnOnce(&mut WriteTx<'_>) -> Result<T, E>,
    ) -> Result<(T, Commit), E>
    where
        E: From<StoreError>,
    {
        let mut spec = self.pipeline.begin(&self.state).await;
        let (value, (batch, action_bytes)) = {
            let mut tx = WriteTx::new(&spec);
            let value = f(&mut tx)?;
            (value, tx.into_batch())
        };
        if batch.actions.is_empty() {
            return Ok((value, Commit::nothing()));
        }
        let committed = self.pipeline.queue(&mut spec, batch, action_bytes)?;
        Ok((value, committed))
    }

    /// Subscribe to applied changes. Subscribe before reading the state you react to, so
    /// no change falls between the read and the subscription.
    pub fn watch(&self) -> broadcast::Receiver<Event> {
        self.state.subscribe()
    }

    fn tables(&self) -> RwLockReadGuard<'_, Tables> {
        self.state.read()
    }
}

pub(crate) fn read_lock<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) fn new_channel() -> broadcast::Sender<Event> {
    broadcast::channel(WATCH_CAPACITY).0
}

#[cfg(test)]
mod pipeline_tests;
#[cfg(test)]
mod tests;
