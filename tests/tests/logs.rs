//! `service logs` with real containers: lines from every task, docker's prefixes, the
//! flags, one task, following (new tasks included), and a node that is down reported once
//! without holding the command up.

use std::time::Duration;

use shoal_tests::lab::Lab;
use shoal_tests::{require_env, require_lab, Node};

const WAIT: Duration = Duration::from_secs(60);

/// Three numbered lines on stdout, one on stderr, then quiet.
const TALK: &str = "for i in 1 2 3; do echo line $i; done; echo oops >&2; exec sleep 100000";
/// A numbered line every 200 ms.
const TICK: &str = "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done";

fn create(node: &Node, name: &str, replicas: &str, script: &str) {
    node.shoal_ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        name,
        "--replicas",
        replicas,
        "--stop-grace-period",
        "1s",
        "shoal-test/busybox:a",
        "sh",
        "-c",
        script,
    ]);
}

/// Lines of `text` that end with `| <body>`.
fn bodies(text: &str) -> Vec<String> {
    let mut b: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_once("    | ").map(|(_, body)| body.to_string()))
        .collect();
    b.sort();
    b
}

#[test]
fn logs_of_a_service_and_a_task_with_dockers_flags() {
    require_env!();
    let node = Node::start("logs").expect("shoald starts");
    node.init();
    create(&node, "talk", "2", TALK);
    node.wait("2 running tasks", WAIT, || {
        (node.running_tasks("talk").len() == 2).then_some(())
    });
    // Both containers have written everything once 8 lines are there.
    let all = node.wait("every line of both tasks", WAIT, || {
        let run = node.shoal(&["service", "logs", "talk"]);
        (run.ok() && run.stdout.lines().count() == 6 && run.stderr.lines().count() == 2)
            .then_some(run)
    });
    assert_eq!(
        bodies(&all.stdout),
        ["line 1", "line 1", "line 2", "line 2", "line 3", "line 3"]
    );
    assert_eq!(bodies(&all.stderr), ["oops", "oops"], "stderr stays stderr");
    // docker's prefix: service.slot.task@node, the column padded.
    let tasks = node.tasks("talk");
    let node_name = &node.name;
    for line in all.stdout.lines() {
        let (prefix, _) = line.split_once("    | ").expect("a prefix");
        let prefix = prefix.trim_end();
        let task = tasks
            .iter()
            .find(|t| {
                let id = t["ID"].as_str().unwrap_or_default();
                let name = t["Name"].as_str().unwrap_or_default();
                prefix == format!("{name}.{}@{node_name}", &id[..12])
            })
            .unwrap_or_else(|| panic!("{prefix:?} names no task of {tasks:?}"));
        assert!(task["Name"]
            .as_str()
            .unwrap_or_default()
            .starts_with("talk."));
    }

    // --tail counts per task, stdout and stderr together (the engine may log the last
    // two in either order); --raw drops the prefix; -t puts the time first.
    let tail = node.shoal(&["service", "logs", "--tail", "1", "--raw", "talk"]);
    assert!(tail.ok(), "{}", tail.stderr);
    let last: Vec<&str> = tail.stdout.lines().chain(tail.stderr.lines()).collect();
    assert_eq!(last.len(), 2, "{last:?}");
    assert!(
        last.iter().all(|l| *l == "line 3" || *l == "oops"),
        "{last:?}"
    );
    let stamped = node.shoal_ok(&["service", "logs", "-t", "--no-task-ids", "talk"]);
    for line in stamped.lines() {
        let (time, rest) = line.split_once(' ').expect("a time first");
        assert!(
            time.len() == 30 && time.ends_with('Z') && time.starts_with("20"),
            "{line}"
        );
        assert!(rest.starts_with("talk."), "{line}");
    }
    // Nothing was written in the last second... but everything in the last hour.
    assert_eq!(
        node.shoal_ok(&["service", "logs", "--since", "0s", "talk"]),
        ""
    );
    assert_eq!(
        node.shoal_ok(&["service", "logs", "--since", "1h", "talk"])
            .lines()
            .count(),
        6
    );

    // One task by its id (a prefix will do).
    let id = tasks[0]["ID"].as_str().expect("a task id").to_string();
    let one = node.shoal_ok(&["service", "logs", &id[..8]]);
    assert_eq!(bodies(&one), ["line 1", "line 2", "line 3"]);
    assert!(one.lines().all(|l| l.contains(&id[..12])), "{one}");

    // Bad input: a clear error, nothing else.
    let missing = node.shoal(&["service", "logs", "nope"]);
    assert_eq!(missing.code, 1);
    assert_eq!(
        missing.stderr.trim(),
        "Error: no such service or task: nope"
    );
    let bad = node.shoal(&["service", "logs", "--tail=-3", "talk"]);
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr.contains("invalid line count \"-3\" for --tail"),
        "{}",
        bad.stderr
    );
}

