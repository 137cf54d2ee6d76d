use shoal_proto::{Availability, Placement, Resources, Service, TaskState};

use super::*;
use crate::orchestrator::new_task;
use crate::testutil::{node, port, publish, put, service};

#[tokio::test]
async fn spreads_tasks_evenly_in_one_pass() {
    let store = Store::in_memory();
    let svc = service("s", 10);
    let mut objects: Vec<Object> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|n| Object::Node(node(n)))
        .collect();
    for slot in 1..=10 {
        objects.push(Object::Task(new_task(&svc, slot, "", TaskState::Running)));
    }
    objects.push(Object::Service(svc));
    put(&store, objects).await;
    let written = Scheduler::new(store.clone()).pass().await.expect("pass");
    assert_eq!(written, 10);
    let per_node = store.view(|r| {
        let mut m: HashMap<String, usize> = HashMap::new();
        for t in r.tasks() {
            assert_eq!(t.state(), TaskState::Assigned);
            *m.entry(t.node_id.clone()).or_default() += 1;
        }
        m
    });
    assert_eq!(per_node.len(), 5);
    assert!(per_node.values().all(|&n| n == 2), "{per_node:?}");
}

#[tokio::test]
async fn pending_task_says_why_and_is_not_rewritten() {
    let store = Store::in_memory();
    let mut drained = node("a");
    drained.spec.as_mut().expect("spec").availability = Availability::Drain as i32;
    let mut svc = service("s", 1);
    svc.spec
        .as_mut()
        .and_then(|s| s.task.as_mut())
        .expect("task")
        .reservations = Some(Resources {
        nano_cpus: 0,
        memory_bytes: 8 << 30,
    });
    let task = new_task(&svc, 1, "", TaskState::Running);
    let id = task.id.clone();
    put(
        &store,
        vec![
            Object::Node(drained),
            Object::Node(node("b")),
            Object::Node(node("c")),
            Object::Service(svc),
            Object::Task(task),
        ],
    )
    .await;
    let scheduler = Scheduler::new(store.clone());
    assert_eq!(scheduler.pass().await.expect("pass"), 1);
    let status = store
        .view(|r| r.task(&id).and_then(|t| t.status.clone()))
        .expect("status");
    assert_eq!(status.state, TaskState::Pending as i32);
    let why =
        "no suitable node (1 node not available for new tasks; 2 nodes have insufficient memory)";
    assert_eq!(status.message, why);
    assert_eq!(status.err, why, "docker shows it in the ERROR column");
    assert_eq!(
        scheduler.pass().await.expect("pass"),
        0,
        "same reason, no write"
    );
}

#[tokio::test]
async fn global_task_goes_to_its_own_node_only() {
    let store = Store::in_memory();
    let mut svc = service("g", 0);
    svc.spec.as_mut().expect("spec").mode = shoal_proto::ServiceMode::Global as i32;
    let task = new_task(&svc, 0, "b", TaskState::Running);
    let id = task.id.clone();
    put(
        &store,
        vec![
            Object::Node(node("a")),
            Object::Node(node("b")),
            Object::Service(svc),
            Object::Task(task),
        ],
    )
    .await;
    Scheduler::new(store.clone()).pass().await.expect("pass");
    assert_eq!(
        store.view(|r| r.task(&id).map(|t| t.node_id.clone())),
        Some("b".to_string())
    );
}

#[tokio::test]
async fn shut_down_tasks_are_never_scheduled() {
    let store = Store::in_memory();
    let svc = service("s", 1);
    let task = new_task(&svc, 1, "", TaskState::Shutdown);
    put(
        &store,
        vec![
            Object::Node(node("a")),
            Object::Service(svc),
            Object::Task(task),
        ],
    )
    .await;
    assert_eq!(Scheduler::new(store.clone()).pass().await.expect("pass"), 0);
}

fn with_placement(mut svc: Service, placement: Placement) -> Service {
    svc.spec
        .as_mut()
        .and_then(|s| s.task.as_mut())
        .expect("task")
        .placement = Some(placement);
    svc
}

/// Place `replicas` new tasks of a service with `placement` on `nodes` (id, zone label;
/// "" for none) in one pass; returns tasks per node id, and the pending tasks' errors.
async fn place(
    nodes: &[(&str, &str)],
    replicas: u64,
    placement: Placement,
) -> (HashMap<String, usize>, Vec<String>) {
    place_service(nodes, with_placement(service("s", replicas), placement)).await
}

