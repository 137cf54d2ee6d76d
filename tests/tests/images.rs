//! Images shared between nodes (issue 13): an image built on n1 alone, in no registry,
//! runs on n2 and n3 too. They fetch it from n1 over the swarm's mutual TLS, streamed into
//! their engines' `docker load`; `service ps` says so while it happens; the image each
//! loads has n1's id (the digest `docker load` checked every layer against).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use shoal_tests::lab::Lab;
use shoal_tests::{json_lines, require_lab};

const WAIT: Duration = Duration::from_secs(240);
const IMAGE: &str = "shoal-test/only-n1:1";

fn image_id(lab: &Lab, host: usize) -> Option<String> {
    let run = lab.docker(host, &["image", "inspect", "-f", "{{.Id}}", IMAGE]);
    run.ok().then(|| run.stdout.trim().to_string())
}

#[test]
fn an_image_only_on_n1_runs_on_n2_and_n3_fetched_from_n1() {
    require_lab!();
    let lab = Lab::up(1, 2).expect("the lab comes up");

    // An image of its own on n1: a 64 MB layer of random bytes and a marker.
    let made = lab.docker(
        1,
        &[
            "run",
            "--name",
            "make-only-n1",
            "shoal-test/busybox:a",
            "sh",
            "-c",
            "dd if=/dev/urandom of=/blob bs=1M count=64 2>/dev/null && echo made-on-n1 > /marker",
        ],
    );
    assert!(made.ok(), "{}", made.stderr);
    let committed = lab.docker(1, &["commit", "make-only-n1", IMAGE]);
    assert!(committed.ok(), "{}", committed.stderr);
    let _ = lab.docker(1, &["rm", "make-only-n1"]);
    let on_n1 = image_id(&lab, 1).expect("the image is on n1");
    assert_eq!(image_id(&lab, 2), None, "n2 must not have it yet");
    assert_eq!(image_id(&lab, 3), None, "n3 must not have it yet");

    let created = lab.shoal(
        1,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "shared",
            "--mode",
            "global",
            IMAGE,
            "sh",
            "-c",
            "cat /marker && exec sleep 1000000",
        ],
    );
    assert!(created.ok(), "{}", created.stderr);

    // Watch `service ps` until a task runs on every node, keeping what it said meanwhile.
    let mut said = BTreeSet::new();
    let deadline = Instant::now() + WAIT;
    loop {
        let run = lab.shoal(
            1,
            &["service", "ps", "--no-trunc", "--format", "json", "shared"],
        );
        let tasks = json_lines(&run.stdout);
        for t in &tasks {
            let state = t["CurrentState"].as_str().unwrap_or("").to_string();
            if state.contains("fetching image from") {
                said.insert((t["Node"].as_str().unwrap_or("").to_string(), state));
            }
        }
        let running: BTreeSet<&str> = tasks
            .iter()
            .filter(|t| {
                t["CurrentState"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("Running"))
            })
            .filter_map(|t| t["Node"].as_str())
            .collect();
        if running.len() == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not running on every node in {WAIT:?}: {}\n{}",
            run.stdout,
            lab.shoal(1, &["service", "ps", "--no-trunc", "shared"])
                .stdout
        );
    }

    // Each fetched n1's image: same id, same content.
    assert_eq!(image_id(&lab, 2).as_deref(), Some(on_n1.as_str()));
    assert_eq!(image_id(&lab, 3).as_deref(), Some(on_n1.as_str()));
    let logs = lab.shoal_ok(1, &["service", "logs", "--raw", "shared"]);
    assert_eq!(
        logs.lines().filter(|l| l.contains("made-on-n1")).count(),
        3,
        "every task printed the marker only n1's image holds:\n{logs}"
    );

    // `service ps` said where the image came from while it came: from n1, or from a node
    // that had fetched it already (never from the task's own node).
    let nodes: BTreeSet<&str> = said.iter().map(|(node, _)| node.as_str()).collect();
    assert!(
        !nodes.is_empty() && nodes.iter().all(|n| *n == "n2" || *n == "n3"),
        "service ps showed the fetch on n2 or n3: {said:?}"
    );
    assert!(
        said.iter()
            .any(|(_, s)| s.contains("fetching image from n1: ")),
        "{said:?}"
    );
    for (node, state) in &said {
        assert!(
            !state.contains(&format!("fetching image from {node}")),
            "{node} fetched from itself: {said:?}"
        );
    }
}
