//! The overlay networks a node must carry, as its assignments stream sends them: every
//! network its tasks join, with every task address on it (from all nodes) and the services
//! on it. Derived from the store on each change: the managers are the one source of truth
//! for forwarding entries, names and VIPs (no gossip between nodes).

use std::collections::BTreeSet;

use shoal_proto::{NetworkPeer, NetworkView, ServiceEndpoint, Task, TaskState};

use crate::store::ReadTx;

/// The networks `node_id`'s tasks join (tasks that still hold their addresses).
pub fn network_views(r: &ReadTx<'_>, node_id: &str) -> Vec<NetworkView> {
    let ids: BTreeSet<&str> = r
        .tasks()
        .filter(|t| t.node_id == node_id && t.holds_addresses())
        .flat_map(|t| t.networks.iter().map(|a| a.network_id.as_str()))
        .collect();
    ids.into_iter()
        .filter_map(|id| r.network(id))
        .map(|network| NetworkView {
            peers: peers(r, &network.id),
            services: services(r, &network.id),
            network: Some(network.clone()),
        })
        .collect()
}

fn peers(r: &ReadTx<'_>, network_id: &str) -> Vec<NetworkPeer> {
    let mut peers: Vec<NetworkPeer> = r
        .tasks()
        .filter(|t| !t.node_id.is_empty() && t.holds_addresses())
        .flat_map(|t| {
            t.networks
                .iter()
                .filter(|a| a.network_id == network_id)
                .flat_map(|a| a.addresses.iter())
                .map(|addr| NetworkPeer {
                    task_id: t.id.clone(),
                    service_id: t.service_id.clone(),
                    addr: addr.clone(),
                    node_id: t.node_id.clone(),
                    node_addr: node_addr(r, &t.node_id),
                    serving: serving(t),
                })
                .collect::<Vec<_>>()
        })
        .collect();
    peers.sort_by(|a, b| a.addr.cmp(&b.addr));
    peers
}

fn services(r: &ReadTx<'_>, network_id: &str) -> Vec<ServiceEndpoint> {
    r.services()
        .filter(|s| s.networks().any(|n| n.target == network_id))
        .map(|s| {
            let mut aliases: Vec<String> = s
                .networks()
                .filter(|n| n.target == network_id)
                .flat_map(|n| n.aliases.iter().cloned())
                .collect();
            aliases.sort();
            aliases.dedup();
            ServiceEndpoint {
                service_id: s.id.clone(),
                name: s.name().to_string(),
                aliases,
                mode: s.endpoint_mode() as i32,
                vip: s
                    .vips
                    .iter()
                    .find(|v| v.network_id == network_id)
                    .map(|v| v.addr.clone())
                    .unwrap_or_default(),
            }
        })
        .collect()
}

/// Whether names and VIPs should answer the task: it runs and is meant to.
fn serving(t: &Task) -> bool {
    t.state() == TaskState::Running && t.desired() == TaskState::Running
}

/// The underlay address (host part) of a node's address "10.78.0.12:4242".
fn node_addr(r: &ReadTx<'_>, node_id: &str) -> String {
    let addr = r
        .node(node_id)
        .and_then(|n| n.status.as_ref())
        .map(|s| s.addr.as_str())
        .unwrap_or_default();
    match addr.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host.to_string(),
        _ => addr.to_string(),
    }
}
