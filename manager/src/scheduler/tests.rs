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
