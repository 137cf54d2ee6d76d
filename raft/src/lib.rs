//! Shoal's Raft: consensus among managers and its durable storage.
//!
//! This crate owns the replicated log (openraft over a sled log store and state machine),
//! snapshots, and the manager-to-manager Raft RPCs (tonic, `shoal.v1.Raft`). It hands each
//! committed command, as opaque bytes, to an [`Applier`], and asks the applier for
//! snapshots of, and to restore, the whole applied state.
//!
//! Architecture invariant: this crate never knows what a command means. It does not
//! depend on the manager or know the store's object types; openraft's types stay behind
//! [`RaftNode`] so moving to another openraft version touches this crate only.

mod contacts;
mod elector;
mod network;
mod quorum;
mod server;
mod snapshot_points;
pub mod space;
mod store;
mod types;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use openraft::error::{ClientWriteError, ForwardToLeader, InitializeError};
use openraft::{BasicNode, ServerState, SnapshotPolicy};
use tokio::sync::watch;

use crate::contacts::Contacts;
pub use crate::contacts::PeerContact;
use crate::network::{NetworkFactory, MAX_MESSAGE_SIZE};
pub use crate::quorum::NoQuorum;
use crate::quorum::{Verdict, Windows};
use crate::server::PeerService;
use crate::types::{Command, TypeConfig};

/// A manager's Raft id, unique and stable for the life of the cluster.
pub type NodeId = u64;

/// Serializes a view of the applied state taken by [`Applier::snapshot`].
pub type SnapshotWriter = Box<dyn FnOnce() -> Vec<u8> + Send + Sync>;

/// Implemented by the manager's store; the raft crate never knows what commands mean.
pub trait Applier: Send + Sync + 'static {
    /// Apply one committed command (opaque bytes) at log `index`; return an opaque response
    /// (which may say the command was refused: every member refuses it alike).
    ///
    /// `Err` means this member cannot understand the command at all (written by a newer
    /// version): applying stops here and Raft on this member shuts down, so it never
    /// diverges from members that did apply it. The text says why and what to do.
    fn apply(&self, index: u64, command: &[u8]) -> Result<Vec<u8>, String>;
    /// The whole applied state as it is now, for a snapshot: taken between two applies,
    /// so it should be cheap (a copy-on-write view); the writer it returns serializes it
    /// later on a blocking thread while applies go on.
    fn snapshot(&self) -> SnapshotWriter;
    /// Replace the whole state with a snapshot's contents.
    fn restore(&self, snapshot: &[u8]) -> Result<(), String>;
}

/// Seals what Raft writes to disk (the log, the vote, snapshots) with the node's data key.
/// The raft crate never knows the key or the cipher.
pub trait AtRest: Send + Sync + std::fmt::Debug + 'static {
    fn seal(&self, plain: &[u8]) -> Result<Vec<u8>, String>;
    fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, String>;
}

/// How one Raft node runs.
#[derive(Clone, Debug)]
pub struct RaftConfig {
    /// This node's id; the caller must set it (0 is only the default).
    pub node_id: NodeId,
    /// Shoal's data directory; Raft keeps its sled database in `data_dir/raft`.
    pub data_dir: PathBuf,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Build a snapshot (and purge the log behind it) after this many new log entries, and
    /// up to half as many more by the node id (members stagger theirs).
    pub snapshot_every: u64,
    /// How to reach peers; plain HTTP/2 when `None` (tests). Shoal passes mTLS here.
    pub connector: Option<PeerConnector>,
    /// Seals everything written to disk; in clear when `None` (tests).
    pub at_rest: Option<Arc<dyn AtRest>>,
    /// TEST ONLY (the in-process harness): what to do to each message to a peer. `None`
    /// in production.
    pub peer_faults: Option<PeerFaults>,
}

/// What happens to a message this member sends a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerFault {
    Deliver,
    /// Sent twice; the second answer is the one used (a network that duplicates).
    Duplicate,
}

/// Decides, per target peer, what happens to each message sent to it.
#[derive(Clone)]
pub struct PeerFaults(pub Arc<dyn Fn(NodeId) -> PeerFault + Send + Sync>);

impl std::fmt::Debug for PeerFaults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerFaults")
    }
}

/// Makes the (lazy) channel to a peer at `host:port`: where transport security is decided.
#[derive(Clone)]
pub struct PeerConnector(pub Arc<ConnectFn>);

