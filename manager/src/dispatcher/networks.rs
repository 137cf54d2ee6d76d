//! The overlay networks a node must carry, as its assignments stream sends them: every
//! network its tasks join, with every task address on it (from all nodes) and the services
//! on it. Derived from the store on each change: the managers are the one source of truth
//! for forwarding entries, names and VIPs (no gossip between nodes).
//!
//! While any service publishes a port through the routing mesh, every node with a router
//! address carries the ingress network too, with every node's router and every mesh port:
//! each node answers those ports.

use std::collections::BTreeSet;

use shoal_proto::{
    MeshPort, MeshRouter, NetworkPeer, NetworkView, ServiceEndpoint, Task, TaskState,
};

use crate::store::ReadTx;

/// The networks `node_id`'s tasks join (tasks that still hold their addresses), and the
/// ingress network when the node must answer mesh ports.
pub fn network_views(r: &ReadTx<'_>, node_id: &str) -> Vec<NetworkView> {
    let mut ids: BTreeSet<&str> = r
        .tasks()
        .filter(|t| t.node_id == node_id && t.holds_addresses())
        .flat_map(|t| t.networks.iter().map(|a| a.network_id.as_str()))
        .collect();
    let ports = mesh_ports(r);
    let router = r.node(node_id).and_then(|n| {
        let a = n.attachments.iter().find(|a| a.ingress)?;
        Some(a.network_id.as_str())
    });
    if let Some(ingress) = router.filter(|_| !ports.is_empty()) {
        ids.insert(ingress);
    }
    ids.into_iter()
        .filter_map(|id| r.network(id))
        .map(|network| {
            let mesh = network.is_ingress();
            NetworkView {
                peers: peers(r, &network.id),
                services: services(r, &network.id),
                routers: if mesh {
                    routers(r, &network.id)
                } else {
                    Vec::new()
                },
                ports: if mesh { ports.clone() } else { Vec::new() },
                network: Some(network.clone()),
            }
        })
        .collect()
}

/// Every port published through the routing mesh, by service.
fn mesh_ports(r: &ReadTx<'_>) -> Vec<MeshPort> {
    r.services()
        .flat_map(|s| {
            s.ports()
                .iter()
                .filter(|p| p.is_ingress() && p.published_port != 0)
                .map(|p| MeshPort {
                    service_id: s.id.clone(),
                    protocol: p.protocol,
                    published_port: p.published_port,
                    target_port: p.target_port,
                })
        })
        .collect()
}

