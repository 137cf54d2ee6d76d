//! No quorum, said fast (issue 11): on a lab of 3 managers, the leader's link goes down.
//! The cut-off manager refuses writes and linearizable reads within seconds, naming the
//! managers it cannot reach, and answers `--stale` reads marked as such; the majority
//! elects a new leader and takes changes; once the link is back the cut-off manager
//! follows and shows what the majority wrote (no divergence).

use std::time::{Duration, Instant};

use shoal_tests::json_lines;
use shoal_tests::lab::Lab;
use shoal_tests::require_lab;

const WAIT: Duration = Duration::from_secs(90);

/// The host number of the leader as `host` sees it.
fn leader(lab: &Lab, host: usize) -> Option<usize> {
    lab.leader(host).map(|name| Lab::host_of(&name))
}

fn services(lab: &Lab, host: usize, extra: &[&str]) -> shoal_tests::Run {
    let mut args = vec!["service", "ls", "--format", "json"];
    args.extend_from_slice(extra);
    lab.shoal(host, &args)
}

#[test]
fn a_cut_off_manager_refuses_fast_and_the_majority_goes_on() {
    require_lab!();
    let lab = Lab::up(3, 0).expect("lab comes up");
    let old = lab.wait(1, "a leader", WAIT, || leader(&lab, 1));
    let others: Vec<usize> = (1..=3).filter(|&h| h != old).collect();
    lab.shoal_ok(
        old,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "before",
            "--replicas",
            "0",
            "shoal-test/busybox:a",
        ],
    );

    lab.link(old, false);
    let cut = Instant::now();

    // A write through the cut-off manager: refused with what it cannot reach, not a hang.
    let run = lab.wait(old, "the cut-off manager to refuse a write", WAIT, || {
        let run = lab.shoal(
            old,
            &[
                "service",
                "create",
                "--detach",
                "--name",
                "during",
                "--replicas",
                "0",
                "shoal-test/busybox:a",
            ],
        );
        (!run.ok()).then_some(run)
    });
    let refused_after = cut.elapsed();
    assert!(run.stderr.contains("no quorum"), "{}", run.stderr);
    for &h in &others {
        assert!(
            run.stderr.contains(&lab.ip(h)),
            "names n{h}: {}",
            run.stderr
        );
    }
    assert!(
        refused_after < Duration::from_secs(10),
        "refused only after {refused_after:?}"
    );
    eprintln!(
        "RESULT write through the cut-off manager refused {:.2} s after the cut: {}",
        refused_after.as_secs_f64(),
        run.stderr.trim()
    );

    // A read there is refused too, unless the caller asks for this manager's own view.
    let read = services(&lab, old, &[]);
    assert!(
        !read.ok() && read.stderr.contains("no quorum"),
        "{}",
        read.stderr
    );
    let stale = services(&lab, old, &["--stale"]);
    assert!(stale.ok(), "{}", stale.stderr);
    assert!(stale.stdout.contains("\"before\""), "{}", stale.stdout);
    assert!(
        stale.stderr.contains("WARNING: a stale read"),
        "{}",
        stale.stderr
    );

    // The majority elects a leader among itself and takes changes through either member.
    let new = lab.wait(others[0], "a new leader", WAIT, || {
        leader(&lab, others[0]).filter(|&l| l != old)
    });
    for &h in &others {
        let name = format!("during-{h}");
        let created = lab.create_sleeping(h, &name, 0, &[]);
        assert!(created.ok(), "through n{h}: {}", created.stderr);
        assert_eq!(leader(&lab, h), Some(new), "n{h} follows n{new}");
    }

    // Healed: the old leader follows and holds what the majority wrote, and nothing else.
    lab.link(old, true);
    let names = lab.wait(old, "the old leader to catch up", WAIT, || {
        let run = services(&lab, old, &[]);
        let names: Vec<String> = json_lines(&run.stdout)
            .iter()
            .filter_map(|s| s["Name"].as_str().map(str::to_string))
            .collect();
        (run.ok() && names.len() == 3).then_some(names)
    });
    let mut want: Vec<String> = others.iter().map(|h| format!("during-{h}")).collect();
    want.push("before".into());
    let mut names = names;
    names.sort();
    want.sort();
    assert_eq!(names, want, "no divergence: the refused write is nowhere");
    assert_eq!(leader(&lab, old), Some(new));

    // A follower cut off: it stops forwarding to the leader it no longer hears, and says
    // it has no quorum, while the leader and the other member go on.
    let follower = (1..=3).find(|&h| h != new).expect("a follower");
    lab.link(follower, false);
    let run = lab.wait(
        follower,
        "the cut-off follower to refuse a write",
        WAIT,
        || {
            let run = lab.shoal(follower, &["service", "scale", "before=0"]);
            (!run.ok()).then_some(run)
        },
    );
    assert!(run.stderr.contains("no quorum"), "{}", run.stderr);
    assert!(
        run.stderr.contains(&lab.ip(new)),
        "names the leader: {}",
        run.stderr
    );
    lab.shoal_ok(new, &["service", "scale", "before=0"]);
    lab.link(follower, true);
    lab.wait(follower, "the follower back", WAIT, || {
        (leader(&lab, follower) == Some(new)).then_some(())
    });
}
