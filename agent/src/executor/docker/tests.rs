//! The Docker executor against the real engine at /var/run/docker.sock, with the local
//! test images (deploy/build-test-images.sh). Each test uses its own random node id, so
//! tests never see each other's containers, and removes every container it made (also when
//! it fails, through [`Cleanup`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::query_parameters::InspectContainerOptions;
use shoal_proto::{names, Task, TaskState, TaskStatus};

use super::{container_name, DockerExecutor};
use crate::executor::fake::test_task;
use crate::executor::{step, Controller, ExecError, Executor, StepError};

const HOST: &str = "unix:///var/run/docker.sock";
const IMAGE: &str = "shoal-test/busybox:a";

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{prefix}{}x{nanos:x}", std::process::id())
}

/// Removes every container of `node_id` when dropped, even if the test panicked.
struct Cleanup {
    node_id: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let node_id = self.node_id.clone();
        // Drop cannot await: clean up on a thread with its own runtime.
        let done = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let Ok(exec) = DockerExecutor::connect(HOST, node_id, "cleanup".into()).await
                else {
                    return;
                };
                for (_, id) in exec.list_task_containers().await.unwrap_or_default() {
                    let _ = exec.remove_container(&id).await;
                }
            });
        })
        .join();
        if done.is_err() {
            eprintln!("cleanup of node {} panicked", self.node_id);
        }
    }
}

/// The test cannot run here: say why, or fail where every test must run (`.ci/run` sets
/// SHOAL_E2E_REQUIRED).
fn skipping(why: String) -> Option<(DockerExecutor, Cleanup)> {
    assert!(std::env::var_os("SHOAL_E2E_REQUIRED").is_none(), "{why}");
    eprintln!("skipping: {why}");
    None
}

/// An executor for a fresh node, or None (with the reason printed) if there is no engine.
async fn executor(node_name: &str) -> Option<(DockerExecutor, Cleanup)> {
    let node_id = unique("node");
    let connected = tokio::time::timeout(
        Duration::from_secs(10),
        DockerExecutor::connect(HOST, node_id.clone(), node_name.to_string()),
    )
    .await;
    let exec = match connected {
        Ok(Ok(e)) => e,
        Ok(Err(e)) => return skipping(format!("no docker engine at {HOST}: {e}")),
        Err(_) => return skipping(format!("docker engine at {HOST} does not answer")),
    };
    if exec.docker().inspect_image(IMAGE).await.is_err() {
        return skipping(format!(
            "image {IMAGE} missing; run deploy/build-test-images.sh"
        ));
    }
    Some((exec, Cleanup { node_id }))
}

fn state(s: &TaskStatus) -> TaskState {
    TaskState::try_from(s.state).unwrap_or(TaskState::New)
}

fn task(command: &[&str]) -> Task {
    test_task(&unique("task"), 1, IMAGE, command)
}

/// Steps until the task reaches `until` or stops moving.
async fn drive(
    task: &Task,
    mut st: TaskStatus,
    ctl: &mut dyn Controller,
    until: TaskState,
) -> TaskStatus {
    while state(&st) < until {
        match step(task, &st, ctl).await {
            Ok(next) => st = next,
            Err(StepError::Finished { .. } | StepError::Paused { .. }) => break,
            Err(e) => panic!("step: {e}"),
        }
    }
    st
}

fn assigned() -> TaskStatus {
    TaskStatus {
        state: TaskState::Assigned as i32,
        ..Default::default()
    }
}

#[tokio::test]
async fn describe_reports_the_engine() {
    let Some((exec, _cleanup)) = executor("desc-node").await else {
        return;
    };
    let d = exec.describe().await.expect("describe");
    assert_eq!(d.hostname, "desc-node");
    assert_eq!(d.platform.as_ref().map(|p| p.os.as_str()), Some("linux"));
    assert!(!d.engine_version.is_empty());
    assert!(d
        .resources
        .as_ref()
        .is_some_and(|r| r.nano_cpus >= 1_000_000_000 && r.memory_bytes > 0));
}

