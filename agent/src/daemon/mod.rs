//! The node daemon's life: serving the local socket, entering a swarm (init or join),
//! running as a member (manager and agent), and leaving.
//!
//! A node that is not in a swarm serves only its local socket. `swarm init` makes it the
//! first manager of a new cluster: it makes the cluster's root CA and its own certificate,
//! records its identity (`node.json`), bootstraps Raft, starts the manager's services on
//! its port (mTLS, authorised per call by the peer's certificate), and starts its own
//! agent, whose session goes through the same dispatcher every other node uses. `swarm
//! join` gets a certificate from a manager with a token ([`join`]); a manager then joins
//! Raft. At start, a node with a record resumes as what it was.

mod admin;
mod autolock;
pub mod gate;
pub mod join;
mod metrics;
pub mod record;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use shoal_manager::allocator::AddrPool;
use shoal_manager::controlapi::ControlApi;
use shoal_manager::ids::new_id;
use shoal_manager::{Manager, ManagerConfig, ManagerError};
use shoal_pki::vault::{self, DataKey, UnlockKey};
use shoal_pki::{AuthLayer, Identity, NodeCerts, NodeKey, PkiError, Role, RootCa};
use shoal_proto::{
    ImagesServer, InfoResponse, NodeAdminServer, NodeDescription, NodeRole, RootCa as RootCaObject,
};
use shoal_raft::PeerConnector;
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::executor::docker::DockerExecutor;
use crate::executor::{ExecError, Executor};
use crate::images::ImagesApi;
use crate::network::Networks;
use crate::session::{self, AgentIdentity, Heard};
use crate::taskdb::{TaskDb, TaskDbError};
use crate::tls::NodeTls;
use crate::worker::{Worker, WorkerError};
pub use gate::ControlGate;
pub(crate) use join::renew_certificate;
use record::{NodeRecord, RecordError};

/// Node certificates live this long unless `swarm init --cert-expiry` says otherwise.
pub const DEFAULT_CERT_EXPIRY: Duration = shoal_manager::ca::DEFAULT_CERT_EXPIRY;

/// The port managers listen on unless told otherwise.
pub const DEFAULT_PORT: u16 = 4242;

