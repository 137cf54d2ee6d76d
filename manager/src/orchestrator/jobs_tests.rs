//! Jobs on the in-memory store, with a stand-in agent that starts assigned tasks and ends
//! running ones as each test says.

use std::collections::HashMap;

use shoal_proto::{
    Availability, CreateServiceRequest, ListServicesRequest, ServiceMode, ServiceSpec, Task,
    TaskState, UpdateServiceRequest,
};

use super::taskreaper::reapable;
use super::*;
use crate::controlapi::{ControlApi, ControlError};
use crate::scheduler::Scheduler;
use crate::store::Object;
use crate::testutil::{node, put, report, service, wait_for};

/// A job's spec, as `service create --mode MODE --replicas N --max-concurrent M` sends it.
fn job_spec(name: &str, mode: ServiceMode, replicas: u64, max_concurrent: u64) -> ServiceSpec {
    let mut spec = service(name, replicas).spec.expect("spec");
    spec.name = name.into();
    spec.mode = mode as i32;
    spec.max_concurrent = max_concurrent;
    spec
}

async fn create(store: &Store, spec: ServiceSpec) -> Service {
    ControlApi::new(store.clone())
        .create_service(CreateServiceRequest { spec: Some(spec) })
        .await
        .expect("create")
}

async fn update(store: &Store, name: &str, change: impl FnOnce(&mut ServiceSpec)) -> Service {
    let api = ControlApi::new(store.clone());
    let s = api
        .get_service(shoal_proto::GetServiceRequest {
            service: name.into(),
        })
        .expect("service");
    let mut spec = s.spec.clone().expect("spec");
    change(&mut spec);
    api.update_service(UpdateServiceRequest {
        service: s.id.clone(),
        version: s.version(),
        spec: Some(spec),
    })
    .await
    .expect("update")
}

fn tasks_of(store: &Store, id: &str) -> Vec<Task> {
    store.view(|r| r.tasks_of_service(id).cloned().collect())
}

/// Tasks that may run now: desired to run and not ended.
fn in_flight(store: &Store, id: &str) -> usize {
    tasks_of(store, id)
        .iter()
        .filter(|t| t.desired() <= TaskState::Running && !t.state().is_terminal())
        .count()
}

fn completed(store: &Store, id: &str, iteration: u64) -> Vec<Task> {
    tasks_of(store, id)
        .into_iter()
        .filter(|t| t.job_iteration == iteration && t.state() == TaskState::Complete)
        .collect()
}

/// One round of the cluster: orchestrate, schedule, then the agent starts every assigned
/// task and ends every task that was already running with `end(task)`. `check` runs after
/// every write.
async fn round(
    store: &Store,
    o: &mut Orchestrator,
    end: &mut impl FnMut(&Task) -> TaskState,
    check: &impl Fn(&Store),
) {
    o.pass().await.expect("orchestrate");
    check(store);
    Scheduler::new(store.clone())
        .pass()
        .await
        .expect("schedule");
    check(store);
    let tasks: Vec<Task> = store.view(|r| {
        r.tasks()
            .filter(|t| t.desired() == TaskState::Running)
            .cloned()
            .collect()
    });
    for t in tasks {
        match t.state() {
            TaskState::Assigned => report(store, &t.id, TaskState::Running).await,
            TaskState::Running => report(store, &t.id, end(&t)).await,
            _ => continue,
        }
        check(store);
    }
}

