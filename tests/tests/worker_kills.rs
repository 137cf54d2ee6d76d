//! The reliability suite (issue 11), container side: `kill -9` of a worker's shoald in the
//! middle of 50 task starts, of a rolling update and of a drain, and of every shoald of a
//! cluster at once. Afterwards each slot of a service has exactly one running container,
//! and no running container belongs to a task that should not run (no orphan); a
//! whole-cluster restart adopts every container instead of restarting it.
//!
//! Lab: 1 manager (n1) and 2 workers (n2, n3); services are constrained to the workers.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;
use shoal_tests::lab::Lab;
use shoal_tests::{json_lines, require_lab, wait_until};

const WAIT: Duration = Duration::from_secs(120);

/// A running container: its id, its task id, and its start time.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Container {
    host: usize,
    id: String,
    task: String,
    started: String,
}

/// The running containers of `service` on every host.
fn containers(lab: &Lab, service: &str) -> Vec<Container> {
    let mut found = Vec::new();
    for &host in lab.hosts() {
        let filter = format!("label=shoal.service.name={service}");
        let ps = lab.docker(host, &["ps", "-q", "--no-trunc", "--filter", &filter]);
        let ids: Vec<&str> = ps.stdout.split_whitespace().collect();
        if ids.is_empty() {
            continue;
        }
        let mut args = vec![
            "inspect",
            "--format",
            "{{.Id}} {{index .Config.Labels \"shoal.task.id\"}} {{.State.StartedAt}} {{.State.Running}}",
        ];
        args.extend(&ids);
        let inspect = lab.docker(host, &args);
        for line in inspect.stdout.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if let [id, task, started, "true"] = f[..] {
                found.push(Container {
                    host,
                    id: id.into(),
                    task: task.into(),
                    started: started.into(),
                });
            }
        }
    }
    found.sort();
    found
}

/// `service ps` as (task id -> (slot, desired state)).
fn tasks(lab: &Lab, service: &str) -> Option<BTreeMap<String, (String, String)>> {
    let run = lab.shoal(
        1,
        &["service", "ps", "--no-trunc", "--format", "json", service],
    );
    if !run.ok() {
        return None;
    }
    Some(
        json_lines(&run.stdout)
            .iter()
            .map(|t: &Value| {
                let name = t["Name"].as_str().unwrap_or_default();
                let slot = name.rsplit('.').next().unwrap_or_default().to_string();
                let desired = t["DesiredState"]
                    .as_str()
                    .unwrap_or_default()
                    .to_lowercase();
                (
                    t["ID"].as_str().unwrap_or_default().to_string(),
                    (slot, desired),
                )
            })
            .collect(),
    )
}

/// What is wrong with `service`'s containers now, if anything: a slot without exactly one
/// running container, or a running container whose task should not run.
fn fault(lab: &Lab, service: &str, replicas: usize) -> Option<String> {
    let Some(tasks) = tasks(lab, service) else {
        return Some("service ps does not answer".into());
    };
    let running = containers(lab, service);
    let mut by_slot: BTreeMap<String, Vec<&Container>> = BTreeMap::new();
    let mut orphans = Vec::new();
    for c in &running {
        match tasks.get(&c.task) {
            Some((slot, desired)) if desired == "running" => {
                by_slot.entry(slot.clone()).or_default().push(c)
            }
            other => orphans.push(format!(
                "{} on n{} (task {}: {other:?})",
                c.id, c.host, c.task
            )),
        }
    }
    let doubled: Vec<String> = by_slot
        .iter()
        .filter(|(_, cs)| cs.len() > 1)
        .map(|(slot, cs)| format!("slot {slot}: {}", cs.len()))
        .collect();
    if !orphans.is_empty() {
        return Some(format!("orphan containers: {orphans:?}"));
    }
    if !doubled.is_empty() {
        return Some(format!("duplicate containers: {doubled:?}"));
    }
    if by_slot.len() != replicas {
        return Some(format!(
            "{} of {replicas} slots have a running container",
            by_slot.len()
        ));
    }
    None
}

/// Wait until every slot has exactly one running container and none is an orphan.
fn settle(lab: &Lab, service: &str, replicas: usize) {
    let mut last = String::new();
    let settled = wait_until(
        "one running container per slot, no orphan",
        WAIT,
        || match fault(lab, service, replicas) {
            None => Some(()),
            Some(why) => {
                last = why;
                None
            }
        },
    );
    if let Err(e) = settled {
        panic!("{e}: {last}\n{}\n{}", lab.log_tail(2), lab.log_tail(3));
    }
}

fn create(lab: &Lab, name: &str, replicas: usize) {
    let extra = [
        "--constraint",
        "node.role==worker",
        "--stop-grace-period",
        "1s",
    ];
    let run = lab.create_sleeping(1, name, replicas, &extra);
    assert!(run.ok(), "service create {name}: {}", run.stderr);
}

/// Kill `host`'s shoald and start it again at once.
fn bounce(lab: &Lab, host: usize) {
    lab.stop(host);
    lab.start(host);
}

