//! Shoal's node data plane: the overlay networks a node carries.
//!
//! This crate owns, per overlay network and node, a network namespace of the network's own
//! holding a bridge (with the gateway address) and a VXLAN device on the node's underlay;
//! static neighbour and forwarding entries for every task of the network on other nodes
//! (no multicast, no MAC learning: the managers' endpoint sets are the one source of truth);
//! and the Docker remote network/IPAM driver through which a task's container gets its
//! interface before its process starts ([`plugin`]); service names ([`dns`]), VIPs
//! ([`lb`]) and the routing mesh ([`mesh`]: published ports on every node, the client's
//! address kept); and encrypted networks' tunnels between nodes ([`tunnel`]: QUIC in user
//! space, as this kernel has no ESP or WireGuard).
//!
//! Shape: a pure planner ([`plan`]: what the kernel holds and what it should hold in,
//! changes out), the kernel behind the [`Dataplane`] trait (real: [`IpCommands`];
//! recording fake: [`Recording`]), and one thread that applies changes ([`DataplaneThread`]).
//!
//! It must not know the store, Raft, gRPC or Shoal's wire types: the agent turns its
//! assignments into [`NetworkState`]s.

pub mod dataplane;
pub mod dns;
pub mod ipcmd;
pub mod lb;
pub mod mesh;
pub mod model;
mod nft;
pub mod plan;
pub mod plugin;
pub mod thread;
pub mod tun;
pub mod tunnel;

pub use dataplane::{reconcile, Dataplane, DataplaneError, Recording};
pub use ipcmd::{underlay_mtu, IpCommands};
pub use lb::{SandboxProgram, Vip};
pub use mesh::{Mesh, MeshPort};
pub use model::{
    mac_of, namespace_of, namespace_prefix, Network, NetworkState, Remote, VXLAN_OVERHEAD,
    VXLAN_PORT,
};
pub use plan::Op;
pub use plugin::{plugin_name, Plugin, Registry, NETWORK_OPTION};
pub use thread::DataplaneThread;
pub use tunnel::{Peer, Routes, Tunnel, TunnelConfig, ENCRYPTED_OVERHEAD};
