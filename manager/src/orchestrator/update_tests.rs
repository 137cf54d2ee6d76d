//! The rolling updater on the in-memory store, a paused clock, the real scheduler, and a
//! stand-in for the agents that starts, fails and stops tasks as told.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use shoal_proto::{
    FailureAction, RollbackServiceRequest, ServiceSpec, TaskStatus, UpdateConfig, UpdateOrder,
    UpdateServiceRequest, UpdateState,
};

use super::*;
use crate::controlapi::ControlApi;
use crate::scheduler::Scheduler;
use crate::store::Object;
use crate::testutil::{node, put, service, serving};

const OLD: &str = "shoal-test/busybox:a";
const NEW: &str = "shoal-test/busybox:b";
/// The agents fail every task of this image at start.
const BAD: &str = "shoal-test/crash:1";
/// No node has this image: the agents reject its tasks when preparing them.
const MISSING: &str = "shoal-test/nope:1";

struct Sim {
    store: Store,
    o: Orchestrator,
    replicas: usize,
    /// Fewest and most serving tasks seen after any change.
    fewest: usize,
    most: usize,
    /// Starts of new-spec tasks so far, and which of them (0-based) the agents fail.
    new_starts: usize,
    fail_starts: HashSet<usize>,
}

fn image_of(t: &Task) -> String {
    t.spec
        .as_ref()
        .and_then(|s| s.container.as_ref())
        .map(|c| c.image.clone())
        .unwrap_or_default()
}

async fn set_status(store: &Store, id: &str, state: TaskState, err: &str) {
    store
        .update(|tx| {
            let mut t = tx.task(id).expect("task");
            t.status = Some(TaskStatus {
                state: state as i32,
                err: err.into(),
                message: state.docker_name().into(),
                ..Default::default()
            });
            tx.update(Object::Task(t))
        })
        .await
        .expect("report");
}

impl Sim {
    async fn new(replicas: u64, update: UpdateConfig, rollback: Option<UpdateConfig>) -> Sim {
        Self::with(service("s", replicas), replicas, update, rollback).await
    }

    /// A global service over the three nodes.
    async fn global(update: UpdateConfig) -> Sim {
        let mut svc = service("s", 0);
        if let Some(spec) = svc.spec.as_mut() {
            spec.mode = shoal_proto::ServiceMode::Global as i32;
        }
        Self::with(svc, 3, update, None).await
    }

    async fn with(
        mut svc: Service,
        replicas: u64,
        update: UpdateConfig,
        rollback: Option<UpdateConfig>,
    ) -> Sim {
        let store = Store::in_memory();
        let spec = svc.spec.as_mut().expect("spec");
        spec.update = Some(update);
        spec.rollback = rollback;
        // Restarts wait a second, as a crashing image would otherwise restart in a loop.
        if let Some(restart) = spec.task.as_mut().and_then(|t| t.restart.as_mut()) {
            restart.delay_ms = Some(1000);
        }
        put(
            &store,
            vec![
                Object::Node(node("a")),
                Object::Node(node("b")),
                Object::Node(node("c")),
                Object::Service(svc),
            ],
        )
        .await;
        let mut sim = Sim {
            o: Orchestrator::new(store.clone()),
            store,
            replicas: replicas as usize,
            fewest: usize::MAX,
            most: 0,
            new_starts: 0,
            fail_starts: HashSet::new(),
        };
        sim.settle().await;
        assert_eq!(sim.serving(), replicas as usize);
        sim.fewest = usize::MAX;
        sim.most = 0;
        sim.new_starts = 0;
        sim
    }

    fn serving(&self) -> usize {
        self.store.view(|r| serving(r, "s"))
    }

    fn observe(&mut self) {
        let n = self.serving();
        self.fewest = self.fewest.min(n);
        self.most = self.most.max(n);
    }

    fn service(&self) -> Service {
        self.store
            .view(|r| r.service("s").cloned())
            .expect("service")
    }

    fn update_state(&self) -> UpdateState {
        self.service()
            .update_status
            .map_or(UpdateState::Unknown, |s| s.state())
    }

