//! `UpdateNode` and `RemoveNode`: availability, labels, role changes and removal, with the
//! refusals that keep the swarm's quorum.
//!
//! A role change writes `spec.role` only: the component on the leader that manages Raft
//! membership turns it into a member added or removed, and sets `manager_status`.

use shoal_proto::{Node, NodeRole, NodeState, RemoveNodeRequest, RemovedNode, UpdateNodeRequest};

use super::{find_node, validate, ControlApi, ControlError};
use crate::store::{Object, ReadTx, WriteTx};
use crate::{ca, clock};

impl ControlApi {
    pub async fn update_node(&self, request: UpdateNodeRequest) -> Result<Node, ControlError> {
        let spec = validate::node_spec(request.spec.unwrap_or_default())?;
        let id = self
            .store
            .update(|tx| {
                let mut node = find_node(tx.read(), &request.node)?.clone();
                let name = display_name(tx.read(), &node);
                if request.version != node.meta.as_ref().map_or(0, |m| m.version) {
                    return Err(ControlError::OutOfSequence { kind: "node", name });
                }
                if node.role() == NodeRole::Manager && spec.role == NodeRole::Worker as i32 {
                    check_demotion(tx.read(), &node, &name)?;
                }
                node.spec = Some(spec);
                let id = node.id.clone();
                tx.update(Object::Node(node))?;
                Ok(id)
            })
            .await?;
        self.store
            .view(|r| r.node(&id).cloned())
            .ok_or(ControlError::NodeNotFound(id))
    }

    pub async fn remove_node(&self, request: RemoveNodeRequest) -> Result<(), ControlError> {
        self.store
            .update(|tx| {
                let node = find_node(tx.read(), &request.node)?.clone();
                let name = display_name(tx.read(), &node);
                if node.role() == NodeRole::Manager {
                    return Err(ControlError::Refused(format!(
                        "node {name} is a manager: demote it first with `shoal node demote {name}`"
                    )));
                }
                if node.manager_status.is_some() {
                    return Err(ControlError::Refused(format!(
                        "node {name} is still leaving the managers: retry once `shoal node ls` shows no manager status for it"
                    )));
                }
                if node.state() != NodeState::Down && !request.force {
                    return Err(ControlError::Refused(format!(
                        "node {name} is not down and can't be removed: stop shoald there, or use --force"
                    )));
                }
                let id = node.id.clone();
                tx.remove(Object::Node(node));
                revoke(tx, &id)?;
                // The last node still on the old root may be the one leaving.
                ca::rotation::finish_if_done(tx)?;
                Ok(())
            })
            .await
    }
}

/// Record `node_id` as removed in the cluster object: its certificate is refused on every
/// port from now on, and can't be renewed ([`crate::caller::revoked`]). Entries whose
/// certificates have all expired are dropped here.
fn revoke(tx: &mut WriteTx<'_>, node_id: &str) -> Result<(), ControlError> {
    let Some(mut cluster) = tx.cluster() else {
        return Err(ControlError::Refused(
            "the swarm has no cluster record yet".into(),
        ));
    };
    let now = clock::now_ms();
    let lifetime = ca::expiry(&cluster).max(ca::DEFAULT_CERT_EXPIRY);
    cluster
        .removed_nodes
        .retain(|r| r.expires_at_ms > now && r.node_id != node_id);
    cluster.removed_nodes.push(RemovedNode {
        node_id: node_id.to_string(),
        removed_at_ms: now,
        expires_at_ms: now.saturating_add(i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX)),
    });
    tx.update(Object::Cluster(cluster))?;
    Ok(())
}

/// How messages name a node: its hostname when that identifies it, else its id.
fn display_name(r: &ReadTx<'_>, node: &Node) -> String {
    let host = node.hostname();
    let unique = !host.is_empty() && r.nodes().filter(|n| n.hostname() == host).count() == 1;
    if unique {
        host.to_string()
    } else {
        node.id.clone()
    }
}

