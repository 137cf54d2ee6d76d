//! The planner: from what the kernel holds and what the node should hold, the changes to
//! make. Pure, so every case is a unit test without root.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{Network, NetworkState, Remote};

/// What one network's namespace holds now, as read back from the kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservedNetwork {
    /// The bridge and the VXLAN device are there, up, and the VXLAN device has this VNI.
    pub vni: Option<u32>,
    /// Remote endpoints with both their neighbour and their forwarding entry.
    pub remotes: BTreeSet<Remote>,
}

/// Every namespace of this node's data plane, by name.
pub type Observed = BTreeMap<String, ObservedNetwork>;

/// One change to the data plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// The network's namespace, its bridge (holding the gateway address) and its VXLAN
    /// device, made from nothing (whatever half-made state was there is removed first).
    CreateNetwork(Network),
    /// The namespace and everything in it.
    DeleteNetwork {
        namespace: String,
    },
    /// A remote endpoint's neighbour (answered by the VXLAN device's ARP proxy) and its
    /// forwarding entry to its node; replaces an entry to another node.
    AddRemote {
        network: Network,
        remote: Remote,
    },
    DeleteRemote {
        network: Network,
        remote: Remote,
    },
}

/// The changes that turn `observed` into `desired`, deletions of stale networks first.
pub fn plan(observed: &Observed, desired: &[NetworkState]) -> Vec<Op> {
    let mut ops = Vec::new();
    let wanted: BTreeMap<String, &NetworkState> =
        desired.iter().map(|s| (s.network.namespace(), s)).collect();
    for namespace in observed.keys() {
        if !wanted.contains_key(namespace) {
            ops.push(Op::DeleteNetwork {
                namespace: namespace.clone(),
            });
        }
    }
    for (namespace, state) in &wanted {
        let network = &state.network;
        let want: BTreeSet<Remote> = state.remotes.iter().copied().collect();
        match observed.get(namespace) {
            Some(have) if have.vni == Some(network.vni) => {
                // Same address on another node: its entry is replaced, not deleted.
                let wanted_addrs: BTreeSet<_> = want.iter().map(|r| r.addr).collect();
                for remote in have.remotes.difference(&want) {
                    if !wanted_addrs.contains(&remote.addr) {
                        ops.push(Op::DeleteRemote {
                            network: network.clone(),
                            remote: *remote,
                        });
                    }
                }
                for remote in want.difference(&have.remotes) {
                    ops.push(Op::AddRemote {
                        network: network.clone(),
                        remote: *remote,
                    });
                }
            }
            _ => {
                ops.push(Op::CreateNetwork(network.clone()));
                ops.extend(want.iter().map(|remote| Op::AddRemote {
                    network: network.clone(),
                    remote: *remote,
                }));
            }
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn net(id: &str, vni: u32) -> Network {
        Network {
            vni,
            ..crate::model::test_network(id)
        }
    }

    fn remote(last: u8, node: u8) -> Remote {
        Remote {
            addr: Ipv4Addr::new(10, 0, 1, last),
            node: Ipv4Addr::new(10, 78, 0, node),
        }
    }

    fn state(network: Network, remotes: &[Remote]) -> NetworkState {
        NetworkState {
            network,
            remotes: remotes.to_vec(),
        }
    }

    fn observed(entries: &[(&str, u32, &[Remote])]) -> Observed {
        entries
            .iter()
            .map(|(ns, vni, remotes)| {
                (
                    ns.to_string(),
                    ObservedNetwork {
                        vni: Some(*vni),
                        remotes: remotes.iter().copied().collect(),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn a_new_network_is_made_whole_then_given_its_remotes() {
        let front = net("front000000001", 4097);
        let ops = plan(&Observed::new(), &[state(front.clone(), &[remote(3, 12)])]);
        assert_eq!(
            ops,
            [
                Op::CreateNetwork(front.clone()),
                Op::AddRemote {
                    network: front,
                    remote: remote(3, 12)
                }
            ]
        );
    }

    #[test]
    fn only_the_difference_is_applied_and_a_moved_address_is_replaced() {
        let front = net("front000000001", 4097);
        let have = observed(&[(
            "shoal-node1-front0000000",
            4097,
            &[remote(3, 12), remote(4, 12), remote(5, 13)],
        )]);
        let want = [state(
            front.clone(),
            &[remote(3, 12), remote(4, 13), remote(6, 13)],
        )];
        let ops = plan(&have, &want);
        assert_eq!(
            ops,
            [
                Op::DeleteRemote {
                    network: front.clone(),
                    remote: remote(5, 13)
                },
                Op::AddRemote {
                    network: front.clone(),
                    remote: remote(4, 13)
                },
                Op::AddRemote {
                    network: front,
                    remote: remote(6, 13)
                },
            ]
        );
        assert!(plan(
            &observed(&[("shoal-node1-front0000000", 4097, &[remote(3, 12)])]),
            &[state(net("front000000001", 4097), &[remote(3, 12)])]
        )
        .is_empty());
    }

    #[test]
    fn stale_and_half_made_namespaces_are_removed_or_remade() {
        let front = net("front000000001", 4097);
        let mut have = observed(&[("shoal-node1-gone00000000", 4098, &[])]);
        // Left half-made by a crash: no VXLAN device.
        have.insert(
            "shoal-node1-front0000000".into(),
            ObservedNetwork::default(),
        );
        let ops = plan(&have, &[state(front.clone(), &[])]);
        assert_eq!(
            ops,
            [
                Op::DeleteNetwork {
                    namespace: "shoal-node1-gone00000000".into()
                },
                Op::CreateNetwork(front),
            ]
        );
    }
}