    /// What the agents do with the tasks on their nodes. Returns whether anything changed.
    async fn agents(&mut self) -> bool {
        let version = self.service().spec_version;
        let tasks: Vec<Task> = self.store.view(|r| r.tasks().cloned().collect());
        let mut changed = false;
        for t in tasks {
            let placed = !t.node_id.is_empty() && t.state() >= TaskState::Assigned;
            if !placed || t.state().is_terminal() {
                continue;
            }
            if image_of(&t) == MISSING {
                let err = format!("image {MISSING} not found on node {}", t.node_id);
                set_status(&self.store, &t.id, TaskState::Rejected, &err).await;
            } else if t.desired() >= TaskState::Shutdown {
                set_status(&self.store, &t.id, TaskState::Shutdown, "").await;
            } else if t.desired() == TaskState::Ready && t.state() < TaskState::Ready {
                set_status(&self.store, &t.id, TaskState::Ready, "").await;
            } else if t.desired() == TaskState::Running && t.state() != TaskState::Running {
                let start = if t.spec_version == version {
                    self.new_starts += 1;
                    self.new_starts - 1
                } else {
                    usize::MAX
                };
                if image_of(&t) == BAD || self.fail_starts.contains(&start) {
                    set_status(&self.store, &t.id, TaskState::Failed, "exit status 1").await;
                } else {
                    set_status(&self.store, &t.id, TaskState::Running, "").await;
                }
            } else {
                continue;
            }
            changed = true;
            self.observe();
        }
        changed
    }

    fn fingerprint(&self) -> Vec<(String, i32, i32)> {
        self.store.view(|r| {
            let mut v: Vec<_> = r
                .tasks()
                .map(|t| (t.id.clone(), t.desired_state, t.state() as i32))
                .chain(r.services().map(|s| {
                    (
                        s.id.clone(),
                        s.version() as i32,
                        s.update_status.as_ref().map_or(0, |u| u.state),
                    )
                }))
                .collect();
            v.sort();
            v
        })
    }

    /// One round: orchestrate, schedule, let the agents act.
    async fn step(&mut self) {
        self.o.pass().await.expect("orchestrate");
        self.observe();
        Scheduler::new(self.store.clone())
            .pass()
            .await
            .expect("schedule");
        self.agents().await;
    }

    /// Rounds until nothing changes without the clock moving.
    async fn settle(&mut self) {
        for _ in 0..100 {
            let before = self.fingerprint();
            self.step().await;
            if self.fingerprint() == before {
                return;
            }
        }
        panic!("no steady state");
    }

    /// Let time pass in small ticks, settling at each.
    async fn wait(&mut self, d: Duration) {
        let tick = Duration::from_millis(500);
        let mut waited = Duration::ZERO;
        while waited < d {
            tokio::time::advance(tick).await;
            waited += tick;
            self.settle().await;
        }
    }

    /// `service update` through the Control API.
    async fn update(&self, change: impl FnOnce(&mut ServiceSpec)) {
        let s = self.service();
        let mut spec = s.spec.clone().expect("spec");
        change(&mut spec);
        ControlApi::new(self.store.clone())
            .update_service(UpdateServiceRequest {
                service: "s".into(),
                version: s.version(),
                spec: Some(spec),
            })
            .await
            .expect("update");
    }

    async fn set_image(&self, image: &str) {
        self.update(|spec| {
            spec.task
                .as_mut()
                .and_then(|t| t.container.as_mut())
                .expect("container")
                .image = image.into();
        })
        .await;
    }

    /// The live tasks by slot: (spec version, image, state).
    fn slots(&self) -> BTreeMap<u64, Vec<(u64, String, TaskState)>> {
        let mut slots: BTreeMap<u64, Vec<_>> = BTreeMap::new();
        self.store.view(|r| {
            for t in r.tasks_of_service("s") {
                if t.desired() <= TaskState::Running {
                    slots
                        .entry(t.slot)
                        .or_default()
                        .push((t.spec_version, image_of(t), t.state()));
                }
            }
        });
        slots
    }

    /// Live tasks running `image`.
    fn on_image(&self, image: &str) -> usize {
        self.slots()
            .values()
            .flatten()
            .filter(|t| t.1 == image)
            .count()
    }

    /// Tasks ever created per slot for the spec version.
    fn created_per_slot(&self, version: u64) -> BTreeMap<u64, usize> {
        let mut m = BTreeMap::new();
        self.store.view(|r| {
            for t in r.tasks_of_service("s") {
                if t.spec_version == version {
                    *m.entry(t.slot).or_default() += 1;
                }
            }
        });
        m
    }
}