/// Every node's router on the ingress network `network_id`.
fn routers(r: &ReadTx<'_>, network_id: &str) -> Vec<MeshRouter> {
    r.nodes()
        .flat_map(|n| {
            n.attachments
                .iter()
                .filter(|a| a.ingress && a.network_id == network_id)
                .flat_map(|a| a.addresses.first())
                .map(|addr| MeshRouter {
                    node_id: n.id.clone(),
                    addr: addr.clone(),
                    node_addr: node_addr(r, &n.id),
                })
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
    shoal_proto::names::host_of(addr).to_string()
}

#[cfg(test)]
mod tests {
    use shoal_proto::{
        EndpointVip, Network, NetworkAllocation, NetworkAttachment, NetworkAttachmentConfig,
        NodeStatus, TaskState, TaskStatus,
    };

    use super::*;
    use crate::orchestrator::new_task;
    use crate::store::{Object, Store};
    use crate::testutil::{ingress_network, node, port, publish, put, service};

    fn attached(task: &mut Task, addr: &str, state: TaskState) {
        task.networks = vec![NetworkAttachment {
            network_id: "net".into(),
            addresses: vec![addr.into()],
            aliases: vec![],
            ingress: false,
        }];
        task.status = Some(TaskStatus {
            state: state as i32,
            ..Default::default()
        });
    }

    #[tokio::test]
    async fn a_node_gets_the_networks_of_its_tasks_with_every_address_on_them() {
        let store = Store::in_memory();
        let mut web = service("web", 2);
        web.spec
            .as_mut()
            .and_then(|s| s.task.as_mut())
            .expect("task")
            .networks = vec![NetworkAttachmentConfig {
            target: "net".into(),
            aliases: vec!["www".into()],
        }];
        web.vips = vec![EndpointVip {
            network_id: "net".into(),
            addr: "10.0.1.2/24".into(),
        }];
        let mut on_a = new_task(&web, 1, "a", TaskState::Running);
        attached(&mut on_a, "10.0.1.3/24", TaskState::Running);
        let mut on_b = new_task(&web, 2, "b", TaskState::Running);
        attached(&mut on_b, "10.0.1.4/24", TaskState::Starting);
        let mut dead = new_task(&web, 2, "b", TaskState::Shutdown);
        attached(&mut dead, "10.0.1.9/24", TaskState::Failed);
        let with_addr = |id: &str, addr: &str| {
            let mut n = node(id);
            n.status = Some(NodeStatus {
                addr: addr.into(),
                ..n.status.unwrap_or_default()
            });
            n
        };
        put(
            &store,
            vec![
                Object::Node(with_addr("a", "10.78.0.11:4242")),
                Object::Node(with_addr("b", "10.78.0.12:4242")),
                Object::Node(with_addr("c", "10.78.0.13:4242")),
                Object::Network(Network {
                    id: "net".into(),
                    allocation: Some(NetworkAllocation {
                        subnet: "10.0.1.0/24".into(),
                        gateway: "10.0.1.1".into(),
                        vni: 4097,
                    }),
                    ..Default::default()
                }),
                Object::Service(web),
                Object::Task(on_a),
                Object::Task(on_b),
                Object::Task(dead),
            ],
        )
        .await;
        let views = store.view(|r| network_views(r, "a"));
        assert_eq!(views.len(), 1);
        let peers: Vec<(&str, &str, bool)> = views[0]
            .peers
            .iter()
            .map(|p| (p.addr.as_str(), p.node_addr.as_str(), p.serving))
            .collect();
        // The dead task's address is free again: not a peer.
        assert_eq!(
            peers,
            [
                ("10.0.1.3/24", "10.78.0.11", true),
                ("10.0.1.4/24", "10.78.0.12", false)
            ]
        );
        let svc = &views[0].services[0];
        assert_eq!(
            (svc.name.as_str(), svc.vip.as_str(), svc.aliases.clone()),
            ("web-name", "10.0.1.2/24", vec!["www".to_string()])
        );
        // A node without a task on the network does not carry it.
        assert!(store.view(|r| network_views(r, "c")).is_empty());
    }

    #[tokio::test]
    async fn while_a_port_is_published_through_the_mesh_every_node_carries_ingress() {
        let store = Store::in_memory();
        let router = |id: &str, last: u8| {
            let mut n = node(id);
            n.status = Some(NodeStatus {
                addr: format!("10.78.0.{last}:4242"),
                ..n.status.unwrap_or_default()
            });
            n.attachments = vec![NetworkAttachment {
                network_id: "ing".into(),
                addresses: vec![format!("10.255.0.{last}/24")],
                aliases: vec![],
                ingress: true,
            }];
            n
        };
        put(
            &store,
            vec![
                Object::Node(router("a", 11)),
                Object::Node(router("c", 13)),
                Object::Network(ingress_network("ing")),
            ],
        )
        .await;
        assert!(
            store.view(|r| network_views(r, "c")).is_empty(),
            "nothing published: no mesh"
        );
        let web = publish(
            service("web", 1),
            vec![port(8080, 80, shoal_proto::PublishMode::Ingress)],
        );
        put(&store, vec![Object::Service(web)]).await;
        let views = store.view(|r| network_views(r, "c"));
        assert_eq!(views.len(), 1, "c runs no task but answers the port");
        let routers: Vec<(&str, &str, &str)> = views[0]
            .routers
            .iter()
            .map(|r| (r.node_id.as_str(), r.addr.as_str(), r.node_addr.as_str()))
            .collect();
        assert_eq!(
            routers,
            [
                ("a", "10.255.0.11/24", "10.78.0.11"),
                ("c", "10.255.0.13/24", "10.78.0.13")
            ]
        );
        let ports: Vec<(u32, u32, &str)> = views[0]
            .ports
            .iter()
            .map(|p| (p.published_port, p.target_port, p.service_id.as_str()))
            .collect();
        assert_eq!(ports, [(8080, 80, "web")]);
    }
}
