use std::collections::HashMap;
use std::time::Duration;

use shoal_proto::{Availability, RestartCondition, RestartPolicy, TaskState};

use super::taskreaper::{reapable, TaskReaper};
use super::*;
use crate::scheduler::Scheduler;
use crate::store::Object;
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
    let cancel = crate::testutil::start_leader_loops(&store);
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

mod nodes {
    use shoal_proto::{Node, NodeState, Placement};

    use super::*;
    use crate::testutil::{change_node, serving};

    /// Orchestrate, schedule, and let every assigned task start, as a cluster would.
    async fn settle(store: &Store, o: &mut Orchestrator) {
        o.pass().await.expect("orchestrate");
        Scheduler::new(store.clone())
            .pass()
            .await
            .expect("schedule");
        start_assigned(store).await;
    }

    async fn start_assigned(store: &Store) {
        let assigned: Vec<String> = store.view(|r| {
            r.tasks()
                .filter(|t| t.state() == TaskState::Assigned && t.desired() == TaskState::Running)
                .map(|t| t.id.clone())
                .collect()
        });
        for id in assigned {
            report(store, &id, TaskState::Running).await;
        }
    }

    fn desired_on(store: &Store, node: &str) -> Vec<Task> {
        store.view(|r| {
            r.tasks()
                .filter(|t| t.node_id == node && t.desired() <= TaskState::Running)
                .cloned()
                .collect()
        })
    }

    fn with_placement(mut svc: Service, placement: Placement) -> Service {
        svc.spec
            .as_mut()
            .and_then(|s| s.task.as_mut())
            .expect("task")
            .placement = Some(placement);
        svc
    }

    fn labelled(id: &str, zone: &str) -> Node {
        let mut n = node(id);
        n.spec
            .as_mut()
            .expect("spec")
            .labels
            .insert("zone".into(), zone.into());
        n
    }

    async fn cluster(nodes: Vec<Node>, svc: Service) -> (Store, Orchestrator) {
        let store = Store::in_memory();
        let mut objects: Vec<Object> = nodes.into_iter().map(Object::Node).collect();
        objects.push(Object::Service(svc));
        put(&store, objects).await;
        let mut o = Orchestrator::new(store.clone());
        settle(&store, &mut o).await;
        (store, o)
    }

    #[tokio::test]
    async fn tasks_of_a_lost_node_are_replaced_at_once() {
        // A node that went down, and one that was removed.
        for remove in [false, true] {
            let (store, mut o) = cluster(vec![node("a"), node("b")], service("s", 2)).await;
            assert_eq!(store.view(|r| serving(r, "s")), 2);
            let lost = desired_on(&store, "a").remove(0);
            if remove {
                let n = store.view(|r| r.node("a").cloned()).expect("a");
                store
                    .update(|tx| {
                        tx.remove(Object::Node(n));
                        Ok::<_, StoreError>(())
                    })
                    .await
                    .expect("remove");
            } else {
                change_node(&store, "a", |n| {
                    n.status.as_mut().expect("status").state = NodeState::Down as i32;
                })
                .await;
            }
            o.pass().await.expect("pass");
            let slot = slot_tasks(&store, "s", lost.slot);
            let old = slot.iter().find(|t| t.id == lost.id).expect("old");
            assert_eq!(old.desired(), TaskState::Shutdown, "remove={remove}");
            let new = slot.iter().find(|t| t.id != lost.id).expect("replacement");
            assert_eq!(new.desired(), TaskState::Running, "remove={remove}");
            Scheduler::new(store.clone())
                .pass()
                .await
                .expect("schedule");
            assert_eq!(
                store.view(|r| r.task(&new.id).map(|t| t.node_id.clone())),
                Some("b".to_string())
            );
            start_assigned(&store).await;
            assert_eq!(store.view(|r| serving(r, "s")), 2);
        }
    }

    #[tokio::test]
    async fn a_node_coming_back_finds_its_old_task_shut_down() {
        let (store, mut o) = cluster(vec![node("a"), node("b")], service("s", 2)).await;
        let lost = desired_on(&store, "a").remove(0);
        change_node(&store, "a", |n| {
            n.status.as_mut().expect("status").state = NodeState::Down as i32;
        })
        .await;
        settle(&store, &mut o).await;
        change_node(&store, "a", |n| {
            n.status.as_mut().expect("status").state = NodeState::Ready as i32;
        })
        .await;
        o.pass().await.expect("pass");
        let old = store.view(|r| r.task(&lost.id).cloned()).expect("old");
        assert_eq!(old.desired(), TaskState::Shutdown, "the agent stops it");
        assert_eq!(store.view(|r| live(r, "s")), 2, "no extra task appears");
        // Once the agent reports it stopped, the reaper may take it.
        report(&store, &lost.id, TaskState::Shutdown).await;
        assert!(store.view(|r| reapable(r).is_empty()), "kept as history");
    }