fn config(parallelism: u64, delay_s: i64, monitor_s: i64) -> UpdateConfig {
    UpdateConfig {
        parallelism: Some(parallelism),
        delay_ms: delay_s * 1000,
        monitor_ms: Some(monitor_s * 1000),
        ..Default::default()
    }
}

#[tokio::test(start_paused = true)]
async fn batches_of_parallelism_with_a_delay_between_them() {
    let mut sim = Sim::new(5, config(2, 10, 1), None).await;
    sim.set_image(NEW).await;
    assert_eq!(sim.update_state(), UpdateState::Updating);
    sim.settle().await;
    assert_eq!(sim.on_image(NEW), 2, "the first batch runs at once");
    tokio::time::advance(Duration::from_secs(9)).await;
    sim.settle().await;
    assert_eq!(sim.on_image(NEW), 2, "the delay is not over");
    tokio::time::advance(Duration::from_secs(2)).await;
    sim.settle().await;
    assert_eq!(sim.on_image(NEW), 4, "the second batch");
    sim.wait(Duration::from_secs(11)).await;
    assert_eq!(sim.on_image(NEW), 5, "the last batch of one");
    assert_eq!(sim.on_image(OLD), 0);
    assert_eq!(sim.update_state(), UpdateState::Completed);
    let status = sim.service().update_status.expect("status");
    assert_eq!(status.message, "update completed");
    assert!(status.completed_at_ms >= status.started_at_ms && status.started_at_ms > 0);
    assert_eq!(sim.fewest, 3, "stop-first: one batch of 2 down at a time");
}

#[tokio::test(start_paused = true)]
async fn completed_only_after_the_last_batch_passed_its_monitor() {
    let mut sim = Sim::new(2, config(0, 0, 5), None).await;
    sim.set_image(NEW).await;
    sim.settle().await;
    assert_eq!(sim.on_image(NEW), 2, "parallelism 0: all at once");
    assert_eq!(sim.fewest, 0, "stop-first, all at once");
    tokio::time::advance(Duration::from_secs(4)).await;
    sim.settle().await;
    assert_eq!(sim.update_state(), UpdateState::Updating);
    tokio::time::advance(Duration::from_secs(2)).await;
    sim.settle().await;
    assert_eq!(sim.update_state(), UpdateState::Completed);
}