/// Dials `host:port`, lazily.
pub type ConnectFn = dyn Fn(&str) -> Result<tonic::transport::Channel, String> + Send + Sync;

impl std::fmt::Debug for PeerConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerConnector")
    }
}

impl Default for RaftConfig {
    fn default() -> Self {
        Self {
            node_id: 0,
            data_dir: PathBuf::from("/var/lib/shoal"),
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 300,
            election_timeout_max_ms: 600,
            snapshot_every: 5000,
            connector: None,
            at_rest: None,
            peer_faults: None,
        }
    }
}

/// Who leads, as this node currently sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Leadership {
    pub is_leader: bool,
    pub leader_id: Option<NodeId>,
    /// The leader's Raft address (`host:port`) from the membership.
    pub leader_addr: Option<String>,
    pub term: u64,
}

/// A point-in-time view of this node's Raft state.
#[derive(Clone, Debug)]
pub struct RaftStatus {
    pub id: NodeId,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub last_applied: Option<u64>,
    /// The last entry a quorum of voters holds: known on the leader only.
    pub commit_index: Option<u64>,
    pub leader: Option<NodeId>,
    /// Voting members and their addresses.
    pub voters: Vec<(NodeId, String)>,
    /// Non-voting members and their addresses.
    pub learners: Vec<(NodeId, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum RaftError {
    /// The write must go to the leader; forward it there.
    #[error("not the leader")]
    NotLeader {
        leader_id: Option<NodeId>,
        leader_addr: Option<String>,
    },
    #[error("raft storage: {0}")]
    Storage(String),
    #[error("restoring the state machine from the raft snapshot: {0}")]
    Restore(String),
    #[error("invalid raft config: {0}")]
    Config(String),
    #[error("changing raft membership: {0}")]
    Membership(String),
    /// The change would leave no voter.
    #[error("the last manager cannot leave raft")]
    LastVoter,
    #[error("raft has stopped: {0}")]
    Stopped(String),
    /// This member cannot reach a majority: nothing it is asked to write commits.
    #[error("{0}")]
    NoQuorum(NoQuorum),
    /// A write this member leads was not confirmed before it lost its majority: it applies
    /// only if a majority reconnects in time.
    #[error("{0}; the change was not confirmed and applies only if a majority reconnects in time")]
    Unconfirmed(NoQuorum),
    /// The disk under the Raft directory is (nearly) full: nothing was written.
    #[error("{0}")]
    NoSpace(space::NoSpace),
    /// No leader is heard, and the election has not ended within the wait.
    #[error("no leader: an election has not ended within {0:?}; retry shortly")]
    NoLeader(std::time::Duration),
    /// A proposal larger than [`MAX_ENTRY_BYTES`]: refused before it reached the log.
    #[error(
        "a raft entry of {0} bytes is over the {MAX_ENTRY_BYTES}-byte limit; nothing was written"
    )]
    TooLarge(usize),
    #[error("raft: {0}")]
    Raft(String),
}

/// The most entries one AppendEntries carries: openraft's default. Fewer (32 was tried)
/// slows a follower's catch-up after a partition enough that a test of a one-way cut
/// right after a heal no longer sees its refusal in time.
pub const MAX_PAYLOAD_ENTRIES: u64 = 300;
/// The largest entry [`RaftNode::propose`] takes; a peer's message limit
/// (`network::MAX_MESSAGE_SIZE`) holds an AppendEntries of [`MAX_PAYLOAD_ENTRIES`] of them.
/// The store caps its entries below this.
pub const MAX_ENTRY_BYTES: usize = 1 << 20;

type OpenraftError<E = std::convert::Infallible> = openraft::error::RaftError<NodeId, E>;

impl From<ClientWriteError<NodeId, BasicNode>> for RaftError {
    fn from(e: ClientWriteError<NodeId, BasicNode>) -> Self {
        match e {
            ClientWriteError::ForwardToLeader(f) => f.into(),
            ClientWriteError::ChangeMembershipError(e) => RaftError::Membership(e.to_string()),
        }
    }
}

impl From<ForwardToLeader<NodeId, BasicNode>> for RaftError {
    fn from(f: ForwardToLeader<NodeId, BasicNode>) -> Self {
        RaftError::NotLeader {
            leader_id: f.leader_id,
            leader_addr: f.leader_node.map(|n| n.addr),
        }
    }
}

