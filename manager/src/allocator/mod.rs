//! The allocator: every overlay address, decided on the leader and written through Raft.
//!
//! - A network gets its subnet (requested, or the first free one of the cluster's address
//!   pool), gateway and VNI when it is created: [`allocate_network`] runs inside the
//!   Control API's create transaction, so an overlapping subnet or an exhausted pool is the
//!   caller's error, at once.
//! - A service in VIP mode gets one virtual IP per network; a task gets an address on each
//!   network of its spec, and on the ingress network when it publishes a port through the
//!   routing mesh, before the scheduler may place it ([`shoal_proto::Task::is_attached`]);
//!   every node gets its router address on the ingress network (where the mesh's
//!   connections enter and leave). All come from the [`Allocator`] loop, one transaction
//!   per pass.
//!
//! No address is remembered between passes: each pass that has work rebuilds the address
//! spaces from the store ([`Ipam::load`]), so a new leader starts from exactly what is
//! committed and an address is free again as soon as the object holding it is gone (a
//! task whose container stopped for good, a service removed or leaving the network). What
//! waits for an address is kept from the store's events ([`pending`]), so a pass with
//! nothing to do costs nothing however many tasks the swarm holds.
//!
//! Architecture invariant: the allocator reads and writes the store only; it never imports
//! tonic, Raft or anything of the data plane.

pub mod ipam;
mod pending;

use std::collections::{BTreeSet, HashMap};

use shoal_proto::{
    EndpointMode, EndpointVip, Network, NetworkAllocation, NetworkAttachment, NetworkSpec, Node,
    Service, Task, TaskState, TaskStatus,
};
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::runloop;
use crate::store::{Object, ReadTx, Store, StoreError};
use ipam::{AddressSpace, IpamError, Pools, Subnet};
use pending::{Pending, Work};

/// `swarm init --default-addr-pool CIDR... --default-addr-pool-mask-length N`: where
/// overlay subnets come from (empty, 0: 10.0.0.0/8 in /24s).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddrPool {
    pub cidrs: Vec<String>,
    pub subnet_size: u32,
}

/// The cluster's address pools (`swarm init --default-addr-pool`), Swarm's defaults without.
pub fn pools(r: &ReadTx<'_>) -> Result<Pools, IpamError> {
    match r.cluster() {
        Some(c) => Pools::new(&c.default_addr_pool, c.subnet_size),
        None => Ok(Pools::default()),
    }
}

/// A new network's subnet, gateway and VNI, clear of every network stored; a subnet not
/// asked for comes from `pools` (the cluster's: [`pools`]).
pub fn allocate_network(
    networks: &[Network],
    spec: &NetworkSpec,
    pools: &Pools,
) -> Result<NetworkAllocation, IpamError> {
    let taken: Vec<(Subnet, &str)> = networks
        .iter()
        .filter_map(|n| {
            let subnet = n.allocation.as_ref()?.subnet.parse().ok()?;
            Some((subnet, n.name()))
        })
        .collect();
    let ipam = spec.ipam.clone().unwrap_or_default();
    let subnet = if ipam.subnet.is_empty() {
        if !ipam.gateway.is_empty() {
            return Err(IpamError::InvalidAddress(format!(
                "{} (a gateway needs its --subnet)",
                ipam.gateway
            )));
        }
        let subnets: Vec<Subnet> = taken.iter().map(|(s, _)| *s).collect();
        pools.next_free(&subnets)?
    } else {
        let subnet: Subnet = ipam.subnet.parse()?;
        if let Some((other, network)) = taken.iter().find(|(s, _)| s.overlaps(&subnet)) {
            return Err(IpamError::Overlap {
                subnet,
                other: *other,
                network: network.to_string(),
            });
        }
        subnet
    };
    let gateway = ipam::gateway(subnet, &ipam.gateway)?;
    // Checks the subnet has room for hosts beside its gateway.
    AddressSpace::new(&spec.name, subnet, gateway)?;
    let vnis: BTreeSet<u32> = networks
        .iter()
        .filter_map(|n| n.allocation.as_ref().map(|a| a.vni))
        .collect();
    Ok(NetworkAllocation {
        subnet: subnet.to_string(),
        gateway: gateway.to_string(),
        vni: ipam::next_vni(&vnis)?,
    })
}

/// Every network's address space with everything the store holds taken: its gateway,
/// services' VIPs, and the addresses of tasks that still hold them.
pub struct Ipam {
    spaces: HashMap<String, AddressSpace>,
}

