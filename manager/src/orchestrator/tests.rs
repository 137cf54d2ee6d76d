use std::time::Duration;

use shoal_proto::{Availability, RestartCondition, RestartPolicy, TaskState};

use super::taskreaper::{reapable, TaskReaper};
use super::*;
use crate::scheduler::Scheduler;
use crate::testutil::{live, node, put, report, service, wait_for};

fn slot_tasks(store: &Store, service_id: &str, slot: u64) -> Vec<Task> {
    store.view(|r| {
        r.tasks_of_service(service_id)
            .filter(|t| t.slot == slot)
            .cloned()
            .collect()
    })
}

fn with_restart(mut svc: Service, policy: RestartPolicy) -> Service {
    svc.spec
        .as_mut()
        .and_then(|s| s.task.as_mut())
        .expect("task")
        .restart = Some(policy);
    svc
}

async fn set_replicas(store: &Store, id: &str, replicas: u64) {
    store
        .update(|tx| {
            let mut s = tx.service(id).expect("service");
            s.spec.as_mut().expect("spec").replicas = replicas;
            tx.update(Object::Service(s))
        })
        .await
        .expect("scale");
}

#[tokio::test]
async fn reconcile_up_fills_numbered_slots() {
    let store = Store::in_memory();
    put(&store, vec![Object::Service(service("s", 3))]).await;
    let mut o = Orchestrator::new(store.clone());
    o.pass().await.expect("pass");
    let mut slots: Vec<u64> = store.view(|r| r.tasks().map(|t| t.slot).collect());
    slots.sort();
    assert_eq!(slots, vec![1, 2, 3]);
    o.pass().await.expect("second pass");
    assert_eq!(
        store.view(|r| r.tasks().count()),
        3,
        "a second pass changes nothing"
    );
}

#[tokio::test]
async fn reconcile_down_shuts_down_the_highest_slots() {
    let store = Store::in_memory();
    put(&store, vec![Object::Service(service("s", 5))]).await;
    let mut o = Orchestrator::new(store.clone());
    o.pass().await.expect("pass");
    set_replicas(&store, "s", 2).await;
    o.pass().await.expect("pass");
    let mut running: Vec<u64> = store.view(|r| {
        r.tasks()
            .filter(|t| t.desired() == TaskState::Running)
            .map(|t| t.slot)
            .collect()
    });
    running.sort();
    assert_eq!(running, vec![1, 2]);
    assert_eq!(
        store.view(|r| r
            .tasks()
            .filter(|t| t.desired() == TaskState::Shutdown)
            .count()),
        3
    );
}

#[tokio::test]
async fn failed_task_is_replaced_in_its_slot() {
    let store = Store::in_memory();
    put(&store, vec![Object::Service(service("s", 1))]).await;
    let mut o = Orchestrator::new(store.clone());
    o.pass().await.expect("pass");
    let first = slot_tasks(&store, "s", 1).remove(0);
    report(&store, &first.id, TaskState::Failed).await;
    o.pass().await.expect("pass");
    let tasks = slot_tasks(&store, "s", 1);
    assert_eq!(tasks.len(), 2);
    let old = tasks
        .iter()
        .find(|t| t.id == first.id)
        .expect("old kept as history");
    assert_eq!(old.desired(), TaskState::Shutdown);
    let new = tasks
        .iter()
        .find(|t| t.id != first.id)
        .expect("replacement");
    assert_eq!(new.desired(), TaskState::Running);
}

#[tokio::test(start_paused = true)]
async fn restart_waits_out_the_delay() {
    let store = Store::in_memory();
    let svc = with_restart(
        service("s", 1),
        RestartPolicy {
            delay_ms: Some(5_000),
            ..Default::default()
        },
    );
    put(&store, vec![Object::Service(svc)]).await;
    let mut o = Orchestrator::new(store.clone());
    o.pass().await.expect("pass");
    let first = slot_tasks(&store, "s", 1).remove(0);
    report(&store, &first.id, TaskState::Failed).await;
    let due = o
        .pass()
        .await
        .expect("pass")
        .expect("a deadline for the delayed start");
    let replacement = || {
        slot_tasks(&store, "s", 1)
            .into_iter()
            .find(|t| t.id != first.id)
            .expect("replacement")
    };
    assert_eq!(
        replacement().desired(),
        TaskState::Ready,
        "prepared, not started, during the delay"
    );
    tokio::time::advance(Duration::from_secs(4)).await;
    assert!(tokio::time::Instant::now() < due);
    o.pass().await.expect("pass");
    assert_eq!(replacement().desired(), TaskState::Ready);
    tokio::time::advance(Duration::from_secs(2)).await;
    o.pass().await.expect("pass");
    assert_eq!(replacement().desired(), TaskState::Running);
}

#[tokio::test(start_paused = true)]
async fn max_attempts_within_window_stop_restarts() {
    let store = Store::in_memory();
    let svc = with_restart(
        service("s", 1),
        RestartPolicy {
            delay_ms: Some(0),
            max_attempts: 2,
            window_ms: 60_000,
            ..Default::default()
        },
    );
    put(&store, vec![Object::Service(svc)]).await;
    let mut o = Orchestrator::new(store.clone());
    o.pass().await.expect("pass");
    for _ in 0..3 {
        let current = slot_tasks(&store, "s", 1)
            .into_iter()
            .find(|t| t.desired() == TaskState::Running)
            .expect("current");
        report(&store, &current.id, TaskState::Failed).await;
        o.pass().await.expect("pass");
    }
    assert_eq!(
        slot_tasks(&store, "s", 1).len(),
        3,
        "the first task and two restarts"
    );
    // Outside the window the count starts again.
    tokio::time::advance(Duration::from_secs(61)).await;
    o.pass().await.expect("pass");
    assert_eq!(slot_tasks(&store, "s", 1).len(), 4);
}