/// The node's status as the manager sees it ("ready", "down").
fn node_status(lab: &Lab, host: usize) -> String {
    let run = lab.shoal(1, &["node", "ls", "--format", "json"]);
    json_lines(&run.stdout)
        .into_iter()
        .find(|n| n["Hostname"] == Lab::name(host))
        .and_then(|n| n["Status"].as_str().map(str::to_lowercase))
        .unwrap_or_default()
}

#[test]
fn fifty_starts_with_a_worker_killed_midway_leave_one_container_per_slot() {
    require_lab!();
    let lab = Lab::up(1, 2).expect("lab comes up");
    create(&lab, "starts", 50);
    // Kill n2's shoald once it has started some of its share, not all.
    lab.wait(2, "n2 starting containers", WAIT, || {
        let on_n2 = containers(&lab, "starts")
            .iter()
            .filter(|c| c.host == 2)
            .count();
        (on_n2 >= 3).then_some(on_n2)
    });
    bounce(&lab, 2);
    settle(&lab, "starts", 50);
    // And again, this time left down until the manager gives its tasks to n3.
    lab.stop(2);
    lab.wait(1, "n2 seen down", WAIT, || {
        (node_status(&lab, 2) == "down").then_some(())
    });
    lab.start(2);
    settle(&lab, "starts", 50);
    println!(
        "RESULT 50 starts, n2's shoald killed twice: one container per slot, no orphan ({} on n2, {} on n3)",
        containers(&lab, "starts").iter().filter(|c| c.host == 2).count(),
        containers(&lab, "starts").iter().filter(|c| c.host == 3).count(),
    );
}

#[test]
fn a_worker_killed_during_an_update_and_during_a_drain_leaves_one_container_per_slot() {
    require_lab!();
    let lab = Lab::up(1, 2).expect("lab comes up");
    create(&lab, "web", 12);
    settle(&lab, "web", 12);
    let before: BTreeSet<String> = containers(&lab, "web").into_iter().map(|c| c.id).collect();

    // A rolling update, two at a time; n3's shoald dies once the first new ones run.
    lab.shoal_ok(
        1,
        &[
            "service",
            "update",
            "--detach",
            "--image",
            "shoal-test/busybox:b",
            "--update-parallelism",
            "2",
            "web",
        ],
    );
    lab.wait(3, "the update under way", WAIT, || {
        let new = containers(&lab, "web")
            .into_iter()
            .filter(|c| !before.contains(&c.id))
            .count();
        (new >= 2).then_some(())
    });
    bounce(&lab, 3);
    settle(&lab, "web", 12);
    let images = |lab: &Lab| {
        let run = lab.shoal(1, &["service", "ps", "--format", "json", "web"]);
        json_lines(&run.stdout)
            .into_iter()
            .filter(|t| {
                t["DesiredState"]
                    .as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case("running"))
            })
            .filter(|t| t["Image"].as_str().is_some_and(|i| i.ends_with(":b")))
            .count()
    };
    lab.wait(1, "every task on the new image", WAIT, || {
        (images(&lab) == 12).then_some(())
    });
    settle(&lab, "web", 12);

    // Drain n2; its shoald dies in the middle of it.
    lab.shoal_ok(1, &["node", "update", "--availability", "drain", "n2"]);
    let drained_at = Instant::now();
    bounce(&lab, 2);
    lab.wait(
        2,
        "no container left running on the drained n2",
        WAIT,
        || {
            let left = containers(&lab, "web")
                .iter()
                .filter(|c| c.host == 2)
                .count();
            (left == 0).then_some(())
        },
    );
    settle(&lab, "web", 12);
    println!(
        "RESULT update and drain of 12 tasks, a worker's shoald killed during each: one container per slot, \
         no orphan (drain settled {:.1} s after it began)",
        drained_at.elapsed().as_secs_f64()
    );
}

#[test]
fn a_whole_cluster_restart_adopts_every_container() {
    require_lab!();
    let lab = Lab::up(3, 2).expect("lab comes up");
    create(&lab, "steady", 10);
    settle(&lab, "steady", 10);
    let before = containers(&lab, "steady");
    let tasks_before = tasks(&lab, "steady").expect("tasks");

    // Every shoald killed at once, then all started again.
    let hosts: Vec<usize> = lab.hosts().to_vec();
    std::thread::scope(|s| {
        for &h in &hosts {
            let lab = &lab;
            s.spawn(move || lab.stop(h));
        }
    });
    let restarted = Instant::now();
    std::thread::scope(|s| {
        for &h in &hosts {
            let lab = &lab;
            s.spawn(move || lab.start(h));
        }
    });
    lab.wait(1, "the cluster serving again", WAIT, || {
        tasks(&lab, "steady")
    });
    let serving = restarted.elapsed().as_secs_f64();
    settle(&lab, "steady", 10);
    assert_eq!(
        tasks(&lab, "steady").expect("tasks"),
        tasks_before,
        "the same tasks, in the same slots"
    );
    assert_eq!(
        containers(&lab, "steady"),
        before,
        "the same containers, never restarted (same ids, same start times)"
    );
    println!(
        "RESULT whole-cluster restart (3 managers, 2 workers, 10 tasks): serving {serving:.2} s after the \
         restart began, the same 10 containers adopted"
    );
}