/// [`place`] for a service made by the caller: its `replicas` new tasks in one pass.
async fn place_service(
    nodes: &[(&str, &str)],
    svc: Service,
) -> (HashMap<String, usize>, Vec<String>) {
    let store = Store::in_memory();
    let replicas = svc.spec.as_ref().map_or(0, |s| s.replicas);
    let mut objects: Vec<Object> = nodes
        .iter()
        .map(|(id, zone)| {
            let mut n = node(id);
            if !zone.is_empty() {
                n.spec
                    .as_mut()
                    .expect("spec")
                    .labels
                    .insert("zone".into(), zone.to_string());
            }
            Object::Node(n)
        })
        .collect();
    for slot in 1..=replicas {
        objects.push(Object::Task(new_task(&svc, slot, "", TaskState::Running)));
    }
    objects.push(Object::Service(svc));
    put(&store, objects).await;
    Scheduler::new(store.clone()).pass().await.expect("pass");
    store.view(|r| {
        let mut per_node: HashMap<String, usize> = HashMap::new();
        let mut pending = Vec::new();
        for t in r.tasks() {
            if t.state() == TaskState::Pending {
                pending.push(t.status.as_ref().map(|s| s.err.clone()).unwrap_or_default());
            } else {
                *per_node.entry(t.node_id.clone()).or_default() += 1;
            }
        }
        (per_node, pending)
    })
}

#[tokio::test]
async fn placement_table() {
    let zone = || Placement {
        spread: vec!["node.labels.zone".into()],
        ..Default::default()
    };
    let max = |n: u64| Placement {
        max_replicas: n,
        ..Default::default()
    };
    // (case, nodes with their zone, replicas, placement, tasks per node, pending errors)
    type Case<'a> = (
        &'a str,
        &'a [(&'a str, &'a str)],
        u64,
        Placement,
        &'a [(&'a str, usize)],
        &'a [&'a str],
    );
    let cases: Vec<Case> = vec![
        (
            "spread over zones, not nodes",
            &[("a1", "a"), ("a2", "a"), ("a3", "a"), ("b1", "b")],
            4,
            zone(),
            &[("a1", 1), ("a2", 1), ("b1", 2)],
            &[],
        ),
        (
            "nodes without the label are a zone of their own",
            &[("a1", "a"), ("b1", "b"), ("x1", ""), ("x2", "")],
            6,
            zone(),
            &[("a1", 2), ("b1", 2), ("x1", 1), ("x2", 1)],
            &[],
        ),
        (
            "at most one per node",
            &[("a", ""), ("b", "")],
            3,
            max(1),
            &[("a", 1), ("b", 1)],
            &["no suitable node (2 nodes already run the maximum of 1 task of this service)"],
        ),
        (
            "spread and a maximum together",
            &[("a1", "a"), ("b1", "b"), ("b2", "b")],
            4,
            Placement {
                spread: vec!["node.labels.zone".into()],
                max_replicas: 1,
                ..Default::default()
            },
            &[("a1", 1), ("b1", 1), ("b2", 1)],
            &["no suitable node (3 nodes already run the maximum of 1 task of this service)"],
        ),
    ];
    for (name, nodes, replicas, placement, want_nodes, want_pending) in cases {
        let (per_node, pending) = place(nodes, replicas, placement).await;
        let want: HashMap<String, usize> = want_nodes
            .iter()
            .map(|(n, c)| (n.to_string(), *c))
            .collect();
        assert_eq!(per_node, want, "{name}");
        assert_eq!(pending, *want_pending, "{name}");
    }
}

#[tokio::test]
async fn a_replacement_waiting_for_its_node_does_not_count_against_itself() {
    let store = Store::in_memory();
    let svc = with_placement(
        service("s", 2),
        Placement {
            max_replicas: 1,
            ..Default::default()
        },
    );
    let mut running = new_task(&svc, 1, "a", TaskState::Running);
    running.status = Some(shoal_proto::TaskStatus {
        state: TaskState::Running as i32,
        ..Default::default()
    });
    // A restart keeps slot 2 on node b, where its failed task was.
    let replacement = new_task(&svc, 2, "b", TaskState::Running);
    let id = replacement.id.clone();
    put(
        &store,
        vec![
            Object::Node(node("a")),
            Object::Node(node("b")),
            Object::Service(svc),
            Object::Task(running),
            Object::Task(replacement),
        ],
    )
    .await;
    Scheduler::new(store.clone()).pass().await.expect("pass");
    let placed = store.view(|r| r.task(&id).cloned()).expect("task");
    assert_eq!(
        (placed.state(), placed.node_id.as_str()),
        (TaskState::Assigned, "b"),
        "{:?}",
        placed.status
    );
}

#[tokio::test]
async fn host_mode_ports_keep_two_tasks_off_one_node() {
    let svc = publish(
        service("s", 3),
        vec![port(8080, 80, shoal_proto::PublishMode::Host)],
    );
    let (per_node, pending) = place_service(&[("a", ""), ("b", "")], svc).await;
    assert_eq!(per_node, HashMap::from([("a".into(), 1), ("b".into(), 1)]));
    assert_eq!(
        pending,
        ["no suitable node (host-mode port 8080/tcp already in use on 2 nodes)"]
    );
}

mod kept_from_events {
    use proptest::prelude::*;
    use shoal_proto::{Resources, TaskStatus};

    use super::super::loads::Loads;
    use super::*;

    /// One change to the store a scheduler must follow.
    #[derive(Clone, Debug)]
    enum Change {
        /// A new task of service `s`, waiting.
        Create(u8),
        /// Task `t` (by position among the live ones) placed on node `n`.
        Place(u8, u8),
        /// Task `t` finished (or shut down).
        End(u8),
        /// Task `t` removed.
        Remove(u8),
        /// Node `n` removed, or added back.
        Node(u8),
    }

