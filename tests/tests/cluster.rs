//! A real cluster on `deploy/lab.sh` hosts: network namespaces, one dockerd and one shoald
//! per host, mTLS between them. Managers come first: n1..nM, then the workers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use shoal_tests::json_lines;
use shoal_tests::lab::Lab;
use shoal_tests::require_lab;

const WAIT: Duration = Duration::from_secs(90);

fn nodes(lab: &Lab, host: usize) -> Vec<Value> {
    json_lines(&lab.shoal_ok(host, &["node", "ls", "--format", "json"]))
}

/// Running tasks of `service` per node hostname, as the managers see them.
fn running_per_node(lab: &Lab, host: usize, service: &str) -> HashMap<String, usize> {
    let run = lab.shoal(host, &["service", "ps", "--format", "json", service]);
    let mut per_node = HashMap::new();
    if !run.ok() {
        return per_node;
    }
    for t in json_lines(&run.stdout) {
        let desired = t["DesiredState"]
            .as_str()
            .unwrap_or_default()
            .eq_ignore_ascii_case("running");
        let current = t["CurrentState"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if desired && current.starts_with("running") {
            *per_node
                .entry(t["Node"].as_str().unwrap_or_default().to_string())
                .or_default() += 1;
        }
    }
    per_node
}

fn running(lab: &Lab, host: usize, service: &str) -> usize {
    running_per_node(lab, host, service).values().sum()
}

fn create(lab: &Lab, host: usize, name: &str, extra: &[&str]) {
    let mut args = vec![
        "service",
        "create",
        "--name",
        name,
        "--stop-signal",
        "KILL",
        "--restart-delay",
        "1s",
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["shoal-test/busybox:a", "sleep", "1000000"]);
    lab.shoal_ok(host, &args);
}

#[test]
fn three_managers_two_workers_spread_and_survive_the_leader() {
    require_lab!();
    let lab = Lab::up(3, 2).expect("lab comes up");

    // Every manager sees all five nodes, their roles, and one leader.
    for host in 1..=3 {
        let all = lab.wait(host, "five ready nodes", WAIT, || {
            let all = nodes(&lab, host);
            (all.len() == 5 && all.iter().all(|n| n["Status"] == "Ready")).then_some(all)
        });
        let managers = all.iter().filter(|n| n["ManagerStatus"] != "").count();
        let leaders = all
            .iter()
            .filter(|n| n["ManagerStatus"] == "Leader")
            .count();
        assert_eq!((managers, leaders), (3, 1), "as n{host} sees it: {all:?}");
    }
    // Workers do not answer Control calls.
    let run = lab.shoal(4, &["node", "ls"]);
    assert!(
        !run.ok() && run.stderr.contains("not a swarm manager"),
        "{}",
        run.stderr
    );

    // Ten replicas spread two per node.
    create(&lab, 1, "web", &["--replicas", "10"]);
    let spread = lab.wait(1, "10 running tasks", WAIT, || {
        let per_node = running_per_node(&lab, 1, "web");
        (per_node.values().sum::<usize>() == 10).then_some(per_node)
    });
    assert_eq!(spread.len(), 5, "{spread:?}");
    assert!(spread.values().all(|&n| n == 2), "{spread:?}");

    // Logs come from every node, through a follower (which forwards to the leader).
    let follower = (1..=3)
        .find(|&h| lab.leader(1).is_some_and(|l| Lab::host_of(&l) != h))
        .expect("a follower");
    lab.shoal_ok(
        follower,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "hello",
            "--mode",
            "global",
            "shoal-test/busybox:a",
            "sh",
            "-c",
            "echo hello; exec sleep 1000000",
        ],
    );
    let hosts = lab.wait(follower, "a hello from each of the 5 nodes", WAIT, || {
        let run = lab.shoal(follower, &["service", "logs", "--no-task-ids", "hello"]);
        let hosts: std::collections::BTreeSet<String> = run
            .stdout
            .lines()
            .filter(|l| l.ends_with("| hello"))
            .filter_map(|l| {
                l.split_once('@')
                    .map(|(_, r)| r.split(' ').next().unwrap_or_default().to_string())
            })
            .collect();
        (run.ok() && run.stderr.is_empty() && hosts.len() == 5).then_some(hosts)
    });
    assert_eq!(
        hosts.into_iter().collect::<Vec<_>>(),
        ["n1", "n2", "n3", "n4", "n5"]
    );

    // An acknowledged change, then the leader dies.
    create(&lab, 2, "acked", &["--replicas", "1"]);
    let old = lab.leader(1).expect("a leader");
    let old_host = Lab::host_of(&old);
    let other = (1..=3).find(|&h| h != old_host).expect("another manager");
    let killed = Instant::now();
    lab.stop(old_host);
    let new = lab.wait(other, "a new leader", WAIT, || {
        lab.leader(other).filter(|l| *l != old)
    });
    eprintln!(
        "RESULT new leader {new} elected {:.2} s after kill -9 of {old}",
        killed.elapsed().as_secs_f64()
    );

    // The cluster still takes changes, through any manager, and lost nothing acknowledged.
    lab.wait(other, "scale through a surviving manager", WAIT, || {
        lab.shoal(other, &["service", "scale", "web=12"])
            .ok()
            .then_some(())
    });
    let services = lab.shoal_ok(other, &["service", "ls", "--format", "json"]);
    assert!(services.contains("\"acked\""), "{services}");
    lab.wait(other, "12 running tasks", WAIT, || {
        (running(&lab, other, "web") == 12).then_some(())
    });

    // The old leader comes back as a follower.
    lab.start(old_host);
    lab.wait(
        other,
        "the old leader back as a reachable follower",
        WAIT,
        || {
            nodes(&lab, other)
                .iter()
                .any(|n| {
                    n["Hostname"] == old.as_str()
                        && n["ManagerStatus"] == "Reachable"
                        && n["Status"] == "Ready"
                })
                .then_some(())
        },
    );
    assert_eq!(
        lab.leader(old_host).as_deref(),
        Some(new.as_str()),
        "the old leader follows the new one"
    );
}

