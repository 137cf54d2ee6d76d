//! One node, real Docker: services run, scale, restart, survive a daemon crash, and go.

use std::collections::BTreeSet;
use std::time::Duration;

use shoal_tests::{docker, require_env, Node};

const WAIT: Duration = Duration::from_secs(60);

fn running_containers(node: &Node) -> BTreeSet<String> {
    node.containers(false).into_iter().collect()
}

#[test]
fn services_run_scale_restart_survive_a_crash_and_go() {
    require_env!();
    let mut node = Node::start("life").expect("shoald starts");
    node.init();
    node.shoal_ok(&[
        "service",
        "create",
        "--name",
        "web",
        "--replicas",
        "3",
        "--restart-delay",
        "1s",
        "--stop-grace-period",
        "1s",
        "shoal-test/busybox:a",
        "sleep",
        "100000",
    ]);
    node.wait("3 running containers", WAIT, || {
        (running_containers(&node).len() == 3).then_some(())
    });
    node.wait("3 running tasks", WAIT, || {
        (node.running_tasks("web").len() == 3).then_some(())
    });
    let ls = node.shoal_ok(&["service", "ls", "--format", "json"]);
    assert!(ls.contains("\"3/3\""), "service ls shows 3/3: {ls}");

    // Scale up.
    node.shoal_ok(&["service", "scale", "web=5"]);
    node.wait("5 running containers", WAIT, || {
        (running_containers(&node).len() == 5).then_some(())
    });
    // `node ps` (this node by default, or by name) lists the same tasks.
    for args in [vec!["node", "ps"], vec!["node", "ps", node.name.as_str()]] {
        let mut args = args;
        args.extend(["--filter", "desired-state=running", "--format", "json"]);
        let listed = shoal_tests::json_lines(&node.shoal_ok(&args));
        assert_eq!(listed.len(), 5, "{args:?}: {listed:?}");
        assert!(listed.iter().all(|t| t["Node"] == node.name.as_str()));
    }
    let missing = node.shoal(&["node", "ps", "nope"]);
    assert_eq!(missing.code, 1, "{}", missing.stderr);

    // A container killed behind Shoal's back is replaced by a new task and container.
    let before = running_containers(&node);
    let victim = before.iter().next().cloned().expect("a container");
    assert!(docker(&["kill", &victim]).ok());
    let after = node.wait("a replacement container", WAIT, || {
        let now = running_containers(&node);
        (now.len() == 5 && !now.contains(&victim)).then_some(now)
    });
    assert_eq!(
        after.difference(&before).count(),
        1,
        "exactly one new container"
    );
    let tasks = node.tasks("web");
    assert!(
        tasks.iter().any(|t| t["DesiredState"]
            .as_str()
            .is_some_and(|s| s.eq_ignore_ascii_case("shutdown"))),
        "the killed task stays in the history: {tasks:?}"
    );

    // kill -9 of the daemon: the service survives, and the containers are adopted, not doubled.
    let running = running_containers(&node);
    node.kill9();
    node.spawn().expect("shoald restarts");
    node.wait(
        "the service after a restart with 5 running tasks",
        WAIT,
        || (node.running_tasks("web").len() == 5).then_some(()),
    );
    assert_eq!(
        running_containers(&node),
        running,
        "the same 5 containers, none new, none lost"
    );
    // Every container of this node belongs to a task the manager knows.
    let known: BTreeSet<String> = node
        .tasks("web")
        .iter()
        .filter_map(|t| t["ID"].as_str().map(str::to_string))
        .collect();
    for id in node.containers(true) {
        let label = docker(&[
            "inspect",
            "-f",
            "{{index .Config.Labels \"shoal.task.id\"}}",
            &id,
        ]);
        let task = label.stdout.trim();
        assert!(
            known.iter().any(|k| task.starts_with(k.as_str())),
            "container {id} runs unknown task {task}"
        );
    }

    // Remove: every container goes.
    node.shoal_ok(&["service", "rm", "web"]);
    node.wait("no containers left", WAIT, || {
        node.containers(true).is_empty().then_some(())
    });
    let ls = node.shoal_ok(&["service", "ls", "-q"]);
    assert!(ls.trim().is_empty(), "no service left: {ls}");
}

