//! The routing mesh on one node: every port published through it answers on every node,
//! reaches the service's serving tasks on any node, and the task sees the client's own
//! address (no source translation anywhere, unlike Swarm's: moby#25526).
//!
//! The node's own namespace is a member of the ingress network: a veth pair joins it to the
//! network's bridge ([`host_device`]), holding the node's router address, whose MAC is
//! fixed by it ([`crate::model::mac_of`]). The path of a connection to node X's port 8080:
//!
//! 1. X's namespace: `fib daddr type local tcp dport 8080` is translated, once, to one of
//!    the service's serving tasks (numgen, as the VIPs) and its target port, and marked:
//!    the mark's policy route ([`mark_of`], [`HOST_RULE_PRIORITY`]) sends it out of the
//!    router onto the ingress bridge (the ingress subnet never enters the node's main
//!    table). VXLAN carries it if the task is on another node.
//! 2. The task's namespace: a new connection from a router's MAC gets that router's mark
//!    in its conntrack entry ([`sandbox_chains`]); replies carry the mark, and a policy
//!    route per router ([`rule_changes`]) sends them back to the router they came in by,
//!    whatever the task's default route is.
//! 3. Back in X's namespace, conntrack undoes the translation and the reply leaves for
//!    the client. The connection's mark is in conntrack: every later packet, either way,
//!    gets it back before routing (so a strict reverse-path check finds the router's
//!    route too: `src_valid_mark`).
//!
//! Everything here is text and sets: the kernel work is the data plane's
//! ([`crate::Dataplane::program_mesh`]).

use std::collections::BTreeSet;
use std::fmt::Write;
use std::net::Ipv4Addr;

use crate::model::{mac_of, Network};
use crate::nft;

/// The bridge-side end, in the ingress namespace, of the node's veth pair.
pub const BRIDGE_DEVICE: &str = "mesh0";
/// Where the policy routes of the mesh sit in a task's namespace: before the main table.
pub const RULE_PRIORITY: u32 = 100;
/// Where the router's policy route sits in the node's own namespace.
pub const HOST_RULE_PRIORITY: u32 = 5300;

/// One published port on this node, and the serving tasks it spreads connections over.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MeshPort {
    /// "tcp" or "udp".
    pub protocol: &'static str,
    pub published: u16,
    pub target: u16,
    /// Ingress addresses of the service's serving tasks (none: nothing answers).
    pub backends: Vec<Ipv4Addr>,
}

/// The routing mesh as one node carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mesh {
    /// The ingress network (the node's router joins its bridge).
    pub network: Network,
    /// This node's router address on it.
    pub router: Ipv4Addr,
    pub ports: Vec<MeshPort>,
}

/// The nftables table of the mesh in the node's own namespace (one per node: nodes sharing
/// a kernel in tests never touch each other's).
pub fn host_table(namespace_prefix: &str) -> String {
    format!("{namespace_prefix}mesh")
}

/// The node-side end of the veth pair onto the ingress bridge: the router (15 characters
/// at most).
pub fn host_device(namespace_prefix: &str) -> String {
    format!("shm{}", crate::model::node_tag(namespace_prefix))
}

/// A router's mark (and policy-routing table), in task namespaces and in its node's own:
/// its address as a number.
pub fn mark_of(router: Ipv4Addr) -> u32 {
    u32::from(router)
}

/// The node namespace's table: its local addresses' mesh ports are translated to the
/// serving tasks, and every packet of such a connection is marked for the router's route.
pub fn host_ruleset(namespace_prefix: &str, mesh: &Mesh) -> String {
    let table = host_table(namespace_prefix);
    let mark = format!("{:#010x}", mark_of(mesh.router));
    let mut out = String::new();
    nft::replace_table(&mut out, &table);
    let _ = writeln!(out, "table ip {table} {{");
    for (chain, hook, guard) in [
        ("prerouting", "prerouting", ""),
        // The node's own clients, on its addresses (loopback cannot leave the node).
        ("output", "output", "ip daddr != 127.0.0.0/8 "),
    ] {
        nft::open_chain(&mut out, chain, "nat", hook, -100);
        for port in mesh.ports.iter().filter(|p| !p.backends.is_empty()) {
            let _ = writeln!(
                out,
                "    {guard}fib daddr type local {} dport {} meta mark set {mark} ct mark set {mark} dnat to {} : {}",
                port.protocol,
                port.published,
                nft::spread(&port.backends),
                port.target
            );
        }
        nft::close_chain(&mut out);
    }
    // Every later packet of a mesh connection, either way, carries the mark too (only the
    // first one passes the translation rules).
    for (chain, kind, hook) in [
        ("marks", "filter", "prerouting"),
        ("own_marks", "route", "output"),
    ] {
        nft::open_chain(&mut out, chain, kind, hook, -150);
        let _ = writeln!(out, "    ct mark {mark} meta mark set {mark}");
        nft::close_chain(&mut out);
    }
    let _ = writeln!(out, "}}");
    out
}

