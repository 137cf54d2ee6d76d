//! The real data plane: iproute2 (`ip`, `bridge`) run in each network's namespace with
//! `-n`, so no thread of this process ever changes namespace. Reads use `-j` (JSON).
//!
//! Each network's VXLAN device is made in the node's own namespace, where its UDP socket
//! stays (on the underlay), then moved into the network's namespace beside the bridge:
//! overlay subnets never touch the node's routes.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::Command;

use serde_json::Value;

use crate::dataplane::{bridge_veth, host_veth, Dataplane, DataplaneError};
use crate::lb::SandboxProgram;
use crate::mesh::{self, Mesh, BRIDGE_DEVICE, HOST_RULE_PRIORITY, RULE_PRIORITY};
use crate::model::{mac_of, Network, Remote, BRIDGE, VXLAN_PORT};
use crate::plan::{Observed, ObservedNetwork, Op};
use crate::tunnel;

/// The kernel, through iproute2. It sees and touches only namespaces whose names start
/// with its prefix ([`crate::model::namespace_prefix`]).
#[derive(Debug)]
pub struct IpCommands {
    prefix: String,
}

impl IpCommands {
    pub fn new(prefix: impl Into<String>) -> Self {
        IpCommands {
            prefix: prefix.into(),
        }
    }
}