#[test]
fn bad_input_gets_one_clear_line_and_changes_nothing() {
    require_env!();
    let node = Node::start("bad").expect("shoald starts");
    node.init();
    node.shoal_ok(&[
        "service",
        "create",
        "--name",
        "keep",
        "--replicas",
        "1",
        "shoal-test/busybox:a",
        "sleep",
        "100000",
    ]);
    let services_before = node.shoal_ok(&["service", "ls", "--format", "json"]);
    let services_before: BTreeSet<String> = shoal_tests::json_lines(&services_before)
        .iter()
        .filter_map(|s| s["ID"].as_str().map(str::to_string))
        .collect();

    for (args, want) in [
        (
            vec![
                "service",
                "create",
                "--replicas",
                "-1",
                "shoal-test/busybox:a",
            ],
            "-1",
        ),
        (
            vec![
                "service",
                "create",
                "--replicas",
                "abc",
                "shoal-test/busybox:a",
            ],
            "abc",
        ),
        (vec!["service", "ps", "nope"], "service nope not found"),
        (vec!["service", "scale", "nope=2"], "service nope not found"),
        (vec!["service", "rm", "nope"], "service nope not found"),
        (
            vec!["service", "create", "--bogus-flag", "shoal-test/busybox:a"],
            "--bogus-flag",
        ),
        (
            vec![
                "service",
                "create",
                "--restart-delay",
                "5x",
                "shoal-test/busybox:a",
            ],
            "5x",
        ),
        (
            vec![
                "service",
                "create",
                "--constraint",
                "node.role=manager",
                "shoal-test/busybox:a",
            ],
            "invalid constraint",
        ),
        (
            vec![
                "service",
                "create",
                "--name",
                "keep",
                "shoal-test/busybox:a",
            ],
            "already exists",
        ),
    ] {
        let run = node.shoal(&args);
        assert_ne!(run.code, 0, "{args:?} must fail");
        assert!(
            run.stderr.contains(want),
            "{args:?}: stderr {:?} should name {want:?}",
            run.stderr
        );
        assert!(
            !run.stderr.contains("panicked"),
            "{args:?} panicked: {}",
            run.stderr
        );
    }

    // An image that is not on the node: the task is rejected, saying so.
    node.shoal_ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "ghost",
        "shoal-test/nope:1",
    ]);
    let want = format!("image shoal-test/nope:1 not found on node {}", node.name);
    node.wait("the task rejected for its missing image", WAIT, || {
        node.tasks("ghost")
            .iter()
            .any(|t| t["Error"].as_str().is_some_and(|e| e.contains(&want)))
            .then_some(())
    });
    node.shoal_ok(&["service", "rm", "ghost"]);

    // Updates that cannot work: refused before anything changes, or paused with the reason.
    let keep_before = node.running_tasks("keep");
    for (args, want) in [
        (
            vec!["service", "update", "--update-parallelism", "-1", "keep"],
            "-1",
        ),
        (
            vec![
                "service",
                "update",
                "--update-max-failure-ratio",
                "1.5",
                "keep",
            ],
            "between 0 and 1",
        ),
        (
            vec!["service", "update", "--update-delay", "5x", "keep"],
            "5x",
        ),
        (vec!["service", "rollback", "keep"], "has no previous spec"),
    ] {
        let run = node.shoal(&args);
        assert_ne!(run.code, 0, "{args:?} must fail");
        assert!(run.stderr.contains(want), "{args:?}: {:?}", run.stderr);
    }
    let run = node.shoal(&["service", "update", "--image", "shoal-test/nope:1", "keep"]);
    assert_eq!(
        run.code, 1,
        "an update no node can run fails: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("update paused")
            && run
                .stderr
                .contains("image shoal-test/nope:1 not found on node"),
        "{}",
        run.stderr
    );
    // Stop-first stops the old task only once its replacement is prepared, and this one
    // never was: the service runs on as it was (Swarm stops it first and leaves it down).
    let during = node.running_tasks("keep");
    assert_eq!(during.len(), keep_before.len(), "{during:?}");
    assert_eq!(during[0]["ID"], keep_before[0]["ID"], "the very same task");
    node.shoal_ok(&["service", "rollback", "keep"]);
    let keep_after = node.running_tasks("keep");
    assert_eq!(keep_after.len(), keep_before.len());
    assert_eq!(
        keep_after[0]["ID"], keep_before[0]["ID"],
        "still the same task"
    );

    let services_after = node.shoal_ok(&["service", "ls", "--format", "json"]);
    let services_after: BTreeSet<String> = shoal_tests::json_lines(&services_after)
        .iter()
        .filter_map(|s| s["ID"].as_str().map(str::to_string))
        .collect();
    assert_eq!(services_before, services_after, "bad input changed nothing");

    // No daemon at the address.
    let run = std::process::Command::new(shoal_tests::bin_dir().join("shoal"))
        .args(["-H", "unix:///nonexistent/shoald.sock", "service", "ls"])
        .output()
        .expect("shoal runs");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_ne!(run.status.code(), Some(0));
    assert!(
        stderr.contains("cannot reach shoald at unix:///nonexistent/shoald.sock: is it running?"),
        "{stderr}"
    );
}

#[test]
fn an_acknowledged_create_survives_kill_9_twenty_times() {
    require_env!();
    let mut node = Node::start("durable").expect("shoald starts");
    node.init();
    for i in 0..20 {
        let name = format!("d{i}");
        node.shoal_ok(&[
            "service",
            "create",
            "--name",
            &name,
            "--replicas",
            "0",
            "shoal-test/busybox:a",
        ]);
        node.kill9();
        node.spawn().expect("shoald restarts");
        let ls = node.wait("the control API after a restart", WAIT, || {
            let run = node.shoal(&["service", "ls", "--format", "json"]);
            run.ok().then_some(run.stdout)
        });
        let names: BTreeSet<String> = shoal_tests::json_lines(&ls)
            .iter()
            .filter_map(|s| s["Name"].as_str().map(str::to_string))
            .collect();
        for j in 0..=i {
            assert!(
                names.contains(&format!("d{j}")),
                "round {i}: service d{j} lost after kill -9: {names:?}"
            );
        }
    }
}

/// Fifty tasks arriving at once all start (sled's async flush once hung the agent here).
#[test]
fn fifty_tasks_start_together() {
    require_env!();
    let node = Node::start("fifty").expect("shoald starts");
    node.init();
    node.shoal_ok(&[
        "service",
        "create",
        "--name",
        "many",
        "--replicas",
        "50",
        "--stop-signal",
        "KILL",
        "shoal-test/busybox:a",
        "sleep",
        "100000",
    ]);
    node.wait("50 running tasks", Duration::from_secs(120), || {
        (node.running_tasks("many").len() == 50).then_some(())
    });
    assert_eq!(running_containers(&node).len(), 50);
    node.shoal_ok(&["service", "rm", "many"]);
    node.wait("no containers left", WAIT, || {
        node.containers(true).is_empty().then_some(())
    });
}
