use shoal_proto::{Availability, Resources, TaskState};

use super::*;
use crate::orchestrator::new_task;
use crate::testutil::{node, put, service};

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
    assert_eq!(
        status.message,
        "no suitable node (1 node not available for new tasks; 2 nodes have insufficient memory)"
    );
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
