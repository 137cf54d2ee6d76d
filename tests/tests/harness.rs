//! Failover, forwarding, partitions (both ways and one way), agents and revocation on the
//! in-process harness ([`shoal_tests::harness`]): real Raft, mTLS, join path and Control
//! gate, the fake executor, links the test cuts. No Docker, no root: these run anywhere.
//! Every history the register clients record is checked for linearizability.

use std::time::{Duration, Instant};

use shoal_agent::executor::fake::FakeRun;
use shoal_pki::TlsClient;
use shoal_proto::{
    CreateServiceRequest, GetNodeRequest, ListNodesRequest, NodeRole, NodeState, Placement,
    RemoveNodeRequest, UpdateNodeRequest,
};
use shoal_tests::harness::Harness;
use shoal_tests::linear::Verdict;
use shoal_tests::registers::{self, Via, Workload};

const WAIT: Duration = Duration::from_secs(30);

fn via(h: &Harness, i: usize) -> Via {
    let certs = h.managers[0].tls.certs();
    Via::Manager {
        addr: h.managers[i].addr.clone(),
        tls: TlsClient::new(&certs).expect("client tls"),
    }
}

/// Register clients through the listed managers, recorded.
struct Load(Workload);

impl Load {
    async fn start(h: &Harness, through: &[usize]) -> Load {
        let vias: Vec<Via> = through.iter().map(|&i| via(h, i)).collect();
        Load(Workload::start(&vias, 3).await.expect("registers"))
    }

