//! The real data plane on this machine's kernel (needs root): a network made, its remote
//! entries read back as the planner sees them, a second reconcile that changes nothing,
//! an endpoint's veth on the bridge, and nothing left behind.

use std::net::Ipv4Addr;

use shoal_overlay::{
    namespace_of, namespace_prefix, reconcile, Dataplane, IpCommands, Network, NetworkState, Remote,
};

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

#[test]
fn a_network_is_made_read_back_and_removed() {
    if !is_root() {
        let why = "needs root (network namespaces, VXLAN devices)";
        // Where every test must run (`.ci/run`), a skip is a failure.
        assert!(std::env::var_os("SHOAL_E2E_REQUIRED").is_none(), "{why}");
        eprintln!("SKIPPED: {why}");
        return;
    }
    let network = Network {
        id: "kerneltest00001".into(),
        namespace: namespace_of("kernltst", "kerneltest00001"),
        vni: 16_000_001,
        subnet: Ipv4Addr::new(10, 231, 0, 0),
        prefix: 24,
        gateway: Ipv4Addr::new(10, 231, 0, 1),
        mtu: 1450,
        internal: false,
        encrypted: false,
    };
    let remote = |last: u8, node: u8| Remote {
        addr: Ipv4Addr::new(10, 231, 0, last),
        node: Ipv4Addr::new(192, 0, 2, node),
    };
    let mut dp = IpCommands::new(namespace_prefix("kernltst"));
    // Leftovers of an earlier run that died.
    let _ = reconcile(&mut dp, &[]);
    let desired = vec![NetworkState {
        network: network.clone(),
        remotes: vec![remote(3, 12), remote(4, 13)],
    }];
    assert_eq!(reconcile(&mut dp, &desired).expect("made").len(), 3);
    let observed = dp.observe().expect("observed");
    let ours = &observed[&network.namespace()];
    assert_eq!(ours.vni, Some(network.vni));
    assert_eq!(ours.remotes.len(), 2, "{ours:?}");
    assert!(reconcile(&mut dp, &desired)
        .expect("nothing to do")
        .is_empty());

    // A remote moves to another node, one goes away.
    let moved = vec![NetworkState {
        network: network.clone(),
        remotes: vec![remote(3, 14)],
    }];
    reconcile(&mut dp, &moved).expect("changed");
    let observed = dp.observe().expect("observed");
    assert_eq!(
        observed[&network.namespace()]
            .remotes
            .iter()
            .copied()
            .collect::<Vec<_>>(),
        [remote(3, 14)]
    );

    let veth = dp.attach(&network, "ep0123456789abcdef").expect("attached");
    assert_eq!(veth, "shvep012345678");
    dp.detach("ep0123456789abcdef").expect("detached");

    assert_eq!(reconcile(&mut dp, &[]).expect("removed").len(), 1);
    assert!(
        dp.observe().expect("observed").is_empty(),
        "nothing left behind"
    );
}