/// The chains a task's namespace needs when it is on the ingress network: a connection
/// coming in from a router is marked with it, and its replies carry the mark (which
/// picks the router's policy route). Empty without routers. Goes inside the task's table.
pub fn sandbox_chains(routers: &[Ipv4Addr]) -> String {
    if routers.is_empty() {
        return String::new();
    }
    let map: Vec<String> = routers
        .iter()
        .map(|r| format!("{} : {:#010x}", mac_of(*r), mark_of(*r)))
        .collect();
    let mut out = String::new();
    nft::open_chain(&mut out, "mesh_in", "filter", "prerouting", -150);
    let _ = writeln!(
        out,
        "    ct state new ct mark set ether saddr map {{ {} }}",
        map.join(", ")
    );
    nft::close_chain(&mut out);
    nft::open_chain(&mut out, "mesh_out", "route", "output", -150);
    let _ = writeln!(out, "    ct mark != 0 meta mark set ct mark");
    nft::close_chain(&mut out);
    out
}

/// The policy rules (by mark) a task's namespace must drop and the routers it must add,
/// given the marks of the mesh rules it holds ([`RULE_PRIORITY`]).
pub fn rule_changes(have: &BTreeSet<u32>, routers: &[Ipv4Addr]) -> (Vec<u32>, Vec<Ipv4Addr>) {
    let want: BTreeSet<u32> = routers.iter().map(|r| mark_of(*r)).collect();
    let drop = have.difference(&want).copied().collect();
    let add = routers
        .iter()
        .filter(|r| !have.contains(&mark_of(**r)))
        .copied()
        .collect();
    (drop, add)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, last)
    }

    fn mesh() -> Mesh {
        Mesh {
            network: crate::model::test_network("ingress0000001"),
            router: ip(3),
            ports: vec![
                MeshPort {
                    protocol: "tcp",
                    published: 8080,
                    target: 80,
                    backends: vec![ip(7), ip(9)],
                },
                MeshPort {
                    protocol: "udp",
                    published: 5353,
                    target: 53,
                    backends: vec![],
                },
            ],
        }
    }

    #[test]
    fn the_node_translates_its_mesh_ports_once_to_the_serving_tasks() {
        assert_eq!(host_device("shoal-abcdefgh-"), "shmabcdefgh");
        let rules = host_ruleset("shoal-abcdefgh-", &mesh());
        assert!(rules
            .starts_with("table ip shoal-abcdefgh-mesh\ndelete table ip shoal-abcdefgh-mesh\n"));
        assert!(rules.contains(
            "    fib daddr type local tcp dport 8080 meta mark set 0x0a000003 ct mark set 0x0a000003 dnat to numgen inc mod 2 map { 0 : 10.0.0.7, 1 : 10.0.0.9 } : 80\n"
        ));
        assert!(rules.contains(
            "    ip daddr != 127.0.0.0/8 fib daddr type local tcp dport 8080 meta mark set 0x0a000003"
        ));
        assert!(rules.contains("    ct mark 0x0a000003 meta mark set 0x0a000003\n"));
        // A port with no serving task has no rule: the node refuses the connection.
        assert!(!rules.contains("5353"), "{rules}");
    }

    #[test]
    fn a_task_marks_connections_by_router_and_keeps_only_current_routes() {
        let chains = sandbox_chains(&[ip(3), ip(4)]);
        assert!(chains.contains(
            "ct state new ct mark set ether saddr map { 02:42:0a:00:00:03 : 0x0a000003, 02:42:0a:00:00:04 : 0x0a000004 }"
        ));
        assert!(sandbox_chains(&[]).is_empty());
        let have: BTreeSet<u32> = [mark_of(ip(3)), mark_of(ip(5))].into();
        assert_eq!(
            rule_changes(&have, &[ip(3), ip(4)]),
            (vec![mark_of(ip(5))], vec![ip(4)])
        );
    }
}
