//! The multi-host lab itself (deploy/lab.sh): hosts are network namespaces, each with its
//! own dockerd and shoald, on a private underlay.
//!
//! `lab_hosts_come_up` checks the hosts without a swarm; `lab_cluster_forms` joins them.

use std::time::Duration;

use shoal_tests::lab::Lab;
use shoal_tests::{json_lines, require_lab, wait_until};

const WAIT: Duration = Duration::from_secs(60);

fn no_lab_namespaces() -> bool {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    !out.lines().any(|l| l.starts_with("shl-"))
}

fn ping(lab: &Lab, from: usize, to_ip: &str) -> bool {
    lab.exec(from, &["ping", "-c1", "-W1", to_ip]).ok()
}

#[test]
fn lab_hosts_come_up() {
    require_lab!();
    let lab = Lab::up_no_join(1, 2).expect("the lab comes up");
    assert_eq!(lab.hosts(), &[1, 2, 3]);

    // Addresses, and every host's engine and shoald answer on its own sockets.
    for host in lab.hosts().to_vec() {
        assert_eq!(lab.ip(host), format!("10.78.0.{}", 10 + host));
        let name = lab.docker(host, &["info", "--format", "{{.Name}}"]);
        assert!(name.ok(), "n{host}'s dockerd: {}", name.stderr);
        assert_eq!(name.stdout.trim(), format!("n{host}"));
        let images = lab.docker(host, &["image", "inspect", "shoal-test/busybox:a"]);
        assert!(
            images.ok(),
            "n{host} lacks the test image: {}",
            images.stderr
        );
        let info = lab.shoal_ok(host, &["info"]);
        assert!(info.contains(&format!("Name: n{host}")), "{info}");
    }

    // Three separate engines, not one shared.
    let ids: std::collections::BTreeSet<String> = lab
        .hosts()
        .iter()
        .map(|&h| lab.docker(h, &["info", "--format", "{{.ID}}"]).stdout)
        .collect();
    assert_eq!(ids.len(), 3, "engine ids: {ids:?}");

    // The underlay: n1 reaches n2 and n3.
    assert!(ping(&lab, 1, &lab.ip(2)), "n1 cannot ping n2");
    assert!(ping(&lab, 1, &lab.ip(3)), "n1 cannot ping n3");

    // n1 initialised a swarm and listens for nodes on its underlay address, reachable from n2.
    let info = lab.shoal_ok(1, &["info"]);
    assert!(info.contains("Swarm: active"), "{info}");
    assert!(info.contains(&lab.addr(1)), "{info}");
    let connect = format!("exec 3<>/dev/tcp/{}/4242", lab.ip(1));
    let tcp = lab.exec(2, &["bash", "-c", &connect]);
    assert!(tcp.ok(), "n2 cannot connect to n1:4242: {}", tcp.stderr);
    assert!(lab.shoal_ok(2, &["info"]).contains("Swarm: inactive"));

    // A container on n1 shows up in n1's engine only.
    lab.shoal_ok(
        1,
        &[
            "service",
            "create",
            "--name",
            "web",
            "--replicas",
            "1",
            "shoal-test/busybox:a",
            "sleep",
            "100000",
        ],
    );
    let running = |h: usize| -> usize {
        lab.docker(h, &["ps", "-q", "--filter", "label=shoal.service.name=web"])
            .stdout
            .lines()
            .count()
    };
    lab.wait(1, "web's container on n1", WAIT, || {
        (running(1) == 1).then_some(())
    });
    assert_eq!(running(2), 0);
    assert_eq!(running(3), 0);

    // stop / start: the container outlives its shoald, which comes back to the same swarm.
    lab.stop(1);
    assert!(
        !lab.shoal(1, &["info"]).ok(),
        "shoald still answers after stop"
    );
    assert_eq!(running(1), 1);
    lab.start(1);
    lab.wait(1, "web running again after restart", WAIT, || {
        let tasks = json_lines(
            &lab.shoal(1, &["service", "ps", "--format", "json", "web"])
                .stdout,
        );
        tasks
            .iter()
            .any(|t| {
                t["CurrentState"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("Running"))
            })
            .then_some(())
    });
    assert_eq!(running(1), 1);

    // link down cuts a host off the underlay; up restores it.
    lab.link(2, false);
    assert!(
        !ping(&lab, 1, &lab.ip(2)),
        "n2 still reachable with its link down"
    );
    lab.link(2, true);
    wait_until("n2 reachable again", Duration::from_secs(10), || {
        ping(&lab, 1, &lab.ip(2)).then_some(())
    })
    .expect("n2's link comes back");

    drop(lab);
    assert!(no_lab_namespaces(), "lab.sh down left shl-* namespaces");
    assert!(!std::path::Path::new(shoal_tests::lab::LAB_RUN).exists());
    assert!(!std::path::Path::new(shoal_tests::lab::LAB_DATA).exists());
}

/// The hosts join n1's swarm; a cut link shows as a down node; a worker comes and goes.
#[test]
fn lab_cluster_forms() {
    require_lab!();
    let mut lab = Lab::up(1, 2).expect("the lab comes up with every host joined");
    let ready = |lab: &Lab, want: usize| {
        let nodes = json_lines(&lab.shoal(1, &["node", "ls", "--format", "json"]).stdout);
        (nodes.iter().filter(|n| n["Status"] == "Ready").count() == want).then_some(())
    };
    lab.wait(1, "3 nodes ready", WAIT, || ready(&lab, 3));

    // A host that loses its link is seen down, and ready again when the link returns.
    lab.link(3, false);
    lab.wait(1, "n3 down", WAIT, || ready(&lab, 2));
    lab.link(3, true);
    lab.wait(1, "n3 ready again", WAIT, || ready(&lab, 3));

    let n4 = lab.add_worker();
    assert_eq!(n4, 4);
    lab.wait(1, "4 nodes ready", WAIT, || ready(&lab, 4));
    lab.remove(n4);
    lab.wait(1, "n4 gone from ready", WAIT, || ready(&lab, 3));
}