#[tokio::test]
async fn replicated_job_runs_its_completions_a_few_at_a_time() {
    let store = Store::in_memory();
    put(
        &store,
        vec![
            Object::Node(node("a")),
            Object::Node(node("b")),
            Object::Node(node("c")),
        ],
    )
    .await;
    let job = create(&store, job_spec("batch", ServiceMode::ReplicatedJob, 6, 2)).await;
    assert_eq!(job.job_status.as_ref().map(|j| j.iteration), Some(1));
    let mut o = Orchestrator::new(store.clone());
    let id = job.id.clone();
    let check = |s: &Store| {
        let n = in_flight(s, &id);
        assert!(n <= 2, "{n} tasks in flight, at most 2 allowed");
    };
    // Slot 2's first task fails: its replacement takes its place, not a third task.
    let mut failed = false;
    let mut end = |t: &Task| {
        if t.slot == 2 && !failed {
            failed = true;
            TaskState::Failed
        } else {
            TaskState::Complete
        }
    };
    let mut max_seen = 0;
    for _ in 0..20 {
        round(&store, &mut o, &mut end, &check).await;
        max_seen = max_seen.max(in_flight(&store, &id));
    }
    assert_eq!(max_seen, 2, "two at a time, not fewer");
    let done = completed(&store, &id, 1);
    assert_eq!(done.len(), 6);
    let mut slots: Vec<u64> = done.iter().map(|t| t.slot).collect();
    slots.sort();
    assert_eq!(slots, [1, 2, 3, 4, 5, 6]);
    assert_eq!(
        tasks_of(&store, &id).len(),
        7,
        "six completions and one failure: no completion ran twice"
    );
    assert_eq!(in_flight(&store, &id), 0);
    let resp = ControlApi::new(store.clone()).list_services(ListServicesRequest {});
    let count = resp.replicas.get(&id).cloned().unwrap_or_default();
    assert_eq!((count.running, count.desired), (6, 6), "6/6 completed");
    assert!(
        store.view(reapable).is_empty(),
        "the completions are the job's record"
    );
}

#[tokio::test]
async fn a_failed_job_task_is_replaced_a_completed_one_is_not() {
    let store = Store::in_memory();
    put(&store, vec![Object::Node(node("a"))]).await;
    // The fixture's restart condition is `any`: a job still never reruns a completion.
    let job = create(&store, job_spec("batch", ServiceMode::ReplicatedJob, 2, 0)).await;
    let mut o = Orchestrator::new(store.clone());
    let mut failed_once = false;
    let mut end = |t: &Task| {
        if t.slot == 1 && !failed_once {
            failed_once = true;
            TaskState::Failed
        } else {
            TaskState::Complete
        }
    };
    for _ in 0..8 {
        round(&store, &mut o, &mut end, &|_: &Store| {}).await;
    }
    let tasks = tasks_of(&store, &job.id);
    let slot = |n: u64| -> Vec<&Task> { tasks.iter().filter(|t| t.slot == n).collect() };
    assert_eq!(slot(1).len(), 2, "the failed task and its replacement");
    assert!(slot(1)
        .iter()
        .any(|t| t.state() == TaskState::Failed && t.desired() == TaskState::Shutdown));
    assert_eq!(slot(2).len(), 1, "a completed task is not restarted");
    assert_eq!(completed(&store, &job.id, 1).len(), 2);
}

#[tokio::test]
async fn a_new_run_of_a_job_gets_its_restart_attempts_back() {
    let store = Store::in_memory();
    put(&store, vec![Object::Node(node("a"))]).await;
    let mut spec = job_spec("batch", ServiceMode::ReplicatedJob, 1, 0);
    if let Some(restart) = spec.task.as_mut().and_then(|t| t.restart.as_mut()) {
        restart.max_attempts = 1;
    }
    let job = create(&store, spec).await;
    let mut o = Orchestrator::new(store.clone());
    let mut end = |_: &Task| TaskState::Failed;
    for _ in 0..8 {
        round(&store, &mut o, &mut end, &|_: &Store| {}).await;
    }
    let run = |n: u64| {
        tasks_of(&store, &job.id)
            .iter()
            .filter(|t| t.job_iteration == n)
            .count()
    };
    assert_eq!(run(1), 2, "the first task and its one restart");
    // Run it again: the new run may restart once too.
    update(&store, "batch", |s| s.force_update += 1).await;
    for _ in 0..8 {
        round(&store, &mut o, &mut end, &|_: &Store| {}).await;
    }
    assert_eq!(run(2), 2, "the new run's task and its one restart");
}

