//! The node's overlay networks, as its assignments say: the data plane brought to every
//! network view the managers send ([`shoal_overlay`]), the Docker network driver served to
//! the engine, and a Docker network per Shoal network that task containers join.
//!
//! A task's container is created on its networks with the address the leader allocated;
//! the engine asks this node's driver for the interface when the container starts, so the
//! process never runs unwired ([`NetworkProvider`] is how the executor asks for them).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, RwLock};

use bollard::errors::Error as DockerError;
use bollard::models::{Ipam, IpamConfig, NetworkCreateRequest};
use bollard::Docker;
use shoal_overlay::dns::{self, Names, NetworkNames, ServiceNames, SharedNames};
use shoal_overlay::{
    namespace_of, namespace_prefix, plugin_name, reconcile, DataplaneThread, IpCommands, Mesh,
    MeshPort, Network, NetworkState, Op, Peer, Plugin, Registry, Remote, Routes, Tunnel,
    TunnelConfig, Vip, ENCRYPTED_OVERHEAD, NETWORK_OPTION, VXLAN_OVERHEAD,
};
use shoal_proto::EndpointMode;
use shoal_proto::NetworkView;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::executor::ExecError;

/// The MTU option of a network, as docker's.
const MTU_OPTION: &str = "com.docker.network.driver.mtu";
/// The option that makes a network encrypted, as docker's.
const ENCRYPTED_OPTION: &str = "encrypted";
/// How often the encrypted tunnels' traffic keys are replaced, unless
/// `SHOAL_TUNNEL_KEY_UPDATE_MS` says otherwise (tests shorten it).
const KEY_UPDATE: std::time::Duration = std::time::Duration::from_secs(120);

fn key_update() -> std::time::Duration {
    std::env::var("SHOAL_TUNNEL_KEY_UPDATE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(KEY_UPDATE, std::time::Duration::from_millis)
}

/// What the node's encrypted tunnels are made from: given the certificate (PEM) last
/// used, the node's current one and its TLS when they differ. Asked when the first
/// encrypted network arrives and on every change after, so a renewal reaches the tunnels.
pub type TunnelTls =
    Arc<dyn Fn(&str) -> Result<Option<(String, shoal_pki::TunnelTls)>, String> + Send + Sync>;

/// The tunnels' TLS from the node's certificates as they are when asked.
pub fn tunnel_tls(tls: crate::tls::NodeTls) -> TunnelTls {
    Arc::new(move |last: &str| {
        let certs = tls.certs();
        if certs.cert_pem == last {
            return Ok(None);
        }
        let made = shoal_pki::TunnelTls::new(&certs, tls.refused()).map_err(|e| e.to_string())?;
        Ok(Some((certs.cert_pem, made)))
    })
}
/// How often, and how many times, a Docker network still in use is tried again.
const PRUNE_RETRY: std::time::Duration = std::time::Duration::from_secs(1);
const PRUNE_RETRIES: usize = 60;
/// Label on the Docker networks Shoal makes.
const NETWORK_LABEL: &str = "com.shoal.network.id";

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("the data plane: {0}")]
    Dataplane(#[from] shoal_overlay::DataplaneError),
    #[error("serving the network driver at {dir}: {source}")]
    Plugin { dir: String, source: std::io::Error },
    #[error("starting the data plane's thread: {0}")]
    Thread(std::io::Error),
}

/// A Docker network a task's container joins, and the resolver it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerNetwork {
    pub name: String,
    /// The network's resolver (its gateway address): the container's DNS server.
    pub resolver: Ipv4Addr,
}

/// How the executor asks for a task's networks: the Docker network to join for a Shoal
/// network, made on the engine if it is not there yet.
#[async_trait::async_trait]
pub trait NetworkProvider: Send + Sync {
    async fn docker_network(&self, network_id: &str) -> Result<DockerNetwork, ExecError>;
}

/// The node's networks; cheap to clone.
#[derive(Clone)]
pub struct Networks {
    inner: Arc<Inner>,
}

