//! Docker's remote network and IPAM driver protocol (libnetwork's plugin API), served by
//! shoald on a unix socket in Docker's plugin directory. It is how a task's container gets
//! its overlay interface and address *before* its process starts: the engine asks the
//! driver when the container starts, and the driver answers with a veth whose other end
//! is already on the network's bridge.
//!
//! Addresses are never chosen here: the leader allocated each task's, and the container is
//! created asking for it (`IPAMConfig.IPv4Address`); `RequestAddress` only confirms it.
//! Docker networks made by Shoal carry the Shoal network's id in the option
//! [`NETWORK_OPTION`]; the plugin maps Docker's network ids to Shoal's networks through
//! [`Registry`], which the agent keeps current.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;

use crate::lb::{ruleset, SandboxProgram, Vip};
use crate::model::{mac_of, Network};
use crate::thread::DataplaneThread;

/// The Docker network option naming the Shoal network (`-o shoal.network=<id>`).
pub const NETWORK_OPTION: &str = "shoal.network";
const CONTENT_TYPE: &str = "application/vnd.docker.plugins.v1.2+json";

/// The Shoal networks this node carries, and which Docker network is which.
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<Mutex<RegistryState>>,
}

#[derive(Default)]
struct RegistryState {
    /// Shoal network id -> the network.
    networks: HashMap<String, Network>,
    /// Docker network id -> Shoal network id.
    docker: HashMap<String, String>,
    /// Shoal network id -> its services' VIPs and where they lead.
    vips: HashMap<String, Vec<Vip>>,
    /// Shoal network id -> the routing mesh's routers on it (the ingress network's only).
    routers: HashMap<String, Vec<std::net::Ipv4Addr>>,
    /// Docker endpoint id -> (Shoal network id, the container's namespace).
    endpoints: HashMap<String, (String, String)>,
    /// Container namespace -> what was last put there.
    programmed: HashMap<String, SandboxProgram>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RegistryState> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The networks this node carries now (replaces the previous set).
    pub fn set_networks(&self, networks: impl IntoIterator<Item = Network>) {
        self.lock().networks = networks.into_iter().map(|n| (n.id.clone(), n)).collect();
    }

    /// Docker's network `docker_id` is Shoal's `shoal_id`.
    pub fn map_docker(&self, docker_id: &str, shoal_id: &str) {
        self.lock()
            .docker
            .insert(docker_id.to_string(), shoal_id.to_string());
    }

    /// The Shoal network behind Docker's network `docker_id`.
    pub fn network_of(&self, docker_id: &str) -> Option<Network> {
        let state = self.lock();
        let id = state.docker.get(docker_id)?;
        state.networks.get(id).cloned()
    }

    pub fn network(&self, shoal_id: &str) -> Option<Network> {
        self.lock().networks.get(shoal_id).cloned()
    }

    /// The Shoal network id of Docker's network `docker_id`, if known.
    pub fn docker_to_shoal(&self, docker_id: &str) -> Option<String> {
        self.lock().docker.get(docker_id).cloned()
    }

    /// Every network's VIPs now (replaces the previous set).
    pub fn set_vips(&self, vips: HashMap<String, Vec<Vip>>) {
        self.lock().vips = vips;
    }

    /// The routing mesh's routers on each network now (replaces the previous set).
    pub fn set_routers(&self, routers: HashMap<String, Vec<std::net::Ipv4Addr>>) {
        self.lock().routers = routers;
    }

    /// Endpoint `endpoint` of network `shoal_id` is in the container namespace `sandbox`.
    pub fn join(&self, endpoint: &str, shoal_id: &str, sandbox: &str) {
        self.lock().endpoints.insert(
            endpoint.to_string(),
            (shoal_id.to_string(), sandbox.to_string()),
        );
    }

    /// Endpoints joined now, by Shoal network id (every carried network named, 0 where none).
    pub fn endpoint_counts(&self) -> HashMap<String, usize> {
        let state = self.lock();
        let mut counts: HashMap<String, usize> =
            state.networks.keys().map(|id| (id.clone(), 0)).collect();
        for (network, _) in state.endpoints.values() {
            *counts.entry(network.clone()).or_default() += 1;
        }
        counts
    }

