//! A manager: Raft member, store, services, and the leadership switch.
//!
//! Every manager serves the Control, Dispatcher and Raft services. Only the leader runs the
//! components that write on their own (orchestrator, scheduler, task reaper, node
//! liveness): they start when this member is elected and stop when it steps down.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use shoal_proto::{
    Availability, CaServer, Cluster, ClusterSpec, ControlServer, DispatcherServer, LogBrokerServer,
    ManagerStatus, Network, NetworkSpec, Node, NodeDescription, NodeRole, NodeSpec, NodeState,
    NodeStatus, RaftMembershipServer, RootCa, StoreSnapshot,
};
use shoal_raft::{PeerConnector, RaftConfig, RaftError, RaftNode};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::allocator::ipam::Pools;
use crate::allocator::{allocate_network, AddrPool, Allocator};
use crate::ca::CaApi;
use crate::controlapi::ControlApi;
use crate::dispatcher::{Dispatcher, DispatcherApi, DEFAULT_HEARTBEAT_PERIOD};
use crate::logbroker::{LogBroker, LogBrokerApi, LogsApi};
use crate::membership::MembershipApi;
use crate::orchestrator::taskreaper::{TaskReaper, DEFAULT_HISTORY_LIMIT};
use crate::orchestrator::Orchestrator;
use crate::raft_proposer::RaftProposer;
use crate::roles::{LeaderMark, RoleManager};
use crate::scheduler::Scheduler;
use crate::store::{Object, Store, StoreError, StoreState};
use crate::term::run_terms;

#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error("raft: {0}")]
    Raft(#[from] RaftError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("this manager did not become leader within {0:?}")]
    NoLeadership(Duration),
    #[error("{0}")]
    Invalid(String),
}

#[derive(Clone, Debug)]
pub struct ManagerConfig {
    /// The node's id (also its Node object's id).
    pub node_id: String,
    /// The node's Raft member id.
    pub raft_id: u64,
    /// Where the Raft log and state machine live (`<data_dir>/raft`).
    pub data_dir: PathBuf,
    /// The address other nodes reach this manager on (host:port).
    pub addr: String,
    pub heartbeat_period: Duration,
    /// How Raft reaches peer managers (mTLS in shoald; plain in tests).
    pub connector: Option<PeerConnector>,
    /// Seals the Raft log and snapshots on disk (the node's data key); clear when `None`.
    pub at_rest: Option<Arc<dyn shoal_raft::AtRest>>,
    /// TEST ONLY (the in-process harness): faults on messages to Raft peers.
    pub peer_faults: Option<shoal_raft::PeerFaults>,
}

impl ManagerConfig {
    pub fn new(node_id: String, raft_id: u64, data_dir: PathBuf, addr: String) -> Self {
        Self {
            node_id,
            raft_id,
            data_dir,
            addr,
            heartbeat_period: DEFAULT_HEARTBEAT_PERIOD,
            connector: None,
            at_rest: None,
            peer_faults: None,
        }
    }
}

/// A running manager; cheap to clone.
#[derive(Clone)]
pub struct Manager {
    config: Arc<ManagerConfig>,
    store: Store,
    raft: RaftNode,
    dispatcher: Dispatcher,
    logs: LogBroker,
}

impl Manager {
    /// Open this manager's Raft state (creating it if new) and the store it drives. The
    /// store is rebuilt from the last snapshot and the log before this returns.
    pub async fn open(config: ManagerConfig) -> Result<Self, ManagerError> {
        let state = Arc::new(StoreState::new());
        let raft_config = RaftConfig {
            node_id: config.raft_id,
            data_dir: config.data_dir.clone(),
            connector: config.connector.clone(),
            at_rest: config.at_rest.clone(),
            peer_faults: config.peer_faults.clone(),
            ..RaftConfig::default()
        };
        let raft = RaftNode::open(raft_config, state.clone()).await?;
        let store = Store::new(state, Arc::new(RaftProposer::new(raft.clone())));
        let dispatcher = Dispatcher::new(store.clone(), config.heartbeat_period);
        dispatcher.set_managers(vec![config.addr.clone()]);
        let logs = LogBroker::new(store.clone(), raft.leadership());
        Ok(Self {
            config: Arc::new(config),
            store,
            raft,
            dispatcher,
            logs,
        })
    }