    #[tokio::test]
    async fn drain_starts_the_replacement_before_stopping_the_old_task() {
        let (store, mut o) = cluster(vec![node("a"), node("b"), node("c")], service("s", 3)).await;
        let check = |step: &str| {
            let n = store.view(|r| serving(r, "s"));
            assert!(n >= 3, "{step}: only {n} tasks serve");
        };
        check("start");
        let old = desired_on(&store, "a").remove(0);
        change_node(&store, "a", |n| {
            n.spec.as_mut().expect("spec").availability = Availability::Drain as i32;
        })
        .await;
        check("drained");
        o.pass().await.expect("pass");
        check("replacement created");
        let slot = slot_tasks(&store, "s", old.slot);
        assert_eq!(slot.len(), 2, "old and replacement share the slot");
        let new = slot
            .iter()
            .find(|t| t.id != old.id)
            .expect("replacement")
            .clone();
        assert_eq!(new.desired(), TaskState::Running);
        Scheduler::new(store.clone())
            .pass()
            .await
            .expect("schedule");
        check("replacement assigned");
        let placed = store.view(|r| r.task(&new.id).cloned()).expect("new");
        assert!(
            ["b", "c"].contains(&placed.node_id.as_str()),
            "{}",
            placed.node_id
        );
        for state in [TaskState::Preparing, TaskState::Starting] {
            report(&store, &new.id, state).await;
            o.pass().await.expect("pass");
            check(state.docker_name());
            let kept = store.view(|r| r.task(&old.id).cloned()).expect("old");
            assert_eq!(
                kept.desired(),
                TaskState::Running,
                "old runs on while the new one is {state:?}"
            );
        }
        report(&store, &new.id, TaskState::Running).await;
        check("replacement running");
        o.pass().await.expect("pass");
        check("old shut down");
        let stopped = store.view(|r| r.task(&old.id).cloned()).expect("old");
        assert_eq!(stopped.desired(), TaskState::Shutdown);
        report(&store, &old.id, TaskState::Shutdown).await;
        o.pass().await.expect("pass");
        check("old stopped");
        assert!(desired_on(&store, "a").is_empty());
        assert_eq!(store.view(|r| live(r, "s")), 3);
    }

    #[tokio::test]
    async fn drain_with_no_room_shuts_the_old_task_down_anyway() {
        let svc = with_placement(
            service("s", 2),
            Placement {
                max_replicas: 1,
                ..Default::default()
            },
        );
        let (store, mut o) = cluster(vec![node("a"), node("b")], svc).await;
        assert_eq!(store.view(|r| serving(r, "s")), 2);
        let old = desired_on(&store, "a").remove(0);
        change_node(&store, "a", |n| {
            n.spec.as_mut().expect("spec").availability = Availability::Drain as i32;
        })
        .await;
        o.pass().await.expect("pass");
        assert_eq!(
            store.view(|r| r.task(&old.id).map(|t| t.desired())),
            Some(TaskState::Running),
            "kept until the replacement's fate is known"
        );
        Scheduler::new(store.clone())
            .pass()
            .await
            .expect("schedule");
        let new = slot_tasks(&store, "s", old.slot)
            .into_iter()
            .find(|t| t.id != old.id)
            .expect("replacement");
        let status = new.status.clone().unwrap_or_default();
        assert_eq!(new.state(), TaskState::Pending);
        let why = "no suitable node (1 node not available for new tasks; 1 node already runs the maximum of 1 task of this service)";
        assert_eq!(status.message, why);
        assert_eq!(status.err, why, "shown in the ERROR column");
        o.pass().await.expect("pass");
        assert_eq!(
            store.view(|r| r.task(&old.id).map(|t| t.desired())),
            Some(TaskState::Shutdown),
            "the drain finishes"
        );
    }

    #[tokio::test]
    async fn a_replacement_that_ends_without_restart_lets_the_drain_finish() {
        let svc = with_restart(
            service("s", 1),
            RestartPolicy {
                condition: RestartCondition::None as i32,
                ..Default::default()
            },
        );
        let (store, mut o) = cluster(vec![node("a"), node("b")], svc).await;
        let old = store.view(|r| r.tasks().next().cloned()).expect("the task");
        change_node(&store, &old.node_id, |n| {
            n.spec.as_mut().expect("spec").availability = Availability::Drain as i32;
        })
        .await;
        settle(&store, &mut o).await;
        let new = slot_tasks(&store, "s", 1)
            .into_iter()
            .find(|t| t.id != old.id)
            .expect("replacement");
        report(&store, &new.id, TaskState::Rejected).await;
        o.pass().await.expect("pass");
        assert_eq!(
            store.view(|r| r.task(&old.id).map(|t| t.desired())),
            Some(TaskState::Shutdown)
        );
    }