struct Inner {
    node_id: String,
    underlay: Ipv4Addr,
    underlay_mtu: u32,
    registry: Registry,
    dataplane: DataplaneThread,
    docker: Docker,
    driver: String,
    /// Serialises the making of Docker networks (two tasks may need one at once).
    making: Mutex<()>,
    /// The names every network's resolver answers.
    names: SharedNames,
    /// The node's own resolvers, for every other name.
    upstream: Arc<Vec<SocketAddr>>,
    /// Network id -> its resolver's stop switch.
    resolvers: Mutex<HashMap<String, CancellationToken>>,
    /// The networks the last views named: Docker networks are pruned when this changes.
    carried: Mutex<Vec<String>>,
    /// The routing mesh as last put in the kernel (`None`: not yet since the start).
    mesh: Mutex<Option<Option<Mesh>>>,
    /// The encrypted networks' tunnel: started with the first encrypted network; its
    /// error, if it could not be (tasks on encrypted networks are then refused).
    tunnel: Mutex<Option<Result<Tunnel, String>>>,
    tunnel_tls: Option<TunnelTls>,
    /// The certificate the tunnel runs with.
    tunnel_cert: Mutex<String>,
    /// The encrypted VNIs last guarded (`None`: not yet since the start).
    guarded: Mutex<Option<std::collections::BTreeSet<u32>>>,
    cancel: CancellationToken,
}

