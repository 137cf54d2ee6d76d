//! The write pipeline against a sequential model: many concurrent writers, commits that
//! lag, entries lost with the leadership, and entries refused as stale.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as SyncMutex};

use proptest::prelude::*;
use shoal_proto::{Service, ServiceSpec, StoreAction, StoreActionBatch, StoreEntry};
use tokio::sync::Semaphore;

use super::*;

/// A proposer that applies to a local state after a delay, and, when told to, loses
/// entries (as a leader that lost its leadership) or has an entry of an older leader
/// commit just before one of them (so that entry's batches are stale). Stands in for Raft:
/// these tests are about the pipeline above it.
struct LaggingProposer {
    state: Arc<StoreState>,
    index: AtomicUsize,
    /// Per entry, in order: what happens to it (missing: it commits).
    fates: SyncMutex<Vec<Fate>>,
    /// Batches per entry, in order.
    groups: SyncMutex<Vec<usize>>,
    /// When set, every entry takes a permit first.
    gate: Option<Arc<Semaphore>>,
}

#[derive(Clone, Copy, Debug)]
enum Fate {
    Commit,
    /// The entry is not committed: every batch fails as not led.
    Lost,
    /// An entry the store did not write commits first (an old leader's).
    Overtaken,
}

impl LaggingProposer {
    fn new(state: Arc<StoreState>, fates: Vec<Fate>) -> Self {
        Self {
            state,
            index: AtomicUsize::new(0),
            fates: SyncMutex::new(fates.into_iter().rev().collect()),
            groups: SyncMutex::new(Vec::new()),
            gate: None,
        }
    }
}

#[async_trait]
impl Proposer for LaggingProposer {
    async fn propose(&self, entry: StoreEntry) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        if let Some(gate) = &self.gate {
            gate.acquire().await.expect("gate open").forget();
        }
        // Let the writers run and queue more meanwhile.
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        self.groups
            .lock()
            .expect("groups")
            .push(entry.batches.len());
        let fate = self
            .fates
            .lock()
            .expect("fates")
            .pop()
            .unwrap_or(Fate::Commit);
        let index = self.index.fetch_add(2, Ordering::SeqCst) as u64 + 1;
        match fate {
            Fate::Commit => Ok(self.state.apply_batches(index, entry.batches)),
            Fate::Lost => Err(StoreError::NotLeader { leader_addr: None }),
            Fate::Overtaken => {
                let foreign = StoreActionBatch {
                    actions: vec![create_action(&format!("old-leader-{index}"), "old")],
                    format: STORE_FORMAT,
                    seq: self.state.read().seq + 1,
                    id: index,
                    parent: self.state.read().last_batch,
                };
                let first = self.state.apply_batch(index, foreign);
                assert!(first.is_ok(), "{first:?}");
                Ok(self.state.apply_batches(index + 1, entry.batches))
            }
        }
    }
}