#[tokio::test]
async fn updating_a_job_runs_it_again() {
    let store = Store::in_memory();
    put(
        &store,
        vec![Object::Node(node("a")), Object::Node(node("b"))],
    )
    .await;
    let job = create(&store, job_spec("batch", ServiceMode::ReplicatedJob, 6, 2)).await;
    let id = job.id.clone();
    let mut o = Orchestrator::new(store.clone());
    let check = |s: &Store| assert!(in_flight(s, &id) <= 2);
    let mut end = |_: &Task| TaskState::Complete;
    for _ in 0..20 {
        round(&store, &mut o, &mut end, &check).await;
    }
    assert_eq!(completed(&store, &id, 1).len(), 6);
    // A scale of the concurrency alone changes nothing that ran.
    let same = update(&store, "batch", |s| s.max_concurrent = 3).await;
    assert_eq!(same.job_status.as_ref().map(|j| j.iteration), Some(1));
    o.pass().await.expect("pass");
    assert_eq!(tasks_of(&store, &id).len(), 6);
    // --force: iteration 2.
    let again = update(&store, "batch", |s| {
        s.max_concurrent = 2;
        s.force_update += 1;
    })
    .await;
    assert_eq!(again.job_status.as_ref().map(|j| j.iteration), Some(2));
    assert!(again.update_status.is_none(), "no rolling update for jobs");
    for _ in 0..20 {
        round(&store, &mut o, &mut end, &check).await;
    }
    assert_eq!(completed(&store, &id, 2).len(), 6);
    assert!(tasks_of(&store, &id)
        .iter()
        .filter(|t| t.job_iteration == 1)
        .all(|t| t.desired() == TaskState::Shutdown));
    assert!(tasks_of(&store, &id)
        .iter()
        .filter(|t| t.job_iteration == 2)
        .all(|t| t.spec_version == again.spec_version));
}

#[tokio::test]
async fn an_update_stops_the_tasks_of_the_previous_run() {
    let store = Store::in_memory();
    put(&store, vec![Object::Node(node("a"))]).await;
    let job = create(&store, job_spec("batch", ServiceMode::ReplicatedJob, 2, 0)).await;
    let mut o = Orchestrator::new(store.clone());
    // Started, never ending.
    let mut end = |_: &Task| TaskState::Running;
    for _ in 0..3 {
        round(&store, &mut o, &mut end, &|_: &Store| {}).await;
    }
    update(&store, "batch", |s| s.force_update += 1).await;
    o.pass().await.expect("pass");
    let tasks = tasks_of(&store, &job.id);
    assert!(tasks
        .iter()
        .filter(|t| t.job_iteration == 1)
        .all(|t| t.desired() == TaskState::Shutdown));
    assert_eq!(
        tasks
            .iter()
            .filter(|t| t.job_iteration == 2 && t.desired() == TaskState::Running)
            .count(),
        2
    );
}

#[tokio::test]
async fn global_job_completes_once_per_node_and_on_a_new_node() {
    let store = Store::in_memory();
    put(
        &store,
        vec![Object::Node(node("a")), Object::Node(node("b"))],
    )
    .await;
    let job = create(&store, job_spec("sweep", ServiceMode::GlobalJob, 0, 0)).await;
    let mut o = Orchestrator::new(store.clone());
    let mut end = |_: &Task| TaskState::Complete;
    for _ in 0..5 {
        round(&store, &mut o, &mut end, &|_: &Store| {}).await;
    }
    let per_node = |store: &Store| -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for t in completed(store, &job.id, 1) {
            *m.entry(t.node_id.clone()).or_default() += 1;
        }
        m
    };
    assert_eq!(
        per_node(&store),
        HashMap::from([("a".to_string(), 1), ("b".to_string(), 1)])
    );
    assert_eq!(tasks_of(&store, &job.id).len(), 2);
    put(&store, vec![Object::Node(node("c"))]).await;
    for _ in 0..5 {
        round(&store, &mut o, &mut end, &|_: &Store| {}).await;
    }
    assert_eq!(
        per_node(&store),
        HashMap::from([
            ("a".to_string(), 1),
            ("b".to_string(), 1),
            ("c".to_string(), 1)
        ])
    );
    assert_eq!(
        tasks_of(&store, &job.id).len(),
        3,
        "a and b did not run again"
    );
    let resp = ControlApi::new(store.clone()).list_services(ListServicesRequest {});
    let count = resp.replicas.get(&job.id).cloned().unwrap_or_default();
    assert_eq!((count.running, count.desired), (3, 3));
}

