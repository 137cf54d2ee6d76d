//! The role manager (leader only): turns node role changes into Raft membership, and
//! keeps the managers' node objects saying which one leads.
//!
//! A node demoted to worker is removed from the Raft voters, then its `ManagerStatus` is
//! cleared. A promoted node joins Raft itself (its agent hears the new role on its session,
//! gets a manager certificate and asks the leader to add it), so promotion needs nothing
//! here. The controlapi has already refused changes that would lose quorum.
//!
//! The leader's mark ([`LeaderMark`]) is what `node ls` shows as `Leader`: the leader sets
//! it on its own node object and clears it on the others', again after any write that
//! undoes it, and retries until it holds. A new leader's first writes are often refused
//! as stale (built before an older leader's last entries applied): written once, the
//! mark was lost that way and `node ls` named the dead leader for good.

use std::time::Duration;

use shoal_proto::{Node, NodeRole};
use shoal_raft::{RaftError, RaftNode};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::runloop::{self, Wake};
use crate::store::{Event, Object, Store, StoreError, Stored};

const RETRY: Duration = Duration::from_secs(1);

/// How soon a refused leader mark is written again.
const MARK_RETRY: Duration = Duration::from_millis(200);

pub struct RoleManager {
    store: Store,
    raft: RaftNode,
}

impl RoleManager {
    pub fn new(store: Store, raft: RaftNode) -> Self {
        Self { store, raft }
    }

    pub async fn run(self, cancel: CancellationToken) {
        on_node_changes(&self.store, &cancel, || async {
            match self.pass().await {
                Ok(true) => None,
                Ok(false) => Some(Instant::now() + RETRY),
                Err(e) => {
                    tracing::warn!(error = %e, "changing raft membership for a role change failed; retrying");
                    Some(Instant::now() + RETRY)
                }
            }
        })
        .await;
    }

    /// Demote what should be demoted; `Ok(false)` when something must be retried.
    pub async fn pass(&self) -> Result<bool, String> {
        let demoted: Vec<Node> = self.store.view(|r| {
            r.nodes()
                .filter(|n| n.role() == NodeRole::Worker && n.manager_status.is_some())
                .cloned()
                .collect()
        });
        let mut settled = true;
        for node in demoted {
            let Some(raft_id) = node.manager_status.as_ref().map(|m| m.raft_id) else {
                continue;
            };
            tracing::info!(node = %node.id, raft_id, "demoted: removing the node from raft");
            match self.raft.remove_voter(raft_id).await {
                Ok(_) => {}
                Err(RaftError::LastVoter) => {
                    tracing::warn!(node = %node.id, "refusing to remove the last raft voter");
                    settled = false;
                    continue;
                }
                Err(e) => return Err(e.to_string()),
            }
            let id = node.id.clone();
            self.store
                .update(|tx| {
                    if let Some(mut node) = tx.node(&id) {
                        node.manager_status = None;
                        tx.update(Object::Node(node))?;
                    }
                    Ok::<_, StoreError>(())
                })
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(settled)
    }
}

/// Keeps the managers' node objects saying that this manager leads, while it does.
pub struct LeaderMark {
    store: Store,
    /// This manager's node id.
    me: String,
}

impl LeaderMark {
    pub fn new(store: Store, me: String) -> Self {
        Self { store, me }
    }

    pub async fn run(self, cancel: CancellationToken) {
        on_node_changes(&self.store, &cancel, || async {
            let failed = self.pass().await.err()?;
            tracing::warn!(error = %failed, "recording leadership on the node objects failed; retrying");
            Some(Instant::now() + MARK_RETRY)
        })
        .await;
    }

    /// Mark this manager leader and every other manager not; writes nothing when the
    /// marks already say so.
    pub async fn pass(&self) -> Result<(), StoreError> {
        self.store
            .update(|tx| {
                let wrong: Vec<Node> = tx
                    .read()
                    .nodes()
                    .filter(|n| {
                        n.manager_status
                            .as_ref()
                            .is_some_and(|m| m.leader != (n.id == self.me))
                    })
                    .cloned()
                    .collect();
                for mut node in wrong {
                    if let Some(status) = node.manager_status.as_mut() {
                        status.leader = node.id == self.me;
                    }
                    tx.update(Object::Node(node))?;
                }
                Ok(())
            })
            .await
    }
}

/// Run `pass` now, then again after each batch of node changes or when the retry it asked
/// for is due, until `cancel`.
async fn on_node_changes<F, Fut>(store: &Store, cancel: &CancellationToken, mut pass: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<Instant>>,
{
    let mut events = store.watch();
    let nodes = |e: &Event| matches!(e.object(), Some(Stored::Node(_)));
    loop {
        let retry = pass().await;
        if runloop::next(&mut events, nodes, retry, cancel).await == Wake::Shutdown {
            return;
        }
    }
}

#[cfg(test)]
#[path = "roles_tests.rs"]
mod tests;