    /// `swarm init --force-new-cluster`: bootstrap a fresh one-member Raft with this manager
    /// and write `state` (what this manager held when quorum was lost) into it. The other
    /// managers are demoted: promote nodes again to restore redundancy.
    pub async fn bootstrap_from(&self, state: StoreSnapshot) -> Result<(), ManagerError> {
        self.raft.initialize(self.config.addr.clone()).await?;
        self.wait_for_leadership(Duration::from_secs(10)).await?;
        let me = self.config.node_id.clone();
        let my_raft = (self.config.raft_id, self.config.addr.clone());
        self.store
            .update(|tx| {
                let mut objects: Vec<Object> = Vec::new();
                objects.extend(state.clusters.into_iter().map(Object::Cluster));
                objects.extend(state.services.into_iter().map(Object::Service));
                objects.extend(state.tasks.into_iter().map(Object::Task));
                for mut node in state.nodes {
                    if node.id == me {
                        node.manager_status = Some(ManagerStatus {
                            raft_id: my_raft.0,
                            addr: my_raft.1.clone(),
                            leader: true,
                        });
                    } else if node.manager_status.take().is_some() {
                        if let Some(spec) = node.spec.as_mut() {
                            spec.role = NodeRole::Worker as i32;
                        }
                    }
                    objects.push(Object::Node(node));
                }
                for object in objects {
                    tx.restore(object)?;
                }
                Ok::<_, StoreError>(())
            })
            .await?;
        Ok(())
    }

    /// Make this manager the first member of a new cluster: bootstrap Raft with it as the
    /// only voter, wait until it leads, then write the cluster object and this node.
    pub async fn bootstrap(
        &self,
        cluster_id: &str,
        description: NodeDescription,
        root_ca: RootCa,
        cert_expiry: Duration,
        addr_pool: AddrPool,
        unlock_key: Option<Vec<u8>>,
    ) -> Result<(), ManagerError> {
        let pools = Pools::new(&addr_pool.cidrs, addr_pool.subnet_size)
            .map_err(|e| ManagerError::Invalid(format!("invalid --default-addr-pool: {e}")))?;
        self.raft.initialize(self.config.addr.clone()).await?;
        self.wait_for_leadership(Duration::from_secs(10)).await?;
        let node = Node {
            id: self.config.node_id.clone(),
            meta: None,
            spec: Some(NodeSpec {
                role: NodeRole::Manager as i32,
                availability: Availability::Active as i32,
                labels: Default::default(),
            }),
            description: Some(description),
            status: Some(NodeStatus {
                state: NodeState::Unknown as i32,
                message: String::new(),
                addr: self.config.addr.clone(),
            }),
            manager_status: Some(ManagerStatus {
                raft_id: self.config.raft_id,
                addr: self.config.addr.clone(),
                leader: true,
            }),
            attachments: Vec::new(),
            cert_root_digest: root_ca.digest.clone(),
        };
        let cluster = Cluster {
            id: cluster_id.to_string(),
            meta: None,
            spec: Some(ClusterSpec {
                name: "default".into(),
                task_history_limit: DEFAULT_HISTORY_LIMIT as u64,
                heartbeat_period_ms: self.config.heartbeat_period.as_millis() as i64,
                cert_expiry_ms: cert_expiry.as_millis() as i64,
                autolock: unlock_key.is_some(),
            }),
            tokens: Some(crate::ca::new_tokens(&root_ca.digest)),
            root_ca: Some(root_ca),
            default_addr_pool: addr_pool.cidrs,
            subnet_size: addr_pool.subnet_size,
            // Made with the first secret.
            secrets_key: Vec::new(),
            removed_nodes: Vec::new(),
            unlock_key: unlock_key.unwrap_or_default(),
            previous_unlock_key: Vec::new(),
        };
        self.store
            .update(|tx| {
                if tx.read().cluster().is_none() {
                    tx.create(Object::Cluster(cluster))?;
                }
                if tx.node(&node.id).is_none() {
                    tx.create(Object::Node(node))?;
                }
                // The routing mesh's network, as Swarm makes at init.
                if !tx.read().networks().any(|n| n.is_ingress()) {
                    let spec = ingress_spec();
                    let allocation = allocate_network(&tx.networks_now(), &spec, &pools)
                        .map_err(|e| ManagerError::Invalid(format!("the ingress network: {e}")))?;
                    tx.create(Object::Network(Network {
                        id: crate::ids::new_id(),
                        meta: None,
                        spec: Some(spec),
                        allocation: Some(allocation),
                    }))?;
                }
                Ok::<_, ManagerError>(())
            })
            .await?;
        Ok(())
    }

