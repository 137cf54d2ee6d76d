//! Trust, on loopback: a node's identity is its certificate, never what a message says.
//!
//! The attack a read of the code found (issue 11): a worker holding its own certificate
//! asked the manager for a session as another node and got that node's assignments, their
//! environment included, and blanked its description so the constraint enforcer shut its
//! tasks down. Every such request is refused now; this test keeps the attack.

use std::time::Duration;

use shoal_proto::{
    CaClient, DispatcherClient, GetRootCertificateRequest, HeartbeatRequest,
    ListenSubscriptionsRequest, LogBrokerClient, RenewNodeCertificateRequest, SessionRequest,
};
use shoal_tests::{json_lines, require_env, Node};

const LONG: Duration = Duration::from_secs(60);

fn join_worker(manager: &Node, prefix: &str) -> Node {
    let worker = Node::start(prefix).expect("shoald starts");
    join(&worker, manager);
    worker
}

/// A channel to `manager` presenting `certs` (the handshake must pass), on `rt`.
fn dial_as(
    rt: &tokio::runtime::Runtime,
    manager: &Node,
    certs: &shoal_pki::NodeCerts,
) -> tonic::transport::Channel {
    rt.block_on(async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tls = shoal_pki::TlsClient::new(certs).expect("client");
        shoal_pki::channel(&manager.addr(), &tls)
            .await
            .expect("the certificate passes the handshake")
    })
}

/// `swarm join` with the manager's current worker token; it must succeed.
fn join(worker: &Node, manager: &Node) {
    let token = manager.shoal_ok(&["swarm", "join-token", "-q", "worker"]);
    let out = worker.shoal(&[
        "swarm",
        "join",
        "--token",
        token.trim(),
        "--listen-addr",
        "127.0.0.1:0",
        &manager.addr(),
    ]);
    assert_eq!(out.code, 0, "{}\n{}", out.stderr, worker.log_tail());
}