#[test]
fn megabytes_of_long_lines_arrive_whole() {
    require_env!();
    let node = Node::start("logsbig").expect("shoald starts");
    node.init();
    // 200 lines of 40000 characters (~8 MB): the engine cuts each into 16 KiB frames, and
    // the whole is more than one gRPC message may carry.
    create(
        &node,
        "big",
        "1",
        "i=0; while [ $i -lt 200 ]; do printf '%040000d\\n' $i; i=$((i+1)); done; exec sleep 100000",
    );
    let run = node.wait("all 200 long lines", WAIT, || {
        let run = node.shoal(&["service", "logs", "--raw", "big"]);
        (run.ok() && run.stdout.lines().count() == 200).then_some(run)
    });
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(lines.iter().all(|l| l.len() == 40000), "every line whole");
    assert_eq!(lines[199].trim_start_matches('0'), "199");
    assert!(run.stderr.is_empty(), "{}", run.stderr);
}

#[test]
fn following_streams_new_lines_and_new_tasks() {
    require_env!();
    let node = Node::start("logsf").expect("shoald starts");
    node.init();
    create(&node, "tick", "1", TICK);
    node.wait("1 running task", WAIT, || {
        (node.running_tasks("tick").len() == 1).then_some(())
    });
    let follow = node.shoal_streaming(&["service", "logs", "-f", "--tail", "1", "tick"]);
    // Lines keep coming: at least five numbered lines after the first one seen.
    node.wait("lines to keep coming", WAIT, || {
        let lines = follow.stdout();
        let ticks: Vec<u64> = lines
            .iter()
            .filter_map(|l| l.rsplit_once("tick ").and_then(|(_, n)| n.parse().ok()))
            .collect();
        (ticks.len() >= 6 && ticks.windows(2).all(|w| w[1] == w[0] + 1)).then_some(())
    });
    // A task that starts later joins the stream.
    node.shoal_ok(&["service", "scale", "--detach", "tick=2"]);
    let seen = shoal_tests::wait_until("lines of the new task", WAIT, || {
        follow
            .stdout()
            .iter()
            .any(|l| l.starts_with("tick.2."))
            .then_some(())
    });
    if let Err(e) = seen {
        let out = follow.stdout();
        panic!(
            "{e}\nservice ps: {:?}\nlast lines: {:?}\nstderr: {:?}\n{}",
            node.tasks("tick"),
            &out[out.len().saturating_sub(5)..],
            follow.stderr(),
            node.log_tail()
        );
    }
    assert!(follow.stderr().is_empty(), "{:?}", follow.stderr());
}

#[test]
fn a_node_that_is_down_is_reported_once_and_never_holds_the_command_up() {
    require_lab!();
    let lab = Lab::up(1, 2).expect("the lab comes up");
    lab.shoal_ok(
        1,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "talk",
            "--replicas",
            "3",
            "--replicas-max-per-node",
            "1",
            "shoal-test/busybox:a",
            "sh",
            "-c",
            TALK,
        ],
    );
    lab.wait(1, "3 tasks writing on 3 nodes", WAIT, || {
        let run = lab.shoal(1, &["service", "logs", "--raw", "talk"]);
        (run.ok() && run.stdout.lines().count() == 9).then_some(())
    });
    let hosts: Vec<String> = lab
        .shoal_ok(1, &["service", "logs", "talk"])
        .lines()
        .filter_map(|l| {
            l.split_once('@')
                .map(|(_, rest)| rest.split(' ').next().unwrap_or_default().to_string())
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(hosts, ["n1", "n2", "n3"]);

    // A follower of n3's lines, then n3's shoald dies.
    let mut follow = lab.shoal_streaming(1, &["service", "logs", "-f", "talk"]);
    lab.wait(1, "the follower to see every node", WAIT, || {
        (follow.stdout().len() >= 9).then_some(())
    });
    lab.stop(3);
    let gone = lab.wait(1, "the follower to report n3", WAIT, || {
        follow.stderr().into_iter().find(|l| l.contains("node n3"))
    });
    assert_eq!(
        gone,
        "warning: node n3 went away: its logs stop here until it is back"
    );
    assert_eq!(
        follow.exited(),
        None,
        "following goes on for the other nodes"
    );

    // Without --follow: the two live nodes' lines, n3 reported once, and the command ends.
    let run = lab.shoal(1, &["service", "logs", "talk"]);
    assert!(run.ok(), "{}", run.stderr);
    assert_eq!(run.stdout.lines().count(), 6, "{}", run.stdout);
    let warnings: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", run.stderr);
    assert!(
        warnings[0].starts_with("warning: node n3 "),
        "{}",
        run.stderr
    );

    // n3 comes back: the follower says so and n3's lines are not repeated.
    lab.start(3);
    lab.wait(1, "the follower to take n3 back", WAIT, || {
        follow
            .stderr()
            .iter()
            .any(|l| l == "warning: node n3 is back: following its logs again")
            .then_some(())
    });
    let n3_lines = follow.stdout().iter().filter(|l| l.contains("@n3")).count();
    assert_eq!(
        n3_lines,
        3,
        "n3's lines were shown once: {:?}",
        follow.stdout()
    );
}