#[tokio::test]
async fn global_job_leaves_a_drained_node_and_keeps_completions() {
    use crate::testutil::change_node;
    let store = Store::in_memory();
    put(
        &store,
        vec![
            Object::Node(node("a")),
            Object::Node(node("b")),
            Object::Node(node("c")),
        ],
    )
    .await;
    let job = create(&store, job_spec("sweep", ServiceMode::GlobalJob, 0, 0)).await;
    let mut o = Orchestrator::new(store.clone());
    // a completes; b and c run on.
    let mut end = |t: &Task| {
        if t.node_id == "a" {
            TaskState::Complete
        } else {
            TaskState::Running
        }
    };
    for _ in 0..3 {
        round(&store, &mut o, &mut end, &|_: &Store| {}).await;
    }
    for (n, availability) in [("a", Availability::Drain), ("b", Availability::Drain)] {
        change_node(&store, n, |n| {
            n.spec.as_mut().expect("spec").availability = availability as i32;
        })
        .await;
    }
    change_node(&store, "c", |n| {
        n.spec.as_mut().expect("spec").availability = Availability::Pause as i32;
    })
    .await;
    o.pass().await.expect("pass");
    let on = |n: &str| -> Vec<Task> {
        tasks_of(&store, &job.id)
            .into_iter()
            .filter(|t| t.node_id == n)
            .collect()
    };
    assert_eq!(on("a").len(), 1);
    assert_eq!(
        on("a")[0].state(),
        TaskState::Complete,
        "a completion stays"
    );
    assert_eq!(
        on("b")[0].desired(),
        TaskState::Shutdown,
        "drained: stopped"
    );
    assert_eq!(on("c")[0].desired(), TaskState::Running, "paused: runs on");
    assert_eq!(tasks_of(&store, &job.id).len(), 3);
}

#[tokio::test]
async fn run_loops_run_a_job_with_a_stand_in_agent() {
    let store = Store::in_memory();
    put(
        &store,
        vec![Object::Node(node("a")), Object::Node(node("b"))],
    )
    .await;
    let cancel = crate::testutil::start_leader_loops(&store);
    // The agents: an assigned task starts, a running one completes (slot 3 fails once).
    let agents = {
        let store = store.clone();
        let cancel = cancel.clone();
        async move {
            let mut events = store.watch();
            let mut failed = false;
            loop {
                let tasks: Vec<Task> = store.view(|r| {
                    r.tasks()
                        .filter(|t| t.desired() == TaskState::Running)
                        .cloned()
                        .collect()
                });
                for t in tasks {
                    match t.state() {
                        TaskState::Assigned => report(&store, &t.id, TaskState::Running).await,
                        TaskState::Running if t.slot == 3 && !failed => {
                            failed = true;
                            report(&store, &t.id, TaskState::Failed).await
                        }
                        TaskState::Running => report(&store, &t.id, TaskState::Complete).await,
                        _ => {}
                    }
                }
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = events.recv() => {}
                }
            }
        }
    };
    // Replay every task change and keep the most tasks in flight seen.
    let mut events = store.watch();
    tokio::spawn(agents);
    let job = create(&store, job_spec("batch", ServiceMode::ReplicatedJob, 6, 2)).await;
    let id = job.id.clone();
    wait_for(&store, "6 completions", |r| {
        r.tasks_of_service(&id)
            .filter(|t| t.state() == TaskState::Complete)
            .count()
            == 6
    })
    .await;
    cancel.cancel();
    let mut tasks: HashMap<String, Task> = HashMap::new();
    let mut most = 0;
    while let Ok(event) = events.try_recv() {
        if let Some(Stored::Task(t)) = event.object() {
            tasks.insert(t.id.clone(), (**t).clone());
        }
        let n = tasks
            .values()
            .filter(|t| t.desired() <= TaskState::Running && !t.state().is_terminal())
            .count();
        most = most.max(n);
    }
    assert_eq!(most, 2, "never more than --max-concurrent in flight");
    assert_eq!(
        tasks_of(&store, &id).len(),
        7,
        "six completions and one failure"
    );
}

#[tokio::test]
async fn max_concurrent_is_for_replicated_jobs_only() {
    let store = Store::in_memory();
    let mut spec = job_spec("web", ServiceMode::Replicated, 2, 0);
    spec.max_concurrent = 2;
    let err = ControlApi::new(store.clone())
        .create_service(CreateServiceRequest { spec: Some(spec) })
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("--max-concurrent can only be used with replicated-job mode"),
        "{err}"
    );
    let service = create(&store, job_spec("web", ServiceMode::Replicated, 2, 0)).await;
    assert!(service.job_status.is_none());
    let api = ControlApi::new(store.clone());
    let mut spec = service.spec.clone().expect("spec");
    spec.mode = ServiceMode::ReplicatedJob as i32;
    let err = api
        .update_service(UpdateServiceRequest {
            service: service.id.clone(),
            version: service.version(),
            spec: Some(spec),
        })
        .await
        .err();
    assert!(
        matches!(err, Some(ControlError::Invalid(ref m)) if m.contains("mode of a service cannot change")),
        "{err:?}"
    );
}