/// Demoting `node` must leave a manager, and a majority of the remaining managers reachable
/// (a manager node with a manager status that is READY), or the swarm loses its quorum.
fn check_demotion(r: &ReadTx<'_>, node: &Node, name: &str) -> Result<(), ControlError> {
    let remaining: Vec<&Node> = r
        .nodes()
        .filter(|n| n.id != node.id && n.role() == NodeRole::Manager)
        .collect();
    if remaining.is_empty() {
        return Err(ControlError::Refused(format!(
            "node {name} is the last manager of the swarm: promote another node first"
        )));
    }
    let reachable = remaining
        .iter()
        .filter(|n| n.manager_status.is_some() && n.state() == NodeState::Ready)
        .count();
    let majority = remaining.len() / 2 + 1;
    if reachable < majority {
        return Err(ControlError::Refused(format!(
            "demoting {name} would leave {reachable} of {} managers reachable: the swarm would lose quorum",
            remaining.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use shoal_proto::{Availability, ManagerStatus, NodeSpec};

    use super::*;
    use crate::store::Store;
    use crate::testutil::{node, put};

    fn manager(id: &str, state: NodeState) -> Node {
        let mut n = node(id);
        if let Some(spec) = n.spec.as_mut() {
            spec.role = NodeRole::Manager as i32;
        }
        if let Some(status) = n.status.as_mut() {
            status.state = state as i32;
        }
        n.manager_status = Some(ManagerStatus {
            raft_id: 1,
            addr: format!("{id}:4242"),
            leader: false,
        });
        n
    }

    fn worker(id: &str, state: NodeState) -> Node {
        let mut n = node(id);
        if let Some(status) = n.status.as_mut() {
            status.state = state as i32;
        }
        n
    }

    async fn api(nodes: Vec<Node>) -> ControlApi {
        let store = Store::in_memory();
        let cluster = shoal_proto::Cluster {
            id: "c1".into(),
            ..Default::default()
        };
        let objects = nodes.into_iter().map(Object::Node);
        put(&store, objects.chain([Object::Cluster(cluster)]).collect()).await;
        ControlApi::new(store)
    }

    /// Update `key` with its current version and `change` applied to its spec.
    async fn update(
        api: &ControlApi,
        key: &str,
        change: impl FnOnce(&mut NodeSpec),
    ) -> Result<Node, String> {
        let current = api
            .store
            .view(|r| find_node(r, key).cloned())
            .map_err(|e| e.to_string())?;
        let mut spec = current.spec.clone().unwrap_or_default();
        change(&mut spec);
        api.update_node(UpdateNodeRequest {
            node: key.into(),
            version: current.meta.as_ref().map_or(0, |m| m.version),
            spec: Some(spec),
        })
        .await
        .map_err(|e| e.to_string())
    }

    fn demote(spec: &mut NodeSpec) {
        spec.role = NodeRole::Worker as i32;
    }

    #[tokio::test]
    async fn availability_labels_and_promotion() {
        let api = api(vec![
            manager("n1", NodeState::Ready),
            worker("n2", NodeState::Ready),
        ])
        .await;
        let n = update(&api, "n2", |s| {
            s.availability = Availability::Drain as i32;
            s.labels.insert("zone".into(), "a".into());
        })
        .await
        .expect("drain");
        assert_eq!(n.availability(), Availability::Drain);
        assert_eq!(n.spec.as_ref().map(|s| s.labels.len()), Some(1));
        let n = update(&api, "n2", |s| s.role = NodeRole::Manager as i32)
            .await
            .expect("promote");
        assert_eq!(n.role(), NodeRole::Manager);
        assert!(
            n.manager_status.is_none(),
            "membership is not the API's job"
        );
    }

    #[tokio::test]
    async fn node_updates_are_refused_with_reasons() {
        use NodeState::{Down, Ready};
        // (nodes, node to update, change, error)
        type Case = (Vec<Node>, &'static str, fn(&mut NodeSpec), &'static str);
        let cases: Vec<Case> =
            vec![
            (
                vec![manager("n1", Ready), worker("n2", Ready)],
                "n1",
                demote,
                "node n1 is the last manager of the swarm: promote another node first",
            ),
            (
                vec![manager("n1", Ready), manager("n2", Ready), manager("n3", Down)],
                "n2",
                demote,
                "demoting n2 would leave 1 of 2 managers reachable: the swarm would lose quorum",
            ),
            (
                // A manager by spec whose membership has not landed is not reachable yet.
                vec![manager("n1", Ready), {
                    let mut n = manager("n2", Ready);
                    n.manager_status = None;
                    n
                }],
                "n1",
                demote,
                "demoting n1 would leave 0 of 1 managers reachable: the swarm would lose quorum",
            ),
            (
                vec![worker("n1", Ready)],
                "n1",
                |s| {
                    s.labels.insert(" ".into(), "x".into());
                },
                "invalid node label",
            ),
            (
                vec![worker("n1", Ready)],
                "n1",
                |s| s.availability = 7,
                "unknown availability 7: use active, pause or drain",
            ),
            (
                vec![worker("n1", Ready)],
                "n1",
                |s| s.role = 9,
                "unknown node role 9: use manager or worker",
            ),
            (
                vec![worker("n1", Ready)],
                "nope",
                |_| {},
                "node nope not found",
            ),
        ];
        for (nodes, key, change, want) in cases {
            let api = api(nodes).await;
            let err = update(&api, key, change).await.expect_err(want);
            assert!(err.contains(want), "{err:?} should contain {want:?}");
        }
    }

    #[tokio::test]
    async fn demotion_allowed_while_a_majority_stays_reachable() {
        use NodeState::{Down, Ready};
        let api = api(vec![
            manager("n1", Ready),
            manager("n2", Ready),
            manager("n3", Down),
        ])
        .await;
        // Demoting the down one leaves 2 of 2 reachable.
        let n = update(&api, "n3", demote).await.expect("demote n3");
        assert_eq!(n.role(), NodeRole::Worker);
    }

    #[tokio::test]
    async fn stale_version_is_out_of_sequence() {
        let api = api(vec![worker("n1", NodeState::Ready)]).await;
        let err = api
            .update_node(UpdateNodeRequest {
                node: "n1".into(),
                version: 999,
                spec: Some(NodeSpec::default()),
            })
            .await
            .expect_err("stale");
        assert_eq!(
            err.to_string(),
            "update out of sequence: node n1 changed since it was read; read it again and retry"
        );
    }

    #[tokio::test]
    async fn removal() {
        use NodeState::{Down, Ready};
        let api = api(vec![
            manager("n1", Ready),
            manager("n2", Down),
            worker("n3", Ready),
            worker("n4", Down),
            worker("n5", Ready),
        ])
        .await;
        let remove = |key: &str, force: bool| {
            let api = api.clone();
            let key = key.to_string();
            async move {
                api.remove_node(RemoveNodeRequest { node: key, force })
                    .await
                    .map_err(|e| e.to_string())
            }
        };
        assert_eq!(
            remove("n2", true).await,
            Err("node n2 is a manager: demote it first with `shoal node demote n2`".into())
        );
        assert_eq!(
            remove("n3", false).await,
            Err(
                "node n3 is not down and can't be removed: stop shoald there, or use --force"
                    .into()
            )
        );
        assert_eq!(remove("n4", false).await, Ok(()));
        assert_eq!(remove("n5", true).await, Ok(()));
        assert_eq!(remove("n4", false).await, Err("node n4 not found".into()));
        let left: Vec<String> = api
            .store
            .view(|r| r.nodes().map(|n| n.id.clone()).collect());
        assert_eq!(left, ["n1", "n2", "n3"]);

        // Both are refused from now on, for as long as a certificate of theirs could live.
        let removed = api.store.view(|r| r.cluster().cloned()).expect("cluster");
        let ids: Vec<&str> = removed
            .removed_nodes
            .iter()
            .map(|r| r.node_id.as_str())
            .collect();
        assert_eq!(ids, ["n4", "n5"]);
        assert!(crate::caller::revoked(&removed, "n5") && !crate::caller::revoked(&removed, "n3"));
        let lifetime =
            removed.removed_nodes[0].expires_at_ms - removed.removed_nodes[0].removed_at_ms;
        assert_eq!(lifetime, crate::ca::DEFAULT_CERT_EXPIRY.as_millis() as i64);
    }

    #[tokio::test]
    async fn expired_removals_are_dropped_at_the_next() {
        let api = api(vec![
            worker("n3", NodeState::Down),
            worker("n4", NodeState::Down),
        ])
        .await;
        api.store
            .update(|tx| {
                let mut cluster = tx.read().cluster().cloned().expect("cluster");
                cluster.removed_nodes.push(RemovedNode {
                    node_id: "old".into(),
                    removed_at_ms: 1,
                    expires_at_ms: 2,
                });
                tx.update(Object::Cluster(cluster))
            })
            .await
            .expect("seeded");
        for n in ["n3", "n4"] {
            api.remove_node(RemoveNodeRequest {
                node: n.into(),
                force: false,
            })
            .await
            .expect("removed");
        }
        let cluster = api.store.view(|r| r.cluster().cloned()).expect("cluster");
        let ids: Vec<&str> = cluster
            .removed_nodes
            .iter()
            .map(|r| r.node_id.as_str())
            .collect();
        assert_eq!(ids, ["n3", "n4"]);
    }

    #[tokio::test]
    async fn a_node_being_demoted_is_not_removed() {
        let mut n = manager("n2", NodeState::Down);
        if let Some(spec) = n.spec.as_mut() {
            spec.role = NodeRole::Worker as i32;
        }
        let api = api(vec![manager("n1", NodeState::Ready), n]).await;
        let err = api
            .remove_node(RemoveNodeRequest {
                node: "n2".into(),
                force: true,
            })
            .await
            .map_err(|e| e.to_string());
        assert!(
            err.as_ref()
                .is_err_and(|e| e.contains("still leaving the managers")),
            "{err:?}"
        );
    }
}