    pub fn leave(&self, endpoint: &str) {
        let mut state = self.lock();
        if let Some((_, sandbox)) = state.endpoints.remove(endpoint) {
            if !state.endpoints.values().any(|(_, s)| *s == sandbox) {
                state.programmed.remove(&sandbox);
            }
        }
    }

    /// What container namespace `sandbox` must hold: the VIPs of every network it joins,
    /// and the routers of the routing mesh when it is on the ingress network.
    pub fn program(&self, sandbox: &str) -> SandboxProgram {
        let state = self.lock();
        let joined: Vec<&String> = state
            .endpoints
            .values()
            .filter(|(_, s)| s == sandbox)
            .map(|(network, _)| network)
            .collect();
        fn gather<T: Clone + Ord>(joined: &[&String], of: &HashMap<String, Vec<T>>) -> Vec<T> {
            let mut all: Vec<T> = joined
                .iter()
                .flat_map(|n| of.get(*n).cloned().unwrap_or_default())
                .collect();
            all.sort();
            all.dedup();
            all
        }
        let vips = gather(&joined, &state.vips);
        let routers = gather(&joined, &state.routers);
        SandboxProgram {
            ruleset: ruleset(&vips, &routers),
            routers,
        }
    }

    /// Container namespaces whose program differs from the one last put there, with it.
    pub fn stale_sandboxes(&self) -> Vec<(String, SandboxProgram)> {
        let sandboxes: Vec<String> = {
            let state = self.lock();
            let mut s: Vec<String> = state.endpoints.values().map(|(_, s)| s.clone()).collect();
            s.sort();
            s.dedup();
            s
        };
        sandboxes
            .into_iter()
            .filter_map(|sandbox| {
                let program = self.program(&sandbox);
                let same = self.lock().programmed.get(&sandbox) == Some(&program);
                (!same).then_some((sandbox, program))
            })
            .collect()
    }

    /// `program` is in `sandbox` now.
    pub fn programmed(&self, sandbox: &str, program: &SandboxProgram) {
        self.lock()
            .programmed
            .insert(sandbox.to_string(), program.clone());
    }
}

/// The plugin's name for a node: Docker finds it as `<dir>/<name>.sock`. One per node, so
/// nodes sharing an engine (tests on one machine) never share a driver.
pub fn plugin_name(node_id: &str) -> String {
    format!("shoal-{}", node_id.chars().take(12).collect::<String>())
}

/// Serves the plugin API on `<dir>/<name>.sock` until `cancel`.
pub struct Plugin {
    registry: Registry,
    dataplane: DataplaneThread,
}

impl Plugin {
    pub fn new(registry: Registry, dataplane: DataplaneThread) -> Self {
        Self {
            registry,
            dataplane,
        }
    }

