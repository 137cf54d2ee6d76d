//! The routing mesh on one node: every port published through it answers on every node,
//! reaches the service's serving tasks on any node, and the task sees the client's own
//! address (no source translation anywhere, unlike Swarm's: moby#25526).
//!
//! The path of a connection to node X's port 8080:
//!
//! 1. X's namespace: `fib daddr type local tcp dport 8080` is translated to the ingress
//!    namespace's end of a veth pair ([`link`]), port unchanged.
//! 2. X's ingress namespace (the ingress network's, where its bridge is): the connection is
//!    translated to one of the service's serving tasks (numgen, as the VIPs) and target
//!    port, and routed onto the bridge from X's router address ([`Mesh::router`]), whose
//!    MAC is the bridge's ([`crate::model::mac_of`]). VXLAN carries it if the task is on
//!    another node.
//! 3. The task's namespace: a new connection from a router's MAC gets that router's mark
//!    in its conntrack entry ([`sandbox_chains`]); replies carry the mark and a policy
//!    route per router ([`rule_changes`]) sends them back through the router they came in
//!    by, whatever the task's default route is. Each namespace's conntrack undoes its own
//!    translation on the way back.
//!
//! Everything here is text and sets: the kernel work is the data plane's
//! ([`crate::Dataplane::program_mesh`]).

use std::collections::BTreeSet;
use std::fmt::Write;
use std::net::Ipv4Addr;

use crate::model::{mac_of, Network};

/// The ingress namespace's end of the veth pair to the node's namespace.
pub const NS_DEVICE: &str = "host0";
/// Where the policy routes of the mesh sit in a task's namespace: before the main table.
pub const RULE_PRIORITY: u32 = 100;

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
    /// The ingress network (its namespace holds the node's router).
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

/// The node-side end of the veth pair into the ingress namespace (15 characters at most).
pub fn host_device(namespace_prefix: &str) -> String {
    let tag: String = namespace_prefix
        .trim_start_matches("shoal-")
        .trim_end_matches('-')
        .chars()
        .take(8)
        .collect();
    format!("shm{tag}")
}

/// The link between the node's namespace and the ingress namespace: a link-local /30
/// (node side, ingress side) derived from the router address, so routers never share one.
pub fn link(router: Ipv4Addr) -> (Ipv4Addr, Ipv4Addr) {
    let base = u32::from(Ipv4Addr::new(169, 254, 0, 0)) + (u32::from(router) & 0x3fff) * 4;
    (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2))
}

/// A router's mark (and policy-routing table) in task namespaces: its address as a number.
pub fn mark_of(router: Ipv4Addr) -> u32 {
    u32::from(router)
}

fn header(out: &mut String, table: &str) {
    // Made if missing, so the delete never fails; then made again whole (one `nft -f`
    // run: atomic).
    let _ = writeln!(out, "table ip {table}");
    let _ = writeln!(out, "delete table ip {table}");
}

/// The node namespace's table: its local addresses' mesh ports go to the ingress namespace.
pub fn host_ruleset(namespace_prefix: &str, mesh: &Mesh) -> String {
    let table = host_table(namespace_prefix);
    let (_, ingress_end) = link(mesh.router);
    let mut out = String::new();
    header(&mut out, &table);
    let _ = writeln!(out, "table ip {table} {{");
    for (chain, hook, guard) in [
        ("prerouting", "prerouting", ""),
        // The node's own clients, on its addresses (loopback cannot leave the node).
        ("output", "output", "ip daddr != 127.0.0.0/8 "),
    ] {
        let _ = writeln!(out, "  chain {chain} {{");
        let _ = writeln!(out, "    type nat hook {hook} priority -100; policy accept;");
        for protocol in ["tcp", "udp"] {
            let ports: BTreeSet<u16> = mesh
                .ports
                .iter()
                .filter(|p| p.protocol == protocol)
                .map(|p| p.published)
                .collect();
            if ports.is_empty() {
                continue;
            }
            let list: Vec<String> = ports.iter().map(u16::to_string).collect();
            let _ = writeln!(
                out,
                "    {guard}fib daddr type local {protocol} dport {{ {} }} dnat to {ingress_end}",
                list.join(", ")
            );
        }
        let _ = writeln!(out, "  }}");
    }
    let _ = writeln!(out, "}}");
    out
}

/// The ingress namespace's table: each port's connections spread over its serving tasks.
pub fn ingress_ruleset(mesh: &Mesh) -> String {
    let table = "shoal-mesh";
    let mut out = String::new();
    header(&mut out, table);
    let _ = writeln!(out, "table ip {table} {{");
    let _ = writeln!(out, "  chain prerouting {{");
    let _ = writeln!(
        out,
        "    type nat hook prerouting priority -100; policy accept;"
    );
    for port in mesh.ports.iter().filter(|p| !p.backends.is_empty()) {
        let map: Vec<String> = port
            .backends
            .iter()
            .enumerate()
            .map(|(i, b)| format!("{i} : {b}"))
            .collect();
        let _ = writeln!(
            out,
            "    iifname \"{NS_DEVICE}\" {} dport {} dnat to numgen inc mod {} map {{ {} }} : {}",
            port.protocol,
            port.published,
            port.backends.len(),
            map.join(", "),
            port.target
        );
    }
    let _ = writeln!(out, "  }}");
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
    let _ = writeln!(out, "  chain mesh_in {{");
    let _ = writeln!(
        out,
        "    type filter hook prerouting priority -150; policy accept;"
    );
    let _ = writeln!(
        out,
        "    ct state new ct mark set ether saddr map {{ {} }}",
        map.join(", ")
    );
    let _ = writeln!(out, "  }}");
    let _ = writeln!(out, "  chain mesh_out {{");
    let _ = writeln!(
        out,
        "    type route hook output priority -150; policy accept;"
    );
    let _ = writeln!(out, "    ct mark != 0 meta mark set ct mark");
    let _ = writeln!(out, "  }}");
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
    fn the_node_sends_its_mesh_ports_to_the_ingress_namespace() {
        assert_eq!(host_device("shoal-abcdefgh-"), "shmabcdefgh");
        assert_eq!(
            link(ip(3)),
            (Ipv4Addr::new(169, 254, 0, 13), Ipv4Addr::new(169, 254, 0, 14))
        );
        let rules = host_ruleset("shoal-abcdefgh-", &mesh());
        assert!(rules.starts_with(
            "table ip shoal-abcdefgh-mesh\ndelete table ip shoal-abcdefgh-mesh\n"
        ));
        assert!(rules.contains(
            "    fib daddr type local tcp dport { 8080 } dnat to 169.254.0.14\n"
        ));
        // A port with no serving task still reaches the ingress namespace (refused there).
        assert!(rules.contains(
            "    ip daddr != 127.0.0.0/8 fib daddr type local udp dport { 5353 } dnat to 169.254.0.14\n"
        ));
    }

    #[test]
    fn the_ingress_namespace_spreads_each_port_over_its_serving_tasks() {
        let rules = ingress_ruleset(&mesh());
        assert!(rules.contains(
            "    iifname \"host0\" tcp dport 8080 dnat to numgen inc mod 2 map { 0 : 10.0.0.7, 1 : 10.0.0.9 } : 80\n"
        ));
        assert!(!rules.contains("5353"), "no serving task: no rule");
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