#[tokio::test]
async fn non_zero_exit_fails_with_its_code() {
    let Some((exec, _cleanup)) = executor("n-exit").await else {
        return;
    };
    let t = task(&["sh", "-c", "exit 3"]);
    let mut ctl = exec.controller(&t).expect("controller");
    let st = drive(&t, assigned(), ctl.as_mut(), TaskState::Complete).await;
    assert_eq!(state(&st), TaskState::Failed, "{st:?}");
    assert_eq!(st.exit_code, 3);
    assert_eq!(st.err, "task: non-zero exit (3)");
    assert!(!st.container_id.is_empty());

    ctl.remove().await.expect("remove");
    assert!(exec.list_task_containers().await.expect("list").is_empty());
}

#[tokio::test]
async fn shutdown_with_grace_then_remove_leaves_nothing() {
    let Some((exec, _cleanup)) = executor("n-sleep").await else {
        return;
    };
    let mut t = task(&["sleep", "1000"]);
    {
        let c = t
            .spec
            .as_mut()
            .and_then(|s| s.container.as_mut())
            .expect("container spec");
        c.stop_grace_period_ms = Some(1000);
        c.stop_signal = "SIGTERM".to_string();
        c.env = vec!["SHOAL_TEST=1".to_string()];
        c.labels.insert("user.label".to_string(), "x".to_string());
        // A user label cannot claim another node.
        c.labels
            .insert(names::LABEL_NODE_ID.to_string(), "someone-else".to_string());
    }
    t.spec.as_mut().expect("spec").limits = Some(shoal_proto::Resources {
        nano_cpus: 500_000_000,
        memory_bytes: 64 << 20,
    });
    let mut ctl = exec.controller(&t).expect("controller");
    let st = drive(&t, assigned(), ctl.as_mut(), TaskState::Running).await;
    assert_eq!(state(&st), TaskState::Running, "{st:?}");

    // The container is what the task says.
    let c = exec
        .docker()
        .inspect_container(&st.container_id, None::<InspectContainerOptions>)
        .await
        .expect("inspect");
    assert_eq!(
        c.name.as_deref(),
        Some(format!("/{}", container_name(&t)).as_str())
    );
    let config = c.config.expect("config");
    let labels = config.labels.expect("labels");
    assert_eq!(labels.get(names::LABEL_TASK_ID), Some(&t.id));
    assert_eq!(
        labels.get(names::LABEL_NODE_ID),
        Some(&exec.node_id().to_string())
    );
    assert_eq!(
        labels.get(names::LABEL_SERVICE_NAME).map(String::as_str),
        Some("svc")
    );
    assert_eq!(labels.get("user.label").map(String::as_str), Some("x"));
    assert_eq!(
        config.entrypoint,
        Some(vec!["sleep".to_string(), "1000".to_string()])
    );
    assert!(config
        .env
        .unwrap_or_default()
        .contains(&"SHOAL_TEST=1".to_string()));
    assert_eq!(config.stop_signal.as_deref(), Some("SIGTERM"));
    let host = c.host_config.expect("host config");
    assert_eq!(host.memory, Some(64 << 20));
    assert_eq!(host.nano_cpus, Some(500_000_000));
    let policy = host
        .restart_policy
        .and_then(|p| p.name)
        .map(|n| n.to_string());
    assert!(
        matches!(policy.as_deref(), None | Some("") | Some("no")),
        "{policy:?}"
    );

    t.desired_state = TaskState::Shutdown as i32;
    let st = step(&t, &st, ctl.as_mut()).await.expect("shutdown");
    assert_eq!(state(&st), TaskState::Shutdown);
    let inspected = ctl.inspect().await.expect("inspect").expect("still there");
    assert!(!inspected.running);
    // sleep as PID 1 ignores SIGTERM: the grace period ran out and it was killed.
    assert_eq!(inspected.exit_code, Some(137));

    ctl.remove().await.expect("remove");
    assert!(ctl.inspect().await.expect("inspect").is_none());
    assert!(exec.list_task_containers().await.expect("list").is_empty());
}