fn named(id: &str, name: &str, replicas: u64) -> Service {
    Service {
        id: id.into(),
        spec: Some(ServiceSpec {
            name: name.into(),
            replicas,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn create_action(id: &str, name: &str) -> StoreAction {
    StoreAction {
        kind: shoal_proto::store_action::Kind::Create as i32,
        object: Some(service_action(named(id, name, 0))),
    }
}

/// One writer's operation on services by name.
#[derive(Clone, Debug)]
enum Op {
    /// Create a service of this name; refused if one exists.
    Create(u8),
    /// Add one to its replicas (a read-modify-write); refused if none exists.
    Bump(u8),
    /// Remove it; refused if none exists.
    Remove(u8),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Done,
    Refused,
}

/// What one operation saw and did: the sequence number it built on, and its outcome.
#[derive(Debug)]
struct Record {
    op: Op,
    base: u64,
    outcome: Result<Outcome, String>,
}

fn name(n: u8) -> String {
    format!("svc{n}")
}

/// Runs `op` as one transaction.
async fn run(store: &Store, op: Op, id: String) -> Record {
    let mut base = 0;
    let result = store
        .update(|tx| {
            base = tx.read().tables().seq;
            let existing = tx
                .read()
                .services()
                .find(|s| s.name() == name(op_name(&op)));
            match (&op, existing) {
                (Op::Create(n), None) => {
                    tx.create(Object::Service(named(&id, &name(*n), 0)))?;
                    Ok(Outcome::Done)
                }
                (Op::Bump(_), Some(s)) => {
                    let mut s = s.clone();
                    s.spec.get_or_insert_with(Default::default).replicas += 1;
                    tx.update(Object::Service(s))?;
                    Ok(Outcome::Done)
                }
                (Op::Remove(_), Some(s)) => {
                    tx.remove(Object::Service(s.clone()));
                    Ok(Outcome::Done)
                }
                _ => Ok::<_, StoreError>(Outcome::Refused),
            }
        })
        .await;
    Record {
        op,
        base,
        outcome: result.map_err(|e| e.to_string()),
    }
}

fn op_name(op: &Op) -> u8 {
    match op {
        Op::Create(n) | Op::Bump(n) | Op::Remove(n) => *n,
    }
}

/// The sequential model: replicas by name.
fn step(model: &mut BTreeMap<String, u64>, op: &Op) -> Outcome {
    let key = name(op_name(op));
    match (op, model.contains_key(&key)) {
        (Op::Create(_), false) => {
            model.insert(key, 0);
            Outcome::Done
        }
        (Op::Bump(_), true) => {
            *model.get_mut(&key).expect("present") += 1;
            Outcome::Done
        }
        (Op::Remove(_), true) => {
            model.remove(&key);
            Outcome::Done
        }
        _ => Outcome::Refused,
    }
}

fn ops() -> impl Strategy<Value = Vec<Vec<Op>>> {
    let op = prop_oneof![
        (0u8..3).prop_map(Op::Create),
        (0u8..3).prop_map(Op::Bump),
        (0u8..3).prop_map(Op::Bump),
        (0u8..3).prop_map(Op::Remove),
    ];
    prop::collection::vec(prop::collection::vec(op, 1..12), 2..6)
}

fn fates() -> impl Strategy<Value = Vec<Fate>> {
    let fate = prop_oneof![
        6 => Just(Fate::Commit),
        1 => Just(Fate::Lost),
        1 => Just(Fate::Overtaken),
    ];
    prop::collection::vec(fate, 0..20)
}

/// Runs every writer's operations concurrently; returns the records and the store.
fn drive(writers: Vec<Vec<Op>>, fates: Vec<Fate>) -> (Vec<Record>, Store, Vec<usize>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let state = Arc::new(StoreState::new());
        let proposer = Arc::new(LaggingProposer::new(state.clone(), fates));
        let store = Store::new(state, proposer.clone());
        let mut tasks = Vec::new();
        for (w, ops) in writers.into_iter().enumerate() {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut records = Vec::new();
                for (i, op) in ops.into_iter().enumerate() {
                    records.push(run(&store, op, format!("w{w}-{i}")).await);
                }
                records
            }));
        }
        let mut records = Vec::new();
        for task in tasks {
            records.extend(task.await.expect("writer"));
        }
        let groups = proposer.groups.lock().expect("groups").clone();
        (records, store, groups)
    })
}

