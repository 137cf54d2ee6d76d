//! Overlay networks across lab hosts, with real containers: a task on n2 reaches a task on
//! n3 over the network's VXLAN, and the data plane goes away with the network's last task.

use std::time::Duration;

use shoal_tests::lab::Lab;
use shoal_tests::{json_lines, require_lab, wait_until};

const WAIT: Duration = Duration::from_secs(60);

/// The id of the running container of `service`'s task on host `host`.
fn container_of(lab: &Lab, host: usize, service: &str) -> Option<String> {
    let label = format!("label=shoal.service.name={service}");
    let out = lab.docker(host, &["ps", "-q", "--filter", &label]);
    out.stdout.lines().next().map(str::to_string)
}

/// The overlay address (no prefix) of `service`'s first running task.
fn address_of(lab: &Lab, service: &str) -> Option<String> {
    let tasks = json_lines(&lab.shoal_ok(1, &["service", "ps", "--format", "json", service]));
    let task = tasks.iter().find(|t| {
        t["CurrentState"]
            .as_str()
            .is_some_and(|s| s.starts_with("Running"))
    })?;
    let addr = task["NetworksAttachments"][0]["Addresses"][0].as_str()?;
    Some(addr.split('/').next()?.to_string())
}

/// Packets n2 sent to n3's VXLAN port, counted by a rule in n2's own namespace.
fn vxlan_packets(lab: &Lab) -> u64 {
    let out = lab.exec(2, &["nft", "-j", "list", "table", "ip", "shoaltest"]);
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
    json["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item["rule"]["expr"].as_array())
        .flatten()
        .filter_map(|e| e["counter"]["packets"].as_u64())
        .sum()
}

#[test]
fn a_task_on_n2_reaches_a_task_on_n3_over_vxlan() {
    require_lab!();
    let lab = Lab::up(1, 2).expect("the lab comes up");
    let network_id = lab
        .shoal_ok(1, &["network", "create", "-d", "overlay", "front"])
        .trim()
        .to_string();
    server_on_n3(
        &lab,
        "front",
        "echo hello-from-n3 > /tmp/index.html; exec httpd -f -p 80 -h /tmp",
    );
    let cli = sleeper_on_n2(&lab, "cli", "front");
    let srv = wait_until("srv running with an address", WAIT, || {
        address_of(&lab, "srv")
    })
    .expect("srv runs");

    // Count what n2 sends to n3's VXLAN port from here on.
    for rule in [
        vec!["nft", "add", "table", "ip", "shoaltest"],
        vec![
            "nft",
            "add",
            "chain",
            "ip",
            "shoaltest",
            "out",
            "{ type filter hook output priority 0 ; }",
        ],
        vec![
            "nft",
            "add",
            "rule",
            "ip",
            "shoaltest",
            "out",
            "ip",
            "saddr",
            "10.78.0.12",
            "ip",
            "daddr",
            "10.78.0.13",
            "udp",
            "dport",
            "4789",
            "counter",
        ],
    ] {
        let out = lab.exec(2, &rule);
        assert!(out.ok(), "{rule:?}: {}", out.stderr);
    }

    // The container on n2 fetches the page from n3 by the service's name (through its VIP),
    // and by the task's own address.
    for url in ["http://srv/".to_string(), format!("http://{srv}/")] {
        let page = wait_until("the page from n3", WAIT, || fetch(&lab, &cli, &url))
            .expect("the page loads across nodes");
        assert_eq!(page, "hello-from-n3", "{url}");
    }
    assert!(vxlan_packets(&lab) > 0, "no VXLAN packet from n2 to n3");
    let _ = lab.exec(2, &["nft", "delete", "table", "ip", "shoaltest"]);

    // The network's data plane leaves each node with its last task there.
    lab.shoal_ok(1, &["service", "rm", "srv", "cli"]);
    let prefix: String = network_id.chars().take(12).collect();
    wait_until("no namespace of the network left", WAIT, || {
        let out = std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        (!out.contains(&prefix)).then_some(())
    })
    .expect("namespaces removed");
    wait_until("the network removable", WAIT, || {
        lab.shoal(1, &["network", "rm", "front"]).ok().then_some(())
    })
    .expect("network removed");
    // Nor does any engine keep a Docker network of it.
    for host in [2, 3] {
        wait_until("no docker network of Shoal's left", WAIT, || {
            let out = lab.docker(
                host,
                &[
                    "network",
                    "ls",
                    "-q",
                    "--filter",
                    "label=com.shoal.network.id",
                ],
            );
            (out.ok() && out.stdout.trim().is_empty()).then_some(())
        })
        .expect("docker networks removed");
    }
}

/// The addresses `nslookup NAME` gives in `container` on host 2 (the resolver's own
/// address left out).
fn lookup(lab: &Lab, container: &str, name: &str) -> Option<Vec<String>> {
    let out = lab.docker(2, &["exec", container, "nslookup", name]);
    if !out.ok() {
        return None;
    }
    let mut addrs: Vec<String> = out
        .stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Address:"))
        .map(|a| a.trim().to_string())
        .filter(|a| !a.contains(':') && a != "127.0.0.11")
        .collect();
    addrs.sort();
    Some(addrs)
}

/// The page (a task's hostname) behind `url`, fetched from `container` on host 2.
fn fetch(lab: &Lab, container: &str, url: &str) -> Option<String> {
    let out = lab.docker(2, &["exec", container, "wget", "-qO-", url]);
    out.ok().then(|| out.stdout.trim().to_string())
}

fn create(lab: &Lab, args: &[&str]) {
    let mut all = vec!["service", "create", "--detach"];
    all.extend_from_slice(args);
    lab.shoal_ok(1, &all);
}

/// A task of service `srv` on `network`, pinned to n3, running `script` (a web server).
fn server_on_n3(lab: &Lab, network: &str, script: &str) {
    create(
        lab,
        &[
            "--name",
            "srv",
            "--network",
            network,
            "--constraint",
            "node.hostname==n3",
            "shoal-test/busybox:a",
            "sh",
            "-c",
            script,
        ],
    );
}

/// A `sleep` task named `name` on `network`, pinned to n2; its container's id.
fn sleeper_on_n2(lab: &Lab, name: &str, network: &str) -> String {
    create(
        lab,
        &[
            "--name",
            name,
            "--network",
            network,
            "--constraint",
            "node.hostname==n2",
            "shoal-test/busybox:a",
            "sleep",
            "100000",
        ],
    );
    wait_until("the sleeper's container on n2", WAIT, || {
        container_of(lab, 2, name)
    })
    .expect("the sleeper runs")
}

const HOSTNAME_PAGE: &str = "hostname > /tmp/index.html; exec httpd -f -p 80 -h /tmp";

#[test]
fn names_and_vips_follow_the_running_tasks() {
    require_lab!();
    let lab = Lab::up(1, 2).expect("the lab comes up");
    lab.shoal_ok(1, &["network", "create", "back"]);
    create(
        &lab,
        &[
            "--name",
            "web",
            "--replicas",
            "3",
            "--network",
            "name=back,alias=www",
            "--replicas-max-per-node",
            "1",
            "shoal-test/busybox:a",
            "sh",
            "-c",
            HOSTNAME_PAGE,
        ],
    );
    create(
        &lab,
        &[
            "--name",
            "rr",
            "--replicas",
            "2",
            "--endpoint-mode",
            "dnsrr",
            "--network",
            "back",
            "shoal-test/busybox:a",
            "sh",
            "-c",
            HOSTNAME_PAGE,
        ],
    );
    let cli = sleeper_on_n2(&lab, "cli", "back");
    let vip = {
        let out = lab.shoal_ok(1, &["service", "inspect", "web"]);
        let web: serde_json::Value = serde_json::from_str(&out).expect("json");
        web[0]["Endpoint"]["VirtualIPs"][0]["Addr"]
            .as_str()
            .and_then(|a| a.split('/').next())
            .unwrap_or_default()
            .to_string()
    };
    assert!(!vip.is_empty());

    // The name and its alias give the VIP; tasks.NAME every task; dnsrr its tasks.
    let tasks = wait_until("three tasks named", WAIT, || {
        lookup(&lab, &cli, "tasks.web").filter(|a| a.len() == 3)
    })
    .expect("tasks.web");
    assert_eq!(lookup(&lab, &cli, "web"), Some(vec![vip.clone()]));
    assert_eq!(lookup(&lab, &cli, "www"), Some(vec![vip.clone()]));
    let rr = wait_until("two dnsrr tasks", WAIT, || {
        lookup(&lab, &cli, "rr").filter(|a| a.len() == 2)
    })
    .expect("rr");
    assert!(rr.iter().all(|a| !tasks.contains(a)));

    // The VIP spreads new connections over every replica.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..9 {
        if let Some(page) = fetch(&lab, &cli, "http://web/") {
            seen.insert(page);
        }
    }
    assert_eq!(
        seen.len(),
        3,
        "replicas answering through the VIP: {seen:?}"
    );

    // A killed replica: the VIP stops sending it connections, its name goes.
    let victim_host = 3;
    let victim = container_of(&lab, victim_host, "web").expect("a web task on n3");
    let victim_name = lab
        .docker(
            victim_host,
            &["inspect", "-f", "{{.Config.Hostname}}", &victim],
        )
        .stdout
        .trim()
        .to_string();
    lab.docker(victim_host, &["kill", &victim]);
    let started = std::time::Instant::now();
    wait_until("the killed replica out of tasks.web", WAIT, || {
        lookup(&lab, &cli, "tasks.web").filter(|a| a.len() == 2)
    })
    .expect("dropped from DNS");
    eprintln!("killed replica gone from DNS after {:?}", started.elapsed());
    wait_until("nine fetches, none from the killed replica", WAIT, || {
        let pages: Vec<Option<String>> = (0..9).map(|_| fetch(&lab, &cli, "http://web/")).collect();
        pages
            .iter()
            .all(|p| p.as_ref().is_some_and(|p| *p != victim_name))
            .then_some(())
    })
    .expect("the VIP avoids the killed replica");
    eprintln!(
        "killed replica out of the VIP after {:?}",
        started.elapsed()
    );

    // Scale 3 -> 1: two addresses leave tasks.web.
    wait_until("web back to three", WAIT, || {
        lookup(&lab, &cli, "tasks.web").filter(|a| a.len() == 3)
    })
    .expect("replaced");
    lab.shoal_ok(1, &["service", "scale", "--detach", "web=1"]);
    let started = std::time::Instant::now();
    wait_until("one task named", WAIT, || {
        lookup(&lab, &cli, "tasks.web").filter(|a| a.len() == 1)
    })
    .expect("scaled down in DNS");
    eprintln!(
        "scale 3 -> 1 reflected in DNS after {:?}",
        started.elapsed()
    );
    assert_eq!(lookup(&lab, &cli, "web"), Some(vec![vip]));
    // Other names still reach the node's resolvers (an answer, not a timeout).
    let other = lab.docker(2, &["exec", &cli, "nslookup", "no-such-name.invalid"]);
    assert!(!other.stdout.is_empty() || !other.stderr.is_empty());
}