fn run(program: &str, args: &[&str]) -> Result<String, DataplaneError> {
    let output =
        Command::new(program)
            .args(args)
            .output()
            .map_err(|e| DataplaneError::Command {
                command: format!("{program} {}", args.join(" ")),
                message: e.to_string(),
            })?;
    if !output.status.success() {
        return Err(DataplaneError::Command {
            command: format!("{program} {}", args.join(" ")),
            message: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn ip(args: &[&str]) -> Result<String, DataplaneError> {
    run("ip", args)
}

/// `ip` in namespace `ns`.
fn ip_in(ns: &str, args: &[&str]) -> Result<String, DataplaneError> {
    let mut all = vec!["-n", ns];
    all.extend_from_slice(args);
    run("ip", &all)
}

fn json(what: &str, text: &str) -> Result<Vec<Value>, DataplaneError> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_str(text).map_err(|e| DataplaneError::Observe {
        what: what.to_string(),
        message: e.to_string(),
    })
}

/// Whether the node's namespace has a link named `name`.
fn host_link_exists(name: &str) -> bool {
    ip(&["link", "show", "dev", name]).is_ok()
}

fn observe_network(ns: &str) -> Result<ObservedNetwork, DataplaneError> {
    let links = json("links", &ip_in(ns, &["-j", "-d", "link", "show"])?)?;
    let has_bridge = links.iter().any(|l| l["ifname"] == BRIDGE);
    let vxlan = links.iter().find(|l| {
        l["linkinfo"]["info_kind"] == "vxlan"
            && l["ifname"].as_str().is_some_and(|n| n.starts_with("shvx"))
    });
    let Some(vxlan) = vxlan.filter(|_| has_bridge) else {
        return Ok(ObservedNetwork::default());
    };
    let device = vxlan["ifname"].as_str().unwrap_or_default().to_string();
    let vni = vxlan["linkinfo"]["info_data"]["id"]
        .as_u64()
        .map(|v| v as u32);
    let neighbours = json(
        "neighbours",
        &ip_in(ns, &["-j", "neigh", "show", "dev", &device])?,
    )?;
    let fdb = json(
        "forwarding entries",
        &run("bridge", &["-n", ns, "-j", "fdb", "show", "dev", &device])?,
    )?;
    let mut remotes = BTreeSet::new();
    for n in &neighbours {
        let Some(addr) = n["dst"].as_str().and_then(|a| a.parse::<Ipv4Addr>().ok()) else {
            continue;
        };
        let mac = mac_of(addr);
        let node = fdb
            .iter()
            .find(|f| f["mac"].as_str() == Some(mac.as_str()))
            .and_then(|f| f["dst"].as_str())
            .and_then(|d| d.parse::<Ipv4Addr>().ok());
        if let (Some(node), Some(_)) = (node, n["lladdr"].as_str()) {
            remotes.insert(Remote { addr, node });
        }
    }
    Ok(ObservedNetwork { vni, remotes })
}

fn create_network(n: &Network) -> Result<(), DataplaneError> {
    let ns = n.namespace();
    let device = n.vxlan_device();
    // Whatever a crash left half-made goes first.
    let _ = ip(&["netns", "del", &ns]);
    if host_link_exists(&device) {
        ip(&["link", "del", "dev", &device])?;
    }
    ip(&["netns", "add", &ns])?;
    ip_in(&ns, &["link", "set", "lo", "up"])?;
    // Frames the bridge switches (task to task, task to VXLAN) skip netfilter: nothing here
    // filters them, and conntrack on every bridged packet costs throughput. Routed traffic
    // (the mesh's router) is still tracked. Absent without br_netfilter: nothing to do.
    for table in ["iptables", "ip6tables", "arptables"] {
        let key = format!("net.bridge.bridge-nf-call-{table}=0");
        let _ = run("ip", &["netns", "exec", &ns, "sysctl", "-qw", &key]);
    }
    ip_in(&ns, &["link", "add", BRIDGE, "type", "bridge"])?;
    let gateway = format!("{}/{}", n.gateway, n.prefix);
    ip_in(&ns, &["addr", "add", &gateway, "dev", BRIDGE])?;
    let mtu = n.mtu.to_string();
    ip_in(&ns, &["link", "set", BRIDGE, "mtu", &mtu, "up"])?;
    // Made here, on the underlay; moved beside the bridge. No learning, no multicast: every
    // remote endpoint is a static entry, and the device answers ARP for them itself.
    let vni = n.vni.to_string();
    let port = VXLAN_PORT.to_string();
    ip(&[
        "link",
        "add",
        &device,
        "type",
        "vxlan",
        "id",
        &vni,
        "dstport",
        &port,
        "proxy",
        "nolearning",
    ])?;
    ip(&["link", "set", &device, "mtu", &mtu])?;
    ip(&["link", "set", &device, "netns", &ns])?;
    ip_in(&ns, &["link", "set", &device, "master", BRIDGE, "up"])?;
    Ok(())
}

impl Dataplane for IpCommands {
    fn observe(&mut self) -> Result<Observed, DataplaneError> {
        let names = json("namespaces", &ip(&["-j", "netns", "list"])?)?;
        let mut observed = Observed::new();
        for name in names.iter().filter_map(|n| n["name"].as_str()) {
            if name.starts_with(&self.prefix) {
                observed.insert(name.to_string(), observe_network(name)?);
            }
        }
        Ok(observed)
    }

    fn apply(&mut self, op: &Op) -> Result<(), DataplaneError> {
        match op {
            Op::CreateNetwork(n) => create_network(n),
            Op::DeleteNetwork { namespace } if namespace.starts_with(&self.prefix) => {
                ip(&["netns", "del", namespace]).map(drop)
            }
            Op::DeleteNetwork { namespace } => Err(DataplaneError::Command {
                command: format!("ip netns del {namespace}"),
                message: "not a namespace of this node's data plane".into(),
            }),
            Op::AddRemote { network, remote } => {
                let ns = network.namespace();
                let device = network.vxlan_device();
                let mac = mac_of(remote.addr);
                let addr = remote.addr.to_string();
                let node = remote.node.to_string();
                ip_in(
                    &ns,
                    &[
                        "neigh",
                        "replace",
                        &addr,
                        "lladdr",
                        &mac,
                        "dev",
                        &device,
                        "nud",
                        "permanent",
                    ],
                )?;
                run(
                    "bridge",
                    &[
                        "-n",
                        &ns,
                        "fdb",
                        "replace",
                        &mac,
                        "dev",
                        &device,
                        "dst",
                        &node,
                        "self",
                        "permanent",
                    ],
                )
                .map(drop)
            }
            Op::DeleteRemote { network, remote } => {
                let ns = network.namespace();
                let device = network.vxlan_device();
                let mac = mac_of(remote.addr);
                let addr = remote.addr.to_string();
                // Either may be gone already.
                let neigh = ip_in(&ns, &["neigh", "del", &addr, "dev", &device]);
                let fdb = run(
                    "bridge",
                    &["-n", &ns, "fdb", "del", &mac, "dev", &device, "self"],
                );
                neigh.and(fdb).map(drop).or_else(|e| match e {
                    DataplaneError::Command { ref message, .. }
                        if message.contains("No such file") || message.contains("not found") =>
                    {
                        Ok(())
                    }
                    e => Err(e),
                })
            }
        }
    }

    fn attach(&mut self, network: &Network, endpoint: &str) -> Result<String, DataplaneError> {
        let ns = network.namespace();
        let host = host_veth(endpoint);
        let peer = bridge_veth(endpoint);
        if host_link_exists(&host) {
            ip(&["link", "del", "dev", &host])?;
        }
        let mtu = network.mtu.to_string();
        ip(&[
            "link", "add", &host, "mtu", &mtu, "type", "veth", "peer", "name", &peer, "mtu", &mtu,
        ])?;
        ip(&["link", "set", &peer, "netns", &ns])?;
        ip_in(&ns, &["link", "set", &peer, "master", BRIDGE, "up"])?;
        Ok(host)
    }

    fn detach(&mut self, endpoint: &str) -> Result<(), DataplaneError> {
        let host = host_veth(endpoint);
        if host_link_exists(&host) {
            ip(&["link", "del", "dev", &host])?;
        }
        Ok(())
    }

    fn program_sandbox(
        &mut self,
        sandbox: &str,
        program: &SandboxProgram,
    ) -> Result<(), DataplaneError> {
        nft_in(sandbox, &program.ruleset)?;
        if program.routers.is_empty() {
            // Not on the ingress network, and a container never joins it later.
            return Ok(());
        }
        let rules = json("rules", &ip_at(sandbox, &["-j", "rule", "show"])?)?;
        let have = marks_at(&rules, RULE_PRIORITY);
        let (drop, add) = mesh::rule_changes(&have, &program.routers);
        let priority = RULE_PRIORITY.to_string();
        for mark in drop {
            let mark = mark.to_string();
            let args = ["rule", "del", "priority", &priority, "fwmark", &mark];
            ip_at(sandbox, &args)?;
        }
        for router in &program.routers {
            let table = mesh::mark_of(*router).to_string();
            let via = router.to_string();
            let args = ["route", "replace", "default", "via", &via, "table", &table];
            ip_at(sandbox, &args)?;
        }
        for router in add {
            let mark = mesh::mark_of(router).to_string();
            let args = [
                "rule", "add", "priority", &priority, "fwmark", &mark, "lookup", &mark,
            ];
            ip_at(sandbox, &args)?;
        }
        Ok(())
    }

    fn program_mesh(&mut self, wanted: Option<&Mesh>) -> Result<(), DataplaneError> {
        let device = mesh::host_device(&self.prefix);
        let table = mesh::host_table(&self.prefix);
        let old = host_link_exists(&device)
            .then(|| router_of(&device))
            .flatten();
        let Some(m) = wanted else {
            let _ = run("nft", &["delete", "table", "ip", &table]);
            forward_rules(&device, false);
            if let Some(old) = old {
                drop_router_route(old)?;
            }
            if host_link_exists(&device) {
                ip(&["link", "del", "dev", &device])?;
            }
            return Ok(());
        };
        let ns = m.network.namespace();
        let mac = mac_of(m.router);
        let mtu = m.network.mtu.to_string();
        if ip_in(&ns, &["link", "show", "dev", BRIDGE_DEVICE]).is_err()
            || !host_link_exists(&device)
        {
            if host_link_exists(&device) {
                ip(&["link", "del", "dev", &device])?;
            }
            let _ = ip_in(&ns, &["link", "del", "dev", BRIDGE_DEVICE]);
            ip(&[
                "link",
                "add",
                &device,
                "mtu",
                &mtu,
                "type",
                "veth",
                "peer",
                "name",
                BRIDGE_DEVICE,
                "netns",
                &ns,
                "mtu",
                &mtu,
            ])?;
        }
        ip_in(&ns, &["link", "set", BRIDGE_DEVICE, "master", BRIDGE, "up"])?;
        ip(&["link", "set", &device, "address", &mac, "up"])?;
        if let Some(old) = old.filter(|o| *o != m.router) {
            drop_router_route(old)?;
            ip(&["addr", "flush", "dev", &device])?;
        }
        // The router's address without a route in the main table: only marked traffic
        // (the mesh's) takes the ingress subnet's route, from the router's own table.
        let router = format!("{}/{}", m.router, m.network.prefix);
        ip(&["addr", "replace", &router, "dev", &device, "noprefixroute"])?;
        let mark = mesh::mark_of(m.router).to_string();
        let subnet = format!("{}/{}", m.network.subnet, m.network.prefix);
        let src = m.router.to_string();
        ip(&[
            "route", "replace", &subnet, "dev", &device, "src", &src, "table", &mark,
        ])?;
        if !host_rule_marks()?.contains(&mesh::mark_of(m.router)) {
            let priority = HOST_RULE_PRIORITY.to_string();
            ip(&[
                "rule", "add", "priority", &priority, "fwmark", &mark, "lookup", &mark,
            ])?;
        }
        std::fs::write(
            format!("/proc/sys/net/ipv4/conf/{device}/src_valid_mark"),
            "1",
        )
        .map_err(|e| DataplaneError::Command {
            command: format!("sysctl net.ipv4.conf.{device}.src_valid_mark=1"),
            message: e.to_string(),
        })?;
        nft_here(&mesh::host_ruleset(&self.prefix, m))?;
        forward_rules(&device, true);
        Ok(())
    }

    fn guard_encrypted(&mut self, vnis: &BTreeSet<u32>) -> Result<(), DataplaneError> {
        let table = format!("{}crypt", self.prefix);
        let device = tunnel::tun_device(&self.prefix);
        nft_here(&tunnel::guard_ruleset(&table, &device, vnis))
    }

    fn bind_udp(
        &mut self,
        network: &Network,
        port: u16,
    ) -> Result<std::net::UdpSocket, DataplaneError> {
        let path = format!("/run/netns/{}", network.namespace());
        let addr = std::net::SocketAddr::from((network.gateway, port));
        // A thread of its own enters the namespace and ends with it: no thread of the
        // runtime, nor the data plane's, ever changes namespace. The socket keeps the
        // namespace it was made in.
        let made = std::thread::spawn(move || -> Result<std::net::UdpSocket, String> {
            let ns = std::fs::File::open(&path).map_err(|e| format!("opening {path}: {e}"))?;
            enter_netns(&ns).map_err(|e| format!("entering {path}: {e}"))?;
            std::net::UdpSocket::bind(addr).map_err(|e| format!("binding {addr}: {e}"))
        })
        .join()
        .map_err(|_| "the namespace thread panicked".to_string())
        .and_then(|r| r);
        let socket = made.map_err(|message| DataplaneError::Command {
            command: format!("bind udp {addr} in {}", network.namespace()),
            message,
        })?;
        socket
            .set_nonblocking(true)
            .map_err(|e| DataplaneError::Command {
                command: "set_nonblocking".into(),
                message: e.to_string(),
            })?;
        Ok(socket)
    }
}

/// `ip` in the network namespace at path `sandbox` (a container's).
fn ip_at(sandbox: &str, args: &[&str]) -> Result<String, DataplaneError> {
    let net = format!("--net={sandbox}");
    let mut all = vec![net.as_str(), "ip"];
    all.extend_from_slice(args);
    run("nsenter", &all)
}

/// Bring `device` up and route `addr` (a /32) into it, in the node's namespace.
pub(crate) fn route_into(device: &str, addr: Ipv4Addr) -> Result<(), DataplaneError> {
    ip(&["link", "set", device, "up"])?;
    ip(&["route", "replace", &format!("{addr}/32"), "dev", device]).map(drop)
}

/// The router address on the node's mesh device, if it has one.
fn router_of(device: &str) -> Option<Ipv4Addr> {
    let text = ip(&["-j", "-4", "addr", "show", "dev", device]).ok()?;
    let links = json("router address", &text).ok()?;
    links
        .iter()
        .flat_map(|l| l["addr_info"].as_array().into_iter().flatten())
        .find_map(|a| a["local"].as_str()?.parse().ok())
}

/// The marks of the router rules in the node's namespace ([`HOST_RULE_PRIORITY`]).
fn host_rule_marks() -> Result<BTreeSet<u32>, DataplaneError> {
    let rules = json("rules", &ip(&["-j", "rule", "show"])?)?;
    Ok(marks_at(&rules, HOST_RULE_PRIORITY))
}

/// The fwmarks of the rules at `priority` in an `ip -j rule show` listing.
fn marks_at(rules: &[Value], priority: u32) -> BTreeSet<u32> {
    rules
        .iter()
        .filter(|r| r["priority"].as_u64() == Some(u64::from(priority)))
        .filter_map(|r| r["fwmark"].as_str())
        .filter_map(|m| u32::from_str_radix(m.trim_start_matches("0x"), 16).ok())
        .collect()
}

/// Remove router `router`'s policy rule and table from the node's namespace.
fn drop_router_route(router: Ipv4Addr) -> Result<(), DataplaneError> {
    let mark = mesh::mark_of(router);
    if host_rule_marks()?.contains(&mark) {
        let (priority, mark) = (HOST_RULE_PRIORITY.to_string(), mark.to_string());
        ip(&["rule", "del", "priority", &priority, "fwmark", &mark])?;
    }
    let _ = ip(&["route", "flush", "table", &mark.to_string()]);
    Ok(())
}

/// Accept forwarding to and from the mesh's link in the node's `FORWARD` chain (Docker's
/// engine drops forwarded traffic it does not know), or stop accepting it. Best effort: a
/// node without iptables has no such chain to pass.
fn forward_rules(device: &str, present: bool) {
    for direction in ["-i", "-o"] {
        let rule = ["FORWARD", direction, device, "-j", "ACCEPT"];
        let there = run("iptables", &[&["-C"], &rule[..]].concat()).is_ok();
        let change = match (present, there) {
            (true, false) => run("iptables", &[&["-I"], &rule[..]].concat()),
            (false, true) => run("iptables", &[&["-D"], &rule[..]].concat()),
            _ => Ok(String::new()),
        };
        if let Err(e) = change {
            tracing::debug!("forwarding rule for {device}: {e}");
        }
    }
}

/// `nft -f -` in the node's own namespace.
fn nft_here(ruleset: &str) -> Result<(), DataplaneError> {
    nft_with(&[], ruleset)
}

/// `nsenter --net=<sandbox> nft -f -` with `ruleset` on its input.
fn nft_in(sandbox: &str, ruleset: &str) -> Result<(), DataplaneError> {
    nft_with(&["nsenter", &format!("--net={sandbox}")], ruleset)
}

/// `nft -f -` with `ruleset` on its input, after `prefix` (a command that enters a
/// namespace, or nothing).
fn nft_with(prefix: &[&str], ruleset: &str) -> Result<(), DataplaneError> {
    use std::io::Write;
    let mut argv: Vec<&str> = prefix.to_vec();
    argv.extend(["nft", "-f", "-"]);
    let command = argv.join(" ");
    let failed = |message: String| DataplaneError::Command {
        command: command.clone(),
        message,
    };
    let mut child = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| failed(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(ruleset.as_bytes())
            .map_err(|e| failed(e.to_string()))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| failed(e.to_string()))?;
    if !output.status.success() {
        return Err(failed(
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        ));
    }
    Ok(())
}

/// Move the calling thread into the network namespace `ns` (an open /run/netns file).
#[allow(unsafe_code)]
fn enter_netns(ns: &std::fs::File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: setns takes a file descriptor we hold open for the call's duration and a
    // namespace type constant; it changes only the calling thread's network namespace,
    // and this thread ends right after binding its socket.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The MTU of the interface holding `addr` on this node (1500 when none is found).
pub fn underlay_mtu(addr: Ipv4Addr) -> u32 {
    let Ok(text) = ip(&["-j", "-4", "addr", "show"]) else {
        return 1500;
    };
    let Ok(links) = json("addresses", &text) else {
        return 1500;
    };
    links
        .iter()
        .find(|l| {
            l["addr_info"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|i| i["local"].as_str() == Some(addr.to_string().as_str()))
            })
        })
        .and_then(|l| l["mtu"].as_u64())
        .map_or(1500, |m| m as u32)
}