fn hostname_of(manager: &Node, node_id: &str) -> String {
    json_lines(&manager.shoal_ok(&["node", "ls", "--format", "json"]))
        .iter()
        .find(|n| n["ID"].as_str().is_some_and(|id| node_id.starts_with(id)))
        .map(|n| n["Hostname"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

#[test]
fn a_worker_cannot_speak_for_another_node() {
    require_env!();
    let m = Node::start("m").expect("shoald starts");
    m.init();
    let w2 = join_worker(&m, "w2");
    let w3 = join_worker(&m, "w3");
    let w3_id = w3.node_id();
    m.shoal_ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "pinned",
        "--replicas",
        "2",
        "--env",
        "TOKEN=s3cret-of-w3",
        "--constraint",
        &format!("node.hostname=={}", w3.name),
        "shoal-test/busybox:a",
        "sleep",
        "100000",
    ]);
    m.wait("both tasks running on w3", LONG, || {
        let running = m.running_tasks("pinned");
        (running.len() == 2 && running.iter().all(|t| t["Node"] == w3.name.as_str())).then_some(())
    });

    let certs = shoal_tests::node_certs(&w2.data_dir()).expect("w2's certificates");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let channel = dial_as(&rt, &m, &certs);
    rt.block_on(async {
        let mut dispatcher = DispatcherClient::new(channel.clone());

        // A session as w3, with an empty description: refused, naming both nodes.
        let err = dispatcher
            .session(SessionRequest {
                node_id: w3_id.clone(),
                description: None,
                addr: String::new(),
            })
            .await
            .expect_err("a session for another node");
        assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
        assert!(err.message().contains(&w3_id), "{err}");

        // Its own session works, and carries none of w3's assignments.
        let mut session = dispatcher
            .session(SessionRequest {
                node_id: String::new(),
                description: None,
                addr: String::new(),
            })
            .await
            .expect("w2's own session")
            .into_inner();
        let first = session
            .message()
            .await
            .expect("no error")
            .expect("a first message");
        let mut assignments = dispatcher
            .assignments(shoal_proto::AssignmentsRequest {
                session_id: first.session_id.clone(),
            })
            .await
            .expect("w2's assignments")
            .into_inner();
        let mine = assignments
            .message()
            .await
            .expect("no error")
            .expect("a first set");
        assert!(
            mine.tasks.iter().all(|t| t.node_id != w3_id),
            "w3's tasks handed to w2: {:?}",
            mine.tasks
        );
        assert!(!format!("{mine:?}").contains("s3cret-of-w3"));

        // A session id is no credential: one that is not w2's is refused.
        let err = dispatcher
            .heartbeat(HeartbeatRequest {
                session_id: "not-a-session".into(),
            })
            .await
            .expect_err("an unknown session");
        assert_eq!(err.code(), tonic::Code::NotFound, "{err}");

        // The log broker takes the node from the certificate too.
        let err = LogBrokerClient::new(channel)
            .listen_subscriptions(ListenSubscriptionsRequest {
                node_id: w3_id.clone(),
            })
            .await
            .expect_err("a log listener for another node");
        assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
    });

    // w3 is untouched: its name, its tasks (still the same two, running).
    assert_eq!(hostname_of(&m, &w3_id), w3.name);
    let running = m.running_tasks("pinned");
    assert_eq!(running.len(), 2, "{running:?}");
    let all = m.tasks("pinned");
    assert_eq!(all.len(), 2, "no task was replaced: {all:?}");
}

#[test]
fn a_removed_worker_stays_out_even_after_a_restart() {
    require_env!();
    let m = Node::start("m").expect("shoald starts");
    m.init();
    let mut w = join_worker(&m, "w");
    let w_id = w.node_id();
    let certs = shoal_tests::node_certs(&w.data_dir()).expect("w's certificates");
    m.shoal_ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "on-w",
        "--constraint",
        &format!("node.hostname=={}", w.name),
        "shoal-test/busybox:a",
        "sleep",
        "100000",
    ]);
    m.wait("the task running on w", LONG, || {
        (m.running_tasks("on-w").len() == 1).then_some(())
    });

    // Removed while it runs: its session ends, it says so, and its containers go.
    m.shoal_ok(&["node", "rm", "--force", &w.name]);
    w.wait("w to know it was removed", LONG, || {
        w.shoal_ok(&["info"]).contains("removed").then_some(())
    });
    w.wait("w's containers gone", LONG, || {
        w.containers(true).is_empty().then_some(())
    });
    assert!(
        w.log_tail().contains("is not part of the swarm"),
        "{}",
        w.log_tail()
    );

    // Restarted, it is still out, and never shows in `node ls` again.
    w.kill9();
    w.spawn().expect("shoald restarts");
    w.wait("w refused again after its restart", LONG, || {
        w.shoal_ok(&["info"]).contains("removed").then_some(())
    });
    let listed = m.shoal_ok(&["node", "ls", "--format", "json"]);
    assert!(!listed.contains(&w.name), "{listed}");

    // Its certificate opens nothing, and cannot be renewed: the removal is recorded.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let channel = dial_as(&rt, &m, &certs);
    rt.block_on(async {
        let refused = |err: tonic::Status, what: &str| {
            assert_eq!(err.code(), tonic::Code::PermissionDenied, "{what}: {err}");
            assert!(
                err.message().contains("is not part of the swarm"),
                "{what}: {err}"
            );
        };
        let err = DispatcherClient::new(channel.clone())
            .session(SessionRequest {
                node_id: w_id.clone(),
                description: None,
                addr: String::new(),
            })
            .await
            .expect_err("a removed node's session");
        refused(err, "session");
        let err = CaClient::new(channel.clone())
            .renew_node_certificate(RenewNodeCertificateRequest {
                csr_pem: String::new(),
            })
            .await
            .expect_err("a removed node's renewal");
        refused(err, "renewal");
        let err = CaClient::new(channel)
            .get_root_certificate(GetRootCertificateRequest {})
            .await
            .expect_err("even what anyone may call");
        refused(err, "root certificate");
    });

    // Only leaving and joining again with a token brings it back, as a new node.
    w.shoal_ok(&["swarm", "leave", "--force"]);
    join(&w, &m);
    assert_ne!(w.node_id(), w_id, "a new node");
}