#[tokio::test]
async fn restart_conditions() {
    for (condition, ended, restarts) in [
        (RestartCondition::Any, TaskState::Complete, true),
        (RestartCondition::OnFailure, TaskState::Complete, false),
        (RestartCondition::OnFailure, TaskState::Failed, true),
        (RestartCondition::None, TaskState::Failed, false),
    ] {
        let store = Store::in_memory();
        let svc = with_restart(
            service("s", 1),
            RestartPolicy {
                condition: condition as i32,
                delay_ms: Some(0),
                ..Default::default()
            },
        );
        put(&store, vec![Object::Service(svc)]).await;
        let mut o = Orchestrator::new(store.clone());
        o.pass().await.expect("pass");
        let first = slot_tasks(&store, "s", 1).remove(0);
        report(&store, &first.id, ended).await;
        o.pass().await.expect("pass");
        assert_eq!(
            slot_tasks(&store, "s", 1).len() == 2,
            restarts,
            "{condition:?} after {ended:?}"
        );
    }
}

#[tokio::test]
async fn global_service_follows_nodes() {
    let store = Store::in_memory();
    let mut svc = service("g", 0);
    svc.spec.as_mut().expect("spec").mode = ServiceMode::Global as i32;
    put(
        &store,
        vec![
            Object::Node(node("a")),
            Object::Node(node("b")),
            Object::Service(svc),
        ],
    )
    .await;
    let mut o = Orchestrator::new(store.clone());
    o.pass().await.expect("pass");
    assert_eq!(store.view(|r| live(r, "g")), 2);
    put(&store, vec![Object::Node(node("c"))]).await;
    o.pass().await.expect("pass");
    assert_eq!(store.view(|r| live(r, "g")), 3);
    store
        .update(|tx| {
            let mut n = tx.node("b").expect("node");
            n.spec.as_mut().expect("spec").availability = Availability::Drain as i32;
            tx.update(Object::Node(n))
        })
        .await
        .expect("drain");
    o.pass().await.expect("pass");
    let on_b = store.view(|r| {
        r.tasks()
            .filter(|t| t.node_id == "b" && t.desired() == TaskState::Running)
            .count()
    });
    assert_eq!(on_b, 0);
    assert_eq!(store.view(|r| live(r, "g")), 2);
}

#[tokio::test]
async fn reaper_keeps_bounded_history_and_clears_removed_services() {
    let store = Store::in_memory();
    put(&store, vec![Object::Service(service("s", 1))]).await;
    let mut o = Orchestrator::new(store.clone());
    o.pass().await.expect("pass");
    for _ in 0..8 {
        let current = slot_tasks(&store, "s", 1)
            .into_iter()
            .find(|t| t.desired() == TaskState::Running)
            .expect("current");
        report(&store, &current.id, TaskState::Failed).await;
        o.pass().await.expect("pass");
    }
    assert_eq!(slot_tasks(&store, "s", 1).len(), 9);
    assert_eq!(store.view(|r| reapable(r).len()), 3);
    let reaper = TaskReaper::new(store.clone());
    assert_eq!(reaper.pass().await.expect("reap"), 3);
    assert_eq!(
        slot_tasks(&store, "s", 1).len(),
        6,
        "5 finished + the current one"
    );

    // Service removed: once its tasks are down, they all go.
    let current = slot_tasks(&store, "s", 1)
        .into_iter()
        .find(|t| t.desired() == TaskState::Running)
        .expect("current");
    report(&store, &current.id, TaskState::Running).await;
    let svc = store.view(|r| r.service("s").cloned()).expect("service");
    store
        .update(|tx| {
            for mut t in tx.read().tasks().cloned().collect::<Vec<_>>() {
                t.desired_state = TaskState::Shutdown as i32;
                tx.update(Object::Task(t))?;
            }
            tx.remove(Object::Service(svc));
            Ok::<_, StoreError>(())
        })
        .await
        .expect("remove");
    let last = store
        .view(|r| {
            r.tasks()
                .find(|t| !t.state().is_terminal())
                .map(|t| t.id.clone())
        })
        .expect("current");
    reaper.pass().await.expect("reap");
    assert_eq!(
        store.view(|r| r.tasks().count()),
        1,
        "the running task stays until it stops"
    );
    report(&store, &last, TaskState::Shutdown).await;
    reaper.pass().await.expect("reap");
    assert_eq!(store.view(|r| r.tasks().count()), 0);
}

#[tokio::test]
async fn run_loops_place_a_new_service() {
    let store = Store::in_memory();
    put(
        &store,
        vec![Object::Node(node("a")), Object::Node(node("b"))],
    )
    .await;
    let cancel = tokio_util::sync::CancellationToken::new();
    tokio::spawn(Orchestrator::new(store.clone()).run(cancel.clone()));
    tokio::spawn(Scheduler::new(store.clone()).run(cancel.clone()));
    put(&store, vec![Object::Service(service("s", 4))]).await;
    wait_for(&store, "4 assigned tasks", |r| {
        r.tasks()
            .filter(|t| t.state() == TaskState::Assigned)
            .count()
            == 4
    })
    .await;
    set_replicas(&store, "s", 6).await;
    wait_for(&store, "6 assigned tasks", |r| {
        r.tasks()
            .filter(|t| t.state() == TaskState::Assigned)
            .count()
            == 6
    })
    .await;
    cancel.cancel();
}
