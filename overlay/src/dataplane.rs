//! The kernel side, behind a trait: [`IpCommands`](crate::ipcmd::IpCommands) drives the real
//! kernel (iproute2 in each network's namespace), [`Recording`] records what it is asked
//! for, so the logic above is tested without root.

use std::sync::{Arc, Mutex};

use crate::lb::SandboxProgram;
use crate::mesh::Mesh;
use crate::model::{Network, NetworkState};
use crate::plan::{plan, Observed, Op};

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("{command}: {message}")]
    Command { command: String, message: String },
    #[error("reading the kernel's state ({what}): {message}")]
    Observe { what: String, message: String },
    #[error("the data plane's thread is gone")]
    Gone,
}

/// The effects the data plane has on the kernel.
pub trait Dataplane: Send {
    /// Every Shoal namespace and what it holds.
    fn observe(&mut self) -> Result<Observed, DataplaneError>;
    /// One change (idempotent: applying it twice leaves the same state).
    fn apply(&mut self, op: &Op) -> Result<(), DataplaneError>;
    /// A veth pair for a task's endpoint: one end on `network`'s bridge, the other, whose
    /// name is returned, in the node's namespace for the engine to move into the container.
    fn attach(&mut self, network: &Network, endpoint: &str) -> Result<String, DataplaneError>;
    /// Remove an endpoint's veth pair (a no-op when it is gone already).
    fn detach(&mut self, endpoint: &str) -> Result<(), DataplaneError>;
    /// A UDP socket bound to `network`'s gateway address and `port`, inside the network's
    /// namespace (the network's resolver listens there).
    fn bind_udp(
        &mut self,
        network: &Network,
        port: u16,
    ) -> Result<std::net::UdpSocket, DataplaneError>;
    /// Put `program` in the network namespace at `sandbox` (a task container's): its
    /// nftables table replaced ([`crate::lb::ruleset`]), and a policy route back through
    /// each of its routing-mesh routers, no other ([`crate::mesh::rule_changes`]).
    fn program_sandbox(
        &mut self,
        sandbox: &str,
        program: &SandboxProgram,
    ) -> Result<(), DataplaneError>;
    /// Bring the node's routing mesh to `mesh` (none: remove it from the node's namespace;
    /// the ingress namespace goes with its network): the link into the ingress namespace,
    /// the router address on its bridge, and the nftables tables of both namespaces
    /// ([`crate::mesh`]). Idempotent; the ingress network must be made already.
    fn program_mesh(&mut self, mesh: Option<&Mesh>) -> Result<(), DataplaneError>;
    /// Drop VXLAN packets of the encrypted networks' VNIs `vnis` on every interface but
    /// loopback, both ways ([`crate::tunnel::guard_ruleset`]); none: no guard.
    fn guard_encrypted(
        &mut self,
        vnis: &std::collections::BTreeSet<u32>,
    ) -> Result<(), DataplaneError>;
}

/// The host-side name of an endpoint's veth (15 characters at most, as the kernel wants).
pub fn host_veth(endpoint: &str) -> String {
    format!("shv{}", endpoint.chars().take(11).collect::<String>())
}

/// The bridge-side name of an endpoint's veth.
pub fn bridge_veth(endpoint: &str) -> String {
    format!("shp{}", endpoint.chars().take(11).collect::<String>())
}

