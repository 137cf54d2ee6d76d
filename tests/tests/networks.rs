//! Overlay network objects through the CLI, on one node: create, list, inspect, attach,
//! the leader's allocation (subnets, VIPs, task addresses) and the refusals.
//! The data plane (devices, DNS, VIP balancing) is tested on lab hosts.

use std::time::Duration;

use serde_json::Value;
use shoal_tests::{json_lines, require_env, Node};

const WAIT: Duration = Duration::from_secs(60);

fn inspect(node: &Node, what: &str, name: &str) -> Value {
    let out = node.shoal_ok(&[what, "inspect", name]);
    let all: Value = serde_json::from_str(&out).expect("inspect prints JSON");
    all[0].clone()
}

#[test]
fn networks_are_allocated_attached_and_refused_with_reasons() {
    require_env!();
    let node = Node::start("net").expect("shoald starts");
    node.shoal_ok(&[
        "swarm",
        "init",
        "--listen-addr",
        "127.0.0.1:0",
        "--default-addr-pool",
        "10.96.0.0/16",
        "--default-addr-pool-mask-length",
        "26",
    ]);
    // The routing mesh's network exists from init on, from the pool.
    let ingress = inspect(&node, "network", "ingress");
    assert_eq!(ingress["Ingress"], true);
    assert_eq!(ingress["IPAM"]["Config"][0]["Subnet"], "10.96.0.0/26");

    let front_id = node
        .shoal_ok(&[
            "network",
            "create",
            "-d",
            "overlay",
            "--subnet",
            "10.20.0.0/24",
            "front",
        ])
        .trim()
        .to_string();
    let overlap = node.shoal(&["network", "create", "--subnet", "10.20.0.0/16", "back"]);
    assert_eq!(overlap.code, 1);
    assert_eq!(
        overlap.stderr.trim(),
        "Error: network back: subnet 10.20.0.0/16 overlaps subnet 10.20.0.0/24 of network front"
    );
    let falsely = node.shoal(&["network", "create", "--opt", "encrypted=false", "back"]);
    assert_eq!(falsely.code, 1, "an ambiguous encryption option is refused");
    assert!(
        falsely.stderr.contains("give --opt encrypted"),
        "{}",
        falsely.stderr
    );
    node.shoal_ok(&["network", "create", "back"]);
    let back = inspect(&node, "network", "back");
    assert_eq!(back["IPAM"]["Config"][0]["Subnet"], "10.96.0.64/26");
    assert_ne!(
        back["Options"]["com.docker.network.driver.overlay.vxlanid_list"],
        ingress["Options"]["com.docker.network.driver.overlay.vxlanid_list"]
    );
    let names: Vec<String> = json_lines(&node.shoal_ok(&["network", "ls", "--format", "json"]))
        .iter()
        .map(|n| n["Name"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(names, ["back", "front", "ingress"]);
    node.shoal_ok(&["network", "create", "--opt", "encrypted", "sec"]);
    let sec = inspect(&node, "network", "sec");
    assert!(
        sec["Options"].get("encrypted").is_some(),
        "{}",
        sec["Options"]
    );
    node.shoal_ok(&["network", "rm", "sec"]);

    // A service on a network that does not exist changes nothing.
    let missing = node.shoal(&[
        "service",
        "create",
        "--name",
        "lost",
        "--network",
        "nope",
        "shoal-test/busybox:a",
    ]);
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("network nope not found"),
        "{}",
        missing.stderr
    );

    node.shoal_ok(&[
        "service",
        "create",
        "--name",
        "web",
        "--replicas",
        "2",
        "--network",
        "front",
        "--network",
        "name=back,alias=www",
        "shoal-test/busybox:a",
        "sleep",
        "100000",
    ]);
    node.wait("2 running tasks", WAIT, || {
        (node.running_tasks("web").len() == 2).then_some(())
    });
    let web = inspect(&node, "service", "web");
    let vips = web["Endpoint"]["VirtualIPs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(vips.len(), 2, "{web}");
    assert_eq!(vips[0]["NetworkID"], front_id.as_str());
    assert_eq!(vips[0]["Addr"], "10.20.0.2/24");
    let networks = web["Spec"]["TaskTemplate"]["Networks"].clone();
    assert_eq!(networks[1]["Aliases"][0], "www", "{networks}");

    // Every task has its own address on both networks, none shared with the VIPs.
    let mut seen: Vec<String> = vips
        .iter()
        .map(|v| v["Addr"].as_str().unwrap_or_default().to_string())
        .collect();
    for task in node.running_tasks("web") {
        let attachments = task["NetworksAttachments"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(attachments.len(), 2, "{task}");
        for a in attachments {
            let addr = a["Addresses"][0].as_str().unwrap_or_default().to_string();
            assert!(!seen.contains(&addr), "{addr} given twice");
            seen.push(addr);
        }
    }

    // In use: refused, naming the service; free once the service is gone.
    let in_use = node.shoal(&["network", "rm", "front"]);
    assert_eq!(in_use.code, 1);
    assert!(
        in_use
            .stderr
            .contains("network front is in use by service web"),
        "{}",
        in_use.stderr
    );
    // Detached from one network: the service keeps the other, a rolling update replaces
    // the tasks.
    node.shoal_ok(&[
        "service",
        "update",
        "--detach",
        "--network-rm",
        "back",
        "web",
    ]);
    node.wait("web off network back", WAIT, || {
        let web = inspect(&node, "service", "web");
        (web["Endpoint"]["VirtualIPs"].as_array().map(Vec::len) == Some(1)).then_some(())
    });
    node.shoal_ok(&["service", "rm", "web"]);
    node.wait("front removable", WAIT, || {
        (node.shoal(&["network", "rm", "front"]).code == 0).then_some(())
    });
    let gone = node.shoal(&["network", "inspect", "front"]);
    assert_eq!(gone.stderr.trim(), "Error: network front not found");
    // Nor does the engine keep a Docker network the node made for one.
    let prefix = format!("shoal-{}-", &node.node_id()[..12]);
    node.wait("the node's Docker networks gone", WAIT, || {
        let names = shoal_tests::docker(&["network", "ls", "--format", "{{.Name}}"]).stdout;
        (!names.lines().any(|n| n.starts_with(&prefix))).then_some(())
    });
}

#[test]
fn a_bad_address_pool_is_refused_at_init_and_leaves_the_node_out() {
    require_env!();
    let node = Node::start("pool").expect("shoald starts");
    let run = node.shoal(&[
        "swarm",
        "init",
        "--listen-addr",
        "127.0.0.1:0",
        "--default-addr-pool",
        "10.1.2.3/16",
    ]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr.trim(),
        "Error: invalid --default-addr-pool: subnet 10.1.2.3/16 has host bits set: did you mean 10.1.0.0/16?"
    );
    assert!(node.shoal_ok(&["info"]).contains("Swarm: inactive"));
}