    async fn wait_for_leadership(&self, timeout: Duration) -> Result<(), ManagerError> {
        let mut leadership = self.raft.leadership();
        let led = matches!(
            tokio::time::timeout(timeout, leadership.wait_for(|l| l.is_leader)).await,
            Ok(Ok(_))
        );
        if led {
            Ok(())
        } else {
            Err(ManagerError::NoLeadership(timeout))
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn raft(&self) -> &RaftNode {
        &self.raft
    }

    pub(crate) fn dispatcher(&self) -> &Dispatcher {
        &self.dispatcher
    }

    pub fn config(&self) -> &ManagerConfig {
        &self.config
    }

    pub fn control_service(&self) -> ControlServer<ControlApi> {
        ControlServer::new(ControlApi::new(self.store.clone()))
    }

    pub fn ca_service(&self) -> CaServer<CaApi> {
        CaServer::new(CaApi::new(self.store.clone()))
    }

    pub fn membership_service(&self) -> RaftMembershipServer<MembershipApi> {
        RaftMembershipServer::new(MembershipApi::new(self.raft.clone(), self.store.clone()))
    }

    pub fn dispatcher_service(&self) -> DispatcherServer<DispatcherApi> {
        DispatcherServer::new(DispatcherApi::new(self.dispatcher.clone()))
    }

    /// The CLI's `service logs` API of this manager (it answers while leading).
    pub fn logs_api(&self) -> LogsApi {
        LogsApi::new(self.logs.clone())
    }

    /// Refuses a removed node's certificate on every service ([`crate::caller::revoked`]).
    pub fn revocation_gate(&self) -> shoal_pki::Gate {
        crate::caller::revocation_gate(self.store.clone())
    }

    pub fn log_broker_service(&self) -> LogBrokerServer<LogBrokerApi> {
        LogBrokerServer::new(LogBrokerApi::new(self.logs.clone()))
    }

    /// Run the leader-only components whenever this manager leads, until `cancel`: one
    /// term's loops at a time ([`crate::term`]).
    pub async fn run(self, cancel: CancellationToken) {
        let leadership = self.raft.leadership();
        run_terms(leadership, cancel, |token| self.start_leader_loops(token)).await;
    }

    fn start_leader_loops(&self, token: CancellationToken) -> JoinSet<()> {
        let mut loops = JoinSet::new();
        loops.spawn(Orchestrator::new(self.store.clone()).run(token.clone()));
        loops.spawn(Allocator::new(self.store.clone()).run(token.clone()));
        loops.spawn(Scheduler::new(self.store.clone()).run(token.clone()));
        loops.spawn(TaskReaper::new(self.store.clone()).run(token.clone()));
        loops.spawn(self.dispatcher.clone().run_liveness(token.clone()));
        loops.spawn(RoleManager::new(self.store.clone(), self.raft.clone()).run(token.clone()));
        loops.spawn(LeaderMark::new(self.store.clone(), self.config.node_id.clone()).run(token));
        loops
    }

    pub async fn shutdown(&self) -> Result<(), ManagerError> {
        self.raft.shutdown().await?;
        Ok(())
    }
}

/// The routing mesh's network, made at `swarm init` (Swarm's: `ingress`, overlay).
fn ingress_spec() -> NetworkSpec {
    NetworkSpec {
        name: "ingress".into(),
        driver: "overlay".into(),
        ingress: true,
        ..Default::default()
    }
}