impl Networks {
    /// Start the data plane's thread and serve the driver in `plugin_dir` until `cancel`.
    /// Encrypted networks get their tunnels' TLS from `tunnel_tls` (none: refused).
    pub fn start(
        node_id: &str,
        underlay: Ipv4Addr,
        docker: Docker,
        plugin_dir: &Path,
        tunnel_tls: Option<TunnelTls>,
        cancel: CancellationToken,
    ) -> Result<Self, NetworkError> {
        let dataplane =
            DataplaneThread::spawn(Box::new(IpCommands::new(namespace_prefix(node_id))))
                .map_err(NetworkError::Thread)?;
        let registry = Registry::new();
        let driver = plugin_name(node_id);
        Plugin::new(registry.clone(), dataplane.clone())
            .serve(plugin_dir, &driver, cancel.clone())
            .map_err(|source| NetworkError::Plugin {
                dir: plugin_dir.display().to_string(),
                source,
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                node_id: node_id.to_string(),
                underlay,
                underlay_mtu: shoal_overlay::underlay_mtu(underlay),
                registry,
                dataplane,
                docker,
                driver,
                making: Mutex::new(()),
                names: Arc::new(RwLock::new(Names::new())),
                upstream: Arc::new(dns::upstream_resolvers(
                    &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
                )),
                resolvers: Mutex::new(HashMap::new()),
                carried: Mutex::new(Vec::new()),
                mesh: Mutex::new(None),
                tunnel: Mutex::new(None),
                tunnel_tls,
                tunnel_cert: Mutex::new(String::new()),
                guarded: Mutex::new(None),
                cancel,
            }),
        })
    }

    /// Bring the data plane to `views` (the networks the node's tasks join, with every
    /// task address on them). Errors are logged: the next assignments message retries.
    pub async fn apply(&self, views: &[NetworkView]) {
        let states = self.states(views);
        let networks: Vec<Network> = states.iter().map(|s| s.network.clone()).collect();
        self.inner.registry.set_networks(networks.clone());
        self.inner.registry.set_vips(vips_of(views));
        self.inner.registry.set_routers(routers_of(views));
        *self.inner.names.write().unwrap_or_else(|p| p.into_inner()) = names_of(views);
        let mesh = self.mesh(views);
        self.carry_encrypted(views, &networks).await;
        if mesh.is_none() {
            // Before its namespace goes: the router's device holds what names its rules.
            self.program_mesh(None, &[]).await;
        }
        let result = self
            .inner
            .dataplane
            .run(move |dp| reconcile(dp, &states))
            .await;
        let remade: Vec<String> = match result {
            Ok(ops) => {
                if !ops.is_empty() {
                    tracing::debug!(changes = ops.len(), "overlay data plane updated");
                }
                ops.iter()
                    .filter_map(|op| match op {
                        Op::CreateNetwork(n) => Some(n.id.clone()),
                        _ => None,
                    })
                    .collect()
            }
            Err(e) => {
                tracing::warn!("overlay data plane: {e}");
                Vec::new()
            }
        };
        self.run_resolvers(&networks, &remade).await;
        if mesh.is_some() {
            self.program_mesh(mesh, &remade).await;
        }
        self.program_sandboxes().await;
        let mut ids: Vec<String> = networks.iter().map(|n| n.id.clone()).collect();
        ids.sort();
        let changed = *self.inner.carried.lock().await != ids;
        if changed {
            *self.inner.carried.lock().await = ids.clone();
            if !self.prune_docker_networks(&ids).await {
                // A container still on one is going: try again once it is gone.
                let this = self.clone();
                tokio::spawn(async move {
                    for _ in 0..PRUNE_RETRIES {
                        tokio::time::sleep(PRUNE_RETRY).await;
                        let carried = this.inner.carried.lock().await.clone();
                        if carried != ids || this.prune_docker_networks(&ids).await {
                            return;
                        }
                    }
                });
            }
        }
    }

    /// Remove this node's Docker networks for Shoal networks it no longer carries; whether
    /// every one went (the engine refuses while a container is still on one).
    async fn prune_docker_networks(&self, keep: &[String]) -> bool {
        let filters = HashMap::from([("label".to_string(), vec![NETWORK_LABEL.to_string()])]);
        let found = self
            .inner
            .docker
            .list_networks(Some(bollard::query_parameters::ListNetworksOptions {
                filters: Some(filters),
            }))
            .await
            .unwrap_or_default();
        let prefix = format!("{}-", self.inner.driver);
        let mut all = true;
        for network in found {
            let (Some(name), Some(labels)) = (network.name, network.labels) else {
                continue;
            };
            let Some(id) = labels.get(NETWORK_LABEL) else {
                continue;
            };
            if name.starts_with(&prefix) && !keep.contains(id) {
                match self.inner.docker.remove_network(&name).await {
                    Ok(()) => tracing::info!(docker = %name, "docker network removed"),
                    Err(e) => {
                        tracing::debug!(docker = %name, "docker network kept for now: {e}");
                        all = false;
                    }
                }
            }
        }
        all
    }

    /// The encrypted networks among `networks`: the tunnel started (once), told where each
    /// remote task lives, and plain VXLAN of their VNIs kept off the underlay.
    async fn carry_encrypted(&self, views: &[NetworkView], networks: &[Network]) {
        let vnis: std::collections::BTreeSet<u32> = networks
            .iter()
            .filter(|n| n.encrypted)
            .map(|n| n.vni)
            .collect();
        if !vnis.is_empty() {
            if let Some(Ok(tunnel)) = self.tunnel().await.as_ref() {
                tunnel.set_routes(self.routes(views, &vnis));
                self.renew_tunnel(tunnel).await;
            }
        }
        let mut guarded = self.inner.guarded.lock().await;
        if guarded.as_ref() != Some(&vnis) {
            let wanted = vnis.clone();
            match self
                .inner
                .dataplane
                .run(move |dp| dp.guard_encrypted(&wanted))
                .await
            {
                Ok(()) => *guarded = Some(vnis),
                Err(e) => tracing::warn!("encrypted networks' guard: {e}"),
            }
        }
    }

    /// A renewed node certificate goes to the tunnel's next handshakes.
    async fn renew_tunnel(&self, tunnel: &Tunnel) {
        let Some(tls) = &self.inner.tunnel_tls else {
            return;
        };
        let mut cert = self.inner.tunnel_cert.lock().await;
        match tls(&cert) {
            Ok(None) => {}
            Ok(Some((pem, made))) => match tunnel.reload(made.server, made.client) {
                Ok(()) => {
                    tracing::info!("encrypted tunnels use the renewed certificate");
                    *cert = pem;
                }
                Err(e) => tracing::warn!("encrypted tunnels keep the old certificate: {e}"),
            },
            Err(e) => tracing::warn!("encrypted tunnels keep the old certificate: {e}"),
        }
    }

    /// The tunnel, started on first use.
    async fn tunnel(&self) -> tokio::sync::MutexGuard<'_, Option<Result<Tunnel, String>>> {
        let mut tunnel = self.inner.tunnel.lock().await;
        if tunnel.is_none() {
            let started = match &self.inner.tunnel_tls {
                None => Err("this node's agent runs without tunnel certificates".to_string()),
                Some(tls) => match tls("") {
                    Err(e) => Err(e),
                    Ok(None) => Err("no node certificate for the tunnels".to_string()),
                    Ok(Some((pem, tls))) => {
                        *self.inner.tunnel_cert.lock().await = pem;
                        Tunnel::start(
                            TunnelConfig {
                                server: tls.server,
                                client: tls.client,
                                server_name: shoal_pki::NODE_SAN.to_string(),
                                identify: Arc::new(|der| {
                                    shoal_pki::identity_of_cert_der(der).ok().map(|i| i.node_id)
                                }),
                                underlay: self.inner.underlay,
                                underlay_mtu: self.inner.underlay_mtu,
                                port: shoal_overlay::tunnel::TUNNEL_PORT,
                                device: shoal_overlay::tunnel::tun_device(&namespace_prefix(
                                    &self.inner.node_id,
                                )),
                                vxlan_port: shoal_overlay::VXLAN_PORT,
                                key_update: key_update(),
                            },
                            self.inner.cancel.child_token(),
                        )
                        .await
                        .map_err(|e| e.to_string())
                    }
                },
            };
            if let Err(e) = &started {
                tracing::error!("encrypted overlay networks cannot be carried on this node: {e}");
            }
            *tunnel = Some(started);
        }
        tunnel
    }

    /// Where every remote task of the encrypted networks (`vnis`) lives.
    fn routes(&self, views: &[NetworkView], vnis: &std::collections::BTreeSet<u32>) -> Routes {
        let mut routes = Routes {
            vnis: vnis.clone(),
            ..Routes::default()
        };
        for view in views {
            let encrypted = view
                .network
                .as_ref()
                .and_then(|n| n.allocation.as_ref())
                .is_some_and(|a| vnis.contains(&a.vni));
            if !encrypted {
                continue;
            }
            for p in view
                .peers
                .iter()
                .filter(|p| p.node_id != self.inner.node_id)
            {
                if let (Some(addr), Ok(node)) = (host(&p.addr), p.node_addr.parse()) {
                    routes.add(
                        addr,
                        Peer {
                            node_id: p.node_id.clone(),
                            addr: node,
                        },
                    );
                }
            }
        }
        routes
    }

    /// The node's routing mesh brought to `mesh` when it changed, or when the ingress
    /// network was made anew (its namespace held the rest).
    async fn program_mesh(&self, mesh: Option<Mesh>, remade: &[String]) {
        let mut last = self.inner.mesh.lock().await;
        let remade = mesh
            .as_ref()
            .is_some_and(|m| remade.contains(&m.network.id));
        if last.as_ref() == Some(&mesh) && !remade {
            return;
        }
        let wanted = mesh.clone();
        match self
            .inner
            .dataplane
            .run(move |dp| dp.program_mesh(wanted.as_ref()))
            .await
        {
            Ok(()) => {
                if let Some(m) = &mesh {
                    tracing::info!(router = %m.router, ports = m.ports.len(), "routing mesh updated");
                }
                *last = Some(mesh);
            }
            Err(e) => {
                tracing::warn!("routing mesh: {e}");
                *last = None;
            }
        }
    }

    /// Every local task's namespace gets the VIP rules of its networks as they are now.
    async fn program_sandboxes(&self) {
        for (sandbox, program) in self.inner.registry.stale_sandboxes() {
            let (target, wanted) = (sandbox.clone(), program.clone());
            let result = self
                .inner
                .dataplane
                .run(move |dp| dp.program_sandbox(&target, &wanted))
                .await;
            match result {
                Ok(()) => self.inner.registry.programmed(&sandbox, &program),
                // Its container is gone: the engine's Leave forgets it.
                Err(e) => tracing::debug!(sandbox = %sandbox, "VIP rules not updated: {e}"),
            }
        }
    }

    /// After a restart: which Docker networks are Shoal's, and which task containers sit on
    /// them in which namespace (their VIP rules must keep following).
    pub async fn recover(&self) {
        let docker = &self.inner.docker;
        let filters = HashMap::from([("label".to_string(), vec![NETWORK_LABEL.to_string()])]);
        let networks = docker
            .list_networks(Some(bollard::query_parameters::ListNetworksOptions {
                filters: Some(filters),
            }))
            .await
            .unwrap_or_default();
        for network in networks {
            let shoal_id = network
                .labels
                .as_ref()
                .and_then(|l| l.get(NETWORK_LABEL))
                .cloned();
            if let (Some(docker_id), Some(shoal_id)) = (network.id, shoal_id) {
                self.inner.registry.map_docker(&docker_id, &shoal_id);
            }
        }
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!(
                "{}={}",
                shoal_proto::names::LABEL_NODE_ID,
                self.inner.node_id
            )],
        )]);
        let containers = docker
            .list_containers(Some(bollard::query_parameters::ListContainersOptions {
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .unwrap_or_default();
        for id in containers.into_iter().filter_map(|c| c.id) {
            let Ok(inspected) = docker.inspect_container(&id, None).await else {
                continue;
            };
            let Some(settings) = inspected.network_settings else {
                continue;
            };
            let Some(sandbox) = settings.sandbox_key.filter(|s| !s.is_empty()) else {
                continue;
            };
            for endpoint in settings.networks.unwrap_or_default().into_values() {
                let shoal_id = endpoint
                    .network_id
                    .as_deref()
                    .and_then(|d| self.inner.registry.docker_to_shoal(d));
                if let (Some(endpoint_id), Some(shoal_id)) = (endpoint.endpoint_id, shoal_id) {
                    self.inner.registry.join(&endpoint_id, &shoal_id, &sandbox);
                }
            }
        }
    }

    /// A resolver on every network's gateway; a network made anew gets a new one (its
    /// namespace, and the old socket with it, is gone).
    async fn run_resolvers(&self, networks: &[Network], remade: &[String]) {
        let mut resolvers = self.inner.resolvers.lock().await;
        resolvers.retain(|id, stop| {
            let keep = networks.iter().any(|n| n.id == *id) && !remade.contains(id);
            if !keep {
                stop.cancel();
            }
            keep
        });
        for network in networks {
            if resolvers.contains_key(&network.id) {
                continue;
            }
            let target = network.clone();
            let bound = self
                .inner
                .dataplane
                .run(move |dp| dp.bind_udp(&target, 53))
                .await
                .and_then(|socket| {
                    tokio::net::UdpSocket::from_std(socket).map_err(|e| {
                        shoal_overlay::DataplaneError::Command {
                            command: "tokio socket".into(),
                            message: e.to_string(),
                        }
                    })
                });
            match bound {
                Ok(socket) => {
                    let stop = self.inner.cancel.child_token();
                    tokio::spawn(dns::serve(
                        socket,
                        network.id.clone(),
                        self.inner.names.clone(),
                        self.inner.upstream.clone(),
                        stop.clone(),
                    ));
                    resolvers.insert(network.id.clone(), stop);
                }
                Err(e) => tracing::warn!(network = %network.id, "no resolver on the network: {e}"),
            }
        }
    }

    /// Remove every network this node carries (leaving the swarm).
    pub async fn clear(&self) -> Result<(), NetworkError> {
        self.inner.registry.set_networks([]);
        self.run_resolvers(&[], &[]).await;
        self.program_mesh(None, &[]).await;
        let none = std::collections::BTreeSet::new();
        if let Err(e) = self
            .inner
            .dataplane
            .run(move |dp| dp.guard_encrypted(&none))
            .await
        {
            tracing::warn!("encrypted networks' guard left behind: {e}");
        }
        self.prune_docker_networks(&[]).await;
        self.inner.dataplane.run(|dp| reconcile(dp, &[])).await?;
        Ok(())
    }

    fn states(&self, views: &[NetworkView]) -> Vec<NetworkState> {
        views
            .iter()
            .filter_map(|view| {
                let network = self.network(view)?;
                // Other nodes' tasks, and (on ingress) their routers: replies of mesh
                // connections go back to the router they came in by.
                let peers = view
                    .peers
                    .iter()
                    .map(|p| (&p.node_id, &p.addr, &p.node_addr));
                let routers = view
                    .routers
                    .iter()
                    .map(|r| (&r.node_id, &r.addr, &r.node_addr));
                let remotes = peers
                    .chain(routers)
                    .filter(|(node, ..)| **node != self.inner.node_id)
                    .filter_map(|(_, addr, node_addr)| {
                        Some(Remote {
                            addr: host(addr)?,
                            // An encrypted network's frames go to the node's own relay.
                            node: if network.encrypted {
                                shoal_overlay::tunnel::RELAY_ADDR
                            } else {
                                node_addr.parse().ok()?
                            },
                        })
                    })
                    .collect();
                Some(NetworkState { network, remotes })
            })
            .collect()
    }

    fn network(&self, view: &NetworkView) -> Option<Network> {
        let n = view.network.as_ref()?;
        let allocation = n.allocation.as_ref()?;
        let (subnet, prefix) = allocation.subnet.split_once('/')?;
        let encrypted = n
            .spec
            .as_ref()
            .is_some_and(|s| s.driver_opts.contains_key(ENCRYPTED_OPTION));
        let overhead = if encrypted {
            ENCRYPTED_OVERHEAD
        } else {
            VXLAN_OVERHEAD
        };
        let mtu = n
            .spec
            .as_ref()
            .and_then(|s| s.driver_opts.get(MTU_OPTION))
            .and_then(|m| m.parse().ok())
            .unwrap_or(self.inner.underlay_mtu.saturating_sub(overhead));
        Some(Network {
            id: n.id.clone(),
            namespace: namespace_of(&self.inner.node_id, &n.id),
            vni: allocation.vni,
            subnet: subnet.parse().ok()?,
            prefix: prefix.parse().ok()?,
            gateway: allocation.gateway.parse().ok()?,
            mtu,
            internal: n.spec.as_ref().is_some_and(|s| s.internal),
            encrypted,
        })
    }

    /// This node's part of the routing mesh, from the ingress network's view: its router
    /// and every mesh port with the serving tasks it leads to. None while no port is
    /// published through the mesh (or this node has no router yet).
    fn mesh(&self, views: &[NetworkView]) -> Option<Mesh> {
        let view = views.iter().find(|v| !v.ports.is_empty())?;
        let router = view
            .routers
            .iter()
            .find(|r| r.node_id == self.inner.node_id)
            .and_then(|r| host(&r.addr))?;
        Some(Mesh {
            network: self.network(view)?,
            router,
            ports: mesh_ports(view),
        })
    }

    /// Overlay endpoints on this node now, by network id.
    pub fn endpoint_counts(&self) -> HashMap<String, usize> {
        self.inner.registry.endpoint_counts()
    }

    /// The underlay address this node's VXLAN traffic leaves from.
    pub fn underlay(&self) -> Ipv4Addr {
        self.inner.underlay
    }

    /// Docker's name for Shoal network `id` on this node's engine.
    fn docker_name(&self, id: &str) -> String {
        format!(
            "{}-{}",
            self.inner.driver,
            id.chars().take(12).collect::<String>()
        )
    }

    async fn ensure_docker_network(&self, id: &str) -> Result<DockerNetwork, ExecError> {
        let name = self.docker_name(id);
        let network = self.inner.registry.network(id).ok_or_else(|| ExecError::Network(format!(
            "network {id} is not among the networks this node carries: its assignments have not named it yet"
        )))?;
        if network.encrypted {
            if let Some(Err(e)) = self.inner.tunnel.lock().await.as_ref() {
                return Err(ExecError::Network(format!(
                    "encrypted network {id} cannot be carried on this node: {e}"
                )));
            }
        }
        let _making = self.inner.making.lock().await;
        let docker = &self.inner.docker;
        let found = DockerNetwork {
            name: name.clone(),
            resolver: network.gateway,
        };
        match docker.inspect_network(&name, None).await {
            Ok(inspected) => {
                if let Some(docker_id) = inspected.id {
                    self.inner.registry.map_docker(&docker_id, id);
                }
                return Ok(found);
            }
            Err(e) if status_of(&e) == Some(404) => {}
            Err(e) => {
                return Err(ExecError::Network(format!(
                    "inspecting docker network {name}: {e}"
                )))
            }
        }
        let request = NetworkCreateRequest {
            name: name.clone(),
            driver: Some(self.inner.driver.clone()),
            ipam: Some(Ipam {
                driver: Some(self.inner.driver.clone()),
                config: Some(vec![IpamConfig {
                    subnet: Some(format!("{}/{}", network.subnet, network.prefix)),
                    gateway: Some(network.gateway.to_string()),
                    ..Default::default()
                }]),
                options: None,
            }),
            options: Some(HashMap::from([(
                NETWORK_OPTION.to_string(),
                id.to_string(),
            )])),
            labels: Some(HashMap::from([(NETWORK_LABEL.to_string(), id.to_string())])),
            ..Default::default()
        };
        let created = docker
            .create_network(request)
            .await
            .map_err(|e| ExecError::Network(format!("creating docker network {name}: {e}")))?;
        self.inner.registry.map_docker(&created.id, id);
        tracing::info!(network = %id, docker = %name, "docker network made");
        Ok(found)
    }
}

#[async_trait::async_trait]
impl NetworkProvider for Networks {
    async fn docker_network(&self, network_id: &str) -> Result<DockerNetwork, ExecError> {
        self.ensure_docker_network(network_id).await
    }
}

fn status_of(e: &DockerError) -> Option<u16> {
    match e {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// The addresses of `service_id`'s serving tasks on a view's network.
fn serving(view: &NetworkView, service_id: &str) -> Vec<Ipv4Addr> {
    view.peers
        .iter()
        .filter(|p| p.service_id == service_id && p.serving)
        .filter_map(|p| host(&p.addr))
        .collect()
}

/// Every network's VIPs and the serving tasks each leads to, from the managers' views.
fn vips_of(views: &[NetworkView]) -> HashMap<String, Vec<Vip>> {
    views
        .iter()
        .filter_map(|view| {
            let id = view.network.as_ref()?.id.clone();
            let vips = view
                .services
                .iter()
                .filter(|s| s.mode != EndpointMode::Dnsrr as i32)
                .filter_map(|s| {
                    Some(Vip {
                        vip: host(&s.vip)?,
                        backends: serving(view, &s.service_id),
                    })
                })
                .collect();
            Some((id, vips))
        })
        .collect()
}

/// The mesh ports of the ingress network's view, each with its service's serving tasks.
fn mesh_ports(view: &NetworkView) -> Vec<MeshPort> {
    let mut ports: Vec<MeshPort> = view
        .ports
        .iter()
        .filter_map(|p| {
            Some(MeshPort {
                protocol: shoal_proto::protocol_name(p.protocol),
                published: u16::try_from(p.published_port).ok()?,
                target: u16::try_from(p.target_port).ok()?,
                backends: serving(view, &p.service_id),
            })
        })
        .collect();
    ports.sort();
    ports
}

/// The routing mesh's routers on each network (the ingress network's only).
fn routers_of(views: &[NetworkView]) -> HashMap<String, Vec<Ipv4Addr>> {
    views
        .iter()
        .filter(|v| !v.routers.is_empty())
        .filter_map(|view| {
            let id = view.network.as_ref()?.id.clone();
            Some((
                id,
                view.routers.iter().filter_map(|r| host(&r.addr)).collect(),
            ))
        })
        .collect()
}

/// What every network's resolver answers, from the managers' views.
fn names_of(views: &[NetworkView]) -> Names {
    views
        .iter()
        .filter_map(|view| {
            let id = view.network.as_ref()?.id.clone();
            let services = view
                .services
                .iter()
                .map(|s| ServiceNames {
                    name: s.name.clone(),
                    aliases: s.aliases.clone(),
                    vip: (s.mode != EndpointMode::Dnsrr as i32)
                        .then(|| host(&s.vip))
                        .flatten(),
                    tasks: serving(view, &s.service_id),
                })
                .collect();
            let tasks = view
                .peers
                .iter()
                .filter_map(|p| Some((host(&p.addr)?, p.task_id.clone())))
                .collect();
            Some((id, NetworkNames { services, tasks }))
        })
        .collect()
}

/// "10.0.1.5/24" -> 10.0.1.5.
pub fn host(addr: &str) -> Option<Ipv4Addr> {
    addr.split('/').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use shoal_proto::{Network as ProtoNetwork, NetworkPeer, ServiceEndpoint};

    use super::*;

    fn peer(task: &str, service: &str, addr: &str, serving: bool) -> NetworkPeer {
        NetworkPeer {
            task_id: task.into(),
            service_id: service.into(),
            addr: addr.into(),
            node_id: "n2".into(),
            node_addr: "10.78.0.12".into(),
            serving,
        }
    }

    fn view() -> NetworkView {
        NetworkView {
            network: Some(ProtoNetwork {
                id: "net".into(),
                ..Default::default()
            }),
            peers: vec![
                peer("t1", "web", "10.0.1.3/24", true),
                peer("t2", "web", "10.0.1.4/24", false),
                peer("t3", "rr", "10.0.1.5/24", true),
            ],
            services: vec![
                ServiceEndpoint {
                    service_id: "web".into(),
                    name: "web".into(),
                    aliases: vec!["www".into()],
                    mode: EndpointMode::Vip as i32,
                    vip: "10.0.1.2/24".into(),
                },
                ServiceEndpoint {
                    service_id: "rr".into(),
                    name: "rr".into(),
                    aliases: vec![],
                    mode: EndpointMode::Dnsrr as i32,
                    vip: String::new(),
                },
            ],
            routers: vec![shoal_proto::MeshRouter {
                node_id: "n1".into(),
                addr: "10.0.1.250/24".into(),
                node_addr: "10.78.0.11".into(),
            }],
            ports: vec![shoal_proto::MeshPort {
                service_id: "web".into(),
                protocol: shoal_proto::PortProtocol::Udp as i32,
                published_port: 5353,
                target_port: 53,
            }],
        }
    }

    #[test]
    fn a_mesh_port_leads_to_its_services_serving_tasks_and_routers_reach_sandboxes() {
        let ports = mesh_ports(&view());
        assert_eq!(
            ports,
            [MeshPort {
                protocol: "udp",
                published: 5353,
                target: 53,
                backends: vec![Ipv4Addr::new(10, 0, 1, 3)],
            }]
        );
        assert_eq!(routers_of(&[view()])["net"], [Ipv4Addr::new(10, 0, 1, 250)]);
    }

    #[test]
    fn views_become_names_and_vips_of_serving_tasks_only() {
        let ip = |last: u8| Ipv4Addr::new(10, 0, 1, last);
        let names = names_of(&[view()]);
        let net = &names["net"];
        assert_eq!(net.services[0].vip, Some(ip(2)));
        assert_eq!(net.services[0].tasks, [ip(3)], "t2 is not serving");
        assert_eq!(net.services[1].vip, None, "dnsrr has no VIP");
        assert_eq!(net.tasks.len(), 3, "every address names its task");
        let vips = vips_of(&[view()]);
        assert_eq!(
            vips["net"],
            [Vip {
                vip: ip(2),
                backends: vec![ip(3)]
            }]
        );
    }
}