    fn change() -> impl Strategy<Value = Change> {
        prop_oneof![
            (0u8..3).prop_map(Change::Create),
            (any::<u8>(), 0u8..3).prop_map(|(t, n)| Change::Place(t, n)),
            any::<u8>().prop_map(Change::End),
            any::<u8>().prop_map(Change::Remove),
            (0u8..3).prop_map(Change::Node),
        ]
    }

    async fn apply(store: &Store, change: &Change, seq: usize) {
        let nth = |r: &ReadTx<'_>, t: u8| {
            let tasks: Vec<Task> = r.tasks().cloned().collect();
            (!tasks.is_empty()).then(|| tasks[t as usize % tasks.len()].clone())
        };
        store
            .update(|tx| {
                match change {
                    Change::Create(s) => {
                        let mut svc = service(&format!("s{s}"), 1);
                        if let Some(task) = svc.spec.as_mut().and_then(|s| s.task.as_mut()) {
                            task.reservations = Some(Resources {
                                nano_cpus: 100_000_000,
                                memory_bytes: 1 << 20,
                            });
                        }
                        let mut task = new_task(&svc, seq as u64, "", TaskState::Running);
                        task.id = format!("t{seq}");
                        tx.create(Object::Task(task))?;
                    }
                    Change::Place(t, n) => {
                        if let Some(mut task) = nth(tx.read(), *t) {
                            task.node_id = format!("n{n}");
                            task.status = Some(TaskStatus {
                                state: TaskState::Assigned as i32,
                                ..Default::default()
                            });
                            tx.update(Object::Task(task))?;
                        }
                    }
                    Change::End(t) => {
                        if let Some(mut task) = nth(tx.read(), *t) {
                            task.status.get_or_insert_with(Default::default).state =
                                TaskState::Complete as i32;
                            tx.update(Object::Task(task))?;
                        }
                    }
                    Change::Remove(t) => {
                        if let Some(task) = nth(tx.read(), *t) {
                            tx.remove(Object::Task(task));
                        }
                    }
                    Change::Node(n) => {
                        let id = format!("n{n}");
                        match tx.node(&id) {
                            Some(node) => tx.remove(Object::Node(node)),
                            None => tx.create(Object::Node(node(&id)))?,
                        }
                    }
                }
                Ok::<_, StoreError>(())
            })
            .await
            .expect("change");
    }

    proptest! {
        /// Loads kept from events always equal loads counted afresh.
        #[test]
        fn loads_kept_from_events_equal_a_fresh_count(
            changes in prop::collection::vec(change(), 1..40),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime");
            let (kept, fresh) = runtime.block_on(async {
                let store = Store::in_memory();
                let mut events = store.watch();
                let mut kept = Loads::default();
                store.view(|r| kept.rebuild(r));
                for (seq, change) in changes.iter().enumerate() {
                    apply(&store, change, seq).await;
                    while let Ok(event) = events.try_recv() {
                        kept.note(&event);
                    }
                }
                let mut fresh = Loads::default();
                store.view(|r| fresh.rebuild(r));
                (kept.counts(), fresh.counts())
            });
            prop_assert_eq!(kept, fresh);
        }
    }

    #[tokio::test]
    async fn a_task_that_ends_makes_room_for_one_that_waits() {
        let store = Store::in_memory();
        let mut svc = service("s", 2);
        if let Some(task) = svc.spec.as_mut().and_then(|s| s.task.as_mut()) {
            // One fits on the node at a time.
            task.reservations = Some(Resources {
                nano_cpus: 1_500_000_000,
                memory_bytes: 0,
            });
        }
        let first = new_task(&svc, 1, "", TaskState::Running);
        let second = new_task(&svc, 2, "", TaskState::Running);
        put(
            &store,
            vec![
                Object::Node(node("n1")),
                Object::Task(first.clone()),
                Object::Task(second.clone()),
                Object::Service(svc),
            ],
        )
        .await;
        let cancel = tokio_util::sync::CancellationToken::new();
        tokio::spawn(Scheduler::new(store.clone()).run(cancel.clone()));
        let state = |id: &str| store.view(|r| r.task(id).map(|t| t.state()));
        crate::testutil::wait_for(&store, "one placed, one pending", |r| {
            let states: Vec<TaskState> = r.tasks().map(|t| t.state()).collect();
            states.contains(&TaskState::Assigned) && states.contains(&TaskState::Pending)
        })
        .await;
        let placed = if state(&first.id) == Some(TaskState::Assigned) {
            &first.id
        } else {
            &second.id
        };
        crate::testutil::report(&store, placed, TaskState::Complete).await;
        crate::testutil::wait_for(&store, "the other placed", |r| {
            r.tasks()
                .filter(|t| t.state() == TaskState::Assigned)
                .count()
                == 1
        })
        .await;
        cancel.cancel();
    }
}
