//! VIP load balancing, in the kernel of each task's own network namespace: an nftables NAT
//! rule per service VIP on the task's networks rewrites a new connection's destination to
//! one of the service's serving tasks, in turn (numgen). Replies are translated back by the
//! task's own connection tracking, so no address translation happens anywhere else and
//! the serving task sees the client's real address.

use std::fmt::Write;
use std::net::Ipv4Addr;

use crate::nft;

/// The nftables table Shoal keeps in every task's namespace.
pub const TABLE: &str = "shoal";

/// One VIP and the addresses it spreads new connections over (none: no rule, nothing
/// answers the VIP).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Vip {
    pub vip: Ipv4Addr,
    pub backends: Vec<Ipv4Addr>,
}

/// What one task namespace must hold: its table, and the routers of the routing mesh
/// whose policy routes it needs (when it is on the ingress network).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxProgram {
    pub ruleset: String,
    pub routers: Vec<Ipv4Addr>,
}

/// The whole table for one namespace, replacing whatever it held (one `nft -f` run:
/// atomic): the VIPs, and the mesh's marking when `routers` is not empty
/// ([`crate::mesh::sandbox_chains`]).
pub fn ruleset(vips: &[Vip], routers: &[Ipv4Addr]) -> String {
    let mut out = String::new();
    nft::replace_table(&mut out, TABLE);
    let _ = writeln!(out, "table ip {TABLE} {{");
    nft::open_chain(&mut out, "vips", "nat", "output", -100);
    for vip in vips.iter().filter(|v| !v.backends.is_empty()) {
        let _ = writeln!(
            out,
            "    ip daddr {} dnat to {}",
            vip.vip,
            nft::spread(&vip.backends)
        );
    }
    nft::close_chain(&mut out);
    out.push_str(&crate::mesh::sandbox_chains(routers));
    let _ = writeln!(out, "}}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vip_spreads_over_its_backends_and_an_empty_one_has_no_rule() {
        let rules = ruleset(
            &[
                Vip {
                    vip: Ipv4Addr::new(10, 0, 1, 2),
                    backends: vec![Ipv4Addr::new(10, 0, 1, 5), Ipv4Addr::new(10, 0, 1, 6)],
                },
                Vip {
                    vip: Ipv4Addr::new(10, 0, 1, 9),
                    backends: vec![],
                },
            ],
            &[],
        );
        assert_eq!(
            rules,
            "table ip shoal\n\
             delete table ip shoal\n\
             table ip shoal {\n  \
               chain vips {\n    \
                 type nat hook output priority -100; policy accept;\n    \
                 ip daddr 10.0.1.2 dnat to numgen inc mod 2 map { 0 : 10.0.1.5, 1 : 10.0.1.6 }\n  \
               }\n\
             }\n"
        );
    }
}