/// Bring the kernel to `desired`: read it back, plan, apply every change. Goes on past a
/// failed change and returns the first error after trying the rest (the next reconcile
/// retries); on success, the changes applied.
pub fn reconcile(
    dataplane: &mut dyn Dataplane,
    desired: &[NetworkState],
) -> Result<Vec<Op>, DataplaneError> {
    let observed = dataplane.observe()?;
    let ops = plan(&observed, desired);
    let mut first_error = None;
    let mut applied = Vec::new();
    for op in ops {
        match dataplane.apply(&op) {
            Ok(()) => applied.push(op),
            Err(e) => {
                tracing::warn!(?op, "data plane change failed: {e}");
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(applied),
    }
}

/// A fake data plane: keeps the state its changes would make, and records every call.
/// For tests of everything above the kernel.
#[derive(Clone, Default)]
pub struct Recording {
    inner: Arc<Mutex<RecordingState>>,
}

#[derive(Default)]
struct RecordingState {
    observed: Observed,
    calls: Vec<String>,
}

impl Recording {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every call so far, as text ("create shoal-x vni 4097", "attach ep1 shoal-x", ...).
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// The state the recorded changes made.
    pub fn state(&self) -> Observed {
        self.lock().observed.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RecordingState> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Dataplane for Recording {
    fn observe(&mut self) -> Result<Observed, DataplaneError> {
        Ok(self.lock().observed.clone())
    }

    fn apply(&mut self, op: &Op) -> Result<(), DataplaneError> {
        let mut state = self.lock();
        let call = match op {
            Op::CreateNetwork(n) => {
                let entry = state.observed.entry(n.namespace()).or_default();
                entry.vni = Some(n.vni);
                entry.remotes.clear();
                format!("create {} vni {}", n.namespace(), n.vni)
            }
            Op::DeleteNetwork { namespace } => {
                state.observed.remove(namespace);
                format!("delete {namespace}")
            }
            Op::AddRemote { network, remote } => {
                let entry = state.observed.entry(network.namespace()).or_default();
                entry.remotes.retain(|r| r.addr != remote.addr);
                entry.remotes.insert(*remote);
                format!(
                    "add {} {} via {}",
                    network.namespace(),
                    remote.addr,
                    remote.node
                )
            }
            Op::DeleteRemote { network, remote } => {
                if let Some(entry) = state.observed.get_mut(&network.namespace()) {
                    entry.remotes.remove(remote);
                }
                format!("del {} {}", network.namespace(), remote.addr)
            }
        };
        state.calls.push(call);
        Ok(())
    }

    fn attach(&mut self, network: &Network, endpoint: &str) -> Result<String, DataplaneError> {
        self.lock()
            .calls
            .push(format!("attach {endpoint} {}", network.namespace()));
        Ok(host_veth(endpoint))
    }

    fn detach(&mut self, endpoint: &str) -> Result<(), DataplaneError> {
        self.lock().calls.push(format!("detach {endpoint}"));
        Ok(())
    }

    fn program_sandbox(
        &mut self,
        sandbox: &str,
        program: &SandboxProgram,
    ) -> Result<(), DataplaneError> {
        let rules: Vec<&str> = program
            .ruleset
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("ip daddr"))
            .collect();
        let mut call = format!("program {sandbox} [{}]", rules.join("; "));
        if !program.routers.is_empty() {
            let routers: Vec<String> = program.routers.iter().map(|r| r.to_string()).collect();
            call.push_str(&format!(" routers [{}]", routers.join(", ")));
        }
        self.lock().calls.push(call);
        Ok(())
    }

    fn guard_encrypted(
        &mut self,
        vnis: &std::collections::BTreeSet<u32>,
    ) -> Result<(), DataplaneError> {
        let vnis: Vec<String> = vnis.iter().map(u32::to_string).collect();
        self.lock()
            .calls
            .push(format!("guard [{}]", vnis.join(", ")));
        Ok(())
    }

    fn program_mesh(&mut self, mesh: Option<&Mesh>) -> Result<(), DataplaneError> {
        let call = match mesh {
            None => "mesh none".to_string(),
            Some(m) => {
                let ports: Vec<String> = m
                    .ports
                    .iter()
                    .map(|p| {
                        let backends: Vec<String> =
                            p.backends.iter().map(|b| b.to_string()).collect();
                        format!("{}/{}->[{}]", p.published, p.protocol, backends.join(" "))
                    })
                    .collect();
                format!(
                    "mesh {} router {} ports {}",
                    m.network.namespace(),
                    m.router,
                    ports.join(", ")
                )
            }
        };
        self.lock().calls.push(call);
        Ok(())
    }

    /// On loopback, any port: the fake has no namespaces.
    fn bind_udp(
        &mut self,
        network: &Network,
        port: u16,
    ) -> Result<std::net::UdpSocket, DataplaneError> {
        self.lock().calls.push(format!(
            "bind {}:{port} {}",
            network.gateway,
            network.namespace()
        ));
        std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| DataplaneError::Command {
            command: "bind".into(),
            message: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::model::Remote;

    #[test]
    fn reconciling_twice_changes_nothing_the_second_time() {
        let network = crate::model::test_network("n1abcdefabcdef");
        let desired = [NetworkState {
            network,
            remotes: vec![Remote {
                addr: Ipv4Addr::new(10, 0, 1, 3),
                node: Ipv4Addr::new(10, 78, 0, 13),
            }],
        }];
        let mut fake = Recording::new();
        assert_eq!(reconcile(&mut fake, &desired).expect("applied").len(), 2);
        assert!(reconcile(&mut fake, &desired).expect("applied").is_empty());
        assert_eq!(
            fake.calls(),
            [
                "create shoal-node1-n1abcdefabcd vni 4097",
                "add shoal-node1-n1abcdefabcd 10.0.1.3 via 10.78.0.13"
            ]
        );
        assert_eq!(reconcile(&mut fake, &[]).expect("applied").len(), 1);
        assert!(fake.state().is_empty(), "nothing left behind");
    }
}
