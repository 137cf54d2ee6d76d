//! Joining, on loopback: tokens, certificates and their refusals. Two shoalds share this
//! machine's Docker Engine (each only touches containers labelled with its own node id).

use shoal_tests::{require_env, Node};

fn token(manager: &Node, role: &str) -> String {
    manager
        .shoal_ok(&["swarm", "join-token", "-q", role])
        .trim()
        .to_string()
}

fn join(node: &Node, token: &str, addr: &str) -> shoal_tests::Run {
    node.shoal(&[
        "swarm",
        "join",
        "--token",
        token,
        "--listen-addr",
        "127.0.0.1:0",
        addr,
    ])
}

#[test]
fn workers_join_with_the_current_token_only() {
    require_env!();
    let m = Node::start("m").expect("shoald starts");
    m.init();
    let old = token(&m, "worker");
    assert!(old.starts_with("SHTKN-1-"), "{old}");

    // Rotation: the old token is refused, with a message saying so; nothing changes.
    m.shoal_ok(&["swarm", "join-token", "--rotate", "worker"]);
    let new = token(&m, "worker");
    assert_ne!(old, new);
    let w = Node::start("w").expect("shoald starts");
    let run = join(&w, &old, &m.addr());
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("invalid join token"), "{}", run.stderr);
    assert!(
        w.shoal_ok(&["info"]).contains("Swarm: inactive"),
        "a refused join leaves the node out"
    );

    // No manager at the address.
    let run = join(&w, &new, "127.0.0.1:1");
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("cannot reach"), "{}", run.stderr);

    // A token of another swarm.
    let other = Node::start("o").expect("shoald starts");
    other.init();
    let run = join(&w, &token(&other, "worker"), &m.addr());
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("Error:"), "{}", run.stderr);
    assert!(w.shoal_ok(&["info"]).contains("Swarm: inactive"));

    // The current token works; the worker shows up as a ready worker.
    let out = join(&w, &new, &m.addr());
    assert_eq!(out.code, 0, "{}\n{}", out.stderr, w.log_tail());
    assert!(out.stdout.contains("as a worker"), "{}", out.stdout);
    let name = w.name.clone();
    m.wait(
        "the worker ready in node ls",
        std::time::Duration::from_secs(30),
        || {
            let nodes = shoal_tests::json_lines(&m.shoal_ok(&["node", "ls", "--format", "json"]));
            nodes
                .iter()
                .any(|n| n["Hostname"] == name.as_str() && n["Status"] == "Ready")
                .then_some(())
        },
    );

    // Its name is taken now: another node with the same name is refused.
    let twin = Node::start_named(&w.name).expect("shoald starts");
    let run = join(&twin, &new, &m.addr());
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("already in use"), "{}", run.stderr);

    // A worker is no manager: the Control API is not served to it.
    let run = w.shoal(&["node", "ls"]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("not a swarm manager"), "{}", run.stderr);

    // Nor does the manager's port serve it to a worker's certificate, or to none.
    let worker_certs = shoal_tests::node_certs(&w.data_dir()).expect("the worker's certificates");
    let manager_addr = m.addr();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tls = shoal_pki::TlsClient::new(&worker_certs).expect("client");
        let channel = shoal_pki::channel(&manager_addr, &tls)
            .await
            .expect("the TLS handshake itself succeeds");
        let err = shoal_proto::ControlClient::new(channel)
            .list_nodes(shoal_proto::ListNodesRequest {})
            .await
            .expect_err("a worker may not call Control");
        assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
        let anonymous = shoal_pki::TlsClient::anonymous(&worker_certs.root_pem).expect("client");
        let channel = shoal_pki::channel(&manager_addr, &anonymous)
            .await
            .expect("handshake");
        let err = shoal_proto::ControlClient::new(channel)
            .list_nodes(shoal_proto::ListNodesRequest {})
            .await
            .expect_err("no certificate, no Control");
        assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
    });
}

#[test]
fn certificates_renew_before_they_expire() {
    require_env!();
    let m = Node::start("m").expect("shoald starts");
    m.shoal_ok(&[
        "swarm",
        "init",
        "--listen-addr",
        "127.0.0.1:0",
        "--cert-expiry",
        "20s",
    ]);
    let mut w = Node::start("w").expect("shoald starts");
    let out = join(&w, &token(&m, "worker"), &m.addr());
    assert_eq!(out.code, 0, "{}", out.stderr);
    let cert = |n: &Node| {
        std::fs::read_to_string(n.data_dir().join("certificates/node.crt")).unwrap_or_default()
    };
    let (first_m, first_w) = (cert(&m), cert(&w));
    let expires = shoal_pki::not_after(&first_w).expect("a readable certificate");
    let long = std::time::Duration::from_secs(60);
    m.wait("the manager's certificate renewed", long, || {
        (cert(&m) != first_m).then_some(())
    });
    w.wait("the worker's certificate renewed", long, || {
        (cert(&w) != first_w).then_some(())
    });
    assert!(shoal_pki::not_after(&cert(&w)).expect("readable") > expires);

    // Past the first certificate's end, a restarted worker still gets in with its new one.
    w.wait("the first certificate to expire", long, || {
        (std::time::SystemTime::now() > expires).then_some(())
    });
    w.kill9();
    w.spawn().expect("shoald restarts");
    m.shoal_ok(&[
        "service",
        "create",
        "--name",
        "both",
        "--replicas",
        "2",
        "shoal-test/busybox:a",
        "sleep",
        "100000",
    ]);
    let name = w.name.clone();
    m.wait("a task running on the restarted worker", long, || {
        m.running_tasks("both")
            .iter()
            .any(|t| t["Node"] == name.as_str())
            .then_some(())
    });
}