impl<E: Into<RaftError>> From<OpenraftError<E>> for RaftError
where
    E: std::error::Error,
{
    fn from(e: OpenraftError<E>) -> Self {
        match e {
            openraft::error::RaftError::APIError(e) => e.into(),
            openraft::error::RaftError::Fatal(f) => RaftError::Stopped(f.to_string()),
        }
    }
}

impl From<InitializeError<NodeId, BasicNode>> for RaftError {
    fn from(e: InitializeError<NodeId, BasicNode>) -> Self {
        RaftError::Membership(format!("initializing the cluster: {e}"))
    }
}

impl From<std::convert::Infallible> for RaftError {
    fn from(e: std::convert::Infallible) -> Self {
        match e {}
    }
}

/// Entry points for the fuzz targets (shoal-tests' `fuzz` module): what the peer service
/// decodes from the network, without a running node.
#[doc(hidden)]
pub mod fuzzing {
    use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};

    use crate::types::{decode, TypeConfig};
    use crate::NodeId;

    /// Decode `data` as each peer message the Raft service takes; errors are fine.
    pub fn decode_peer_messages(data: &[u8]) {
        let _ = decode::<AppendEntriesRequest<TypeConfig>>(data);
        let _ = decode::<VoteRequest<NodeId>>(data);
        let _ = decode::<InstallSnapshotRequest<TypeConfig>>(data);
        let _ = decode::<crate::elector::PreVoteRequest>(data);
    }
}

/// The two Raft log stores for `examples/log_bench.rs`, each in clear in a directory of its
/// own and driven through openraft's storage trait as openraft drives it; not an API.
#[doc(hidden)]
pub mod bench {
    use std::future::Future;
    use std::path::Path;
    use std::pin::Pin;
    use std::task::Poll;

    use openraft::storage::RaftLogStorageExt;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

    use crate::space::{Space, RESERVE};
    use crate::store::{LogStore, SegmentLog};
    use crate::types::{Command, StorageError, TypeConfig};
    use crate::RaftError;

    type Append = Pin<Box<dyn Future<Output = Result<(), StorageError>> + Send>>;

    /// One log store; clones share it.
    #[derive(Clone)]
    pub struct Log {
        store: Store,
    }

    #[derive(Clone)]
    enum Store {
        Sled(LogStore),
        Segments(SegmentLog),
    }

    impl Log {
        /// The sled log, as `RaftNode` opens it, in `dir`.
        pub fn sled(dir: &Path) -> Result<Self, RaftError> {
            let (db, disk) = crate::store::open_db(dir, None)?;
            let log = LogStore::new(&db, disk, Space::new(dir, RESERVE))
                .map_err(|e| RaftError::Storage(format!("opening the raft log tree: {e}")))?;
            Ok(Self {
                store: Store::Sled(log),
            })
        }

        /// The segmented log in `dir/log` (its database, which only decides the sealing,
        /// in `dir/db`).
        pub fn segments(dir: &Path) -> Result<Self, RaftError> {
            let (_db, disk) = crate::store::open_db(&dir.join("db"), None)?;
            let log = SegmentLog::open(&dir.join("log"), disk, Space::new(dir, RESERVE))
                .map_err(|e| RaftError::Storage(e.to_string()))?;
            Ok(Self {
                store: Store::Segments(log),
            })
        }

        /// Hands the store entry `index` (term 1) holding `command`, and returns once the
        /// store has taken it (written and readable), with the wait for it to be on disk.
        /// Entries must be submitted in index order.
        pub async fn submit(&self, index: u64, command: Vec<u8>) -> Result<Durable, RaftError> {
            let entry = Entry::<TypeConfig> {
                log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
                payload: EntryPayload::Normal(Command(command)),
            };
            let mut append: Append = match self.store.clone() {
                Store::Sled(mut log) => Box::pin(async move { log.blocking_append([entry]).await }),
                Store::Segments(mut log) => {
                    Box::pin(async move { log.blocking_append([entry]).await })
                }
            };
            // The first poll runs the store's append up to the wait for its callback:
            // neither store yields before that while the disk has room.
            match futures::poll!(append.as_mut()) {
                Poll::Ready(result) => result.map(|()| Durable(None)).map_err(storage),
                Poll::Pending => Ok(Durable(Some(append))),
            }
        }
    }

    /// The wait for one submitted entry to be on disk.
    pub struct Durable(Option<Append>);