#[tokio::test(start_paused = true)]
async fn start_first_keeps_every_replica_stop_first_one_batch_down() {
    for order in [UpdateOrder::StartFirst, UpdateOrder::StopFirst] {
        let update = UpdateConfig {
            order: order as i32,
            ..config(1, 0, 0)
        };
        let mut sim = Sim::new(3, update, None).await;
        sim.set_image(NEW).await;
        sim.settle().await;
        assert_eq!(sim.update_state(), UpdateState::Completed, "{order:?}");
        assert_eq!(sim.on_image(NEW), 3, "{order:?}");
        assert_eq!(sim.slots().len(), 3);
        assert!(sim.slots().values().all(|s| s.len() == 1), "{order:?}");
        match order {
            UpdateOrder::StartFirst => {
                assert_eq!(sim.fewest, sim.replicas, "never below the replica count");
                assert_eq!(sim.most, sim.replicas + 1, "one extra task at a time");
            }
            UpdateOrder::StopFirst => {
                assert_eq!(sim.fewest, sim.replicas - 1, "one task down at a time");
                assert_eq!(sim.most, sim.replicas);
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_global_service_rolls_node_by_node() {
    for order in [UpdateOrder::StartFirst, UpdateOrder::StopFirst] {
        let update = UpdateConfig {
            order: order as i32,
            ..config(1, 0, 0)
        };
        let mut sim = Sim::global(update).await;
        sim.set_image(NEW).await;
        sim.settle().await;
        assert_eq!(sim.update_state(), UpdateState::Completed, "{order:?}");
        // One live task per node, on the new image, each node replaced exactly once.
        let per_node: BTreeMap<String, Vec<String>> = sim.store.view(|r| {
            let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for t in r.tasks_of_service("s") {
                if t.desired() <= TaskState::Running {
                    m.entry(t.node_id.clone()).or_default().push(image_of(t));
                }
            }
            m
        });
        assert_eq!(per_node.len(), 3, "{order:?}: {per_node:?}");
        assert!(
            per_node.values().all(|i| i == &[NEW]),
            "{order:?}: {per_node:?}"
        );
        let version = sim.service().spec_version;
        let created = sim.store.view(|r| {
            r.tasks_of_service("s")
                .filter(|t| t.spec_version == version)
                .count()
        });
        assert_eq!(created, 3, "{order:?}: one new task per node");
        match order {
            UpdateOrder::StartFirst => {
                assert_eq!(sim.fewest, 3, "never a node without a running task");
                assert_eq!(sim.most, 4, "one node at a time");
            }
            UpdateOrder::StopFirst => {
                assert_eq!(sim.fewest, 2, "one node down at a time");
                assert_eq!(sim.most, 3);
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_global_update_that_fails_rolls_back() {
    let update = UpdateConfig {
        failure_action: FailureAction::Rollback as i32,
        ..config(1, 0, 5)
    };
    let mut sim = Sim::global(update).await;
    sim.set_image(BAD).await;
    sim.wait(Duration::from_secs(10)).await;
    assert_eq!(sim.update_state(), UpdateState::RollbackCompleted);
    assert_eq!(sim.on_image(OLD), 3);
    assert_eq!(sim.serving(), 3);
}

#[tokio::test(start_paused = true)]
async fn stop_first_replacement_waits_for_the_old_task_to_stop() {
    let mut sim = Sim::new(1, config(1, 0, 0), None).await;
    let old = sim.store.view(|r| r.tasks().next().cloned()).expect("task");
    sim.set_image(NEW).await;
    sim.o.pass().await.expect("pass");
    Scheduler::new(sim.store.clone())
        .pass()
        .await
        .expect("schedule");
    let new = || {
        sim.store
            .view(|r| r.tasks().find(|t| t.id != old.id).cloned())
            .expect("replacement")
    };
    let old_now = || {
        sim.store
            .view(|r| r.task(&old.id).cloned())
            .expect("old task")
    };
    assert_eq!(new().desired(), TaskState::Ready, "prepared, not started");
    assert!(!new().node_id.is_empty(), "placed while the old one runs");
    sim.o.pass().await.expect("pass");
    assert_eq!(
        old_now().desired(),
        TaskState::Running,
        "the old one runs while its replacement is prepared"
    );
    // Prepared: the old one is told to stop, and the replacement waits for it.
    set_status(&sim.store, &new().id, TaskState::Ready, "").await;
    sim.o.pass().await.expect("pass");
    assert_eq!(old_now().desired(), TaskState::Shutdown);
    assert_eq!(new().desired(), TaskState::Ready, "the old one still runs");
    sim.o.pass().await.expect("pass");
    assert_eq!(new().desired(), TaskState::Ready, "still");
    set_status(&sim.store, &old.id, TaskState::Shutdown, "").await;
    sim.o.pass().await.expect("pass");
    assert_eq!(new().desired(), TaskState::Running);
}

#[tokio::test(start_paused = true)]
async fn a_stop_first_update_to_a_missing_image_leaves_every_old_task_running() {
    for global in [false, true] {
        let mut sim = if global {
            Sim::global(config(1, 0, 5)).await
        } else {
            Sim::new(3, config(1, 0, 5), None).await
        };
        sim.set_image(MISSING).await;
        sim.wait(Duration::from_secs(10)).await;
        let status = sim.service().update_status.expect("status");
        assert_eq!(status.state(), UpdateState::Paused, "global: {global}");
        assert!(
            status.message.contains("not found on node"),
            "{}",
            status.message
        );
        assert_eq!(
            sim.fewest, 3,
            "global: {global}: no task stopped for the update"
        );
        assert_eq!(sim.on_image(OLD), 3, "global: {global}");
        // Rolled back by hand: nothing of the failed update is left.
        ControlApi::new(sim.store.clone())
            .rollback_service(RollbackServiceRequest {
                service: "s".into(),
            })
            .await
            .expect("rollback");
        sim.wait(Duration::from_secs(10)).await;
        assert_eq!(sim.update_state(), UpdateState::RollbackCompleted);
        assert_eq!(sim.on_image(MISSING), 0, "global: {global}");
        assert_eq!(sim.on_image(OLD), 3);
        assert_eq!(sim.fewest, 3, "global: {global}: the service never dipped");
    }
}

#[tokio::test(start_paused = true)]
async fn a_failure_pauses_the_update_with_the_tasks_error() {
    let mut sim = Sim::new(3, config(1, 0, 5), None).await;
    sim.set_image(BAD).await;
    sim.settle().await;
    let status = sim.service().update_status.expect("status");
    assert_eq!(status.state(), UpdateState::Paused);
    let failed = sim
        .store
        .view(|r| r.tasks().find(|t| t.state() == TaskState::Failed).cloned())
        .expect("a failed task");
    assert_eq!(
        status.message,
        format!(
            "update paused due to failure or early termination of task {}: exit status 1",
            failed.id
        )
    );
    sim.wait(Duration::from_secs(10)).await;
    assert_eq!(sim.on_image(OLD), 2, "no more slots replaced while paused");
    assert_eq!(sim.update_state(), UpdateState::Paused);
    // The next update resumes.
    sim.set_image(NEW).await;
    assert_eq!(sim.update_state(), UpdateState::Updating);
    sim.wait(Duration::from_secs(10)).await;
    assert_eq!(sim.update_state(), UpdateState::Completed);
    assert_eq!(sim.on_image(NEW), 3);
}

#[tokio::test(start_paused = true)]
async fn failures_within_the_ratio_are_tolerated() {
    for (ratio, pauses) in [(0.5, false), (0.2, true)] {
        let update = UpdateConfig {
            max_failure_ratio: ratio,
            ..config(1, 0, 5)
        };
        let mut sim = Sim::new(4, update, None).await;
        sim.fail_starts.insert(2); // the third new task fails at once
        sim.set_image(NEW).await;
        sim.wait(Duration::from_secs(30)).await;
        let want = if pauses {
            UpdateState::Paused
        } else {
            UpdateState::Completed
        };
        assert_eq!(sim.update_state(), want, "ratio {ratio}");
        if !pauses {
            assert_eq!(sim.on_image(NEW), 4);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_failure_after_the_monitor_window_does_not_count() {
    let mut sim = Sim::new(2, config(1, 10, 2), None).await;
    sim.set_image(NEW).await;
    sim.settle().await;
    let first = sim
        .store
        .view(|r| {
            r.tasks()
                .find(|t| t.spec_version == 2 && t.state() == TaskState::Running)
                .cloned()
        })
        .expect("first new task");
    tokio::time::advance(Duration::from_secs(3)).await;
    set_status(&sim.store, &first.id, TaskState::Failed, "exit status 2").await;
    sim.wait(Duration::from_secs(20)).await;
    assert_eq!(sim.update_state(), UpdateState::Completed);
    assert_eq!(sim.on_image(NEW), 2);
}

#[tokio::test(start_paused = true)]
async fn failure_action_continue_goes_on() {
    let update = UpdateConfig {
        failure_action: FailureAction::Continue as i32,
        ..config(1, 0, 1)
    };
    let mut sim = Sim::new(3, update, None).await;
    sim.fail_starts.insert(0);
    sim.set_image(NEW).await;
    sim.wait(Duration::from_secs(5)).await;
    assert_eq!(sim.update_state(), UpdateState::Completed);
    assert_eq!(sim.on_image(NEW), 3);
}

#[tokio::test(start_paused = true)]
async fn automatic_rollback_puts_every_slot_back_on_the_old_spec() {
    let update = UpdateConfig {
        failure_action: FailureAction::Rollback as i32,
        ..config(1, 0, 5)
    };
    let mut sim = Sim::new(3, update, Some(config(0, 0, 1))).await;
    sim.set_image(BAD).await;
    assert_eq!(sim.service().spec_version, 2);
    sim.settle().await;
    let status = sim.service().update_status.expect("status");
    assert_eq!(status.state(), UpdateState::RollbackStarted);
    assert!(
        status
            .message
            .starts_with("update rolled back due to failure or early termination of task "),
        "{}",
        status.message
    );
    sim.wait(Duration::from_secs(3)).await;
    let s = sim.service();
    let status = s.update_status.clone().expect("status");
    assert_eq!(status.state(), UpdateState::RollbackCompleted);
    assert_eq!(status.message, "rollback completed");
    assert_eq!(s.spec_version, 1);
    assert_eq!(s.previous_spec_version, 2);
    assert_eq!(sim.on_image(OLD), 3);
    assert!(sim
        .slots()
        .values()
        .all(|ts| ts.len() == 1 && ts[0].0 == 1 && ts[0].2 == TaskState::Running));
    // The next update gets a version never used before.
    sim.set_image(NEW).await;
    assert_eq!(sim.service().spec_version, 3);
}

#[tokio::test(start_paused = true)]
async fn a_new_leader_finishes_the_update_without_restarting_it() {
    let mut sim = Sim::new(4, config(1, 0, 0), None).await;
    sim.set_image(NEW).await;
    // Two slots replaced and running, the third in flight.
    for _ in 0..20 {
        sim.step().await;
        if sim.on_image(NEW) == 3 {
            break;
        }
    }
    assert_eq!(sim.on_image(NEW), 3);
    let started = sim.service().update_status.expect("status").started_at_ms;
    sim.o = Orchestrator::new(sim.store.clone()); // a new leader, nothing in memory
    sim.settle().await;
    assert_eq!(sim.update_state(), UpdateState::Completed);
    assert_eq!(sim.on_image(NEW), 4);
    let per_slot = sim.created_per_slot(2);
    assert_eq!(per_slot.len(), 4);
    assert!(
        per_slot.values().all(|n| *n == 1),
        "a slot replaced twice: {per_slot:?}"
    );
    assert_eq!(sim.store.view(|r| r.tasks().count()), 8);
    let status = sim.service().update_status.expect("status");
    assert_eq!(
        status.started_at_ms, started,
        "the same update, not a new one"
    );
}

#[tokio::test(start_paused = true)]
async fn force_update_replaces_every_task() {
    let mut sim = Sim::new(3, config(0, 0, 0), None).await;
    let before: HashSet<String> = sim
        .store
        .view(|r| r.tasks().map(|t| t.id.clone()).collect());
    sim.update(|spec| spec.force_update += 1).await;
    assert_eq!(sim.service().spec_version, 2);
    sim.settle().await;
    assert_eq!(sim.update_state(), UpdateState::Completed);
    let live: Vec<Task> = sim.store.view(|r| {
        r.tasks()
            .filter(|t| t.desired() == TaskState::Running)
            .cloned()
            .collect()
    });
    assert_eq!(live.len(), 3);
    assert!(live
        .iter()
        .all(|t| !before.contains(&t.id) && t.spec_version == 2));
    // A change of replicas alone replaces nothing.
    sim.update(|spec| spec.replicas = 4).await;
    assert_eq!(sim.service().spec_version, 2);
    sim.settle().await;
    assert_eq!(sim.created_per_slot(2).values().sum::<usize>(), 4);
}

#[tokio::test(start_paused = true)]
async fn manual_rollback_returns_to_the_previous_spec() {
    let mut sim = Sim::new(2, config(1, 0, 0), None).await;
    let api = ControlApi::new(sim.store.clone());
    let err = api
        .rollback_service(RollbackServiceRequest {
            service: "s-name".into(),
        })
        .await
        .expect_err("nothing to roll back to");
    assert_eq!(
        err.to_string(),
        "service s-name has no previous spec to roll back to"
    );
    sim.set_image(NEW).await;
    sim.settle().await;
    assert_eq!(sim.on_image(NEW), 2);
    let s = api
        .rollback_service(RollbackServiceRequest {
            service: "s-name".into(),
        })
        .await
        .expect("rollback");
    assert_eq!(
        s.update_status.map(|u| u.state()),
        Some(UpdateState::RollbackStarted)
    );
    sim.wait(Duration::from_secs(6)).await; // the default monitor of 5 s
    assert_eq!(sim.update_state(), UpdateState::RollbackCompleted);
    assert_eq!(sim.on_image(OLD), 2);
}

#[tokio::test]
async fn update_policy_is_validated() {
    let sim_store = Store::in_memory();
    put(&sim_store, vec![Object::Service(service("s", 1))]).await;
    let api = ControlApi::new(sim_store.clone());
    for (config, want) in [
        (
            UpdateConfig {
                max_failure_ratio: 1.5,
                ..Default::default()
            },
            "--update-max-failure-ratio must be between 0 and 1",
        ),
        (
            UpdateConfig {
                delay_ms: -1,
                ..Default::default()
            },
            "--update-delay cannot be negative",
        ),
        (
            UpdateConfig {
                monitor_ms: Some(-5),
                ..Default::default()
            },
            "--update-monitor cannot be negative",
        ),
    ] {
        let mut spec = service("s", 1).spec.expect("spec");
        spec.update = Some(config);
        let err = api
            .update_service(UpdateServiceRequest {
                service: "s".into(),
                version: sim_store
                    .view(|r| r.service("s").map(|s| s.version()))
                    .unwrap_or(0),
                spec: Some(spec),
            })
            .await
            .expect_err("invalid");
        assert_eq!(err.to_string(), want);
    }
}

#[tokio::test(start_paused = true)]
async fn run_loops_roll_a_start_first_update_without_downtime() {
    assert_eq!(roll_with_run_loops(UpdateOrder::StartFirst).await, 3);
}

#[tokio::test(start_paused = true)]
async fn run_loops_roll_a_stop_first_update_one_task_down_at_a_time() {
    // The leader loops wake on the replacement being prepared, with no pass forced here.
    assert_eq!(roll_with_run_loops(UpdateOrder::StopFirst).await, 2);
}

/// An update of 3 replicas, parallelism 1, run by the real leader loops with a stand-in for
/// the agents; returns the fewest tasks seen serving at any change.
async fn roll_with_run_loops(order: UpdateOrder) -> usize {
    use std::collections::HashMap;

    use crate::testutil::wait_for;

    let store = Store::in_memory();
    let mut svc = service("s", 3);
    svc.spec.as_mut().expect("spec").update = Some(UpdateConfig {
        order: order as i32,
        ..config(1, 1, 1)
    });
    put(
        &store,
        vec![
            Object::Node(node("a")),
            Object::Node(node("b")),
            Object::Service(svc),
        ],
    )
    .await;
    let cancel = crate::testutil::start_leader_loops(&store);
    // A stand-in for the agents: assigned tasks start, tasks told to stop stop.
    let agents = {
        let store = store.clone();
        let cancel = cancel.clone();
        async move {
            let mut events = store.watch();
            loop {
                let todo: Vec<(String, TaskState)> = store.view(|r| {
                    r.tasks()
                        .filter_map(|t| {
                            let up = t.state() >= TaskState::Assigned && !t.state().is_terminal();
                            if up && t.desired() >= TaskState::Shutdown {
                                Some((t.id.clone(), TaskState::Shutdown))
                            } else if t.state() == TaskState::Assigned
                                && t.desired() == TaskState::Running
                            {
                                Some((t.id.clone(), TaskState::Running))
                            } else if t.state() == TaskState::Assigned
                                && t.desired() == TaskState::Ready
                            {
                                Some((t.id.clone(), TaskState::Ready))
                            } else if t.state() == TaskState::Ready
                                && t.desired() == TaskState::Running
                            {
                                Some((t.id.clone(), TaskState::Running))
                            } else {
                                None
                            }
                        })
                        .collect()
                });
                for (id, state) in todo {
                    set_status(&store, &id, state, "").await;
                }
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = events.recv() => {}
                }
            }
        }
    };
    tokio::spawn(agents);
    wait_for(&store, "3 running tasks", |r| serving(r, "s") == 3).await;
    let mut events = store.watch();
    let mut tasks: HashMap<String, Task> =
        store.view(|r| r.tasks().map(|t| (t.id.clone(), t.clone())).collect());
    let s = store.view(|r| r.service("s").cloned()).expect("service");
    let mut spec = s.spec.clone().expect("spec");
    spec.task
        .as_mut()
        .and_then(|t| t.container.as_mut())
        .expect("container")
        .image = NEW.into();
    ControlApi::new(store.clone())
        .update_service(UpdateServiceRequest {
            service: "s".into(),
            version: s.version(),
            spec: Some(spec),
        })
        .await
        .expect("update");
    wait_for(&store, "the update to complete", |r| {
        r.service("s")
            .and_then(|s| s.update_status.as_ref())
            .is_some_and(|u| u.state() == UpdateState::Completed)
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
    let live: Vec<Task> = store.view(|r| {
        r.tasks()
            .filter(|t| t.desired() == TaskState::Running)
            .cloned()
            .collect()
    });
    assert_eq!(live.len(), 3);
    assert!(live
        .iter()
        .all(|t| image_of(t) == NEW && t.state() == TaskState::Running));
    cancel.cancel();
    fewest
}