impl Ipam {
    pub fn load(r: &ReadTx<'_>) -> Self {
        let mut spaces = HashMap::new();
        for network in r.networks() {
            let Some(allocation) = network.allocation.as_ref() else {
                continue;
            };
            let space = allocation.subnet.parse().and_then(|subnet| {
                let gateway = ipam::parse_addr(&allocation.gateway)?;
                AddressSpace::new(network.name(), subnet, gateway)
            });
            match space {
                Ok(space) => {
                    spaces.insert(network.id.clone(), space);
                }
                Err(e) => {
                    tracing::error!(network = %network.name(), "stored allocation unusable: {e}")
                }
            }
        }
        let mut ipam = Ipam { spaces };
        for service in r.services() {
            for vip in &service.vips {
                ipam.take(&vip.network_id, &vip.addr);
            }
        }
        let held = r
            .tasks()
            .filter(|t| t.holds_addresses())
            .flat_map(|t| t.networks.iter())
            .chain(r.nodes().flat_map(|n| n.attachments.iter()));
        for attachment in held {
            for addr in &attachment.addresses {
                ipam.take(&attachment.network_id, addr);
            }
        }
        ipam
    }

    fn take(&mut self, network_id: &str, addr: &str) {
        if let (Some(space), Ok(addr)) = (self.spaces.get_mut(network_id), ipam::parse_addr(addr)) {
            // Already taken means two objects share it: keep going, the data plane reports.
            if let Err(e) = space.reserve(addr) {
                tracing::warn!(network = %network_id, "stored address: {e}");
            }
        }
    }

    /// A free address of `network_id`, with its prefix length ("10.0.1.5/24").
    pub fn allocate(&mut self, network_id: &str) -> Result<String, AllocateError> {
        let space = self
            .spaces
            .get_mut(network_id)
            .ok_or_else(|| AllocateError::NoNetwork(network_id.to_string()))?;
        let addr = space.allocate()?;
        Ok(space.subnet().with_prefix(addr))
    }