    /// Bind the socket (replacing a stale one) and serve in the background.
    pub fn serve(
        self,
        dir: &Path,
        name: &str,
        cancel: CancellationToken,
    ) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{name}.sock"));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        let plugin = Arc::new(self);
        let socket = path.clone();
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    _ = cancel.cancelled() => break,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(e) => {
                            tracing::warn!("network plugin: accepting: {e}");
                            continue;
                        }
                    },
                };
                let plugin = plugin.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let plugin = plugin.clone();
                        async move { Ok::<_, Infallible>(plugin.handle(req).await) }
                    });
                    if let Err(e) = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                    {
                        tracing::debug!("network plugin connection: {e}");
                    }
                });
            }
            let _ = std::fs::remove_file(&socket);
        });
        Ok(path)
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().trim_start_matches('/').to_string();
        let body = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return reply(json!({ "Err": format!("reading the request: {e}") })),
        };
        let request: Value = if body.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => return reply(json!({ "Err": format!("invalid JSON: {e}") })),
            }
        };
        let answer = self.answer(&path, &request).await;
        tracing::debug!(call = %path, ?answer, "network plugin");
        reply(match answer {
            Ok(v) => v,
            Err(message) => json!({ "Err": message }),
        })
    }

    async fn answer(&self, call: &str, r: &Value) -> Result<Value, String> {
        let text = |key: &str| r[key].as_str().unwrap_or_default().to_string();
        match call {
            "Plugin.Activate" => Ok(json!({ "Implements": ["NetworkDriver", "IpamDriver"] })),
            "NetworkDriver.GetCapabilities" => {
                Ok(json!({ "Scope": "local", "ConnectivityScope": "global" }))
            }
            "IpamDriver.GetCapabilities" => Ok(json!({ "RequiresMACAddress": false })),
            "IpamDriver.GetDefaultAddressSpaces" => Ok(json!({
                "LocalDefaultAddressSpace": "shoal",
                "GlobalDefaultAddressSpace": "shoal",
            })),
            "IpamDriver.RequestPool" => {
                let pool = text("Pool");
                if pool.is_empty() {
                    return Err(
                        "a Shoal network needs its subnet: Shoal creates these networks itself"
                            .into(),
                    );
                }
                Ok(json!({ "PoolID": pool, "Pool": pool, "Data": {} }))
            }
            "IpamDriver.RequestAddress" => {
                let pool = text("PoolID");
                let prefix = pool.split_once('/').map(|(_, p)| p).unwrap_or("32");
                let address = text("Address");
                if address.is_empty() {
                    return Err("Shoal assigns every address on its networks: run the container as a Shoal task".into());
                }
                Ok(json!({ "Address": format!("{address}/{prefix}"), "Data": {} }))
            }
            "IpamDriver.ReleaseAddress" | "IpamDriver.ReleasePool" => Ok(json!({})),
            "NetworkDriver.CreateNetwork" => {
                let docker_id = text("NetworkID");
                let shoal_id = r["Options"]["com.docker.network.generic"][NETWORK_OPTION]
                    .as_str()
                    .unwrap_or_default();
                if shoal_id.is_empty() {
                    return Err(format!(
                        "a network of this driver needs -o {NETWORK_OPTION}=<id>: Shoal creates these networks itself"
                    ));
                }
                self.registry.map_docker(&docker_id, shoal_id);
                Ok(json!({}))
            }
            "NetworkDriver.DeleteNetwork" => Ok(json!({})),
            "NetworkDriver.CreateEndpoint" => {
                let address = r["Interface"]["Address"].as_str().unwrap_or_default();
                let addr = address
                    .split('/')
                    .next()
                    .and_then(|a| a.parse().ok())
                    .ok_or_else(|| format!("endpoint has no IPv4 address ({address:?})"))?;
                // The MAC follows from the address, so other nodes know it without asking.
                if r["Interface"]["MacAddress"]
                    .as_str()
                    .unwrap_or_default()
                    .is_empty()
                {
                    Ok(json!({ "Interface": { "MacAddress": mac_of(addr) } }))
                } else {
                    Ok(json!({ "Interface": {} }))
                }
            }
            "NetworkDriver.Join" => {
                let docker_id = text("NetworkID");
                let endpoint = text("EndpointID");
                let network = self.registry.network_of(&docker_id).ok_or_else(|| {
                    format!("docker network {docker_id} is not a network this node carries now")
                })?;
                let sandbox = text("SandboxKey");
                let network_id = network.id.clone();
                let internal = network.internal;
                let joined = endpoint.clone();
                let name = self
                    .dataplane
                    .run(move |dp| dp.attach(&network, &endpoint))
                    .await
                    .map_err(|e| e.to_string())?;
                if !sandbox.is_empty() {
                    self.registry.join(&joined, &network_id, &sandbox);
                    tokio::spawn(program_when_made(
                        self.registry.clone(),
                        self.dataplane.clone(),
                        sandbox,
                    ));
                }
                // A network with a way out lets the engine give the container its gateway
                // bridge for traffic leaving the swarm; an internal one does not.
                Ok(json!({
                    "InterfaceName": { "SrcName": name, "DstPrefix": "eth" },
                    "DisableGatewayService": internal,
                }))
            }
            "NetworkDriver.Leave" => {
                self.registry.leave(&text("EndpointID"));
                Ok(json!({}))
            }
            "NetworkDriver.DeleteEndpoint" => {
                let endpoint = text("EndpointID");
                self.dataplane
                    .run(move |dp| dp.detach(&endpoint))
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(json!({}))
            }
            "NetworkDriver.EndpointOperInfo" => Ok(json!({ "Value": {} })),
            "NetworkDriver.ProgramExternalConnectivity"
            | "NetworkDriver.RevokeExternalConnectivity"
            | "NetworkDriver.DiscoverNew"
            | "NetworkDriver.DiscoverDelete" => Ok(json!({})),
            other => Err(format!(
                "{other} is not supported by Shoal's network driver"
            )),
        }
    }
}

