//! `shoal events` and Docker's `/events` on lab managers (issue 13): one stream on a
//! follower outlives the leader's death with no event missed or repeated; a stream
//! whose own shoald restarts resumes after its last event; `--since`/`--until` replay
//! what is kept and end.

use std::collections::BTreeSet;
use std::time::Duration;

use shoal_tests::lab::Lab;
use shoal_tests::{json_lines, require_lab, wait_until};

const WAIT: Duration = Duration::from_secs(60);

/// (position, type, action, name) of each JSON event line.
fn parsed(lines: &[String]) -> Vec<(String, String, String, String)> {
    json_lines(&lines.join("\n"))
        .into_iter()
        .map(|e| {
            let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
            (
                s(&e["Position"]),
                s(&e["Type"]),
                s(&e["Action"]),
                s(&e["Actor"]["Attributes"]["name"]),
            )
        })
        .collect()
}

fn position(p: &str) -> (u64, u32) {
    let (seq, index) = p.split_once('.').unwrap_or((p, "0"));
    (seq.parse().unwrap_or(0), index.parse().unwrap_or(0))
}

/// Positions strictly increase: nothing twice, in order.
#[track_caller]
fn in_order_once(events: &[(String, String, String, String)]) {
    let positions: Vec<_> = events.iter().map(|e| position(&e.0)).collect();
    for pair in positions.windows(2) {
        assert!(
            pair[0] < pair[1],
            "positions out of order or repeated: {positions:?}"
        );
    }
}

fn created_services(events: &[(String, String, String, String)]) -> BTreeSet<String> {
    events
        .iter()
        .filter(|e| e.1 == "service" && e.2 == "create")
        .map(|e| e.3.clone())
        .collect()
}

#[test]
fn events_outlive_a_leader_change_and_resume_after_a_restart_without_gaps_or_repeats() {
    require_lab!();
    let lab = Lab::up(3, 0).expect("the lab comes up");
    let leader = wait_until("a leader", WAIT, || lab.leader(1)).expect("leader");
    let leader = Lab::host_of(&leader);
    let follower = (1..=3).find(|h| *h != leader).expect("a follower");
    let other = (1..=3)
        .find(|h| *h != leader && *h != follower)
        .expect("another");

    let on_follower = lab.shoal_streaming(follower, &["events", "--format", "json"]);
    let on_other = lab.shoal_streaming(
        other,
        &["events", "--format", "json", "--filter", "type=service"],
    );
    // Both streams are open once a first change shows on each.
    lab.create_sleeping(leader, "before", 1, &[]);
    for stream in [&on_follower, &on_other] {
        wait_until("the first event", WAIT, || {
            created_services(&parsed(&stream.stdout()))
                .contains("before")
                .then_some(())
        })
        .expect("the first event arrives");
    }

    // The leader dies; the follower's stream goes on.
    lab.stop(leader);
    wait_until("a new leader", WAIT, || {
        lab.leader(follower).filter(|l| Lab::host_of(l) != leader)
    })
    .expect("a new leader");
    let out = lab.create_sleeping(follower, "after-leader", 1, &[]);
    assert!(out.ok(), "{}", out.stderr);

    // `other`'s own shoald restarts: its stream reconnects and resumes.
    lab.stop(other);
    lab.start(other);
    let out = lab.create_sleeping(follower, "after-restart", 1, &[]);
    assert!(out.ok(), "{}", out.stderr);

    let want: BTreeSet<String> = ["before", "after-leader", "after-restart"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for (host, stream) in [(follower, &on_follower), (other, &on_other)] {
        let events = wait_until("every service's create event", WAIT, || {
            let events = parsed(&stream.stdout());
            want.is_subset(&created_services(&events)).then_some(events)
        })
        .unwrap_or_else(|e| panic!("n{host}: {e}: {:?}", stream.stdout()));
        in_order_once(&events);
    }
    assert!(
        parsed(&on_other.stdout()).iter().all(|e| e.1 == "service"),
        "the type filter holds across the reconnect"
    );

    // --since/--until replay what is kept and end; the same as the live stream saw.
    let replay = lab.shoal_ok(
        follower,
        &[
            "events", "--since", "10m", "--until", "0s", "--format", "json",
        ],
    );
    let replayed = parsed(&replay.lines().map(str::to_string).collect::<Vec<_>>());
    assert!(want.is_subset(&created_services(&replayed)), "{replay}");
    in_order_once(&replayed);

    // Docker's /events: since and until given, the stream ends once until passes.
    let url = lab
        .script_ok(&["docker-api", &format!("n{follower}")])
        .trim()
        .to_string();
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() + 2)
        .to_string();
    let docker = std::process::Command::new("/usr/bin/docker")
        .args([
            "events",
            "--since",
            "10m",
            "--until",
            &until,
            "--filter",
            "type=service",
            "--format",
            "{{.Action}} {{.Actor.Attributes.name}}",
        ])
        .env("DOCKER_HOST", &url)
        .output()
        .expect("docker events");
    let text = String::from_utf8_lossy(&docker.stdout);
    assert!(
        docker.status.success(),
        "{}",
        String::from_utf8_lossy(&docker.stderr)
    );
    for name in &want {
        assert!(text.contains(&format!("create {name}")), "{text}");
    }
}
