//! What the data plane is asked to hold on one node: the overlay networks that node's
//! tasks join, and where every other task of those networks lives.

use std::net::Ipv4Addr;

/// VXLAN's UDP port (IANA), as Swarm's overlay uses.
pub const VXLAN_PORT: u16 = 4789;
/// What VXLAN adds to each packet over IPv4: outer IP (20), UDP (8), VXLAN (8) and the
/// inner Ethernet header (14).
pub const VXLAN_OVERHEAD: u32 = 50;

/// One overlay network as this node carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// The network's id in the store.
    pub id: String,
    /// The namespace holding its bridge and VXLAN device ([`namespace_of`]).
    pub namespace: String,
    pub vni: u32,
    pub subnet: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    /// MTU inside the overlay: the network's option, or the underlay's minus VXLAN's
    /// overhead.
    pub mtu: u32,
    /// No way out of the network: its tasks get no default gateway from it.
    pub internal: bool,
    /// Its frames cross the underlay only inside the node's encrypted tunnels
    /// ([`crate::tunnel`]): its remote entries point at the node's own relay.
    pub encrypted: bool,
}

impl Network {
    pub fn namespace(&self) -> String {
        self.namespace.clone()
    }

    /// The VXLAN device's name (unique per node while it is created in the host namespace).
    pub fn vxlan_device(&self) -> String {
        format!("shvx{}", self.vni)
    }
}

/// The namespace of network `id` on node `node_id`: `shoal-<node>-<network>` (id prefixes),
/// so two nodes sharing a kernel (tests on one machine) never touch each other's.
pub fn namespace_of(node_id: &str, id: &str) -> String {
    format!("{}{}", namespace_prefix(node_id), prefix(id, 12))
}

/// Every namespace node `node_id` makes starts with this; nothing else is ever touched.
pub fn namespace_prefix(node_id: &str) -> String {
    format!("shoal-{}-", prefix(node_id, 8))
}

/// The short tag of a node in device names made in its own namespace (15 characters at
/// most per name): the node-id part of its namespace prefix.
pub fn node_tag(namespace_prefix: &str) -> String {
    namespace_prefix
        .trim_start_matches("shoal-")
        .trim_end_matches('-')
        .chars()
        .take(8)
        .collect()
}

fn prefix(id: &str, n: usize) -> String {
    id.chars().take(n).collect()
}
/// The bridge inside a network's namespace.
pub const BRIDGE: &str = "br0";

/// A task address on another node: reached through the VXLAN device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Remote {
    pub addr: Ipv4Addr,
    /// The underlay address of the node it runs on.
    pub node: Ipv4Addr,
}

/// What one network should look like on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkState {
    pub network: Network,
    /// Addresses of the network's tasks on other nodes.
    pub remotes: Vec<Remote>,
}

/// The MAC of an overlay address: fixed by the address (02:42 and its four bytes, as
/// Docker's), so a node knows a remote endpoint's MAC from its address alone.
pub fn mac_of(addr: Ipv4Addr) -> String {
    let o = addr.octets();
    format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

/// A network for tests: `id` on node "node1", 10.0.1.0/24, VNI 4097.
#[cfg(test)]
pub(crate) fn test_network(id: &str) -> Network {
    Network {
        id: id.into(),
        namespace: namespace_of("node1", id),
        vni: 4097,
        subnet: Ipv4Addr::new(10, 0, 1, 0),
        prefix: 24,
        gateway: Ipv4Addr::new(10, 0, 1, 1),
        mtu: 1450,
        internal: false,
        encrypted: false,
    }
}
