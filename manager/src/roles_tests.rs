//! The leader's mark on the managers' node objects: written again when refused, mended
//! when a later write undoes it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use shoal_proto::{ManagerStatus, NodeRole, StoreEntry};

use super::*;
use crate::store::{LocalProposer, Proposer, ReadTx, StoreState};
use crate::testutil::{change_node, node, wait_for};

/// Refuses as many entries as it is told to, as a leader whose term ended under them
/// would (nothing of them commits), then applies at once ([`LocalProposer`]). Stands in
/// for Raft: the test is about the loop above the store.
struct RefusingProposer {
    inner: LocalProposer,
    /// Entries still to refuse.
    refuse: AtomicUsize,
    refused: AtomicUsize,
}

#[async_trait]
impl Proposer for RefusingProposer {
    async fn propose(&self, entry: StoreEntry) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let refuse = self
            .refuse
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if refuse.is_ok() {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(StoreError::NotLeader { leader_addr: None });
        }
        self.inner.propose(entry).await
    }
}

fn manager(id: &str, raft_id: u64, leader: bool) -> Node {
    let mut n = node(id);
    if let Some(spec) = n.spec.as_mut() {
        spec.role = NodeRole::Manager as i32;
    }
    n.manager_status = Some(ManagerStatus {
        raft_id,
        addr: format!("10.0.0.{raft_id}:4242"),
        leader,
    });
    n
}

fn leads(r: &ReadTx<'_>, id: &str) -> bool {
    r.node(id)
        .and_then(|n| n.manager_status.as_ref())
        .is_some_and(|m| m.leader)
}

#[tokio::test]
async fn a_refused_leader_mark_is_written_again_and_mended_after_a_write_undoes_it() {
    let state = Arc::new(StoreState::new());
    let proposer = Arc::new(RefusingProposer {
        inner: LocalProposer::new(state.clone()),
        refuse: AtomicUsize::new(0),
        refused: AtomicUsize::new(0),
    });
    let store = Store::new(state, proposer.clone());
    store
        .update(|tx| {
            tx.create(Object::Node(manager("m1", 1, false)))?;
            tx.create(Object::Node(manager("m2", 2, true)))?;
            tx.create(Object::Node(node("w1")))
        })
        .await
        .expect("nodes stored");

    // m1 has just been elected; its first two writes do not commit.
    proposer.refuse.store(2, Ordering::SeqCst);
    let cancel = CancellationToken::new();
    let mark = tokio::spawn(LeaderMark::new(store.clone(), "m1".into()).run(cancel.clone()));
    wait_for(&store, "m1 marked leader, m2 not", |r| {
        leads(r, "m1") && !leads(r, "m2")
    })
    .await;
    assert_eq!(proposer.refused.load(Ordering::SeqCst), 2);

    // A late write (m2's, from before it lost the lead) marks m2 again.
    change_node(&store, "m2", |n| {
        if let Some(m) = n.manager_status.as_mut() {
            m.leader = true;
        }
    })
    .await;
    wait_for(&store, "m2's mark cleared again", |r| {
        leads(r, "m1") && !leads(r, "m2")
    })
    .await;
    assert!(store.view(|r| r.node("w1").is_some_and(|n| n.manager_status.is_none())));

    cancel.cancel();
    mark.await.expect("the loop ends when cancelled");
}