    impl Durable {
        pub async fn wait(self) -> Result<(), RaftError> {
            match self.0 {
                Some(append) => append.await.map_err(storage),
                None => Ok(()),
            }
        }
    }

    fn storage(e: StorageError) -> RaftError {
        RaftError::Storage(e.to_string())
    }
}

/// How often a waiting write or election wait looks at the quorum again.
const QUORUM_CHECK: std::time::Duration = std::time::Duration::from_millis(200);

/// One running Raft node. Cheap to clone; all clones drive the same node.
#[derive(Clone)]
pub struct RaftNode {
    id: NodeId,
    raft: openraft::Raft<TypeConfig>,
    db: sled::Db,
    leadership: watch::Receiver<Leadership>,
    contacts: Contacts,
    windows: Windows,
    /// Room on the Raft directory's disk: a change is refused without it.
    space: space::Space,
    /// When a leader was last heard, and the election's timing (the elector's).
    leader_contact: elector::LeaderContact,
    timing: elector::Timing,
    last_log: elector::LastLog,
    /// The elector and the snapshot points, stopped and awaited by `shutdown` (the
    /// elector reads the log, which must be let go).
    helpers: Arc<Helpers>,
    /// Held across each membership change, from reading the voters to the commit: two
    /// managers promoted at once must not each write the voters without the other.
    membership: Arc<tokio::sync::Mutex<()>>,
}