    #[tokio::test]
    async fn constraint_enforcer_moves_a_task_whose_node_lost_the_label() {
        let svc = with_placement(
            service("s", 1),
            Placement {
                constraints: vec!["node.labels.zone==a".into()],
                ..Default::default()
            },
        );
        let (store, mut o) = cluster(vec![labelled("a1", "a"), labelled("a2", "a")], svc).await;
        let old = store.view(|r| r.tasks().next().cloned()).expect("the task");
        assert_eq!(old.node_id, "a1");
        change_node(&store, "a1", |n| {
            n.spec
                .as_mut()
                .expect("spec")
                .labels
                .insert("zone".into(), "b".into());
        })
        .await;
        o.pass().await.expect("pass");
        assert_eq!(
            store.view(|r| r.task(&old.id).map(|t| t.desired())),
            Some(TaskState::Running),
            "runs on until the replacement runs"
        );
        settle(&store, &mut o).await;
        o.pass().await.expect("pass");
        assert_eq!(
            store.view(|r| r.task(&old.id).map(|t| t.desired())),
            Some(TaskState::Shutdown)
        );
        let on_a2 = desired_on(&store, "a2");
        assert_eq!(on_a2.len(), 1);
        assert_eq!(on_a2[0].state(), TaskState::Running);
    }

    #[tokio::test]
    async fn paused_nodes_keep_their_tasks() {
        let (store, mut o) = cluster(vec![node("a"), node("b")], service("s", 2)).await;
        let before: Vec<String> = store.view(|r| r.tasks().map(|t| t.id.clone()).collect());
        change_node(&store, "a", |n| {
            n.spec.as_mut().expect("spec").availability = Availability::Pause as i32;
        })
        .await;
        settle(&store, &mut o).await;
        o.pass().await.expect("pass");
        let after: Vec<String> = store.view(|r| r.tasks().map(|t| t.id.clone()).collect());
        assert_eq!(before, after, "no task created or replaced");
        assert_eq!(desired_on(&store, "a").len(), 1);
        assert_eq!(store.view(|r| serving(r, "s")), 2);
    }

    #[tokio::test]
    async fn reactivating_a_node_mid_drain_keeps_the_running_task() {
        let svc = with_placement(
            service("s", 1),
            Placement {
                constraints: vec!["node.hostname==a".into()],
                ..Default::default()
            },
        );
        let (store, mut o) = cluster(vec![node("a"), node("b")], svc).await;
        let old = store.view(|r| r.tasks().next().cloned()).expect("the task");
        let set = |availability: Availability| {
            change_node(&store, "a", move |n| {
                n.spec.as_mut().expect("spec").availability = availability as i32;
            })
        };
        set(Availability::Drain).await;
        settle(&store, &mut o).await; // the replacement cannot be placed anywhere
        set(Availability::Active).await;
        o.pass().await.expect("pass");
        let slot = slot_tasks(&store, "s", 1);
        let running: Vec<&Task> = slot
            .iter()
            .filter(|t| t.desired() == TaskState::Running)
            .collect();
        assert_eq!(running.len(), 1, "{slot:?}");
        assert_eq!(
            running[0].id, old.id,
            "the running task wins over the pending one"
        );
    }

    #[tokio::test]
    async fn global_tasks_leave_a_down_node_and_a_removed_one() {
        let mut svc = service("g", 0);
        svc.spec.as_mut().expect("spec").mode = ServiceMode::Global as i32;
        let (store, mut o) = cluster(vec![node("a"), node("b")], svc).await;
        change_node(&store, "a", |n| {
            n.status.as_mut().expect("status").state = NodeState::Down as i32;
        })
        .await;
        o.pass().await.expect("pass");
        assert!(
            desired_on(&store, "a").is_empty(),
            "a worker that left is down: its task goes"
        );
        change_node(&store, "a", |n| {
            n.status.as_mut().expect("status").state = NodeState::Ready as i32;
        })
        .await;
        o.pass().await.expect("pass");
        assert_eq!(desired_on(&store, "a").len(), 1, "back up: a task again");
        let a = store.view(|r| r.node("a").cloned()).expect("a");
        store
            .update(|tx| {
                tx.remove(Object::Node(a));
                Ok::<_, StoreError>(())
            })
            .await
            .expect("remove");
        o.pass().await.expect("pass");
        assert!(desired_on(&store, "a").is_empty());
        assert_eq!(store.view(|r| live(r, "g")), 1);
    }
}