#[test]
fn a_cut_off_worker_loses_its_tasks_and_cleans_up_when_back() {
    require_lab!();
    let lab = Lab::up(1, 2).expect("lab comes up");
    create(&lab, 1, "web", &["--replicas", "6"]);
    lab.wait(1, "6 running tasks", WAIT, || {
        (running(&lab, 1, "web") == 6).then_some(())
    });

    lab.link(3, false);
    lab.wait(1, "n3's tasks replaced on the other nodes", WAIT, || {
        let per_node = running_per_node(&lab, 1, "web");
        (per_node.values().sum::<usize>() == 6 && !per_node.contains_key("n3")).then_some(())
    });

    lab.link(3, true);
    lab.wait(3, "n3's stale containers removed", WAIT, || {
        let run = lab.docker(3, &["ps", "-q", "--filter", "label=shoal.service.name=web"]);
        (run.ok() && run.stdout.trim().is_empty()).then_some(())
    });
    lab.wait(1, "n3 ready again", WAIT, || {
        nodes(&lab, 1)
            .iter()
            .any(|n| n["Hostname"] == "n3" && n["Status"] == "Ready")
            .then_some(())
    });
    let total: usize = (1..=3)
        .map(|h| {
            let run = lab.docker(h, &["ps", "-q", "--filter", "label=shoal.service.name=web"]);
            run.stdout.lines().count()
        })
        .sum();
    assert_eq!(total, 6, "exactly 6 containers across the hosts");
}

#[test]
fn drain_moves_every_task_without_a_dip() {
    require_lab!();
    let lab = Arc::new(Lab::up(1, 2).expect("lab comes up"));
    create(&lab, 1, "web", &["--replicas", "10"]);
    lab.wait(1, "10 running tasks", WAIT, || {
        (running(&lab, 1, "web") == 10).then_some(())
    });

    let done = Arc::new(AtomicBool::new(false));
    let poller = {
        let (lab, done) = (lab.clone(), done.clone());
        std::thread::spawn(move || {
            let mut lowest = usize::MAX;
            let mut samples = 0;
            while !done.load(Ordering::SeqCst) {
                lowest = lowest.min(running(&lab, 1, "web"));
                samples += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            (lowest, samples)
        })
    };
    let started = Instant::now();
    lab.shoal_ok(1, &["node", "update", "--availability", "drain", "n2"]);
    lab.wait(1, "n2 empty and 10 running elsewhere", WAIT, || {
        let per_node = running_per_node(&lab, 1, "web");
        (per_node.values().sum::<usize>() == 10 && !per_node.contains_key("n2")).then_some(())
    });
    eprintln!(
        "RESULT drain done in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    done.store(true, Ordering::SeqCst);
    let (lowest, samples) = poller.join().expect("poller");
    assert!(samples > 3, "the poller ran ({samples} samples)");
    assert!(
        lowest >= 10,
        "running tasks dipped to {lowest} during the drain"
    );
}

#[test]
fn a_global_service_follows_workers_joining_and_leaving() {
    require_lab!();
    let mut lab = Lab::up(1, 1).expect("lab comes up");
    create(&lab, 1, "agent", &["--mode", "global"]);
    lab.wait(1, "a task on each of 2 nodes", WAIT, || {
        (running(&lab, 1, "agent") == 2).then_some(())
    });
    let added = lab.add_worker();
    let name = format!("n{added}");
    lab.wait(1, "a task on the new worker", WAIT, || {
        running_per_node(&lab, 1, "agent")
            .contains_key(&name)
            .then_some(())
    });
    lab.remove(added);
    lab.wait(1, "the task gone with the worker", WAIT, || {
        let per_node = running_per_node(&lab, 1, "agent");
        (!per_node.contains_key(&name) && per_node.values().sum::<usize>() == 2).then_some(())
    });
}