#[tokio::test]
async fn a_missing_image_is_rejected() {
    let Some((exec, _cleanup)) = executor("n-missing").await else {
        return;
    };
    let t = test_task(&unique("task"), 1, "shoal-test/nope:1", &[]);
    let mut ctl = exec.controller(&t).expect("controller");
    let st = drive(&t, assigned(), ctl.as_mut(), TaskState::Running).await;
    assert_eq!(state(&st), TaskState::Rejected);
    // Not in any registry either (none is reachable here): the pull's failure says so.
    assert!(
        st.err.starts_with(
            "image shoal-test/nope:1 not found on node n-missing, and the pull failed: "
        ),
        "{}",
        st.err
    );
    assert!(exec.list_task_containers().await.expect("list").is_empty());
}

#[tokio::test]
async fn a_second_executor_adopts_the_running_container() {
    let Some((exec, _cleanup)) = executor("n-adopt").await else {
        return;
    };
    let mut t = task(&["sleep", "1000"]);
    if let Some(c) = t.spec.as_mut().and_then(|s| s.container.as_mut()) {
        c.stop_grace_period_ms = Some(0);
    }
    let mut ctl = exec.controller(&t).expect("controller");
    let first = drive(&t, assigned(), ctl.as_mut(), TaskState::Running).await;
    assert_eq!(state(&first), TaskState::Running);

    // A restarted agent: new client, new controller, and a database that only got as far
    // as PREPARING.
    let exec2 = DockerExecutor::connect(HOST, exec.node_id().to_string(), "n-adopt".into())
        .await
        .expect("connect");
    let mut ctl2 = exec2.controller(&t).expect("controller");
    let preparing = TaskStatus {
        state: TaskState::Preparing as i32,
        ..Default::default()
    };
    let st = step(&t, &preparing, ctl2.as_mut()).await.expect("adopt");
    assert_eq!(state(&st), TaskState::Running);
    assert_eq!(st.container_id, first.container_id);
    // prepare on a fresh controller adopts too.
    let mut ctl3 = exec2.controller(&t).expect("controller");
    ctl3.prepare().await.expect("prepare adopts");
    assert_eq!(ctl3.container_id(), Some(first.container_id.clone()));
    let listed = exec2.list_task_containers().await.expect("list");
    assert_eq!(listed, vec![(t.id.clone(), first.container_id.clone())]);

    // Shut down through the adopting controller (grace 0: killed at once).
    t.desired_state = TaskState::Shutdown as i32;
    let st = step(&t, &st, ctl2.as_mut()).await.expect("shutdown");
    assert_eq!(state(&st), TaskState::Shutdown);
    ctl2.remove().await.expect("remove");
    assert!(exec.list_task_containers().await.expect("list").is_empty());
}

#[tokio::test]
async fn containers_of_other_nodes_are_never_removed() {
    let Some((exec, _cleanup)) = executor("n-mine").await else {
        return;
    };
    let Some((other, _cleanup_other)) = executor("n-other").await else {
        return;
    };
    let t = task(&["true"]);
    let mut ctl = other.controller(&t).expect("controller");
    ctl.prepare().await.expect("prepare");
    let id = ctl.container_id().expect("created");
    let refused = exec.remove_container(&id).await;
    assert!(
        matches!(refused, Err(ExecError::NotOurs { .. })),
        "{refused:?}"
    );
    // This node's controller for the same task does not see it either.
    let mut mine = exec.controller(&t).expect("controller");
    assert!(mine.inspect().await.expect("inspect").is_none());
    mine.remove().await.expect("remove is a no-op");
    assert_eq!(other.list_task_containers().await.expect("list").len(), 1);
    other.remove_container(&id).await.expect("owner removes");
    assert!(other.list_task_containers().await.expect("list").is_empty());
}