#[tokio::test]
async fn run_loops_drain_a_node_without_downtime() {
    use crate::testutil::{change_node, serving};
    let store = Store::in_memory();
    put(
        &store,
        vec![
            Object::Node(node("a")),
            Object::Node(node("b")),
            Object::Service(service("s", 2)),
        ],
    )
    .await;
    let cancel = crate::testutil::start_leader_loops(&store);
    // A stand-in for the agents: every assigned task starts.
    let agents = {
        let store = store.clone();
        let cancel = cancel.clone();
        async move {
            let mut events = store.watch();
            loop {
                let assigned: Vec<String> = store.view(|r| {
                    r.tasks()
                        .filter(|t| {
                            t.state() == TaskState::Assigned && t.desired() == TaskState::Running
                        })
                        .map(|t| t.id.clone())
                        .collect()
                });
                for id in assigned {
                    report(&store, &id, TaskState::Running).await;
                }
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = events.recv() => {}
                }
            }
        }
    };
    tokio::spawn(agents);
    wait_for(&store, "2 running tasks", |r| serving(r, "s") == 2).await;
    // Replay every task change from here on, and keep the fewest serving tasks seen.
    let mut events = store.watch();
    let mut tasks: HashMap<String, Task> =
        store.view(|r| r.tasks().map(|t| (t.id.clone(), t.clone())).collect());
    change_node(&store, "a", |n| {
        n.spec.as_mut().expect("spec").availability = Availability::Drain as i32;
    })
    .await;
    wait_for(&store, "the task on a shut down", |r| {
        r.tasks()
            .all(|t| t.node_id != "a" || t.desired() == TaskState::Shutdown)
    })
    .await;
    let mut fewest = usize::MAX;
    while let Ok(event) = events.try_recv() {
        if let Some(Stored::Task(t)) = event.object() {
            tasks.insert(t.id.clone(), (**t).clone());
        }
        let serving = tasks
            .values()
            .filter(|t| t.desired() == TaskState::Running && t.state() == TaskState::Running)
            .count();
        fewest = fewest.min(serving);
    }
    assert_eq!(fewest, 2, "a replica was missing during the drain");
    assert_eq!(store.view(|r| serving(r, "s")), 2);
    cancel.cancel();
}

/// Feeds the events since the last call to the orchestrator, as its run loop does.
fn note_events(o: &mut Orchestrator, events: &mut tokio::sync::broadcast::Receiver<Event>) {
    while let Ok(event) = events.try_recv() {
        o.dirty.note(&event);
    }
}

#[tokio::test]
async fn a_pass_reconciles_only_the_services_its_events_touched() {
    let store = Store::in_memory();
    put(
        &store,
        vec![
            Object::Service(service("a", 1)),
            Object::Service(service("b", 1)),
        ],
    )
    .await;
    let mut o = Orchestrator::new(store.clone());
    let mut events = store.watch();
    o.pass().await.expect("first pass: every service");
    note_events(&mut o, &mut events);
    o.pass_dirty().await.expect("its own writes");
    let count = |id: &str| store.view(|r| r.tasks_of_service(id).count());
    assert_eq!((count("a"), count("b")), (1, 1));
    // b's task goes away unseen by the orchestrator; a is scaled, and that it sees.
    let b_task = store
        .view(|r| r.tasks_of_service("b").next().cloned())
        .expect("task");
    store
        .update(|tx| {
            tx.remove(Object::Task(b_task));
            Ok::<_, StoreError>(())
        })
        .await
        .expect("remove");
    let _ = events.try_recv();
    set_replicas(&store, "a", 3).await;
    note_events(&mut o, &mut events);
    o.pass_dirty().await.expect("pass");
    assert_eq!((count("a"), count("b")), (3, 0), "only a was reconciled");
    // Once b's change is seen, b is reconciled too.
    o.dirty.services.insert("b".into());
    o.pass_dirty().await.expect("pass");
    assert_eq!(count("b"), 1);
}

#[test]
fn events_mark_their_services_and_node_changes_mark_all() {
    let mut dirty = Dirty::default();
    let task = |service: &str, state: TaskState| {
        let mut t = new_task(&service_for(service), 1, "n1", TaskState::Running);
        t.status.get_or_insert_with(Default::default).state = state as i32;
        Event::Updated(Object::Task(t).into())
    };
    assert!(dirty.note(&task("s1", TaskState::Failed)));
    assert!(
        !dirty.note(&task("s2", TaskState::Assigned)),
        "not relevant"
    );
    assert_eq!(dirty.services.iter().collect::<Vec<_>>(), ["s1"]);
    assert!(!dirty.all);
    let removed = Event::Removed(Object::Service(service_for("s3")).into());
    assert!(
        dirty.note(&removed),
        "a removed service's tasks are shut down"
    );
    assert_eq!(dirty.removed, ["s3"]);
    assert_eq!(dirty.services.iter().collect::<Vec<_>>(), ["s1", "s3"]);
    let n = Event::Updated(Object::Node(node("n1")).into());
    assert!(dirty.note(&n));
    assert!(dirty.all, "a node change can move any service's tasks");
}

fn service_for(id: &str) -> Service {
    service(id, 1)
}