/// How long after its Join a container's namespace may take to appear.
const SANDBOX_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
const SANDBOX_POLL: std::time::Duration = std::time::Duration::from_millis(5);

/// The engine makes a container's namespace after Join (runc's prestart hook): put the VIP
/// rules there as soon as it exists, which is before or within milliseconds of the
/// process's start.
async fn program_when_made(registry: Registry, dataplane: DataplaneThread, sandbox: String) {
    let deadline = tokio::time::Instant::now() + SANDBOX_WAIT;
    loop {
        let program = registry.program(&sandbox);
        let (target, wanted) = (sandbox.clone(), program.clone());
        match dataplane
            .run(move |dp| dp.program_sandbox(&target, &wanted))
            .await
        {
            Ok(()) => {
                registry.programmed(&sandbox, &program);
                return;
            }
            Err(e) if tokio::time::Instant::now() > deadline => {
                tracing::warn!(sandbox = %sandbox, "VIP rules not set: {e}");
                return;
            }
            Err(_) => tokio::time::sleep(SANDBOX_POLL).await,
        }
    }
}

fn reply(value: Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    if let Ok(v) = hyper::header::HeaderValue::from_str(CONTENT_TYPE) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::Recording;

    fn plugin() -> (Plugin, Recording) {
        let fake = Recording::new();
        let thread = DataplaneThread::spawn(Box::new(fake.clone())).expect("thread");
        let registry = Registry::new();
        registry.set_networks([crate::model::test_network("net1")]);
        (Plugin::new(registry, thread), fake)
    }

    #[test]
    fn a_sandbox_is_reprogrammed_only_when_its_vips_change() {
        use std::net::Ipv4Addr;
        let registry = Registry::new();
        registry.join("e1", "net1", "/ns/a");
        registry.join("e2", "net2", "/ns/a");
        registry.join("e3", "net2", "/ns/b");
        let vip = |last: u8, backends: &[u8]| Vip {
            vip: Ipv4Addr::new(10, 0, 1, last),
            backends: backends
                .iter()
                .map(|b| Ipv4Addr::new(10, 0, 1, *b))
                .collect(),
        };
        registry.set_vips(HashMap::from([
            ("net1".to_string(), vec![vip(2, &[5, 6])]),
            ("net2".to_string(), vec![vip(9, &[7])]),
        ]));
        let stale = registry.stale_sandboxes();
        assert_eq!(stale.len(), 2);
        // A sandbox on both networks gets both VIPs.
        let a = &stale
            .iter()
            .find(|(s, _)| s == "/ns/a")
            .expect("a")
            .1
            .ruleset;
        assert!(a.contains("10.0.1.2") && a.contains("10.0.1.9"), "{a}");
        assert!(!a.contains("mesh_in"), "not on the ingress network: {a}");
        for (sandbox, rules) in &stale {
            registry.programmed(sandbox, rules);
        }
        assert!(registry.stale_sandboxes().is_empty());
        // A backend leaves net2: only the sandboxes on net2 change... both are.
        registry.set_vips(HashMap::from([
            ("net1".to_string(), vec![vip(2, &[5, 6])]),
            ("net2".to_string(), vec![vip(9, &[])]),
        ]));
        assert_eq!(registry.stale_sandboxes().len(), 2);
        registry.leave("e3");
        let stale: Vec<String> = registry
            .stale_sandboxes()
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(
            stale,
            ["/ns/a"],
            "a sandbox with no endpoint left is forgotten"
        );
        // The mesh's routers reach the sandboxes on the ingress network only.
        for (sandbox, program) in registry.stale_sandboxes() {
            registry.programmed(&sandbox, &program);
        }
        let router = Ipv4Addr::new(10, 0, 0, 3);
        registry.set_routers(HashMap::from([("net1".to_string(), vec![router])]));
        let stale = registry.stale_sandboxes();
        assert_eq!(stale.len(), 1);
        assert_eq!(stale[0].1.routers, [router]);
        assert!(stale[0].1.ruleset.contains("mesh_in"));
    }

    #[tokio::test]
    async fn a_container_start_is_answered_in_docker_order() {
        let (plugin, fake) = plugin();
        let ask = |call: &'static str, body: Value| {
            let plugin = &plugin;
            async move { plugin.answer(call, &body).await }
        };
        assert_eq!(
            ask("Plugin.Activate", Value::Null).await,
            Ok(json!({ "Implements": ["NetworkDriver", "IpamDriver"] }))
        );
        assert_eq!(
            ask("IpamDriver.RequestPool", json!({ "Pool": "10.0.1.0/24" })).await,
            Ok(json!({ "PoolID": "10.0.1.0/24", "Pool": "10.0.1.0/24", "Data": {} }))
        );
        assert_eq!(
            ask(
                "IpamDriver.RequestAddress",
                json!({ "PoolID": "10.0.1.0/24", "Address": "10.0.1.7" })
            )
            .await,
            Ok(json!({ "Address": "10.0.1.7/24", "Data": {} }))
        );
        assert!(ask(
            "IpamDriver.RequestAddress",
            json!({ "PoolID": "10.0.1.0/24" })
        )
        .await
        .is_err());
        assert!(
            ask("NetworkDriver.CreateNetwork", json!({ "NetworkID": "d1" }))
                .await
                .expect_err("no shoal id")
                .contains(NETWORK_OPTION)
        );
        ask(
            "NetworkDriver.CreateNetwork",
            json!({ "NetworkID": "d1", "Options": { "com.docker.network.generic": { "shoal.network": "net1" } } }),
        )
        .await
        .expect("created");
        assert_eq!(
            ask(
                "NetworkDriver.CreateEndpoint",
                json!({ "NetworkID": "d1", "EndpointID": "e1", "Interface": { "Address": "10.0.1.7/24" } })
            )
            .await,
            Ok(json!({ "Interface": { "MacAddress": "02:42:0a:00:01:07" } }))
        );
        assert_eq!(
            ask(
                "NetworkDriver.Join",
                json!({ "NetworkID": "d1", "EndpointID": "e1abcdefabcdefabcdef", "SandboxKey": "/x" })
            )
            .await,
            Ok(json!({
                "InterfaceName": { "SrcName": "shve1abcdefabc", "DstPrefix": "eth" },
                "DisableGatewayService": false,
            }))
        );
        assert!(ask(
            "NetworkDriver.Join",
            json!({ "NetworkID": "unknown", "EndpointID": "e2" })
        )
        .await
        .is_err());
        // The namespace's rules go in once it exists (at once, for the fake).
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while !fake.calls().iter().any(|c| c.starts_with("program")) {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("programmed");
        ask(
            "NetworkDriver.DeleteEndpoint",
            json!({ "EndpointID": "e1abcdefabcdefabcdef" }),
        )
        .await
        .expect("deleted");
        assert_eq!(
            fake.calls(),
            [
                "attach e1abcdefabcdefabcdef shoal-node1-net1",
                "program /x []",
                "detach e1abcdefabcdefabcdef"
            ]
        );
    }
}
