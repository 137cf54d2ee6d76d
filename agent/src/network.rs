//! The node's overlay networks, as its assignments say: the data plane brought to every
//! network view the managers send ([`shoal_overlay`]), the Docker network driver served to
//! the engine, and a Docker network per Shoal network that task containers join.
//!
//! A task's container is created on its networks with the address the leader allocated;
//! the engine asks this node's driver for the interface when the container starts, so the
//! process never runs unwired ([`NetworkProvider`] is how the executor asks for them).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;

use bollard::errors::Error as DockerError;
use bollard::models::{Ipam, IpamConfig, NetworkCreateRequest};
use bollard::Docker;
use shoal_overlay::{
    namespace_of, namespace_prefix, plugin_name, reconcile, DataplaneThread, IpCommands,
    Network, NetworkState, Plugin, Registry, Remote, NETWORK_OPTION, VXLAN_OVERHEAD,
};
use shoal_proto::NetworkView;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::executor::ExecError;

/// The MTU option of a network, as docker's.
const MTU_OPTION: &str = "com.docker.network.driver.mtu";
/// Label on the Docker networks Shoal makes.
const NETWORK_LABEL: &str = "com.shoal.network.id";

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("the data plane: {0}")]
    Dataplane(#[from] shoal_overlay::DataplaneError),
    #[error("serving the network driver at {dir}: {source}")]
    Plugin {
        dir: String,
        source: std::io::Error,
    },
    #[error("starting the data plane's thread: {0}")]
    Thread(std::io::Error),
}

/// How the executor asks for a task's networks: the Docker network to join for a Shoal
/// network, made on the engine if it is not there yet.
#[async_trait::async_trait]
pub trait NetworkProvider: Send + Sync {
    async fn docker_network(&self, network_id: &str) -> Result<String, ExecError>;
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
}

impl Networks {
    /// Start the data plane's thread and serve the driver in `plugin_dir` until `cancel`.
    pub fn start(
        node_id: &str,
        underlay: Ipv4Addr,
        docker: Docker,
        plugin_dir: &Path,
        cancel: CancellationToken,
    ) -> Result<Self, NetworkError> {
        let dataplane =
            DataplaneThread::spawn(Box::new(IpCommands::new(namespace_prefix(node_id))))
                .map_err(NetworkError::Thread)?;
        let registry = Registry::new();
        let driver = plugin_name(node_id);
        Plugin::new(registry.clone(), dataplane.clone())
            .serve(plugin_dir, &driver, cancel)
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
            }),
        })
    }

    /// Bring the data plane to `views` (the networks the node's tasks join, with every
    /// task address on them). Errors are logged: the next assignments message retries.
    pub async fn apply(&self, views: &[NetworkView]) {
        let states = self.states(views);
        self.inner
            .registry
            .set_networks(states.iter().map(|s| s.network.clone()));
        let result = self
            .inner
            .dataplane
            .run(move |dp| reconcile(dp, &states))
            .await;
        match result {
            Ok(0) => {}
            Ok(n) => tracing::debug!(changes = n, "overlay data plane updated"),
            Err(e) => tracing::warn!("overlay data plane: {e}"),
        }
    }

    /// Remove every network this node carries (leaving the swarm).
    pub async fn clear(&self) -> Result<(), NetworkError> {
        self.inner.registry.set_networks([]);
        self.inner.dataplane.run(|dp| reconcile(dp, &[])).await?;
        Ok(())
    }

    fn states(&self, views: &[NetworkView]) -> Vec<NetworkState> {
        views
            .iter()
            .filter_map(|view| {
                let network = self.network(view)?;
                let remotes = view
                    .peers
                    .iter()
                    .filter(|p| p.node_id != self.inner.node_id)
                    .filter_map(|p| {
                        Some(Remote {
                            addr: host(&p.addr)?,
                            node: p.node_addr.parse().ok()?,
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
        let mtu = n
            .spec
            .as_ref()
            .and_then(|s| s.driver_opts.get(MTU_OPTION))
            .and_then(|m| m.parse().ok())
            .unwrap_or(self.inner.underlay_mtu.saturating_sub(VXLAN_OVERHEAD));
        Some(Network {
            id: n.id.clone(),
            namespace: namespace_of(&self.inner.node_id, &n.id),
            vni: allocation.vni,
            subnet: subnet.parse().ok()?,
            prefix: prefix.parse().ok()?,
            gateway: allocation.gateway.parse().ok()?,
            mtu,
        })
    }

    /// The underlay address this node's VXLAN traffic leaves from.
    pub fn underlay(&self) -> Ipv4Addr {
        self.inner.underlay
    }

    /// Docker's name for Shoal network `id` on this node's engine.
    fn docker_name(&self, id: &str) -> String {
        format!("{}-{}", self.inner.driver, id.chars().take(12).collect::<String>())
    }

    async fn ensure_docker_network(&self, id: &str) -> Result<String, ExecError> {
        let name = self.docker_name(id);
        let network = self.inner.registry.network(id).ok_or_else(|| ExecError::Network(format!(
            "network {id} is not among the networks this node carries: its assignments have not named it yet"
        )))?;
        let _making = self.inner.making.lock().await;
        let docker = &self.inner.docker;
        match docker.inspect_network(&name, None).await {
            Ok(found) => {
                if let Some(docker_id) = found.id {
                    self.inner.registry.map_docker(&docker_id, id);
                }
                return Ok(name);
            }
            Err(e) if status_of(&e) == Some(404) => {}
            Err(e) => return Err(ExecError::Network(format!("inspecting docker network {name}: {e}"))),
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
            options: Some(HashMap::from([(NETWORK_OPTION.to_string(), id.to_string())])),
            labels: Some(HashMap::from([(NETWORK_LABEL.to_string(), id.to_string())])),
            ..Default::default()
        };
        let created = docker
            .create_network(request)
            .await
            .map_err(|e| ExecError::Network(format!("creating docker network {name}: {e}")))?;
        self.inner.registry.map_docker(&created.id, id);
        tracing::info!(network = %id, docker = %name, "docker network made");
        Ok(name)
    }
}

#[async_trait::async_trait]
impl NetworkProvider for Networks {
    async fn docker_network(&self, network_id: &str) -> Result<String, ExecError> {
        self.ensure_docker_network(network_id).await
    }
}

fn status_of(e: &DockerError) -> Option<u16> {
    match e {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// "10.0.1.5/24" -> 10.0.1.5.
pub fn host(addr: &str) -> Option<Ipv4Addr> {
    addr.split('/').next()?.parse().ok()
}