/// Network namespaces (by name) of host `host`'s data plane.
fn namespaces_of(lab: &Lab, host: usize) -> Vec<String> {
    let out = lab.shoal_ok(1, &["node", "inspect", &format!("n{host}")]);
    let node: serde_json::Value = serde_json::from_str(&out).expect("json");
    let id = node[0]["ID"].as_str().unwrap_or_default().to_string();
    let prefix = format!("shoal-{}-", id.chars().take(8).collect::<String>());
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_restarted_node_keeps_its_data_plane_and_a_leaving_one_clears_it() {
    require_lab!();
    let lab = Lab::up(1, 2).expect("the lab comes up");
    lab.shoal_ok(1, &["network", "create", "front"]);
    lab.shoal_ok(1, &["network", "create", "--internal", "inner"]);
    server_on_n3(&lab, "front", HOSTNAME_PAGE);
    let cli = sleeper_on_n2(&lab, "cli", "front");
    let shut = sleeper_on_n2(&lab, "shut", "inner");
    wait_until("a page through the VIP", WAIT, || {
        fetch(&lab, &cli, "http://srv/")
    })
    .expect("the VIP answers");
    // An internal network gives its tasks no way out: no default route.
    let routes = lab.docker(2, &["exec", &shut, "ip", "route"]).stdout;
    assert!(!routes.contains("default"), "{routes}");
    assert_eq!(namespaces_of(&lab, 2).len(), 2);

    // kill -9 and a restart: the same namespaces (none twice), the VIP still answers, and
    // a change made meanwhile reaches the running container's names and VIP rules.
    lab.stop(2);
    lab.shoal_ok(1, &["service", "scale", "--detach", "srv=2"]);
    lab.start(2);
    wait_until("tasks.srv with two addresses", WAIT, || {
        lookup(&lab, &cli, "tasks.srv").filter(|a| a.len() == 2)
    })
    .expect("names follow after a restart");
    let sandbox = lab
        .docker(
            2,
            &["inspect", "-f", "{{.NetworkSettings.SandboxKey}}", &cli],
        )
        .stdout
        .trim()
        .to_string();
    wait_until("the VIP rule over two tasks", WAIT, || {
        let rules = lab.exec(
            2,
            &[
                "nsenter",
                &format!("--net={sandbox}"),
                "nft",
                "list",
                "table",
                "ip",
                "shoal",
            ],
        );
        rules.stdout.contains("mod 2").then_some(())
    })
    .expect("VIP rules follow after a restart");
    assert_eq!(namespaces_of(&lab, 2).len(), 2, "no namespace made twice");
    let front = namespaces_of(&lab, 2).into_iter().find(|ns| {
        let links = lab.exec(2, &["ip", "-n", ns, "-d", "link", "show"]).stdout;
        links.matches("vxlan id").count() == 1
    });
    assert!(front.is_some(), "each namespace holds one VXLAN device");
    assert!(fetch(&lab, &cli, "http://srv/").is_some());

    // Leaving the swarm leaves nothing of the overlay on the node.
    lab.shoal_ok(2, &["swarm", "leave"]);
    assert!(namespaces_of(&lab, 2).is_empty(), "namespaces left behind");
    let networks = lab.docker(
        2,
        &[
            "network",
            "ls",
            "-q",
            "--filter",
            "label=com.shoal.network.id",
        ],
    );
    assert!(
        networks.stdout.trim().is_empty(),
        "docker networks left: {}",
        networks.stdout
    );
}

/// A CGI page that prints the client's address as the task sees it.
const REMOTE_ADDR_PAGE: &str = "mkdir -p /w/cgi-bin; \
    printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho $REMOTE_ADDR\\n' > /w/cgi-bin/ip; \
    chmod +x /w/cgi-bin/ip; exec httpd -f -p 80 -h /w";

#[test]
fn a_host_mode_port_answers_where_its_task_runs_with_the_clients_address() {
    require_lab!();
    let lab = Lab::up(1, 2).expect("the lab comes up");
    lab.shoal_ok(1, &["network", "create", "front"]);
    // One task on n2, bound on n2's underlay address only.
    create(
        &lab,
        &[
            "--name",
            "ip",
            "--network",
            "front",
            "--constraint",
            "node.hostname==n2",
            "--publish",
            "mode=host,published=10.78.0.12:8080,target=80",
            "shoal-test/busybox:a",
            "sh",
            "-c",
            REMOTE_ADDR_PAGE,
        ],
    );
    let url = "http://10.78.0.12:8080/cgi-bin/ip";
    let seen = wait_until("the page on n2's port", WAIT, || {
        let out = lab.exec(1, &["wget", "-qO-", url]);
        out.ok().then(|| out.stdout.trim().to_string())
    })
    .expect("n2 answers on its port");
    // The task sees the client's own underlay address (n1's), not a translated one.
    assert!(seen.contains("10.78.0.11"), "REMOTE_ADDR was {seen}");
    let seen = lab.exec(3, &["wget", "-qO-", url]).stdout;
    assert!(seen.contains("10.78.0.13"), "REMOTE_ADDR was {seen}");
    // Nothing answers on a node without the task.
    let elsewhere = lab.exec(1, &["wget", "-qO-", "http://10.78.0.13:8080/cgi-bin/ip"]);
    assert!(!elsewhere.ok(), "n3 answered: {}", elsewhere.stdout);
    let ps = lab.shoal_ok(1, &["service", "ps", "ip"]);
    assert!(ps.contains("10.78.0.12:8080->80/tcp"), "{ps}");

    // A second task publishing the same port cannot land on n2: it stays pending, saying why.
    create(
        &lab,
        &[
            "--name",
            "ip2",
            "--constraint",
            "node.hostname==n2",
            "--publish",
            "mode=host,published=8080,target=80",
            "shoal-test/busybox:a",
            "sleep",
            "100000",
        ],
    );
    wait_until("ip2 pending on the port", WAIT, || {
        let out = lab.shoal_ok(1, &["service", "ps", "--no-trunc", "ip2"]);
        out.contains("host-mode port 8080/tcp already in use")
            .then_some(())
    })
    .expect("the port clash is explained");
}

/// The page at `url`, fetched with wget in host `host`'s own namespace (given up after
/// 5 s: a dropped connection must fail the wait, not hang it).
fn page_from(lab: &Lab, host: usize, url: &str) -> Option<String> {
    let out = lab.exec(host, &["timeout", "5", "wget", "-qO-", url]);
    out.ok().then(|| out.stdout.trim().to_string())
}

/// The names of the nftables tables in host `host`'s own namespace.
fn tables_of(lab: &Lab, host: usize) -> String {
    lab.exec(host, &["nft", "list", "tables"]).stdout
}

#[test]
fn a_mesh_port_answers_on_every_node_and_the_task_sees_the_client() {
    require_lab!();
    let lab = Lab::up(1, 2).expect("the lab comes up");
    // One task, on n2 only; the port is published through the routing mesh (the default).
    create(
        &lab,
        &[
            "--name",
            "ip",
            "--constraint",
            "node.hostname==n2",
            "-p",
            "8080:80",
            "shoal-test/busybox:a",
            "sh",
            "-c",
            REMOTE_ADDR_PAGE,
        ],
    );
    // n1 runs no task: a client on n3 reaches the task on n2 through n1's address, and the
    // task sees n3's own address.
    let seen = wait_until("the page through n1", WAIT, || {
        page_from(&lab, 3, "http://10.78.0.11:8080/cgi-bin/ip")
    })
    .expect("n1 answers the mesh port");
    // (busybox httpd prints it IPv4-mapped: "[::ffff:10.78.0.13]".)
    assert!(
        seen.contains("10.78.0.13"),
        "REMOTE_ADDR through n1 was {seen}"
    );
    // Through n3 (no task either) from n1, and through n2 itself.
    let seen = wait_until("the page through n3", WAIT, || {
        page_from(&lab, 1, "http://10.78.0.13:8080/cgi-bin/ip")
    })
    .expect("n3 answers the mesh port");
    assert!(
        seen.contains("10.78.0.11"),
        "REMOTE_ADDR through n3 was {seen}"
    );
    let seen = page_from(&lab, 3, "http://10.78.0.12:8080/cgi-bin/ip").unwrap_or_default();
    assert!(
        seen.contains("10.78.0.13"),
        "REMOTE_ADDR through n2 was {seen}"
    );
    // A node's own client, on its own address.
    let seen = page_from(&lab, 1, "http://10.78.0.11:8080/cgi-bin/ip").unwrap_or_default();
    assert!(
        seen.contains("10.78.0.11"),
        "REMOTE_ADDR from n1 to itself was {seen}"
    );

    // The port is taken: another service is refused, naming the holder, in either mode.
    for publish in ["8080:80", "mode=host,published=8080,target=80"] {
        let taken = lab.shoal(
            1,
            &[
                "service",
                "create",
                "--detach",
                "--name",
                "other",
                "--publish",
                publish,
                "shoal-test/busybox:a",
                "sleep",
                "100000",
            ],
        );
        assert_eq!(taken.code, 1, "{publish}: {}", taken.stdout);
        assert!(
            taken.stderr.contains("already published by service ip"),
            "{publish}: {}",
            taken.stderr
        );
    }
    let ls = lab.shoal_ok(1, &["service", "ls"]);
    assert!(!ls.contains("other"), "nothing was created: {ls}");

    // Two replicas, one on each worker: n1's port spreads connections over both.
    create(
        &lab,
        &[
            "--name",
            "spread",
            "--replicas",
            "2",
            "--replicas-max-per-node",
            "1",
            "--constraint",
            "node.role==worker",
            "-p",
            "8081:80",
            "shoal-test/busybox:a",
            "sh",
            "-c",
            HOSTNAME_PAGE,
        ],
    );
    let hosts = wait_until("both replicas answering through n1", WAIT, || {
        let seen: std::collections::BTreeSet<String> = (0..8)
            .filter_map(|_| page_from(&lab, 1, "http://10.78.0.11:8081/"))
            .collect();
        (seen.len() == 2).then_some(seen)
    })
    .expect("n1 spreads over both replicas");
    assert_eq!(hosts.len(), 2, "{hosts:?}");
    lab.shoal_ok(1, &["service", "rm", "spread"]);

    // The service goes: no node answers, and no node keeps the mesh's rules.
    lab.shoal_ok(1, &["service", "rm", "ip"]);
    wait_until("the mesh gone from every node", WAIT, || {
        (1..=3)
            .all(|host| !tables_of(&lab, host).contains("-mesh"))
            .then_some(())
    })
    .expect("the mesh's tables are removed");
    assert!(page_from(&lab, 3, "http://10.78.0.11:8080/cgi-bin/ip").is_none());
}

/// What host `host`'s underlay (eth0) carried as UDP while `during` ran: tcpdump's capture
/// file (`file`, in the host's namespace), read back whole.
fn capture_underlay(lab: &Lab, host: usize, file: &str, during: impl FnOnce()) -> String {
    // A file left by an earlier run would pass for this capture having started.
    lab.exec(host, &["rm", "-f", file]);
    std::thread::scope(|scope| {
        let capture = scope.spawn(|| {
            lab.exec(
                host,
                &[
                    "timeout",
                    "60",
                    "tcpdump",
                    "--immediate-mode",
                    "-i",
                    "eth0",
                    "-U",
                    "-w",
                    file,
                    "udp",
                ],
            )
        });
        let size = || {
            let out = lab.exec(host, &["stat", "-c", "%s", file]).stdout;
            out.trim().parse::<u64>().unwrap_or(0)
        };
        // The file's header (24 bytes) is written once the capture runs.
        wait_until("tcpdump writing", WAIT, || (size() >= 24).then_some(()))
            .expect("tcpdump starts");
        during();
        wait_until("packets in the capture", WAIT, || {
            (size() > 24).then_some(())
        })
        .expect("the capture saw traffic");
        lab.exec(host, &["pkill", "-INT", "-f", file]);
        let _ = capture.join();
    });
    lab.exec(host, &["cat", file]).stdout
}

#[test]
fn an_encrypted_network_carries_the_page_and_the_underlay_never_sees_it() {
    require_lab!();
    // Keys updated five times a second: a long transfer must ride through several.
    std::env::set_var("SHOAL_TUNNEL_KEY_UPDATE_MS", "200");
    let lab = Lab::up(1, 2).expect("the lab comes up");
    const PAGE: &str = "shoal-page-in-the-clear-7f3a";
    let script = format!(
        "echo {PAGE} > /tmp/index.html; head -c 40000000 /dev/zero > /tmp/big; exec httpd -f -p 80 -h /tmp"
    );
    // A plain network first: the capture finds the page, so the check below can fail.
    lab.shoal_ok(1, &["network", "create", "plain"]);
    server_on_n3(&lab, "plain", &script);
    let cli = sleeper_on_n2(&lab, "cli", "plain");
    wait_until("the page over the plain network", WAIT, || {
        fetch(&lab, &cli, "http://srv/").filter(|p| p.contains(PAGE))
    })
    .expect("srv answers");
    let clear = capture_underlay(&lab, 2, "/tmp/plain.pcap", || {
        assert!(fetch(&lab, &cli, "http://srv/").is_some_and(|p| p.contains(PAGE)));
    });
    assert!(
        clear.contains(PAGE),
        "a plain network's page is visible on the underlay"
    );
    lab.shoal_ok(1, &["service", "rm", "srv", "cli"]);

    // New names: the plain network's containers may take their grace period to go.
    lab.shoal_ok(1, &["network", "create", "--opt", "encrypted", "sec"]);
    create(
        &lab,
        &[
            "--name",
            "ssrv",
            "--network",
            "sec",
            "--constraint",
            "node.hostname==n3",
            "shoal-test/busybox:a",
            "sh",
            "-c",
            &script,
        ],
    );
    let cli = sleeper_on_n2(&lab, "scli", "sec");
    wait_until("the page over the encrypted network", WAIT, || {
        fetch(&lab, &cli, "http://ssrv/").filter(|p| p.contains(PAGE))
    })
    .unwrap_or_else(|e| {
        // The tunnels' own account (dialled, refused, closed) is in the two nodes' logs.
        panic!("{e}\n{}\n{}", lab.log_tail(2), lab.log_tail(3))
    });
    let captured = capture_underlay(&lab, 2, "/tmp/sec.pcap", || {
        for _ in 0..3 {
            assert!(fetch(&lab, &cli, "http://ssrv/").is_some_and(|p| p.contains(PAGE)));
        }
    });
    assert!(
        !captured.contains(PAGE),
        "the page crossed the underlay in the clear"
    );
    let tunnel = lab
        .exec(2, &["tcpdump", "-nr", "/tmp/sec.pcap", "udp port 4790"])
        .stdout;
    assert!(
        tunnel.lines().count() >= 6,
        "the fetches went through the tunnel: {tunnel}"
    );
    let vxlan = lab
        .exec(2, &["tcpdump", "-nr", "/tmp/sec.pcap", "udp port 4789"])
        .stdout;
    assert_eq!(vxlan.trim(), "", "no plain VXLAN left n2");

    // 40 MB through the tunnel while its keys change every 200 ms: nothing is dropped.
    let size = lab.docker(
        2,
        &[
            "exec",
            &cli,
            "sh",
            "-c",
            "wget -qO- http://ssrv/big | wc -c",
        ],
    );
    assert_eq!(size.stdout.trim(), "40000000", "{}", size.stderr);

    // Leaving the swarm takes the guard and the TUN device with it.
    lab.shoal_ok(2, &["swarm", "leave"]);
    wait_until("n2's tunnel gone", WAIT, || {
        let links = lab.exec(2, &["ip", "-br", "link"]).stdout;
        (!tables_of(&lab, 2).contains("-crypt") && !links.contains("sht")).then_some(())
    })
    .expect("no guard table and no TUN device left on n2");
}
