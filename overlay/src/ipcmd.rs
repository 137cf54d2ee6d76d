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
use crate::model::{mac_of, Network, Remote, BRIDGE, VXLAN_PORT};
use crate::plan::{Observed, ObservedNetwork, Op};

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

    fn program_sandbox(&mut self, sandbox: &str, ruleset: &str) -> Result<(), DataplaneError> {
        nft_in(sandbox, ruleset)
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

/// `nsenter --net=<sandbox> nft -f -` with `ruleset` on its input.
fn nft_in(sandbox: &str, ruleset: &str) -> Result<(), DataplaneError> {
    use std::io::Write;
    let command = format!("nsenter --net={sandbox} nft -f -");
    let failed = |message: String| DataplaneError::Command {
        command: command.clone(),
        message,
    };
    let mut child = Command::new("nsenter")
        .arg(format!("--net={sandbox}"))
        .args(["nft", "-f", "-"])
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