    async fn more_writes(&self, n: u64) {
        let target = self.0.acknowledged() + n;
        let deadline = Instant::now() + WAIT;
        while self.0.acknowledged() < target {
            assert!(
                Instant::now() < deadline,
                "writes stalled: {}",
                self.0.summary()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stop, read every register through `read_through`, and check the whole history.
    async fn check(self, h: &Harness, read_through: &[usize]) -> String {
        let vias: Vec<Via> = read_through.iter().map(|&i| via(h, i)).collect();
        let (verdict, ops, tally) = self.0.finish(&vias).await.expect("final reads");
        assert_eq!(verdict, Verdict::Linearizable, "{tally}");
        format!("{ops} operations ({tally})")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crashed_leader_is_replaced_and_no_acknowledged_write_is_lost() {
    let h = Harness::start(3, 0).await.expect("harness");
    let load = Load::start(&h, &[0, 1, 2]).await;
    load.more_writes(20).await;
    let (old, new, took) = h.crash_leader(WAIT).await.expect("a new leader");
    println!(
        "harness: m{} crashed, m{} leads {:.2} s later",
        old + 1,
        new + 1,
        took.as_secs_f64()
    );
    load.more_writes(10).await;
    let checked = load.check(&h, &[new]).await;
    println!("harness failover: {checked}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_cut_off_both_ways_or_one_way_refuses_and_the_majority_goes_on() {
    let h = Harness::start(3, 0).await.expect("harness");
    let load = Load::start(&h, &[0, 1, 2]).await;
    load.more_writes(20).await;
    for (round, one_way) in [false, true].into_iter().enumerate() {
        let old = h.wait_for_one_leader(WAIT).await.expect("one leader");
        let name = h.managers[old].name.clone();
        if one_way {
            // What it sends is lost; it still hears the others.
            for m in &h.managers {
                if m.name != name {
                    h.net.cut(&name, &m.name);
                }
            }
        } else {
            h.net.isolate(&name);
        }
        let cut = Instant::now();
        let mut control = registers::connect_via(&via(&h, old)).await.expect("client");
        let refused = control
            .create_service(CreateServiceRequest {
                spec: Some(shoal_tests::sleeping_service(&format!("cut-{round}"), 0)),
            })
            .await
            .expect_err("a write through the cut-off leader is refused");
        let took = cut.elapsed();
        // Cut off both ways it says it has no quorum; hearing the others (one way), it
        // steps down on their election and says it cannot forward to the new leader.
        assert!(
            refused.message().contains("no quorum") || refused.message().contains("cannot forward"),
            "the refusal says why: {refused:?}"
        );
        assert!(took < Duration::from_secs(5), "refused only after {took:?}");
        let new = h
            .wait_for_leader(Some(old), WAIT)
            .await
            .expect("the majority elects");
        load.more_writes(10).await;
        h.net.heal();
        println!(
            "harness partition {round} (one way: {one_way}): m{} refused in {:.2} s, m{} leads the majority",
            old + 1,
            took.as_secs_f64(),
            new + 1
        );
        load.more_writes(10).await;
    }
    let checked = load.check(&h, &[0, 1, 2]).await;
    println!("harness partitions: {checked}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agents_run_tasks_through_a_follower_and_a_removed_agent_stays_out() {
    let h = Harness::start(3, 2).await.expect("harness");
    let leader = h.wait_for_leader(None, WAIT).await.expect("a leader");
    let follower = (0..3).find(|&i| i != leader).expect("a follower");
    // Written through a follower (forwarded to the leader).
    let mut control = registers::connect_via(&via(&h, follower))
        .await
        .expect("client");
    // On the agents only (managers run their own agents, and tasks, as shoald's do).
    let mut spec = shoal_tests::sleeping_service("web", 6);
    if let Some(task) = spec.task.as_mut() {
        task.placement = Some(Placement {
            constraints: vec!["node.role==worker".into()],
            ..Default::default()
        });
    }
    control
        .create_service(CreateServiceRequest { spec: Some(spec) })
        .await
        .expect("created through a follower");
    let running = |h: &Harness| {
        h.engine
            .containers()
            .into_iter()
            .filter(|c| c.run == FakeRun::Running)
            .count()
    };
    let deadline = Instant::now() + WAIT;
    while running(&h) < 6 {
        assert!(
            Instant::now() < deadline,
            "6 containers never ran: {:?}",
            h.engine.containers()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Remove agent a2 for good: its tasks move to a1, its certificate is refused.
    let gone = h.agents[1].node_id.clone();
    let on_gone = h
        .engine
        .containers()
        .iter()
        .filter(|c| c.run == FakeRun::Running && c.node_id == gone)
        .count();
    assert!(on_gone > 0, "the scheduler spreads over both agents");
    control
        .remove_node(RemoveNodeRequest {
            node: gone.clone(),
            force: true,
        })
        .await
        .expect("node rm --force");
    let on = |h: &Harness, node: &str| {
        h.engine
            .containers()
            .into_iter()
            .filter(|c| c.run == FakeRun::Running && c.node_id == node)
            .count()
    };
    let deadline = Instant::now() + WAIT;
    while on(&h, &gone) > 0 || on(&h, &h.agents[0].node_id) < 6 {
        assert!(
            Instant::now() < deadline,
            "tasks did not leave the removed agent: {:?}",
            h.engine.containers()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let nodes = control
        .list_nodes(ListNodesRequest::default())
        .await
        .expect("node ls")
        .into_inner()
        .nodes;
    assert!(
        nodes.iter().all(|n| n.id != gone),
        "node ls never shows it again"
    );
    // The agent that stays hears of the removal and refuses a2 on its own ports (tunnels).
    let refused = h.agents[0].tls.refused();
    let deadline = Instant::now() + WAIT;
    while !refused.contains(&gone) {
        assert!(Instant::now() < deadline, "a1 never heard a2 was removed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicated_raft_messages_lose_nothing_and_change_nothing() {
    let h = Harness::start(3, 0).await.expect("harness");
    for a in &h.managers {
        for b in &h.managers {
            if a.name != b.name {
                h.net.duplicate(&a.name, &b.name);
            }
        }
    }
    let load = Load::start(&h, &[0, 1, 2]).await;
    load.more_writes(30).await;
    let (_, new, _) = h.crash_leader(WAIT).await.expect("a new leader");
    load.more_writes(20).await;
    let checked = load.check(&h, &[new]).await;
    let twice = h.net.duplicated();
    assert!(twice > 100, "only {twice} Raft messages were sent twice");
    println!("harness, {twice} Raft messages sent twice: {checked}");
}

/// Wait until manager `i` has applied what leader `leader` has.
async fn caught_up(h: &Harness, i: usize, leader: usize) {
    let deadline = Instant::now() + WAIT;
    loop {
        let target = h.managers[leader].manager.raft().status().last_applied;
        if target.is_some() && h.managers[i].manager.raft().status().last_applied >= target {
            return;
        }
        assert!(Instant::now() < deadline, "m{} never caught up", i + 1);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `node ls` through manager `i` until `done` holds for it (up to WAIT).
async fn nodes_until(
    h: &Harness,
    i: usize,
    what: &str,
    done: impl Fn(&[shoal_proto::Node]) -> bool,
) -> Vec<shoal_proto::Node> {
    let mut control = h.control(i).await.expect("control");
    let deadline = Instant::now() + WAIT;
    loop {
        let nodes = control
            .list_nodes(ListNodesRequest::default())
            .await
            .expect("node ls")
            .into_inner()
            .nodes;
        if done(&nodes) {
            return nodes;
        }
        assert!(Instant::now() < deadline, "{what}: {nodes:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn members_restarted_on_their_disks_catch_up_and_lose_nothing() {
    let mut h = Harness::start(3, 0).await.expect("harness");
    let load = Load::start(&h, &[0, 1, 2]).await;
    load.more_writes(20).await;

    // The leader crashes, the others go on, it comes back on its own disk and follows.
    let (old, new, _) = h.crash_leader(WAIT).await.expect("a new leader");
    load.more_writes(20).await;
    h.restart_manager(old).await.expect("restart on its disk");
    caught_up(&h, old, new).await;
    assert_eq!(
        h.wait_for_one_leader(WAIT).await.expect("one leader"),
        new,
        "a member back from a crash does not depose a live leader"
    );
    load.more_writes(10).await;

    // Every member crashes at once and comes back: a leader again, nothing lost.
    for i in 0..3 {
        h.crash_manager(i).await;
    }
    for i in 0..3 {
        h.restart_manager(i).await.expect("restart on its disk");
    }
    let leader = h
        .wait_for_one_leader(WAIT)
        .await
        .expect("a leader after all restarted");
    load.more_writes(10).await;
    let checked = load.check(&h, &[old, leader]).await;
    println!("harness restarts: {checked}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_demoted_leader_leaves_raft_and_the_others_go_on() {
    let h = Harness::start(3, 0).await.expect("harness");
    let load = Load::start(&h, &[0, 1, 2]).await;
    load.more_writes(20).await;
    let leader = h.wait_for_one_leader(WAIT).await.expect("a leader");
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let mut control = h.control(others[0]).await.expect("control");
    // Refused until the others are reachable (their agents' sessions up): wait, as a user would.
    let ready = |nodes: &[shoal_proto::Node]| {
        let ready = nodes
            .iter()
            .filter(|n| n.manager_status.is_some() && n.state() == NodeState::Ready);
        ready.count() == 3
    };
    nodes_until(&h, others[0], "managers never ready", ready).await;
    // Read, then write guarded by the version, as `node demote` does; the node may change
    // in between (its session, its leader flag): read again then, as a user would retry.
    let deadline = Instant::now() + WAIT;
    loop {
        let node = control
            .get_node(GetNodeRequest {
                node: h.managers[leader].node_id.clone(),
            })
            .await
            .expect("node inspect")
            .into_inner()
            .node
            .expect("the node");
        let mut spec = node.spec.clone().unwrap_or_default();
        spec.role = NodeRole::Worker as i32;
        let demoted = control
            .update_node(UpdateNodeRequest {
                node: node.id.clone(),
                version: node.meta.as_ref().map_or(0, |m| m.version),
                spec: Some(spec),
            })
            .await;
        match demoted {
            Ok(_) => break,
            Err(e) if e.message().contains("out of sequence") && Instant::now() < deadline => {}
            Err(e) => panic!("node demote: {e}"),
        }
    }

    // The role manager takes it out of the voters; one of the others leads.
    let demoted_raft_id = h.managers[leader].manager.config().raft_id;
    let deadline = Instant::now() + WAIT;
    let new = loop {
        let now = h.leaders().into_iter().find(|l| *l != leader);
        if let Some(new) = now {
            let voters = h.managers[new].manager.raft().status().voters;
            if voters.len() == 2 && voters.iter().all(|(id, _)| *id != demoted_raft_id) {
                break new;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the demoted leader is still a voter"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let two = |nodes: &[shoal_proto::Node]| {
        nodes.iter().filter(|n| n.manager_status.is_some()).count() == 2
    };
    nodes_until(&h, new, "node ls still shows 3 managers", two).await;
    load.more_writes(20).await;
    let checked = load.check(&h, &[new]).await;
    println!(
        "harness, leader m{} demoted, m{} leads: {checked}",
        leader + 1,
        new + 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_whose_session_lands_on_a_lagging_follower_is_not_told_it_left() {
    let mut h = Harness::start(3, 0).await.expect("harness");
    let leader = h.wait_for_one_leader(WAIT).await.expect("a leader");
    let lagging = (0..3).find(|&i| i != leader).expect("a follower");
    // The follower hears nothing more from the other managers (agents still reach it), so
    // the node the agent is about to join as never reaches its store.
    let name = h.managers[lagging].name.clone();
    for other in h.managers.iter().filter(|m| m.name != name) {
        h.net.cut(&name, &other.name);
        h.net.cut(&other.name, &name);
    }
    h.add_agent_with(leader, &[lagging, leader])
        .await
        .expect("the agent joins through the leader");
    let agent = h.agents[0].node_id.clone();
    // Sent on by the follower (it does not know the node, and is not the leader), the
    // agent's session opens on the leader: the node is ready, not told it was removed.
    let ready = |nodes: &[shoal_proto::Node]| {
        nodes
            .iter()
            .any(|n| n.id == agent && n.state() == NodeState::Ready)
    };
    nodes_until(&h, leader, "the agent never opened its session", ready).await;
    let lagging_store = &h.managers[lagging].manager;
    assert!(
        lagging_store.store().view(|r| r.node(&agent).is_none()),
        "the follower really lagged"
    );
}