fn committed_model(store: &Store) -> BTreeMap<String, u64> {
    store.view(|r| {
        r.services()
            .filter(|s| !s.id.starts_with("old-leader"))
            .map(|s| {
                (
                    s.name().to_string(),
                    s.spec.as_ref().map_or(0, |s| s.replicas),
                )
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// With every entry committed: each operation's outcome, and the final state, are
    /// those of running the operations one at a time in the order the store placed them.
    #[test]
    fn concurrent_writers_agree_with_the_sequential_model(writers in ops()) {
        let (mut records, store, _) = drive(writers, Vec::new());
        // Writes at their sequence number (base + 1), refusals where they read (base),
        // before the write that built on the same state.
        records.sort_by_key(|r| (r.base, r.outcome == Ok(Outcome::Done)));
        let mut model = BTreeMap::new();
        for r in &records {
            let expected = step(&mut model, &r.op);
            prop_assert_eq!(r.outcome.clone(), Ok(expected), "{:?}", r);
        }
        prop_assert_eq!(committed_model(&store), model);
    }

    /// With entries lost or overtaken: what committed is exactly the writes that said so,
    /// in their order; every writer was answered; nothing built on a lost write applied.
    #[test]
    fn lost_and_stale_entries_fail_every_write_built_on_them(
        writers in ops(),
        fates in fates(),
    ) {
        let (mut records, store, _) = drive(writers, fates);
        records.retain(|r| r.outcome == Ok(Outcome::Done));
        records.sort_by_key(|r| r.base);
        let mut model = BTreeMap::new();
        for r in &records {
            prop_assert_eq!(step(&mut model, &r.op), Outcome::Done, "{:?}", r);
        }
        prop_assert_eq!(committed_model(&store), model);
    }
}

#[test]
fn concurrent_writes_share_log_entries() {
    let writers = vec![
        vec![Op::Create(0)],
        vec![Op::Create(1)],
        vec![Op::Create(2)],
    ];
    let mut most = 0;
    for _ in 0..20 {
        let (records, _, groups) = drive(writers.clone(), Vec::new());
        assert!(records.iter().all(|r| r.outcome == Ok(Outcome::Done)));
        most = most.max(groups.into_iter().max().unwrap_or(0));
    }
    assert!(most > 1, "no entry ever held more than one batch");
}

#[tokio::test]
async fn a_write_builds_on_one_still_committing() {
    let state = Arc::new(StoreState::new());
    let gate = Arc::new(Semaphore::new(0));
    let mut proposer = LaggingProposer::new(state.clone(), Vec::new());
    proposer.gate = Some(gate.clone());
    let store = Store::new(state, Arc::new(proposer));
    let spawn = |op, id: &str| {
        let (store, id) = (store.clone(), id.to_string());
        tokio::spawn(async move { run(&store, op, id).await })
    };
    let create = spawn(Op::Create(0), "a");
    while store.pipeline.pending() < 1 {
        tokio::task::yield_now().await;
    }
    // The create is queued and not committed: a bump finds it and queues behind it.
    let bump = spawn(Op::Bump(0), "b");
    while store.pipeline.pending() < 2 {
        tokio::task::yield_now().await;
    }
    assert!(
        store.view(|r| r.service("a").is_none()),
        "nothing committed yet"
    );
    gate.add_permits(2);
    assert_eq!(create.await.expect("create").outcome, Ok(Outcome::Done));
    assert_eq!(bump.await.expect("bump").outcome, Ok(Outcome::Done));
    assert_eq!(committed_model(&store).get("svc0"), Some(&1));
    assert_eq!(store.pipeline.pending(), 0);
}

#[tokio::test]
async fn an_update_with_a_version_older_than_a_pending_write_is_refused_at_once() {
    let store = Store::in_memory();
    store
        .update(|tx| tx.create(Object::Service(named("a", "web", 1))))
        .await
        .expect("create");
    let read = store.view(|r| r.service("a").cloned()).expect("stored");
    let mut first = read.clone();
    first.spec.get_or_insert_with(Default::default).replicas = 2;
    store
        .update(|tx| tx.update(Object::Service(first)))
        .await
        .expect("first update");
    let err = store
        .update(|tx| tx.update(Object::Service(read)))
        .await
        .expect_err("built on the old version");
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
}

/// A service as a store action carries it.
fn service_action(service: Service) -> shoal_proto::store_action::Object {
    shoal_proto::store_action::Object::Service(Box::new(service))
}