#[derive(Clone, Debug)]
pub struct DaemonConfig {
    pub data_dir: PathBuf,
    pub socket: PathBuf,
    pub docker_host: String,
    pub node_name: String,
    /// Where the engine looks for network plugins (`/run/docker/plugins`).
    pub plugin_dir: PathBuf,
    /// Where tasks' secrets and configs are written: a tmpfs shoald mounts there
    /// (`/run/shoal/files`).
    pub files_dir: PathBuf,
    /// The web view's login link, when shoald serves it; an unspecified host (0.0.0.0)
    /// is shown as the node's own address.
    pub web_url: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(
        "this node is already part of a swarm: leave it first with `shoal swarm leave --force`"
    )]
    AlreadyInSwarm,
    #[error("this node is not part of a swarm: run `shoal swarm init` first")]
    NotInSwarm,
    #[error("image {image} could not be resolved on a registry: {message}")]
    Resolve { image: String, message: String },
    #[error("this node is not a manager: --force-new-cluster runs on a surviving manager")]
    NotManager,
    #[error("this node is a manager: leaving would remove it from the swarm for good; use `shoal swarm leave --force` to do it anyway")]
    ManagerMustForce,
    #[error("invalid address {addr:?}: {why}")]
    Address { addr: String, why: String },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot reach the Docker Engine at {host}: {source}; is dockerd running?")]
    Docker { host: String, source: ExecError },
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("manager: {0}")]
    Manager(#[from] ManagerError),
    #[error("task database: {0}")]
    TaskDb(#[from] TaskDbError),
    #[error("worker: {0}")]
    Worker(#[from] WorkerError),
    #[error("certificates: {0}")]
    Pki(#[from] PkiError),
    #[error("overlay networks: {0}")]
    Network(String),
    #[error("this node's certificates are missing from {0}: leave the swarm with `shoal swarm leave --force` and join again")]
    NoCertificates(PathBuf),
    #[error("{0}")]
    Join(String),
    #[error("this node is locked (autolock): run `shoal swarm unlock` and enter the unlock key")]
    Locked,
    #[error("this node is not locked")]
    NotLocked,
    #[error("keys: {0}")]
    Vault(#[from] shoal_pki::vault::VaultError),
    #[error("removing {path}: {source}")]
    Cleanup {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Serve a manager's port on `listener` until `stop`: Control and Logs through `gate`,
/// the dispatcher, log broker, Raft, Raft membership and CA, and the node's images when
/// `images` is its engine, every call behind the cluster's `AuthLayer` with the
/// revocation gate.
pub fn serve_manager_port(
    manager: &Manager,
    gate: &ControlGate,
    cluster_id: &str,
    listener: TcpListener,
    tls: &NodeTls,
    images: Option<bollard::Docker>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    let router = tonic::transport::Server::builder()
        .layer(AuthLayer::new(cluster_id.to_string()).with_gate(manager.revocation_gate()))
        .add_service(shoal_proto::ControlServer::new(gate.clone()))
        .add_service(shoal_proto::LogsServer::new(gate.clone()))
        .add_service(manager.dispatcher_service())
        .add_service(manager.log_broker_service())
        .add_service(manager.raft().grpc_service())
        .add_service(manager.membership_service())
        .add_service(manager.ca_service())
        .add_optional_service(images.map(|docker| ImagesServer::new(ImagesApi::new(docker))));
    serve_port(router, listener, tls, stop, "manager")
}

/// Serve a worker's port on `listener` until `stop`: its engine's images to the swarm's
/// other nodes, behind the cluster's `AuthLayer`.
fn serve_worker_port(
    docker: bollard::Docker,
    cluster_id: &str,
    listener: TcpListener,
    tls: &NodeTls,
    stop: CancellationToken,
) -> JoinHandle<()> {
    let router = tonic::transport::Server::builder()
        .layer(AuthLayer::new(cluster_id.to_string()))
        .add_service(ImagesServer::new(ImagesApi::new(docker)));
    serve_port(router, listener, tls, stop, "worker")
}

/// Serve `router` over mutual TLS on `listener` until `stop`.
fn serve_port(
    router: tonic::transport::server::Router<
        tower::layer::util::Stack<AuthLayer, tower::layer::util::Identity>,
    >,
    listener: TcpListener,
    tls: &NodeTls,
    stop: CancellationToken,
    role: &'static str,
) -> JoinHandle<()> {
    let incoming = shoal_pki::incoming(listener, tls.server());
    tokio::spawn(async move {
        if let Err(e) = router
            .serve_with_incoming_shutdown(incoming, stop.cancelled())
            .await
        {
            tracing::error!(error = %e, "the {role}'s network server stopped");
        }
    })
}

/// The daemon; cheap to clone.
#[derive(Clone)]
pub struct Daemon {
    inner: Arc<Inner>,
}

struct Inner {
    config: DaemonConfig,
    control: ControlGate,
    member: Mutex<Option<Member>>,
    /// Roles the managers ask for, heard on the session; see [`Daemon::follow_roles`].
    roles: tokio::sync::mpsc::Sender<Heard>,
    /// The swarm removed this node (its session was refused as not part of the swarm).
    removed: std::sync::atomic::AtomicBool,
    /// The key that seals this node's Raft log and task database, once known (read at
    /// start, or given by `swarm unlock`).
    /// Whether the keys wait for `swarm unlock` is the gate's (`ControlGate::is_locked`),
    /// which refuses every call meanwhile.
    data_key: std::sync::Mutex<Option<DataKey>>,
}

/// What runs while the node is in a swarm.
struct Member {
    record: NodeRecord,
    manager: Option<Manager>,
    executor: Arc<DockerExecutor>,
    networks: Option<Networks>,
    /// Stops the network driver: apart from `cancel`, since removing containers on leave
    /// needs the driver to answer the engine.
    network_stop: CancellationToken,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Daemon {
    /// A daemon, not yet in a swarm. Call from within the tokio runtime.
    pub fn new(config: DaemonConfig) -> Self {
        let (roles, heard) = tokio::sync::mpsc::channel(4);
        let daemon = Self {
            inner: Arc::new(Inner {
                config,
                control: ControlGate::default(),
                member: Mutex::new(None),
                roles,
                removed: std::sync::atomic::AtomicBool::new(false),
                data_key: std::sync::Mutex::new(None),
            }),
        };
        tokio::spawn(daemon.clone().follow_roles(heard));
        daemon
    }

    pub fn config(&self) -> &DaemonConfig {
        &self.inner.config
    }

    /// The services of the local socket.
    pub fn local_services(
        &self,
    ) -> (
        NodeAdminServer<admin::AdminApi>,
        shoal_proto::ControlServer<ControlGate>,
        shoal_proto::LogsServer<ControlGate>,
        shoal_proto::EventsServer<ControlGate>,
    ) {
        (
            NodeAdminServer::new(admin::AdminApi::new(self.clone())),
            shoal_proto::ControlServer::new(self.inner.control.clone()),
            shoal_proto::LogsServer::new(self.inner.control.clone()),
            shoal_proto::EventsServer::new(self.inner.control.clone()),
        )
    }

    /// The data key, read (or made, for a node new to the swarm) on first use; `Locked`
    /// while it waits for `swarm unlock`.
    fn data_key(&self) -> Result<DataKey, DaemonError> {
        let mut known = self
            .inner
            .data_key
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(key) = known.as_ref() {
            return Ok(key.clone());
        }
        match vault::load_or_create(&self.inner.config.data_dir)? {
            vault::Keys::Open(key) => {
                *known = Some(key.clone());
                Ok(key)
            }
            vault::Keys::Locked => {
                self.inner.control.set_locked(true);
                Err(DaemonError::Locked)
            }
        }
    }

    /// `swarm unlock`: open the data key with `unlock_key`, then resume membership.
    pub async fn unlock(&self, unlock_key: &UnlockKey) -> Result<(), DaemonError> {
        if !self.inner.control.is_locked() {
            return Err(DaemonError::NotLocked);
        }
        let key = vault::unlock(&self.inner.config.data_dir, unlock_key)?;
        *self
            .inner
            .data_key
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(key);
        self.inner.control.set_locked(false);
        tracing::info!("unlocked");
        self.resume().await?;
        Ok(())
    }

    /// Resume swarm membership from `node.json`, if there is one. A locked node waits for
    /// `swarm unlock` instead (and says so).
    pub async fn resume(&self) -> Result<bool, DaemonError> {
        let Some(record) = record::load(&self.inner.config.data_dir)? else {
            return Ok(false);
        };
        if let Err(DaemonError::Locked) = self.data_key() {
            tracing::warn!(
                "this manager is locked (autolock): it serves nothing until `shoal swarm unlock`"
            );
            return Ok(true);
        }
        let mut member = self.inner.member.lock().await;
        let listener = match record.manager {
            true => Some(bind(&record.listen_addr).await?),
            false => None,
        };
        *member = Some(self.start(record, listener, Start::Resume).await?);
        Ok(true)
    }

    /// `swarm init`: become the first manager of a new cluster.
    pub async fn init(
        &self,
        listen_addr: &str,
        advertise_addr: &str,
        cert_expiry: Option<Duration>,
        addr_pool: AddrPool,
        unlock_key: Option<UnlockKey>,
    ) -> Result<NodeRecord, DaemonError> {
        let mut member = self.inner.member.lock().await;
        if member.is_some() || record::load(&self.inner.config.data_dir)?.is_some() {
            return Err(DaemonError::AlreadyInSwarm);
        }
        let (listener, bound) = listen(listen_addr).await?;
        let advertise_addr = advertise(advertise_addr, bound)?;
        let cluster_id = new_id();
        let node_id = new_id();
        let expiry = cert_expiry.unwrap_or(DEFAULT_CERT_EXPIRY);
        let root = RootCa::generate(&cluster_id)?;
        let key = NodeKey::generate()?;
        let identity = Identity {
            node_id: node_id.clone(),
            role: Role::Manager,
            cluster_id: cluster_id.clone(),
        };
        let certs = NodeCerts {
            cert_pem: root.sign_csr(&key.csr_pem()?, &identity, expiry)?,
            key_pem: key.key_pem(),
            root_pem: root.cert_pem().to_string(),
        };
        let record = NodeRecord {
            node_id,
            raft_id: rand::random::<u64>().max(1),
            cluster_id,
            manager: true,
            listen_addr: bound.to_string(),
            advertise_addr: advertise_addr.clone(),
            managers: vec![advertise_addr],
        };
        // Certificates and record first: a crash after Raft is bootstrapped must find the
        // identity it used.
        certs.save(&self.certs_dir(), Some(&self.data_key()?))?;
        record::save(&self.inner.config.data_dir, &record)?;
        let start = Start::Bootstrap {
            root: Box::new(RootCaObject {
                cert_pem: root.cert_pem().to_string(),
                key_pem: root.key_pem(),
                digest: root.digest(),
                rotation: None,
            }),
            expiry,
            addr_pool,
            unlock_key,
        };
        self.enter(&mut member, record, Some(listener), start).await
    }

    /// `swarm join`: enter the swarm of the manager at `remote` with `token`.
    pub async fn join(
        &self,
        token: &str,
        remote: &str,
        listen_addr: &str,
        advertise_addr: &str,
    ) -> Result<NodeRecord, DaemonError> {
        let mut member = self.inner.member.lock().await;
        if member.is_some() || record::load(&self.inner.config.data_dir)?.is_some() {
            return Err(DaemonError::AlreadyInSwarm);
        }
        let remote = with_port(remote, DEFAULT_PORT);
        let (listener, bound) = listen(listen_addr).await?;
        let advertise_addr = if advertise_addr.is_empty() && bound.ip().is_unspecified() {
            // The address this node reaches the manager from is the one it is reached on.
            let probe = tokio::net::TcpStream::connect(&remote).await.map_err(|e| {
                DaemonError::Join(format!("cannot reach a manager at {remote}: {e}"))
            })?;
            let ip = probe
                .local_addr()
                .map_err(|e| {
                    DaemonError::Join(format!("reading the local address towards {remote}: {e}"))
                })?
                .ip();
            SocketAddr::new(ip, bound.port()).to_string()
        } else {
            advertise(advertise_addr, bound)?
        };
        let joined = join::request_certificate(
            &remote,
            token,
            &self.inner.config.node_name,
            &advertise_addr,
        )
        .await?;
        let record = NodeRecord {
            node_id: joined.node_id,
            raft_id: if joined.manager {
                rand::random::<u64>().max(1)
            } else {
                0
            },
            cluster_id: joined.cluster_id,
            manager: joined.manager,
            listen_addr: bound.to_string(),
            advertise_addr,
            managers: joined.managers.clone(),
        };
        joined
            .certs
            .save(&self.certs_dir(), Some(&self.data_key()?))?;
        record::save(&self.inner.config.data_dir, &record)?;
        let start = match joined.manager {
            true => Start::JoinRaft,
            false => Start::Resume,
        };
        let listener = Some(listener);
        self.enter(&mut member, record, listener, start).await
    }

    /// Start as a member; on failure leave nothing half made behind.
    async fn enter(
        &self,
        member: &mut Option<Member>,
        record: NodeRecord,
        listener: Option<TcpListener>,
        start: Start,
    ) -> Result<NodeRecord, DaemonError> {
        match self.start(record.clone(), listener, start).await {
            Ok(started) => {
                *member = Some(started);
                Ok(record)
            }
            Err(e) => {
                let _ = self.wipe().await;
                Err(e)
            }
        }
    }

    fn certs_dir(&self) -> PathBuf {
        self.inner.config.data_dir.join("certificates")
    }

    /// `swarm init --force-new-cluster`: on a manager of a swarm that lost quorum, restart
    /// Raft with this manager alone, keeping the state it holds. The old Raft state is kept
    /// aside under the data dir.
    pub async fn force_new_cluster(&self) -> Result<NodeRecord, DaemonError> {
        let mut member = self.inner.member.lock().await;
        let state = match member.as_ref() {
            None => return Err(DaemonError::NotInSwarm),
            Some(Member { manager: None, .. }) => return Err(DaemonError::NotManager),
            Some(Member {
                manager: Some(manager),
                ..
            }) => manager.store().state().export(),
        };
        let Some(current) = member.take() else {
            return Err(DaemonError::NotInSwarm);
        };
        let mut record = current.record.clone();
        self.stop(current).await;
        let dir = &self.inner.config.data_dir;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let aside = dir.join(format!("raft.before-force-new-cluster-{stamp}"));
        tokio::fs::rename(dir.join("raft"), &aside)
            .await
            .map_err(|source| DaemonError::Cleanup {
                path: aside.clone(),
                source,
            })?;
        tracing::warn!(kept = %aside.display(), "forcing a new cluster from this manager's state");
        record.managers = vec![record.advertise_addr.clone()];
        record::save(dir, &record)?;
        let listener = bind(&record.listen_addr).await?;
        let start = Start::ForceNewCluster(Box::new(state));
        *member = Some(self.start(record.clone(), Some(listener), start).await?);
        Ok(record)
    }

    /// `swarm leave`: stop everything, remove this node's containers and its swarm state.
    pub async fn leave(&self, force: bool) -> Result<(), DaemonError> {
        let mut member = self.inner.member.lock().await;
        let Some(current) = member.as_ref() else {
            return Err(DaemonError::NotInSwarm);
        };
        if current.record.manager && !force {
            return Err(DaemonError::ManagerMustForce);
        }
        let Some(current) = member.take() else {
            return Err(DaemonError::NotInSwarm);
        };
        let executor = current.executor.clone();
        let networks = current.networks.clone();
        let network_stop = current.network_stop.clone();
        // The driver keeps answering the engine while the containers go.
        self.stop_keeping_networks(current).await;
        match executor.list_task_containers().await {
            Ok(containers) => {
                for (task_id, container_id) in containers {
                    if let Err(e) = executor.remove_container(&container_id).await {
                        tracing::warn!(task = %task_id, error = %e, "removing a task container on leave failed");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "listing task containers on leave failed"),
        }
        // Nothing of the overlay stays behind: namespaces, devices, Docker networks.
        if let Some(networks) = networks {
            if let Err(e) = networks.clear().await {
                tracing::warn!(error = %e, "removing the overlay networks on leave failed");
            }
        }
        network_stop.cancel();
        self.inner
            .removed
            .store(false, std::sync::atomic::Ordering::Relaxed);
        self.wipe().await
    }

    /// Stop serving and running, leaving containers and state as they are (daemon exit).
    pub async fn shutdown(&self) {
        if let Some(member) = self.inner.member.lock().await.take() {
            self.stop(member).await;
        }
    }

    /// `image` pinned to the digest its registry names now (through this node's engine).
    pub async fn resolve_image(
        &self,
        image: &str,
        auth: Option<shoal_proto::RegistryAuth>,
    ) -> Result<String, DaemonError> {
        let docker = {
            let member = self.inner.member.lock().await;
            let member = member.as_ref().ok_or(DaemonError::NotInSwarm)?;
            member.executor.docker().clone()
        };
        let credentials = auth.as_ref().map(crate::executor::docker::credentials);
        let inspected = docker
            .inspect_registry_image(image, credentials)
            .await
            .map_err(|e| DaemonError::Resolve {
                image: image.to_string(),
                message: e.to_string(),
            })?;
        let digest = inspected.descriptor.digest.unwrap_or_default();
        if digest.is_empty() {
            return Err(DaemonError::Resolve {
                image: image.to_string(),
                message: "the registry named no digest".into(),
            });
        }
        let name = image.split('@').next().unwrap_or(image);
        Ok(format!("{name}@{digest}"))
    }

    pub async fn info(&self) -> InfoResponse {
        let member = self.inner.member.lock().await;
        let config = &self.inner.config;
        let mut info = InfoResponse {
            node_name: config.node_name.clone(),
            swarm_state: "inactive".into(),
            data_dir: config.data_dir.display().to_string(),
            docker_host: config.docker_host.clone(),
            ..Default::default()
        };
        info.web_url = config.web_url.clone().unwrap_or_default();
        let Some(member) = member.as_ref() else {
            if self.inner.control.is_locked() {
                info.swarm_state =
                    "locked (autolock): run `shoal swarm unlock` and enter the unlock key".into();
            }
            return info;
        };
        info.swarm_state = if self
            .inner
            .removed
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            "removed (this node was removed from the swarm: `shoal swarm leave --force`, then join again with a new token)".into()
        } else {
            "active".into()
        };
        info.node_id = member.record.node_id.clone();
        info.cluster_id = member.record.cluster_id.clone();
        info.is_manager = member.record.manager;
        info.node_addr = member.record.advertise_addr.clone();
        if let (Some(url), Some(host)) = (
            &config.web_url,
            member
                .record
                .advertise_addr
                .rsplit_once(':')
                .map(|(h, _)| h),
        ) {
            info.web_url = url.replace("://0.0.0.0:", &format!("://{host}:"));
        }
        info.manager_addrs = member.record.managers.clone();
        if let Some(manager) = &member.manager {
            let status = manager.raft().status();
            info.manager_addrs = status.voters.iter().map(|(_, addr)| addr.clone()).collect();
            info.raft_term = status.term;
            info.raft_commit_index = status.last_applied.unwrap_or(0);
            info.leader_addr = status
                .leader
                .and_then(|id| {
                    status
                        .voters
                        .iter()
                        .find(|(v, _)| *v == id)
                        .map(|(_, a)| a.clone())
                })
                .unwrap_or_default();
            let (managers, nodes) = manager.store().view(|r| {
                (
                    r.nodes().filter(|n| n.manager_status.is_some()).count(),
                    r.nodes().count(),
                )
            });
            info.managers = managers as u64;
            info.nodes = nodes as u64;
        }
        info
    }

    /// Start the member: network driver, manager (when one), worker and session. On
    /// failure nothing it started keeps running (a Raft left open would hold its store's
    /// lock against the retry).
    async fn start(
        &self,
        record: NodeRecord,
        listener: Option<TcpListener>,
        how: Start,
    ) -> Result<Member, DaemonError> {
        let mut parts = Parts {
            cancel: CancellationToken::new(),
            network_stop: CancellationToken::new(),
            tasks: Vec::new(),
            manager: None,
        };
        match self.start_parts(record, listener, how, &mut parts).await {
            Ok(member) => Ok(member),
            Err(e) => {
                parts.cancel.cancel();
                parts.network_stop.cancel();
                for task in parts.tasks {
                    let _ = task.await;
                }
                if let Some(manager) = parts.manager {
                    if let Err(e) = manager.shutdown().await {
                        tracing::warn!(error = %e, "raft shutdown after a failed start");
                    }
                }
                Err(e)
            }
        }
    }

    async fn start_parts(
        &self,
        record: NodeRecord,
        listener: Option<TcpListener>,
        how: Start,
        parts: &mut Parts,
    ) -> Result<Member, DaemonError> {
        let config = &self.inner.config;
        let data_key = Some(self.data_key()?);
        let node_tls = NodeTls::load(&self.certs_dir(), data_key.clone())?
            .ok_or_else(|| DaemonError::NoCertificates(self.certs_dir()))?;
        let executor = DockerExecutor::connect(
            &config.docker_host,
            record.node_id.clone(),
            config.node_name.clone(),
        )
        .await
        .map_err(|source| DaemonError::Docker {
            host: config.docker_host.clone(),
            source,
        })?;
        let cancel = parts.cancel.clone();
        let network_stop = parts.network_stop.clone();
        let networks = match underlay_of(&record.advertise_addr) {
            Some(underlay) => Some(
                Networks::start(
                    &record.node_id,
                    underlay,
                    executor.docker().clone(),
                    &config.plugin_dir,
                    Some(crate::network::tunnel_tls(node_tls.clone())),
                    network_stop.clone(),
                )
                .map_err(|e| DaemonError::Network(e.to_string()))?,
            ),
            None => {
                tracing::warn!(addr = %record.advertise_addr, "no IPv4 underlay address: overlay networks are off on this node");
                None
            }
        };
        let executor = match &networks {
            Some(n) => {
                n.recover().await;
                executor.with_networks(Arc::new(n.clone()))
            }
            None => executor,
        };
        // Secrets only ever in memory: without the tmpfs, tasks that use them are refused.
        let files = match crate::files::TaskFiles::open(&config.files_dir) {
            Ok(files) => Some(Arc::new(files)),
            Err(e) => {
                tracing::warn!("tasks with secrets or configs cannot run on this node: {e}");
                None
            }
        };
        let executor = match &files {
            Some(f) => executor.with_files(f.clone()),
            None => executor,
        };
        // Images this node cannot pull come from the others: a manager says which.
        let mut ask = record.managers.clone();
        if record.manager {
            ask.retain(|m| *m != record.advertise_addr);
            ask.insert(0, record.advertise_addr.clone());
        }
        let peers =
            crate::images::PeerImages::new(executor.docker().clone(), node_tls.clone(), ask);
        let executor = executor.with_images(Arc::new(peers));
        let executor = Arc::new(executor);
        let mut description: NodeDescription =
            executor
                .describe()
                .await
                .map_err(|source| DaemonError::Docker {
                    host: config.docker_host.clone(),
                    source,
                })?;
        description.hostname = config.node_name.clone();
        let tasks = &mut parts.tasks;

        let manager = match (record.manager, listener) {
            (true, Some(listener)) => {
                let mut manager_config = ManagerConfig::new(
                    record.node_id.clone(),
                    record.raft_id,
                    config.data_dir.clone(),
                    record.advertise_addr.clone(),
                );
                manager_config.at_rest = data_key
                    .clone()
                    .map(|key| Arc::new(SealedWith(key)) as Arc<dyn shoal_raft::AtRest>);
                let peer_tls = node_tls.clone();
                manager_config.connector = Some(PeerConnector(Arc::new(move |addr: &str| {
                    shoal_pki::channel_lazy(addr, &peer_tls.client()).map_err(|e| e.to_string())
                })));
                let manager = Manager::open(manager_config).await?;
                parts.manager = Some(manager.clone());
                let join_raft = matches!(how, Start::JoinRaft);
                match how {
                    Start::Bootstrap {
                        root,
                        expiry,
                        addr_pool,
                        unlock_key,
                    } => {
                        manager
                            .bootstrap(
                                &record.cluster_id,
                                description.clone(),
                                *root,
                                expiry,
                                addr_pool,
                                unlock_key.map(|k| k.bytes().to_vec()),
                            )
                            .await?
                    }
                    Start::ForceNewCluster(state) => manager.bootstrap_from(*state).await?,
                    Start::Resume | Start::JoinRaft => {}
                }
                tasks.push(serve_manager_port(
                    &manager,
                    &self.inner.control,
                    &record.cluster_id,
                    listener,
                    &node_tls,
                    Some(executor.docker().clone()),
                    cancel.clone(),
                ));
                if join_raft {
                    join::raft_join(
                        &node_tls.client(),
                        &record.managers,
                        record.raft_id,
                        &record.advertise_addr,
                        &record.node_id,
                    )
                    .await?;
                }
                tasks.push(tokio::spawn(manager.clone().run(cancel.clone())));
                if let Some(key) = data_key.clone() {
                    tasks.push(tokio::spawn(autolock::follow(
                        manager.store().clone(),
                        config.data_dir.clone(),
                        key,
                        cancel.clone(),
                    )));
                }
                self.inner.control.open(
                    ControlApi::new(manager.store().clone()),
                    manager.logs_api(),
                    manager.raft().clone(),
                    node_tls.clone(),
                );
                Some(manager)
            }
            (true, None) => {
                return Err(DaemonError::Join(
                    "a manager needs a listening address".into(),
                ))
            }
            (false, listener) => {
                // Only managers lock (a demoted one unlocks for good).
                if let Some(key) = &data_key {
                    autolock::keep(&config.data_dir, key, None);
                }
                // A worker's port serves its images only; without it the node still runs
                // tasks, and fetches images, but shares none.
                let listener = match listener {
                    Some(l) => Some(l),
                    None => bind(&record.listen_addr)
                        .await
                        .inspect_err(|e| tracing::warn!("this worker shares no images: {e}"))
                        .ok(),
                };
                if let Some(listener) = listener {
                    tasks.push(serve_worker_port(
                        executor.docker().clone(),
                        &record.cluster_id,
                        listener,
                        &node_tls,
                        cancel.clone(),
                    ));
                }
                None
            }
        };

        let (status_tx, status_rx) = tokio::sync::mpsc::channel(1024);
        let db = TaskDb::open(&config.data_dir, data_key.clone())?;
        let worker = Worker::new(executor.clone(), db, status_tx).await?;
        let identity = AgentIdentity {
            node_id: record.node_id.clone(),
            description,
            addr: record.advertise_addr.clone(),
        };
        // A manager's agent talks to its own dispatcher first, then to the other managers
        // its Raft log knows of.
        let mut managers = record.managers.clone();
        if let Some(manager) = &manager {
            for (_, addr) in manager.raft().status().voters {
                if !managers.contains(&addr) {
                    managers.push(addr);
                }
            }
            managers.retain(|m| *m != record.advertise_addr);
            managers.insert(0, record.advertise_addr.clone());
        }
        tasks.push(tokio::spawn(crate::tls::renew_loop(
            node_tls.clone(),
            managers.clone(),
            record.manager,
            self.inner.roles.clone(),
            cancel.clone(),
        )));
        let role_tx = self.inner.roles.clone();
        let stop = cancel.clone();
        let session_networks = networks.clone();
        tasks.push(tokio::spawn(async move {
            session::run(
                identity,
                managers,
                node_tls,
                session::Local {
                    worker: &worker,
                    networks: session_networks.as_ref(),
                    files: files.as_deref(),
                },
                status_rx,
                role_tx,
                stop,
            )
            .await;
            worker.shutdown().await;
        }));
        tracing::info!(node = %record.node_id, manager = record.manager, addr = %record.advertise_addr, "node is in the swarm");
        Ok(Member {
            record,
            manager,
            executor,
            networks,
            network_stop,
            cancel,
            tasks: std::mem::take(tasks),
        })
    }

    /// Act on what sessions hear, for the daemon's whole life: the role the managers want
    /// this node to have (promote/demote; this runs outside the member, since a role change
    /// restarts it), and the managers to remember for the next start.
    async fn follow_roles(self, mut heard: tokio::sync::mpsc::Receiver<Heard>) {
        while let Some(news) = heard.recv().await {
            let result = match news {
                Heard::Role(role) => self.change_role(role == NodeRole::Manager).await,
                Heard::Managers(managers) => self.remember_managers(managers).await,
                Heard::Removed => {
                    self.inner
                        .removed
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    Ok(())
                }
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "acting on the session's news failed; will retry on the next message");
            }
        }
    }

    /// Keep the managers a session named in `node.json`, so a restart finds the swarm even
    /// when the managers known at join time are gone.
    async fn remember_managers(&self, managers: Vec<String>) -> Result<(), DaemonError> {
        let mut member = self.inner.member.lock().await;
        let Some(current) = member.as_mut() else {
            return Ok(());
        };
        if current.record.managers == managers {
            return Ok(());
        }
        current.record.managers = managers;
        record::save(&self.inner.config.data_dir, &current.record)?;
        Ok(())
    }

    /// Restart this member in its new role: a certificate for it, then manager (joining
    /// Raft) or worker (dropping the Raft state). Containers keep running throughout.
    async fn change_role(&self, manager: bool) -> Result<(), DaemonError> {
        let mut member = self.inner.member.lock().await;
        let Some(current) = member.as_ref() else {
            return Ok(());
        };
        if current.record.manager == manager {
            return Ok(());
        }
        let data_key = self.data_key()?;
        let node_tls = NodeTls::load(&self.certs_dir(), Some(data_key.clone()))?
            .ok_or_else(|| DaemonError::NoCertificates(self.certs_dir()))?;
        let mut record = current.record.clone();
        let renewed =
            join::renew_certificate(&node_tls.client(), &record.managers, &node_tls.certs())
                .await?;
        let role = renewed.identity()?.role;
        if (role == Role::Manager) != manager {
            return Err(DaemonError::Join(format!(
                "the CA still signs this node as a {role}: the role change has not reached it yet"
            )));
        }
        renewed.save(&self.certs_dir(), Some(&data_key))?;
        if let Some(current) = member.take() {
            self.stop(current).await;
        }
        record.manager = manager;
        let listener = if manager {
            record.raft_id = rand::random::<u64>().max(1);
            Some(bind(&record.listen_addr).await?)
        } else {
            self.drop_raft_state().await;
            None
        };
        record::save(&self.inner.config.data_dir, &record)?;
        let start = if manager {
            Start::JoinRaft
        } else {
            Start::Resume
        };
        let failed = match self.start(record.clone(), listener, start).await {
            Ok(started) => {
                *member = Some(started);
                return Ok(());
            }
            Err(e) => e,
        };
        // Never left without a member: a promotion that cannot join Raft yet (the leader
        // busy, unreachable) goes on as a worker; the session's next word retries it.
        if !manager {
            return Err(failed);
        }
        tracing::warn!(error = %failed, "joining raft as a promoted manager failed; running on as a worker until the next try");
        self.drop_raft_state().await;
        let mut worker = record;
        worker.manager = false;
        worker.raft_id = 0;
        record::save(&self.inner.config.data_dir, &worker)?;
        *member = Some(self.start(worker, None, Start::Resume).await?);
        Err(failed)
    }

    /// Remove the Raft state of a member that is a manager no more (or not yet).
    async fn drop_raft_state(&self) {
        match tokio::fs::remove_dir_all(self.inner.config.data_dir.join("raft")).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(error = %e, "removing the raft state of a worker"),
        }
    }

    async fn stop(&self, member: Member) {
        member.network_stop.cancel();
        self.stop_keeping_networks(member).await;
    }

    /// [`Daemon::stop`], leaving the network driver serving (its token is the caller's).
    async fn stop_keeping_networks(&self, member: Member) {
        self.inner.control.close();
        member.cancel.cancel();
        for task in member.tasks {
            let _ = task.await;
        }
        if let Some(manager) = member.manager {
            if let Err(e) = manager.shutdown().await {
                tracing::warn!(error = %e, "raft shutdown");
            }
        }
    }

    /// Remove the swarm state under the data dir (Raft, task database, record).
    async fn wipe(&self) -> Result<(), DaemonError> {
        let dir = &self.inner.config.data_dir;
        record::remove(dir)?;
        // A node that joins again makes a new data key, in the open.
        *self
            .inner
            .data_key
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
        match tokio::fs::remove_file(dir.join(vault::KEYS_FILE)).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(DaemonError::Cleanup {
                    path: dir.join(vault::KEYS_FILE),
                    source,
                })
            }
        }
        for sub in ["raft", "tasks", "certificates"] {
            let path = dir.join(sub);
            match tokio::fs::remove_dir_all(&path).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(DaemonError::Cleanup { path, source }),
            }
        }
        Ok(())
    }
}

/// Raft's values on disk, sealed with the node's data key.
#[derive(Debug)]
struct SealedWith(DataKey);

impl shoal_raft::AtRest for SealedWith {
    fn seal(&self, plain: &[u8]) -> Result<Vec<u8>, String> {
        self.0.seal(plain).map_err(|e| e.to_string())
    }
    fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, String> {
        self.0
            .open(sealed)
            .map_err(|_| "the raft data does not open with this node's data key".to_string())
    }
}

/// What [`Daemon::start`] has started so far, to stop again when it fails.
struct Parts {
    cancel: CancellationToken,
    network_stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    manager: Option<Manager>,
}

/// How a member starts.
enum Start {
    /// From its record, as it was.
    Resume,
    /// As the first manager of a new cluster.
    Bootstrap {
        root: Box<RootCaObject>,
        expiry: Duration,
        addr_pool: AddrPool,
        /// `--autolock`: the key the data key is kept sealed by.
        unlock_key: Option<UnlockKey>,
    },
    /// As a manager new to Raft: ask the leader to add it.
    JoinRaft,
    /// As the only manager of a fresh Raft that takes over this state (lost quorum).
    ForceNewCluster(Box<shoal_proto::StoreSnapshot>),
}

/// The IPv4 underlay address of an advertise address ("10.78.0.12:4242").
fn underlay_of(advertise_addr: &str) -> Option<std::net::Ipv4Addr> {
    shoal_proto::names::host_of(advertise_addr).parse().ok()
}

/// Bind the listen address (default 0.0.0.0:4242); returns the bound address too.
async fn listen(listen_addr: &str) -> Result<(TcpListener, SocketAddr), DaemonError> {
    let listen_addr = if listen_addr.is_empty() {
        format!("0.0.0.0:{DEFAULT_PORT}")
    } else {
        with_port(listen_addr, DEFAULT_PORT)
    };
    let listener = bind(&listen_addr).await?;
    let bound = listener
        .local_addr()
        .map_err(|source| DaemonError::Listen {
            addr: listen_addr.clone(),
            source,
        })?;
    Ok((listener, bound))
}

/// `host` or `host:port` -> `host:port`.
fn with_port(addr: &str, port: u16) -> String {
    if addr.parse::<SocketAddr>().is_ok() || (addr.contains(':') && !addr.contains("::")) {
        addr.to_string()
    } else {
        format!("{addr}:{port}")
    }
}

async fn bind(addr: &str) -> Result<TcpListener, DaemonError> {
    let parsed: SocketAddr = addr.parse().map_err(|_| DaemonError::Address {
        addr: addr.to_string(),
        why: "use IP:PORT, e.g. 0.0.0.0:4242".into(),
    })?;
    // A role change stops the member and binds again at once: the stopped server's accept
    // loop lets go of the port a moment later. Wait for that, not for another process.
    let mut tries = 0;
    loop {
        match TcpListener::bind(parsed).await {
            Ok(listener) => return Ok(listener),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < BIND_TRIES => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(source) => {
                return Err(DaemonError::Listen {
                    addr: addr.to_string(),
                    source,
                })
            }
        }
    }
}

/// How many times [`bind`] tries a port in use (50 ms apart) before it gives up.
const BIND_TRIES: u32 = 40;

/// The address to advertise: the one given (port defaulting to the bound one), else the
/// bound address, with an unspecified IP replaced by loopback.
fn advertise(given: &str, bound: SocketAddr) -> Result<String, DaemonError> {
    if !given.is_empty() {
        let full = with_port(given, bound.port());
        full.parse::<SocketAddr>()
            .map_err(|_| DaemonError::Address {
                addr: given.to_string(),
                why: "use an IP address, optionally with a port, e.g. 10.0.0.1 or 10.0.0.1:4242"
                    .into(),
            })?;
        return Ok(full);
    }
    let ip = if bound.ip().is_unspecified() {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        bound.ip()
    };
    Ok(SocketAddr::new(ip, bound.port()).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(with_port("10.0.0.1", 4242), "10.0.0.1:4242");
        assert_eq!(with_port("10.0.0.1:5000", 4242), "10.0.0.1:5000");
        let bound: SocketAddr = "0.0.0.0:4300".parse().expect("addr");
        assert_eq!(advertise("", bound).expect("ok"), "127.0.0.1:4300");
        assert_eq!(advertise("10.1.2.3", bound).expect("ok"), "10.1.2.3:4300");
        assert!(advertise("not an ip", bound).is_err());
    }
}