/// The tasks beside openraft (the elector, the snapshot points) and their stop signal.
struct Helpers {
    stop: watch::Sender<bool>,
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl RaftNode {
    /// Opens (or creates) the Raft storage under `cfg.data_dir/raft`, restores the latest
    /// snapshot into `applier`, re-applies committed log entries after it, and starts
    /// openraft.
    pub async fn open(cfg: RaftConfig, applier: Arc<dyn Applier>) -> Result<Self, RaftError> {
        let config = openraft::Config {
            cluster_name: "shoal".to_string(),
            heartbeat_interval: cfg.heartbeat_interval_ms,
            election_timeout_min: cfg.election_timeout_min_ms,
            election_timeout_max: cfg.election_timeout_max_ms,
            // Snapshots are triggered at points spaced by the member's rank
            // (snapshot_points.rs), not all members at the same entry.
            snapshot_policy: SnapshotPolicy::Never,
            // Keep some log behind a snapshot so a briefly lagging follower catches up from
            // the log instead of a whole snapshot.
            max_in_snapshot_log_to_keep: cfg.snapshot_every.min(1000),
            // Per snapshot chunk (up to 3 MiB); openraft's 200ms default is tight off-host.
            install_snapshot_timeout: 2000,
            max_payload_entries: MAX_PAYLOAD_ENTRIES,
            // Shoal's elector campaigns, after a pre-vote (elector.rs); openraft's own
            // timer would let a shorter log go first and lose rounds.
            enable_elect: false,
            ..Default::default()
        }
        .validate()
        .map_err(|e| RaftError::Config(e.to_string()))?;

        let dir = cfg.data_dir.join("raft");
        let (db, log_store, state_machine) =
            store::open(&dir, applier, cfg.at_rest.clone()).await?;
        let contacts = Contacts::default();
        let channels = network::Channels::default();
        let log_reader = log_store.clone();
        let last_log: elector::LastLog = Arc::new(move || log_reader.last_log_id());
        let raft = openraft::Raft::new(
            cfg.node_id,
            Arc::new(config),
            NetworkFactory {
                connector: cfg.connector.clone(),
                contacts: contacts.clone(),
                channels: channels.clone(),
                faults: cfg.peer_faults.clone(),
            },
            log_store,
            state_machine,
        )
        .await
        .map_err(|e| RaftError::Stopped(format!("starting raft node {}: {e}", cfg.node_id)))?;

        let leadership = spawn_leadership_watch(&raft);
        let election = std::time::Duration::from_millis(cfg.election_timeout_max_ms);
        let leader_contact = elector::LeaderContact::new();
        let timing = elector::Timing {
            lease: election,
            spread: std::time::Duration::from_millis(
                cfg.election_timeout_max_ms - cfg.election_timeout_min_ms,
            ),
            ask: std::time::Duration::from_millis(cfg.heartbeat_interval_ms * 3),
        };
        let (helpers_stop, stop) = watch::channel(false);
        let elector_task = tokio::spawn(elector::run(
            elector::Member {
                raft: raft.clone(),
                id: cfg.node_id,
                contact: leader_contact.clone(),
                timing,
                channels,
                connector: cfg.connector.clone(),
                contacts: contacts.clone(),
                last_log: last_log.clone(),
            },
            stop.clone(),
        ));
        let snapshot_task = tokio::spawn(snapshot_points::run(
            raft.clone(),
            cfg.node_id,
            cfg.snapshot_every,
            stop,
        ));
        Ok(Self {
            id: cfg.node_id,
            raft,
            db,
            leadership,
            contacts,
            leader_contact,
            timing,
            last_log,
            helpers: Arc::new(Helpers {
                stop: helpers_stop,
                tasks: std::sync::Mutex::new(vec![elector_task, snapshot_task]),
            }),
            membership: Arc::new(tokio::sync::Mutex::new(())),
            space: space::Space::new(&dir, space::RESERVE),
            windows: Windows {
                leader_silent: election * 2,
                no_quorum: (election * 3).max(std::time::Duration::from_secs(2)),
            },
        })
    }

    /// Whether this node has a membership (was bootstrapped or joined) or any log.
    pub async fn is_initialized(&self) -> Result<bool, RaftError> {
        self.raft
            .is_initialized()
            .await
            .map_err(|e| RaftError::Stopped(e.to_string()))
    }

    /// Bootstraps a single-member cluster with this node reachable at `addr` (`host:port`).
    /// Does nothing if the node is already initialized.
    pub async fn initialize(&self, addr: String) -> Result<(), RaftError> {
        if self.is_initialized().await? {
            return Ok(());
        }
        let members = BTreeMap::from([(self.id, BasicNode::new(addr))]);
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            Err(openraft::error::RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Replicates `command`; returns its log index and the applier's response once it is
    /// committed and applied on this node. On a follower: [`RaftError::NotLeader`]. A leader
    /// without a majority refuses at once ([`RaftError::NoQuorum`]), and one that loses its
    /// majority while the write waits says so ([`RaftError::Unconfirmed`]) instead of
    /// waiting for it to come back.
    pub async fn propose(&self, command: Vec<u8>) -> Result<(u64, Vec<u8>), RaftError> {
        if command.len() > MAX_ENTRY_BYTES {
            return Err(RaftError::TooLarge(command.len()));
        }
        if let Some(why) = self.leader_without_quorum() {
            return Err(RaftError::NoQuorum(why));
        }
        self.space.check().map_err(RaftError::NoSpace)?;
        let write = self.raft.client_write(Command(command));
        tokio::pin!(write);
        loop {
            tokio::select! {
                resp = &mut write => {
                    let resp = resp?;
                    return Ok((resp.log_id.index, resp.data.0));
                }
                () = tokio::time::sleep(QUORUM_CHECK) => {
                    if let Some(why) = self.leader_without_quorum() {
                        return Err(RaftError::Unconfirmed(why));
                    }
                }
            }
        }
    }

    /// Why this member, leading, has no majority, if it leads without one.
    fn leader_without_quorum(&self) -> Option<NoQuorum> {
        let leads = self.raft.metrics().borrow().state == ServerState::Leader;
        leads.then(|| self.no_quorum()).flatten()
    }

    /// Whether this member can take a write now.
    fn verdict(&self) -> Verdict {
        let inputs = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow();
            let membership = m.membership_config.membership();
            let peers: Vec<(NodeId, String)> = membership
                .voter_ids()
                .filter(|id| *id != self.id)
                .map(|id| {
                    let addr = membership.get_node(&id).map(|n| n.addr.clone());
                    (id, addr.unwrap_or_default())
                })
                .collect();
            quorum::Inputs {
                me: self.id,
                leads: m.state == ServerState::Leader,
                leader: m.current_leader,
                since_quorum_ack: m
                    .millis_since_quorum_ack
                    .map(std::time::Duration::from_millis),
                votes: membership.voter_ids().any(|id| id == self.id),
                peers: self.contacts.report(&peers),
            }
        };
        quorum::judge(&inputs, self.windows)
    }

    /// Why a write through this member would not commit now, if it would not.
    pub fn no_quorum(&self) -> Option<NoQuorum> {
        match self.verdict() {
            Verdict::NoQuorum(why) => Some(why),
            Verdict::Ok | Verdict::Electing => None,
        }
    }

    /// Waits up to `within` until this member leads with a majority, or follows a leader it
    /// has heard from lately; refuses as soon as it knows it reaches too few managers.
    pub async fn wait_for_leader(
        &self,
        within: std::time::Duration,
    ) -> Result<Leadership, RaftError> {
        let deadline = tokio::time::Instant::now() + within;
        let mut leadership = self.leadership();
        loop {
            match self.verdict() {
                Verdict::Ok => {
                    let now = leadership.borrow_and_update().clone();
                    if now.is_leader || now.leader_addr.is_some() {
                        return Ok(now);
                    }
                }
                Verdict::NoQuorum(why) => return Err(RaftError::NoQuorum(why)),
                Verdict::Electing => {}
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => return Err(RaftError::NoLeader(within)),
                () = tokio::time::sleep(QUORUM_CHECK) => {}
                _ = leadership.changed() => {}
            }
        }
    }

    /// A linearizable read point (a read index): once this returns, this member (the leader)
    /// has applied every write acknowledged anywhere before the call. A member without a
    /// majority refuses within the no-quorum window.
    pub async fn read_barrier(&self) -> Result<(), RaftError> {
        let deadline = tokio::time::Instant::now() + self.windows.no_quorum;
        loop {
            if let Verdict::NoQuorum(why) = self.verdict() {
                return Err(RaftError::NoQuorum(why));
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let failed = match tokio::time::timeout(left, self.raft.ensure_linearizable()).await {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(openraft::error::RaftError::APIError(
                    openraft::error::CheckIsLeaderError::ForwardToLeader(f),
                ))) => return Err(f.into()),
                Ok(Err(e)) => e.to_string(),
                Err(_) => String::new(),
            };
            // A round a majority did not answer in time (a member just added, a busy
            // host): tried again until the no-quorum window is over.
            if tokio::time::Instant::now() + QUORUM_CHECK >= deadline {
                return Err(match self.no_quorum() {
                    Some(why) => RaftError::NoQuorum(why),
                    None if failed.is_empty() => RaftError::NoLeader(self.windows.no_quorum),
                    None => RaftError::Raft(failed),
                });
            }
            tokio::time::sleep(QUORUM_CHECK / 2).await;
        }
    }

    /// Follows who leads; updated on every leader or term change.
    pub fn leadership(&self) -> watch::Receiver<Leadership> {
        self.leadership.clone()
    }

    /// `Ok` when this member leads now, else [`RaftError::NotLeader`] naming the leader.
    pub fn require_leader(&self) -> Result<(), RaftError> {
        let leadership = self.leadership.borrow();
        if leadership.is_leader {
            return Ok(());
        }
        Err(RaftError::NotLeader {
            leader_id: leadership.leader_id,
            leader_addr: leadership.leader_addr.clone(),
        })
    }

    /// Returns once this member, if it leads, has applied an entry of its own term (the
    /// one it appends on election), so its state holds every entry committed before its
    /// term; at once when it does not lead, and after `within` at most.
    pub async fn settle(&self, within: std::time::Duration) {
        let mut metrics = self.raft.metrics();
        let settled = metrics.wait_for(|m| {
            m.state != ServerState::Leader
                || m.last_applied
                    .is_some_and(|applied| applied.leader_id.term >= m.current_term)
        });
        let _ = tokio::time::timeout(within, settled).await;
    }

    pub fn status(&self) -> RaftStatus {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let membership = m.membership_config.membership();
        let addr_of = |id: NodeId| {
            let addr = membership
                .get_node(&id)
                .map(|n| n.addr.clone())
                .unwrap_or_default();
            (id, addr)
        };
        let commit_index = m.replication.as_ref().and_then(|replication| {
            let mut matched: Vec<u64> = membership
                .voter_ids()
                .map(|id| {
                    if id == m.id {
                        m.last_log_index.unwrap_or(0)
                    } else {
                        replication
                            .get(&id)
                            .and_then(|l| l.as_ref())
                            .map_or(0, |l| l.index)
                    }
                })
                .collect();
            matched.sort_unstable_by(|a, b| b.cmp(a));
            matched.get(matched.len() / 2).copied()
        });
        RaftStatus {
            id: m.id,
            term: m.current_term,
            last_log_index: m.last_log_index,
            last_applied: m.last_applied.as_ref().map(|l| l.index),
            commit_index,
            leader: m.current_leader,
            voters: membership.voter_ids().map(addr_of).collect(),
            learners: membership.learner_ids().map(addr_of).collect(),
        }
    }

    /// Makes member `id` at `addr` a voter: added as a learner, caught up with the log,
    /// then voting. Changes are made one at a time; one still committing (a previous
    /// leader's) is waited for.
    pub async fn add_voter(&self, id: NodeId, addr: String) -> Result<(), RaftError> {
        let _one = self.membership.lock().await;
        self.raft
            .add_learner(id, BasicNode::new(addr), true)
            .await?;
        let mut voters = self.voter_ids();
        voters.insert(id);
        self.change_voters(voters).await
    }

    /// Takes voter `id` out of the cluster; `false` when it was not a voter. The last voter
    /// is never removed.
    pub async fn remove_voter(&self, id: NodeId) -> Result<bool, RaftError> {
        let _one = self.membership.lock().await;
        let mut voters = self.voter_ids();
        if !voters.remove(&id) {
            return Ok(false);
        }
        if voters.is_empty() {
            return Err(RaftError::LastVoter);
        }
        self.change_voters(voters).await?;
        Ok(true)
    }

    fn voter_ids(&self) -> BTreeSet<NodeId> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        m.membership_config.membership().voter_ids().collect()
    }

    /// `voters` become the voting members; while another change is still in progress (a
    /// previous term's, which this leader commits first), wait for it, for a while.
    async fn change_voters(&self, voters: BTreeSet<NodeId>) -> Result<(), RaftError> {
        const BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
        let deadline = tokio::time::Instant::now() + BUSY_WAIT;
        loop {
            match self.raft.change_membership(voters.clone(), false).await {
                Ok(_) => return Ok(()),
                Err(openraft::error::RaftError::APIError(
                    ClientWriteError::ChangeMembershipError(
                        openraft::error::ChangeMembershipError::InProgress(_),
                    ),
                )) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The gRPC service peers send AppendEntries, Vote and InstallSnapshot to.
    pub fn grpc_service(&self) -> shoal_proto::RaftServer<impl shoal_proto::Raft> {
        shoal_proto::RaftServer::new(PeerService {
            raft: self.raft.clone(),
            contacts: self.contacts.clone(),
            leader: self.leader_contact.clone(),
            timing: self.timing,
            last_log: self.last_log.clone(),
        })
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }

    /// Stops openraft and flushes storage. Other clones fail with [`RaftError::Stopped`]
    /// afterwards.
    pub async fn shutdown(&self) -> Result<(), RaftError> {
        let _ = self.helpers.stop.send(true);
        let tasks = std::mem::take(
            &mut *self
                .helpers
                .tasks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for task in tasks {
            let _ = task.await;
        }
        self.raft
            .shutdown()
            .await
            .map_err(|e| RaftError::Raft(format!("shutting down raft node {}: {e}", self.id)))?;
        store::flush(&self.db)
            .await
            .map_err(|e| RaftError::Storage(format!("flushing raft storage: {e}")))?;
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn raft(&self) -> &openraft::Raft<TypeConfig> {
        &self.raft
    }
}

fn leadership_of(m: &openraft::RaftMetrics<NodeId, BasicNode>) -> Leadership {
    let leader_addr = m.current_leader.and_then(|id| {
        m.membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone())
    });
    Leadership {
        is_leader: m.state == ServerState::Leader && m.current_leader == Some(m.id),
        leader_id: m.current_leader,
        leader_addr,
        term: m.current_term,
    }
}

/// Derives [`Leadership`] from openraft's metrics until the node stops; the last value
/// published is "not leader".
fn spawn_leadership_watch(raft: &openraft::Raft<TypeConfig>) -> watch::Receiver<Leadership> {
    let mut metrics = raft.metrics();
    let (tx, rx) = watch::channel(leadership_of(&metrics.borrow_and_update()));
    tokio::spawn(async move {
        loop {
            if metrics.changed().await.is_err() {
                break;
            }
            let next = leadership_of(&metrics.borrow_and_update());
            if metrics.borrow().running_state.is_err() {
                break;
            }
            tx.send_if_modified(|cur| {
                let changed = *cur != next;
                *cur = next;
                changed
            });
        }
        tx.send_if_modified(|cur| {
            let was_leader = cur.is_leader;
            cur.is_leader = false;
            was_leader
        });
    });
    rx
}