#[tokio::test]
async fn a_restarted_worker_adopts_and_then_removes_a_real_container() {
    use crate::taskdb::TaskDb;
    use crate::worker::Worker;
    use std::sync::Arc;

    let Some((exec, _cleanup)) = executor("n-worker").await else {
        return;
    };
    let exec = Arc::new(exec);
    let dir = tempfile::tempdir().expect("tempdir");
    let db = TaskDb::open(dir.path(), None).expect("db");
    let mut t = task(&["sleep", "1000"]);
    if let Some(c) = t.spec.as_mut().and_then(|s| s.container.as_mut()) {
        c.stop_grace_period_ms = Some(0);
    }
    async fn until(
        rx: &mut tokio::sync::mpsc::Receiver<(String, TaskStatus)>,
        want: TaskState,
    ) -> TaskStatus {
        let fut = async {
            loop {
                let (_, s) = rx.recv().await.expect("statuses");
                if state(&s) >= want {
                    return s;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(30), fut)
            .await
            .expect("status in time")
    }

    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let worker = Worker::new(exec.clone(), db.clone(), tx)
        .await
        .expect("worker");
    worker.assign(vec![t.clone()]).await;
    let running = until(&mut rx, TaskState::Running).await;
    assert_eq!(state(&running), TaskState::Running);
    worker.shutdown().await;

    // The container outlives the worker; a new worker adopts it.
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let worker = Worker::new(exec.clone(), db.clone(), tx)
        .await
        .expect("worker");
    worker.assign(vec![t.clone()]).await;
    let listed = exec.list_task_containers().await.expect("list");
    assert_eq!(listed, vec![(t.id.clone(), running.container_id.clone())]);

    // The manager drops the task: shut down, removed, forgotten.
    worker.assign(vec![]).await;
    let st = until(&mut rx, TaskState::Shutdown).await;
    assert_eq!(state(&st), TaskState::Shutdown);
    tokio::time::timeout(Duration::from_secs(30), async {
        while db.get(&t.id).expect("db").is_some() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("task forgotten");
    assert!(exec.list_task_containers().await.expect("list").is_empty());
    worker.shutdown().await;
}

#[test]
fn container_names_are_dockers_and_always_valid() {
    let mut t = test_task("abc123", 2, IMAGE, &[]);
    assert_eq!(container_name(&t), "svc.2.abc123");
    t.slot = 0;
    t.node_id = "node9".into();
    assert_eq!(container_name(&t), "svc.node9.abc123");
    t.service_name = String::new();
    assert_eq!(container_name(&t), "task.node9.abc123");
    t.service_name = "_we ird/".into();
    assert_eq!(container_name(&t), "shoal_we-ird-.node9.abc123");
}

// ---- healthchecks ----

fn health_task(command: &[&str], test: &[&str], retries: u64) -> Task {
    let mut t = task(command);
    if let Some(c) = t.spec.as_mut().and_then(|s| s.container.as_mut()) {
        c.stop_grace_period_ms = Some(1000);
        c.healthcheck = Some(shoal_proto::HealthConfig {
            test: test.iter().map(|s| s.to_string()).collect(),
            interval_ms: 1000,
            timeout_ms: 5000,
            retries,
            start_period_ms: 0,
        });
    }
    t
}

/// Steps until `until` (or terminal), within 60 s; returns every status on the way.
async fn drive_all(
    task: &Task,
    mut st: TaskStatus,
    ctl: &mut dyn Controller,
    until: TaskState,
) -> Vec<TaskStatus> {
    let mut seen = vec![];
    let all = async {
        while state(&st) < until {
            match step(task, &st, ctl).await {
                Ok(next) => {
                    seen.push(next.clone());
                    st = next;
                }
                Err(StepError::Finished { .. } | StepError::Paused { .. }) => break,
                Err(e) => panic!("step: {e}"),
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(60), all)
        .await
        .is_err()
    {
        panic!("no progress in 60 s: {seen:?}");
    }
    seen
}

async fn is_running(exec: &DockerExecutor, id: &str) -> bool {
    exec.docker()
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
        .ok()
        .and_then(|c| c.state)
        .and_then(|s| s.running)
        .unwrap_or(false)
}

#[tokio::test]
async fn a_passing_healthcheck_runs_the_task_once_healthy() {
    let Some((exec, _cleanup)) = executor("n-healthy").await else {
        return;
    };
    let t = health_task(&["sleep", "1000"], &["CMD-SHELL", "true"], 3);
    let mut ctl = exec.controller(&t).expect("controller");
    let seen = drive_all(&t, assigned(), ctl.as_mut(), TaskState::Running).await;
    let last = seen.last().expect("statuses");
    assert_eq!(state(last), TaskState::Running, "{seen:?}");
    assert_eq!(last.health, "healthy");
    // It waited in STARTING, saying why.
    assert!(
        seen.iter().any(|s| state(s) == TaskState::Starting
            && s.health == "starting"
            && s.message == crate::executor::WAITING_FOR_HEALTH),
        "{seen:?}"
    );

    // The container has docker's Healthcheck, durations in ns.
    let c = exec
        .docker()
        .inspect_container(&last.container_id, None::<InspectContainerOptions>)
        .await
        .expect("inspect");
    let h = c.config.and_then(|c| c.healthcheck).expect("healthcheck");
    assert_eq!(
        h.test,
        Some(vec!["CMD-SHELL".to_string(), "true".to_string()])
    );
    assert_eq!(h.interval, Some(1_000_000_000));
    assert_eq!(h.timeout, Some(5_000_000_000));
    assert_eq!(h.retries, Some(3));
    ctl.remove().await.expect("remove");
}

#[tokio::test]
async fn a_failing_healthcheck_fails_the_task() {
    let Some((exec, _cleanup)) = executor("n-unhealthy").await else {
        return;
    };
    let t = health_task(&["sleep", "1000"], &["CMD-SHELL", "false"], 1);
    let mut ctl = exec.controller(&t).expect("controller");
    let seen = drive_all(&t, assigned(), ctl.as_mut(), TaskState::Complete).await;
    let last = seen.last().expect("statuses");
    assert_eq!(state(last), TaskState::Failed, "{seen:?}");
    assert_eq!(last.err, "task: container is unhealthy");
    assert_eq!(last.health, "unhealthy");
    assert!(
        !seen.iter().any(|s| state(s) == TaskState::Running),
        "{seen:?}"
    );
    assert!(
        !is_running(&exec, &last.container_id).await,
        "still running"
    );
    ctl.remove().await.expect("remove");
}

#[tokio::test]
async fn a_healthcheck_that_starts_failing_fails_the_running_task() {
    let Some((exec, _cleanup)) = executor("n-sick").await else {
        return;
    };
    let t = health_task(
        &["sh", "-c", "touch /tmp/ok; sleep 3; rm /tmp/ok; sleep 1000"],
        &["CMD-SHELL", "test -f /tmp/ok"],
        1,
    );
    let mut ctl = exec.controller(&t).expect("controller");
    let seen = drive_all(&t, assigned(), ctl.as_mut(), TaskState::Running).await;
    let running = seen.last().expect("statuses").clone();
    assert_eq!(state(&running), TaskState::Running, "{seen:?}");
    assert_eq!(running.health, "healthy");

    let seen = drive_all(&t, running, ctl.as_mut(), TaskState::Complete).await;
    let last = seen.last().expect("statuses");
    assert_eq!(state(last), TaskState::Failed, "{seen:?}");
    assert_eq!(last.err, "task: container is unhealthy");
    assert_eq!(last.health, "unhealthy");
    assert_ne!(
        last.exit_code, 0,
        "the stopped process's exit code: {last:?}"
    );
    assert!(
        !is_running(&exec, &last.container_id).await,
        "still running"
    );
    ctl.remove().await.expect("remove");
}

#[tokio::test]
async fn no_healthcheck_disables_it_and_runs_at_once() {
    let Some((exec, _cleanup)) = executor("n-nohealth").await else {
        return;
    };
    let t = health_task(&["sleep", "1000"], &["NONE"], 0);
    let mut ctl = exec.controller(&t).expect("controller");
    let seen = drive_all(&t, assigned(), ctl.as_mut(), TaskState::Running).await;
    let last = seen.last().expect("statuses");
    assert_eq!(state(last), TaskState::Running, "{seen:?}");
    assert!(last.health.is_empty(), "{last:?}");
    let c = exec
        .docker()
        .inspect_container(&last.container_id, None::<InspectContainerOptions>)
        .await
        .expect("inspect");
    let h = c.config.and_then(|c| c.healthcheck).expect("healthcheck");
    assert_eq!(h.test, Some(vec!["NONE".to_string()]));
    ctl.shutdown().await.expect("shutdown");
    ctl.remove().await.expect("remove");
}

#[tokio::test]
async fn a_healthy_task_that_exits_reports_its_exit_code() {
    let Some((exec, _cleanup)) = executor("n-healthy-exit").await else {
        return;
    };
    let t = health_task(&["sh", "-c", "sleep 3; exit 3"], &["CMD-SHELL", "true"], 3);
    let mut ctl = exec.controller(&t).expect("controller");
    let seen = drive_all(&t, assigned(), ctl.as_mut(), TaskState::Running).await;
    let running = seen.last().expect("statuses").clone();
    assert_eq!(state(&running), TaskState::Running, "{seen:?}");
    assert_eq!(running.health, "healthy");
    let seen = drive_all(&t, running, ctl.as_mut(), TaskState::Complete).await;
    let last = seen.last().expect("statuses");
    assert_eq!(state(last), TaskState::Failed, "{seen:?}");
    assert_eq!(last.err, "task: non-zero exit (3)");
    assert_eq!(last.exit_code, 3);
    ctl.remove().await.expect("remove");
}

#[test]
fn frames_of_a_long_line_join_into_one_and_streams_stay_apart() {
    let mut j = super::Joiner::default();
    let t1 = "2026-11-25T15:00:00.000000001Z";
    let t2 = "2026-11-25T15:00:00.000000002Z";
    let frame = |t: &str, text: &str| format!("{t} {text}").into_bytes();
    // Two stdout fragments around a complete stderr line, then the end of the stdout line.
    assert_eq!(j.frame(&frame(t1, "aaa"), false), None);
    let err = j
        .frame(&frame(t2, "oops\n"), true)
        .expect("a whole stderr line");
    assert_eq!((err.data.as_slice(), err.stderr), (&b"oops"[..], true));
    assert_eq!(j.frame(&frame(t2, "bbb"), false), None);
    let out = j
        .frame(&frame(t2, "ccc\n"), false)
        .expect("the joined line");
    assert_eq!(out.data, b"aaabbbccc");
    assert_eq!(
        out.timestamp_ns, 1_795_618_800_000_000_001,
        "the first fragment's time"
    );
    assert!(!out.stderr);
    // An empty line is a line.
    assert_eq!(
        j.frame(&frame(t1, "\n"), false).map(|l| l.data),
        Some(Vec::new())
    );
}

#[test]
fn only_a_refusal_of_the_credentials_given_keeps_the_image_from_other_nodes() {
    for refused in [
        "Head \"http://10.78.0.2:5000/v2/lab/app/manifests/1\": unauthorized: authentication required",
        "Get \"https://r.example/v2/\": no basic auth credentials",
        "denied: requested access to the resource is denied",
    ] {
        assert!(super::refused_credentials(refused), "{refused}");
    }
    for elsewhere in [
        "Get \"https://registry-1.docker.io/v2/\": dial tcp: lookup registry-1.docker.io: no such host",
        "manifest for lab/app:2 not found: manifest unknown: manifest unknown",
        "Get \"http://10.78.0.2:5000/v2/\": dial tcp 10.78.0.2:5000: connect: connection refused",
    ] {
        assert!(!super::refused_credentials(elsewhere), "{elsewhere}");
    }
}
