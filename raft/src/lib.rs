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

mod network;
mod server;
mod store;
mod types;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use openraft::error::{ClientWriteError, InitializeError};
use openraft::{BasicNode, ServerState, SnapshotPolicy};
use tokio::sync::watch;

use crate::network::{NetworkFactory, MAX_MESSAGE_SIZE};
use crate::server::PeerService;
use crate::types::{Command, TypeConfig};

/// A manager's Raft id, unique and stable for the life of the cluster.
pub type NodeId = u64;

/// Implemented by the manager's store; the raft crate never knows what commands mean.
pub trait Applier: Send + Sync + 'static {
    /// Apply one committed command (opaque bytes) at log `index`; return an opaque response
    /// (which may say the command was refused: every member refuses it alike).
    ///
    /// `Err` means this member cannot understand the command at all (written by a newer
    /// version): applying stops here and Raft on this member shuts down, so it never
    /// diverges from members that did apply it. The text says why and what to do.
    fn apply(&self, index: u64, command: &[u8]) -> Result<Vec<u8>, String>;
    /// Serialize the whole applied state (for a snapshot).
    fn snapshot(&self) -> Vec<u8>;
    /// Replace the whole state with a snapshot's contents.
    fn restore(&self, snapshot: &[u8]) -> Result<(), String>;
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
    /// Build a snapshot (and purge the log behind it) after this many new log entries.
    pub snapshot_every: u64,
    /// How to reach peers; plain HTTP/2 when `None` (tests). Shoal passes mTLS here.
    pub connector: Option<PeerConnector>,
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
    #[error("raft has stopped: {0}")]
    Stopped(String),
    #[error("raft: {0}")]
    Raft(String),
}

type OpenraftError<E = std::convert::Infallible> = openraft::error::RaftError<NodeId, E>;

impl From<ClientWriteError<NodeId, BasicNode>> for RaftError {
    fn from(e: ClientWriteError<NodeId, BasicNode>) -> Self {
        match e {
            ClientWriteError::ForwardToLeader(f) => RaftError::NotLeader {
                leader_id: f.leader_id,
                leader_addr: f.leader_node.map(|n| n.addr),
            },
            ClientWriteError::ChangeMembershipError(e) => RaftError::Membership(e.to_string()),
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

/// One running Raft node. Cheap to clone; all clones drive the same node.
#[derive(Clone)]
pub struct RaftNode {
    id: NodeId,
    raft: openraft::Raft<TypeConfig>,
    db: sled::Db,
    leadership: watch::Receiver<Leadership>,
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
            snapshot_policy: SnapshotPolicy::LogsSinceLast(cfg.snapshot_every),
            // Keep some log behind a snapshot so a briefly lagging follower catches up from
            // the log instead of a whole snapshot.
            max_in_snapshot_log_to_keep: cfg.snapshot_every.min(1000),
            // Per snapshot chunk (up to 3 MiB); openraft's 200ms default is tight off-host.
            install_snapshot_timeout: 2000,
            ..Default::default()
        }
        .validate()
        .map_err(|e| RaftError::Config(e.to_string()))?;

        let dir = cfg.data_dir.join("raft");
        let (db, log_store, state_machine) = store::open(&dir, applier)?;
        let raft = openraft::Raft::new(
            cfg.node_id,
            Arc::new(config),
            NetworkFactory {
                connector: cfg.connector.clone(),
            },
            log_store,
            state_machine,
        )
        .await
        .map_err(|e| RaftError::Stopped(format!("starting raft node {}: {e}", cfg.node_id)))?;

        let leadership = spawn_leadership_watch(&raft);
        Ok(Self {
            id: cfg.node_id,
            raft,
            db,
            leadership,
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
    /// committed and applied on this node. On a follower: [`RaftError::NotLeader`].
    pub async fn propose(&self, command: Vec<u8>) -> Result<(u64, Vec<u8>), RaftError> {
        let resp = self.raft.client_write(Command(command)).await?;
        Ok((resp.log_id.index, resp.data.0))
    }

    /// Follows who leads; updated on every leader or term change.
    pub fn leadership(&self) -> watch::Receiver<Leadership> {
        self.leadership.clone()
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
        RaftStatus {
            id: m.id,
            term: m.current_term,
            last_log_index: m.last_log_index,
            last_applied: m.last_applied.as_ref().map(|l| l.index),
            leader: m.current_leader,
            voters: membership.voter_ids().map(addr_of).collect(),
            learners: membership.learner_ids().map(addr_of).collect(),
        }
    }

    /// Adds a non-voting member at `addr` and waits until it has caught up with the log.
    pub async fn add_learner(&self, id: NodeId, addr: String) -> Result<(), RaftError> {
        self.raft
            .add_learner(id, BasicNode::new(addr), true)
            .await?;
        Ok(())
    }

    /// Makes `voters` the voting members (each must already be a member or learner).
    /// Voters left out are removed from the cluster; learners stay learners.
    pub async fn change_membership(&self, voters: BTreeSet<NodeId>) -> Result<(), RaftError> {
        self.raft.change_membership(voters, false).await?;
        Ok(())
    }

    /// The gRPC service peers send AppendEntries, Vote and InstallSnapshot to.
    pub fn grpc_service(&self) -> shoal_proto::RaftServer<impl shoal_proto::Raft> {
        shoal_proto::RaftServer::new(PeerService {
            raft: self.raft.clone(),
        })
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }

    /// Stops openraft and flushes storage. Other clones fail with [`RaftError::Stopped`]
    /// afterwards.
    pub async fn shutdown(&self) -> Result<(), RaftError> {
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
