//! Role changes on real daemons (lab of 1 manager and 2 workers running 6 tasks): `node
//! promote` turns both workers into managers (a manager certificate, a Raft member, its node
//! key still sealed), the new majority survives kill -9 of the first manager, and `node
//! demote` of that manager makes it a worker again (worker certificate, out of Raft, its
//! Control API says it is not a manager). No container restarts on the way.

use std::time::Duration;

use shoal_pki::Role;
use shoal_tests::json_lines;
use shoal_tests::lab::{Lab, LAB_DATA};
use shoal_tests::require_lab;

const WAIT: Duration = Duration::from_secs(90);

/// `node ls` through `host`: hostname -> manager status ("" for a worker).
fn roles(lab: &Lab, host: usize) -> Option<Vec<(String, String)>> {
    let run = lab.shoal(host, &["node", "ls", "--format", "json"]);
    if !run.ok() {
        return None;
    }
    let mut nodes: Vec<(String, String)> = json_lines(&run.stdout)
        .iter()
        .map(|n| {
            let name = n["Hostname"].as_str().unwrap_or_default().to_string();
            let status = n["ManagerStatus"].as_str().unwrap_or_default().to_string();
            (name, status)
        })
        .collect();
    nodes.sort();
    Some(nodes)
}

fn role_in_certificate(host: usize) -> Option<Role> {
    let dir = std::path::PathBuf::from(format!("{LAB_DATA}/n{host}/shoald"));
    let certs = shoal_tests::node_certs(&dir).ok()?;
    certs.identity().ok().map(|i| i.role)
}

fn managers(nodes: &[(String, String)]) -> usize {
    nodes.iter().filter(|(_, s)| !s.is_empty()).count()
}

#[test]
fn promoted_workers_carry_the_swarm_and_a_demoted_manager_runs_on_as_a_worker() {
    require_lab!();
    let lab = Lab::up(1, 2).expect("lab comes up");
    let created = lab.create_sleeping(1, "idle", 6, &[]);
    assert!(created.ok(), "{}", created.stderr);
    let before = lab.wait(1, "6 containers", WAIT, || {
        let all = lab.task_containers();
        (all.len() == 6).then_some(all)
    });

    lab.shoal_ok(1, &["node", "promote", "n2", "n3"]);
    let nodes = lab.wait(1, "3 managers in node ls", WAIT, || {
        roles(&lab, 1).filter(|n| managers(n) == 3)
    });
    assert!(
        nodes.iter().any(|(n, s)| n == "n1" && s == "Leader"),
        "{nodes:?}"
    );
    for host in [2, 3] {
        lab.wait(host, "a manager certificate", WAIT, || {
            (role_in_certificate(host) == Some(Role::Manager)).then_some(())
        });
        // The promoted node answers Control calls itself now.
        lab.wait(host, "its own Control API", WAIT, || {
            roles(&lab, host).filter(|n| managers(n) == 3)
        });
    }

    // The majority of the new managers carries on without the first one.
    lab.stop(1);
    let leader = lab.wait(2, "a new leader among n2, n3", WAIT, || {
        lab.leader(2).filter(|l| l != "n1")
    });
    lab.shoal_ok(
        Lab::host_of(&leader),
        &["service", "scale", "--detach", "idle=7"],
    );
    lab.start(1);
    lab.wait(1, "7 containers", WAIT, || {
        (lab.task_containers().len() == 7).then_some(())
    });

    // Demoted, the first manager is a worker: out of Raft, a worker certificate, no
    // Control API of its own; its tasks run on.
    lab.shoal_ok(2, &["node", "demote", "n1"]);
    lab.wait(2, "2 managers in node ls", WAIT, || {
        roles(&lab, 2)
            .filter(|n| managers(n) == 2 && n.iter().any(|(h, s)| h == "n1" && s.is_empty()))
    });
    lab.wait(1, "a worker certificate", WAIT, || {
        (role_in_certificate(1) == Some(Role::Worker)).then_some(())
    });
    let refused = lab.wait(1, "n1 refusing Control calls", WAIT, || {
        let run = lab.shoal(1, &["node", "ls"]);
        (!run.ok() && run.stderr.contains("not a swarm manager")).then_some(run.stderr)
    });
    assert!(refused.contains("manager"), "{refused}");
    lab.shoal_ok(3, &["service", "scale", "--detach", "idle=6"]);
    let after = lab.wait(2, "6 containers", WAIT, || {
        let all = lab.task_containers();
        (all.len() == 6).then_some(all)
    });
    let kept = before
        .iter()
        .filter(|(id, started)| after.get(*id) == Some(started));
    assert!(
        kept.count() >= 5,
        "the first tasks kept their containers through promotion, kill and demotion:\n{before:#?}\n{after:#?}"
    );
}