    /// Whether `addr` is taken on `network_id` (for tests and checks).
    pub fn is_used(&self, network_id: &str, addr: &str) -> bool {
        match (self.spaces.get(network_id), ipam::parse_addr(addr)) {
            (Some(space), Ok(addr)) => space.is_used(addr),
            _ => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocateError {
    #[error("network {0} does not exist (or has no subnet)")]
    NoNetwork(String),
    #[error(transparent)]
    Ipam(#[from] IpamError),
}

/// The VIPs `service` should have: one per network of its spec in VIP mode (kept where it
/// has one already), none in DNS round robin. `None` when they are as they are.
pub fn plan_vips(
    ipam: &mut Ipam,
    service: &Service,
) -> Result<Option<Vec<EndpointVip>>, AllocateError> {
    let mut wanted = Vec::new();
    if service.endpoint_mode() == EndpointMode::Vip {
        for config in service.networks() {
            if wanted
                .iter()
                .any(|v: &EndpointVip| v.network_id == config.target)
            {
                continue;
            }
            let vip = match service.vips.iter().find(|v| v.network_id == config.target) {
                Some(vip) => vip.clone(),
                None => EndpointVip {
                    network_id: config.target.clone(),
                    addr: ipam.allocate(&config.target)?,
                },
            };
            wanted.push(vip);
        }
    }
    Ok((wanted != service.vips).then_some(wanted))
}

/// The attachments `task` needs: its address on every network of its spec, then on the
/// ingress network (`ingress`, its id) when it publishes a port through the routing mesh;
/// each kept where it has one. `None` when it has them all.
pub fn plan_attachments(
    ipam: &mut Ipam,
    task: &Task,
    ingress: Option<&str>,
) -> Result<Option<Vec<NetworkAttachment>>, AllocateError> {
    let mut wanted: Vec<(&str, &[String], bool)> = Vec::new();
    for config in task.spec_networks() {
        if !wanted.iter().any(|(id, ..)| *id == config.target) {
            wanted.push((&config.target, &config.aliases, false));
        }
    }
    if task.publishes_ingress() {
        let ingress = ingress.ok_or_else(|| AllocateError::NoNetwork("ingress".into()))?;
        wanted.push((ingress, &[], true));
    }
    let mut attachments: Vec<NetworkAttachment> = Vec::new();
    for (network_id, aliases, is_ingress) in wanted {
        let addresses = match task
            .networks
            .iter()
            .find(|a| a.network_id == network_id && !a.addresses.is_empty())
        {
            Some(existing) => existing.addresses.clone(),
            None => vec![ipam.allocate(network_id)?],
        };
        attachments.push(NetworkAttachment {
            network_id: network_id.to_string(),
            addresses,
            aliases: aliases.to_vec(),
            ingress: is_ingress,
        });
    }
    Ok((attachments != task.networks).then_some(attachments))
}

/// `node`'s attachments with its router address on the ingress network (`ingress`, its
/// id; none: no router). `None` when it has it already.
pub fn plan_router(
    ipam: &mut Ipam,
    node: &Node,
    ingress: Option<&str>,
) -> Result<Option<Vec<NetworkAttachment>>, AllocateError> {
    if router_settled(node, ingress) {
        return Ok(None);
    }
    let mut attachments: Vec<NetworkAttachment> = node
        .attachments
        .iter()
        .filter(|a| !a.ingress)
        .cloned()
        .collect();
    if let Some(ingress) = ingress {
        attachments.push(NetworkAttachment {
            network_id: ingress.to_string(),
            addresses: vec![ipam.allocate(ingress)?],
            aliases: Vec::new(),
            ingress: true,
        });
    }
    Ok((attachments != node.attachments).then_some(attachments))
}

/// The ingress network's id, when there is one.
pub fn ingress_id(r: &ReadTx<'_>) -> Option<String> {
    r.networks().find(|n| n.is_ingress()).map(|n| n.id.clone())
}

/// Whether `node`'s router address is where it should be (cheap: no address space).
fn router_settled(node: &Node, ingress: Option<&str>) -> bool {
    match ingress {
        Some(id) => node
            .attachments
            .iter()
            .any(|a| a.ingress && a.network_id == id && !a.addresses.is_empty()),
        None => !node.attachments.iter().any(|a| a.ingress),
    }
}

/// Whether `service` has exactly one VIP per network of its spec in VIP mode, and none in
/// DNS round robin (cheap: no address space is needed to tell).
fn vips_settled(service: &Service) -> bool {
    let mut wanted: Vec<&str> = Vec::new();
    if service.endpoint_mode() == EndpointMode::Vip {
        for config in service.networks() {
            if !wanted.contains(&config.target.as_str()) {
                wanted.push(&config.target);
            }
        }
    }
    wanted.len() == service.vips.len()
        && wanted
            .iter()
            .zip(&service.vips)
            .all(|(w, v)| *w == v.network_id && !v.addr.is_empty())
}

/// Whether `task` waits for the allocator: not yet placed (a restart may have named its
/// node already), still wanted, not attached.
fn waits(task: &Task) -> bool {
    task.desired() <= TaskState::Running
        && matches!(task.state(), TaskState::New | TaskState::Pending)
        && !task.is_attached()
}

/// The allocator's run loop (leader only).
pub struct Allocator {
    store: Store,
}

impl Allocator {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    pub async fn run(self, cancel: CancellationToken) {
        let mut pending = Pending::default();
        let mut events = self.store.watch();
        loop {
            if let Err(e) = self.pass_with(&mut pending).await {
                tracing::warn!(error = %e, "allocation pass failed; retrying on the next change");
            }
            let wake = runloop::next_noting(&mut events, |e| pending.note(e), None, &cancel);
            if wake.await == runloop::Wake::Shutdown {
                return;
            }
        }
    }

    /// One pass over everything: routers for nodes, VIPs for services, then addresses
    /// for waiting tasks; returns how many objects it wrote.
    pub async fn pass(&self) -> Result<usize, StoreError> {
        self.pass_with(&mut Pending::default()).await
    }

    async fn pass_with(&self, pending: &mut Pending) -> Result<usize, StoreError> {
        let result = self
            .store
            .update(|tx| {
                let ingress = ingress_id(tx.read());
                let ingress = ingress.as_deref();
                let Work {
                    nodes,
                    services,
                    tasks: waiting,
                } = pending.work(tx.read(), ingress);
                if nodes.is_empty() && services.is_empty() && waiting.is_empty() {
                    return Ok(0);
                }
                let mut ipam = Ipam::load(tx.read());
                let mut written = 0;
                for mut node in nodes {
                    match plan_router(&mut ipam, &node, ingress) {
                        Ok(None) => {}
                        Ok(Some(attachments)) => {
                            node.attachments = attachments;
                            tx.update(Object::Node(node))?;
                            written += 1;
                        }
                        Err(e) => {
                            tracing::warn!(node = %node.id, "no routing-mesh router address: {e}");
                        }
                    }
                }
                for mut service in services {
                    match plan_vips(&mut ipam, &service) {
                        Ok(None) => {}
                        Ok(Some(vips)) => {
                            service.vips = vips;
                            tx.update(Object::Service(service))?;
                            written += 1;
                        }
                        Err(e) => {
                            tracing::warn!(service = %service.name(), "no virtual IP: {e}");
                        }
                    }
                }
                for mut task in waiting {
                    let (attachments, why) = match plan_attachments(&mut ipam, &task, ingress) {
                        Ok(Some(a)) => (Some(a), None),
                        Ok(None) => (None, None),
                        Err(e) => (None, Some(format!("waiting for an overlay address: {e}"))),
                    };
                    if let Some(attachments) = attachments {
                        task.networks = attachments;
                    } else if let Some(why) = why {
                        if task.status.as_ref().is_some_and(|s| s.err == why) {
                            continue;
                        }
                        task.status = Some(TaskStatus {
                            state: task.state() as i32,
                            message: why.clone(),
                            err: why,
                            timestamp_ms: now_ms(),
                            ..Default::default()
                        });
                    } else {
                        continue;
                    }
                    tx.update(Object::Task(task))?;
                    written += 1;
                }
                Ok(written)
            })
            .await;
        if result.is_err() {
            // Whether it was written is not known: look at everything again.
            pending.invalidate();
        }
        result
    }
}

#[cfg(test)]
mod tests;
