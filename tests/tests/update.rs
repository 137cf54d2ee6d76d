//! Rolling updates on `deploy/lab.sh` hosts with real containers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use shoal_tests::json_lines;
use shoal_tests::lab::Lab;
use shoal_tests::require_lab;

const WAIT: Duration = Duration::from_secs(180);

fn tasks(lab: &Lab, host: usize, service: &str) -> Vec<Value> {
    let run = lab.shoal(
        host,
        &["service", "ps", "--no-trunc", "--format", "json", service],
    );
    if run.ok() {
        json_lines(&run.stdout)
    } else {
        Vec::new()
    }
}

fn is_running(t: &Value) -> bool {
    t["DesiredState"]
        .as_str()
        .unwrap_or_default()
        .eq_ignore_ascii_case("running")
        && t["CurrentState"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase()
            .starts_with("running")
}

/// Running tasks of `service`, and how many of them run `image`.
fn running(lab: &Lab, host: usize, service: &str, image: &str) -> (usize, usize) {
    let running: Vec<Value> = tasks(lab, host, service)
        .into_iter()
        .filter(is_running)
        .collect();
    let on_image = running.iter().filter(|t| t["Image"] == image).count();
    (running.len(), on_image)
}

fn update_state(lab: &Lab, host: usize, service: &str) -> String {
    let run = lab.shoal(host, &["service", "inspect", service]);
    serde_json::from_str::<Value>(&run.stdout)
        .ok()
        .and_then(|v| v[0]["UpdateStatus"]["State"].as_str().map(str::to_string))
        .unwrap_or_default()
}

fn create_30(lab: &Lab) {
    lab.shoal_ok(
        1,
        &[
            "service",
            "create",
            "--name",
            "web",
            "--replicas",
            "30",
            "--stop-signal",
            "KILL",
            "shoal-test/busybox:a",
            "sleep",
            "1000000",
        ],
    );
    lab.wait(1, "30 running on :a", WAIT, || {
        (running(lab, 1, "web", "shoal-test/busybox:a") == (30, 30)).then_some(())
    });
}

#[test]
fn start_first_update_of_30_never_dips_and_ends_on_the_new_image() {
    require_lab!();
    let lab = Arc::new(Lab::up(1, 2).expect("lab comes up"));
    create_30(&lab);
    let done = Arc::new(AtomicBool::new(false));
    let poller = {
        let (lab, done) = (lab.clone(), done.clone());
        std::thread::spawn(move || {
            let mut lowest = usize::MAX;
            while !done.load(Ordering::SeqCst) {
                lowest = lowest.min(running(&lab, 1, "web", "").0);
                std::thread::sleep(Duration::from_millis(100));
            }
            lowest
        })
    };
    lab.shoal_ok(
        1,
        &[
            "service",
            "update",
            "--detach",
            "--image",
            "shoal-test/busybox:b",
            "--update-parallelism",
            "5",
            "--update-order",
            "start-first",
            "web",
        ],
    );
    lab.wait(1, "30 running on :b", WAIT, || {
        (running(&lab, 1, "web", "shoal-test/busybox:b") == (30, 30)).then_some(())
    });
    lab.wait(1, "the update completed", WAIT, || {
        (update_state(&lab, 1, "web") == "completed").then_some(())
    });
    done.store(true, Ordering::SeqCst);
    let lowest = poller.join().expect("poller");
    assert!(
        lowest >= 30,
        "running tasks dipped to {lowest} during a start-first update"
    );
}

#[test]
fn a_failing_update_pauses_then_rolls_back_on_its_own() {
    require_lab!();
    let lab = Lab::up(1, 2).expect("lab comes up");
    create_30(&lab);
    // A command that exits 1 at once: the update pauses (Swarm's default) with the error.
    lab.shoal_ok(
        1,
        &[
            "service",
            "update",
            "--detach",
            "--args",
            "sh -c 'exit 1'",
            "--update-parallelism",
            "5",
            "web",
        ],
    );
    lab.wait(1, "the update paused", WAIT, || {
        (update_state(&lab, 1, "web") == "paused").then_some(())
    });
    let inspect = lab.shoal_ok(1, &["service", "inspect", "web"]);
    assert!(
        inspect.contains("non-zero exit"),
        "the pause names the task's error: {inspect}"
    );

    // The same with --update-failure-action rollback: back to 30 running on the old spec.
    lab.shoal_ok(1, &["service", "rollback", "--detach", "web"]);
    lab.wait(1, "30 running after the manual rollback", WAIT, || {
        (running(&lab, 1, "web", "").0 == 30).then_some(())
    });
    lab.shoal_ok(
        1,
        &[
            "service",
            "update",
            "--detach",
            "--args",
            "sh -c 'exit 1'",
            "--update-parallelism",
            "5",
            "--update-failure-action",
            "rollback",
            "web",
        ],
    );
    lab.wait(1, "the automatic rollback completed", WAIT, || {
        (update_state(&lab, 1, "web") == "rollback_completed").then_some(())
    });
    lab.wait(1, "30 running on the old spec", WAIT, || {
        let all = tasks(&lab, 1, "web");
        let running: Vec<&Value> = all.iter().filter(|t| is_running(t)).collect();
        (running.len() == 30).then_some(())
    });
}

fn leader_host(lab: &Lab, host: usize) -> Option<usize> {
    let run = lab.shoal(host, &["node", "ls", "--format", "json"]);
    json_lines(&run.stdout)
        .into_iter()
        .find(|n| n["ManagerStatus"] == "Leader")
        .and_then(|n| {
            n["Hostname"]
                .as_str()
                .and_then(|h| h.trim_start_matches('n').parse().ok())
        })
}

#[test]
fn a_new_leader_finishes_an_update_the_old_one_started() {
    require_lab!();
    let lab = Lab::up(3, 2).expect("lab comes up");
    create_30(&lab);
    lab.shoal_ok(
        1,
        &[
            "service",
            "update",
            "--detach",
            "--image",
            "shoal-test/busybox:b",
            "--update-parallelism",
            "5",
            "--update-delay",
            "1s",
            "web",
        ],
    );
    lab.wait(1, "the update under way", WAIT, || {
        let (_, on_b) = running(&lab, 1, "web", "shoal-test/busybox:b");
        (5..30).contains(&on_b).then_some(())
    });
    let old = leader_host(&lab, 1).expect("a leader");
    lab.stop(old);
    let other = (1..=3).find(|&h| h != old).expect("another manager");
    lab.wait(other, "a new leader", WAIT, || {
        leader_host(&lab, other).filter(|&l| l != old)
    });
    lab.wait(other, "30 running on :b", WAIT, || {
        (running(&lab, other, "web", "shoal-test/busybox:b") == (30, 30)).then_some(())
    });
    lab.wait(other, "the update completed", WAIT, || {
        (update_state(&lab, other, "web") == "completed").then_some(())
    });
    let desired_running = tasks(&lab, other, "web")
        .iter()
        .filter(|t| {
            t["DesiredState"]
                .as_str()
                .unwrap_or_default()
                .eq_ignore_ascii_case("running")
        })
        .count();
    assert_eq!(
        desired_running, 30,
        "exactly 30 tasks, none doubled by two updaters"
    );
}

#[test]
fn a_job_runs_six_completions_two_at_a_time() {
    require_lab!();
    let lab = Arc::new(Lab::up(1, 2).expect("lab comes up"));
    let done = Arc::new(AtomicBool::new(false));
    let poller = {
        let (lab, done) = (lab.clone(), done.clone());
        std::thread::spawn(move || {
            let mut most = 0;
            while !done.load(Ordering::SeqCst) {
                // Job tasks show desired state Complete, as docker's do: count what runs.
                let now = tasks(&lab, 1, "batch")
                    .iter()
                    .filter(|t| {
                        t["CurrentState"]
                            .as_str()
                            .unwrap_or_default()
                            .to_ascii_lowercase()
                            .starts_with("running")
                    })
                    .count();
                most = most.max(now);
                std::thread::sleep(Duration::from_millis(100));
            }
            most
        })
    };
    lab.shoal_ok(
        1,
        &[
            "service",
            "create",
            "--name",
            "batch",
            "--mode",
            "replicated-job",
            "--replicas",
            "6",
            "--max-concurrent",
            "2",
            "shoal-test/busybox:a",
            "sh",
            "-c",
            "sleep 1",
        ],
    );
    lab.wait(1, "6 complete tasks", WAIT, || {
        let complete = tasks(&lab, 1, "batch")
            .iter()
            .filter(|t| {
                t["CurrentState"]
                    .as_str()
                    .unwrap_or_default()
                    .to_ascii_lowercase()
                    .starts_with("complete")
            })
            .count();
        (complete == 6).then_some(())
    });
    done.store(true, Ordering::SeqCst);
    let most = poller.join().expect("poller");
    assert!(
        most <= 2,
        "{most} job tasks ran at once with --max-concurrent 2"
    );
    assert!(most >= 1, "the poller saw the job run");
}

#[test]
fn unhealthy_tasks_are_replaced_and_an_update_that_never_gets_healthy_rolls_back() {
    require_lab!();
    let lab = Lab::up(1, 2).expect("lab comes up");
    // Healthy for 3 s, then not: the task turns unhealthy, fails and is replaced.
    lab.shoal_ok(
        1,
        &[
            "service",
            "create",
            "--name",
            "flaky",
            "--replicas",
            "1",
            "--restart-delay",
            "1s",
            "--stop-signal",
            "KILL",
            "--health-cmd",
            "test -f /tmp/ok",
            "--health-interval",
            "1s",
            "--health-retries",
            "1",
            "shoal-test/busybox:a",
            "sh",
            "-c",
            "touch /tmp/ok; sleep 3; rm /tmp/ok; sleep 1000",
        ],
    );
    lab.wait(
        1,
        "the task failed as unhealthy and a replacement",
        WAIT,
        || {
            let all = tasks(&lab, 1, "flaky");
            let unhealthy = all.iter().any(|t| {
                t["Error"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("unhealthy")
            });
            (unhealthy && all.len() >= 2).then_some(())
        },
    );

    // An update whose new tasks never become healthy rolls back on its own.
    lab.shoal_ok(
        1,
        &[
            "service",
            "create",
            "--name",
            "web",
            "--replicas",
            "4",
            "--stop-signal",
            "KILL",
            "shoal-test/busybox:a",
            "sleep",
            "1000000",
        ],
    );
    lab.wait(1, "4 running", WAIT, || {
        (running(&lab, 1, "web", "").0 == 4).then_some(())
    });
    lab.shoal_ok(
        1,
        &[
            "service",
            "update",
            "--detach",
            "--health-cmd",
            "false",
            "--health-interval",
            "1s",
            "--health-retries",
            "1",
            "--update-failure-action",
            "rollback",
            "--update-parallelism",
            "2",
            "web",
        ],
    );
    lab.wait(1, "the rollback completed", WAIT, || {
        (update_state(&lab, 1, "web") == "rollback_completed").then_some(())
    });
    lab.wait(1, "4 running on the old spec", WAIT, || {
        (running(&lab, 1, "web", "").0 == 4).then_some(())
    });
}

#[test]
fn a_global_service_rolls_node_by_node_without_leaving_a_node_empty() {
    require_lab!();
    let lab = Arc::new(Lab::up(1, 2).expect("lab comes up"));
    lab.shoal_ok(
        1,
        &[
            "service",
            "create",
            "--name",
            "agent",
            "--mode",
            "global",
            "--stop-signal",
            "KILL",
            "shoal-test/busybox:a",
            "sleep",
            "1000000",
        ],
    );
    assert_eq!(running(&lab, 1, "agent", "shoal-test/busybox:a"), (3, 3));

    // A poller watches every node keep a running task through a start-first update.
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (lab, stop) = (lab.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut fewest = usize::MAX;
            while !stop.load(Ordering::Relaxed) {
                let nodes: std::collections::BTreeSet<String> = tasks(&lab, 1, "agent")
                    .iter()
                    .filter(|t| is_running(t))
                    .filter_map(|t| t["Node"].as_str().map(str::to_string))
                    .collect();
                fewest = fewest.min(nodes.len());
                std::thread::sleep(Duration::from_millis(100));
            }
            fewest
        })
    };
    lab.shoal_ok(
        1,
        &[
            "service",
            "update",
            "--image",
            "shoal-test/busybox:b",
            "--update-order",
            "start-first",
            "agent",
        ],
    );
    // The CLI returns once every node runs the new spec and the update's monitor window
    // has passed (docker's "verify"): the update is complete by then.
    assert_eq!(running(&lab, 1, "agent", "shoal-test/busybox:b"), (3, 3));
    assert_eq!(update_state(&lab, 1, "agent"), "completed");
    stop.store(true, Ordering::Relaxed);
    let fewest = poller.join().expect("poller");
    assert_eq!(fewest, 3, "a node was left without a running task");
}
