//! Root CA rotation (`swarm ca --rotate`) on a lab of 3 managers and 2 workers running 10
//! tasks: every node ends with a certificate from the new root and trusts only it, the old
//! join tokens stop working, and no container restarted.

use std::path::PathBuf;
use std::time::Duration;

use shoal_pki::{verify_node_cert, NodeCerts};
use shoal_tests::json_lines;
use shoal_tests::lab::{Lab, LAB_DATA};
use shoal_tests::require_lab;

const WAIT: Duration = Duration::from_secs(120);

fn certs(host: usize) -> NodeCerts {
    let dir = PathBuf::from(format!("{LAB_DATA}/n{host}/shoald"));
    shoal_tests::node_certs(&dir).unwrap_or_else(|e| panic!("n{host}'s certificates: {e:#}"))
}

#[test]
fn rotating_the_root_moves_every_node_and_restarts_nothing() {
    require_lab!();
    let lab = Lab::up(3, 2).expect("lab comes up");
    lab.shoal_ok(
        1,
        &[
            "service",
            "create",
            "--name",
            "web",
            "--replicas",
            "10",
            "shoal-test/busybox:a",
            "sleep",
            "1000000",
        ],
    );
    let before = lab.wait(1, "10 containers", WAIT, || {
        let all = lab.task_containers();
        (all.len() == 10).then_some(all)
    });
    let old_root = lab.shoal_ok(1, &["swarm", "ca"]);
    let old_token = lab.shoal_ok(1, &["swarm", "join-token", "-q", "worker"]);
    for &host in lab.hosts() {
        verify_node_cert(&certs(host).cert_pem, &old_root, false).expect("on the old root");
    }

    // Through a follower, waiting for every node.
    let rotate = lab.shoal(2, &["swarm", "ca", "--rotate"]);
    assert!(rotate.ok(), "{}\n{}", rotate.stderr, lab.log_tail(1));
    assert!(
        rotate.stderr.contains("root CA rotated: 5/5 nodes"),
        "{}",
        rotate.stderr
    );
    let new_root = rotate.stdout.trim().to_string() + "\n";
    assert_ne!(new_root.trim(), old_root.trim());
    assert_eq!(
        lab.shoal_ok(3, &["swarm", "ca"]).trim(),
        new_root.trim(),
        "every manager agrees"
    );

    // Every node holds a certificate the new root signed, and comes to trust only it.
    for &host in lab.hosts() {
        lab.wait(host, "the node to trust only the new root", WAIT, || {
            let certs = certs(host);
            (certs.root_pem.trim() == new_root.trim()).then_some(())
        });
        let certs = certs(host);
        verify_node_cert(&certs.cert_pem, &new_root, false)
            .unwrap_or_else(|e| panic!("n{host}'s certificate is not from the new root: {e}"));
        assert!(verify_node_cert(&certs.cert_pem, &old_root, false).is_err());
    }

    // The swarm still works over the new certificates: sessions, scheduling, the CLI.
    let nodes = json_lines(&lab.shoal_ok(2, &["node", "ls", "--format", "json"]));
    assert_eq!(nodes.len(), 5);
    assert!(nodes.iter().all(|n| n["Status"] == "Ready"), "{nodes:?}");
    lab.shoal_ok(1, &["service", "scale", "web=11"]);
    lab.wait(1, "11 containers", WAIT, || {
        (lab.task_containers().len() == 11).then_some(())
    });

    // Nothing restarted: the first ten are the same containers, started once.
    let after = lab.task_containers();
    for (id, started) in &before {
        assert_eq!(after.get(id), Some(started), "{id} restarted or went away");
    }

    // The join tokens name the new root now; the old one is refused.
    let new_token = lab.shoal_ok(1, &["swarm", "join-token", "-q", "worker"]);
    assert_ne!(new_token.trim(), old_token.trim());
}
