//! Work larger than one transaction holds: a service of many replicas is created, placed
//! and removed in many bounded transactions, never one oversized Raft entry.

use std::time::Duration;

use shoal_proto::{ServiceMode, TaskState, UpdateConfig, UpdateOrder, UpdateServiceRequest};

use crate::controlapi::ControlApi;
use crate::store::{Object, StoreError, MAX_BATCH_BYTES};
use crate::testutil::{
    live, measured_store, node, put, service, start_leader_loops, wait_for_within,
};

/// Enough replicas for dozens of transactions, few enough for a debug build.
const REPLICAS: usize = 20_000;

/// The framing one entry adds around its batches (a tag and a length each, at most 1024).
const ENTRY_FRAMING: usize = 1024 * 8 + 16;

/// A measured in-memory store with ten hollow nodes, the leader's loops running on it.
async fn ten_nodes_and_the_leaders_loops() -> (
    crate::store::Store,
    std::sync::Arc<crate::testutil::MeasuredProposer>,
    tokio_util::sync::CancellationToken,
) {
    let (store, proposer) = measured_store();
    let nodes: Vec<Object> = (0..10)
        .map(|i| Object::Node(node(&format!("n{i}"))))
        .collect();
    put(&store, nodes).await;
    let cancel = start_leader_loops(&store);
    (store, proposer, cancel)
}

/// No entry the store proposed was over its limit.
fn assert_entries_bounded(proposer: &crate::testutil::MeasuredProposer) {
    assert!(
        proposer.largest() <= MAX_BATCH_BYTES + ENTRY_FRAMING,
        "largest entry {} bytes, limit {MAX_BATCH_BYTES}",
        proposer.largest()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_of_many_replicas_is_placed_and_removed_in_entries_under_the_limit() {
    let (store, proposer, cancel) = ten_nodes_and_the_leaders_loops().await;
    put(
        &store,
        vec![Object::Service(service("big", REPLICAS as u64))],
    )
    .await;
    wait_for_within(
        &store,
        "every replica assigned",
        Duration::from_secs(120),
        |r| {
            r.tasks_of_service("big")
                .filter(|t| t.state() == TaskState::Assigned && !t.node_id.is_empty())
                .count()
                == REPLICAS
        },
    )
    .await;
    assert_eq!(store.view(|r| live(r, "big")), REPLICAS, "no replica twice");
    let placed = proposer.entries();
    assert!(placed > 10, "split into many entries, {placed} seen");
    assert_entries_bounded(&proposer);

    // Removing the service removes only the service; the orchestrator shuts its tasks
    // down, in bounded transactions too.
    let big = store.view(|r| r.service("big").cloned()).expect("service");
    store
        .update(|tx| {
            tx.remove(Object::Service(big));
            Ok::<_, StoreError>(())
        })
        .await
        .expect("remove");
    wait_for_within(
        &store,
        "every task shut down",
        Duration::from_secs(120),
        |r| live(r, "big") == 0,
    )
    .await;
    assert!(
        proposer.entries() > placed + 5,
        "the shutdown was split too"
    );
    assert_entries_bounded(&proposer);
    cancel.cancel();
}

/// An all-at-once rolling update of every replica creates its replacements in as many
/// transactions as they need, without waiting for the first ones to run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_all_at_once_update_of_many_replicas_goes_in_entries_under_the_limit() {
    let (store, proposer, cancel) = ten_nodes_and_the_leaders_loops().await;
    put(
        &store,
        vec![Object::Service(service("big", REPLICAS as u64))],
    )
    .await;
    let assigned = |version: u64| {
        move |r: &crate::store::ReadTx<'_>| {
            r.tasks_of_service("big")
                .filter(|t| {
                    t.spec_version == version
                        && t.desired() == TaskState::Running
                        && t.state() == TaskState::Assigned
                })
                .count()
                == REPLICAS
        }
    };
    let long = Duration::from_secs(120);
    wait_for_within(&store, "every replica assigned", long, assigned(1)).await;
    let before = proposer.entries();

    let big = store.view(|r| r.service("big").cloned()).expect("service");
    let mut spec = big.spec.clone().expect("spec");
    spec.task
        .as_mut()
        .and_then(|t| t.container.as_mut())
        .expect("container")
        .image = "shoal-test/busybox:b".into();
    spec.update = Some(UpdateConfig {
        parallelism: Some(0),
        order: UpdateOrder::StartFirst as i32,
        ..Default::default()
    });
    ControlApi::new(store.clone())
        .update_service(UpdateServiceRequest {
            service: "big".into(),
            version: big.version(),
            spec: Some(spec),
        })
        .await
        .expect("update");
    // Start-first, all at once: every replacement is created and placed in one go (the
    // stand-in agents run nothing, so none waits for another to run).
    wait_for_within(&store, "every replacement assigned", long, assigned(2)).await;
    assert!(proposer.entries() > before + 10, "split into many entries");
    assert_entries_bounded(&proposer);
    cancel.cancel();
}

/// A replicated job of many completions, all at once, is created in bounded transactions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_of_many_completions_starts_in_entries_under_the_limit() {
    let (store, proposer, cancel) = ten_nodes_and_the_leaders_loops().await;
    let mut job = service("job", REPLICAS as u64);
    if let Some(spec) = job.spec.as_mut() {
        spec.mode = ServiceMode::ReplicatedJob as i32;
    }
    put(&store, vec![Object::Service(job)]).await;
    wait_for_within(
        &store,
        "every completion's task assigned",
        Duration::from_secs(120),
        |r| {
            r.tasks_of_service("job")
                .filter(|t| t.state() == TaskState::Assigned)
                .count()
                == REPLICAS
        },
    )
    .await;
    assert_eq!(
        store.view(|r| live(r, "job")),
        REPLICAS,
        "one task per completion"
    );
    assert!(proposer.entries() > 10, "split into many entries");
    assert_entries_bounded(&proposer);
    cancel.cancel();
}

#[tokio::test]
async fn a_transaction_over_the_limit_is_refused_whole_and_the_store_goes_on() {
    let (store, proposer) = measured_store();
    let err = store
        .update(|tx| {
            for i in 0..20_000 {
                tx.create(Object::Node(node(&format!("n{i}"))))?;
            }
            Ok::<_, StoreError>(())
        })
        .await
        .expect_err("too large");
    assert!(
        matches!(err, StoreError::TooLarge { bytes, limit } if bytes > limit && limit == MAX_BATCH_BYTES),
        "{err}"
    );
    assert!(err.to_string().contains("smaller steps"), "{err}");
    assert_eq!(proposer.entries(), 0, "nothing reached the log");
    assert_eq!(store.view(|r| r.nodes().count()), 0);
    put(&store, vec![Object::Node(node("after"))]).await;
    assert_eq!(store.view(|r| r.nodes().count()), 1);
}
