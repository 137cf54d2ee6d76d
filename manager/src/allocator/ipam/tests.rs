use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use proptest::prelude::*;

use super::*;

fn subnet(s: &str) -> Subnet {
    s.parse().expect("a valid subnet")
}

#[test]
fn subnets_parse_and_say_what_is_wrong() {
    assert_eq!(subnet("10.1.2.0/24").to_string(), "10.1.2.0/24");
    assert_eq!(
        "10.1.2.3/24"
            .parse::<Subnet>()
            .expect_err("host bits")
            .to_string(),
        "subnet 10.1.2.3/24 has host bits set: did you mean 10.1.2.0/24?"
    );
    for bad in ["10.1.2.0", "10.1.2.0/33", "ten/8", "", "10.1.2.0/x"] {
        assert!(
            matches!(bad.parse::<Subnet>(), Err(IpamError::InvalidSubnet(_))),
            "{bad}"
        );
    }
    assert!(subnet("10.0.0.0/8").overlaps(&subnet("10.200.0.0/16")));
    assert!(!subnet("10.0.0.0/24").overlaps(&subnet("10.0.1.0/24")));
    assert!(subnet("10.0.0.0/24").is_host(Ipv4Addr::new(10, 0, 0, 254)));
    assert!(!subnet("10.0.0.0/24").is_host(Ipv4Addr::new(10, 0, 0, 255)));
    assert!(!subnet("10.0.0.0/24").is_host(Ipv4Addr::new(10, 0, 0, 0)));
}

#[test]
fn pools_hand_out_the_first_free_subnet_and_say_when_none_is_left() {
    let pools = Pools::new(&["10.10.0.0/22".into()], 24).expect("pools");
    let mut taken = vec![subnet("10.10.1.0/24")];
    assert_eq!(pools.next_free(&taken), Ok(subnet("10.10.0.0/24")));
    taken.push(subnet("10.10.0.0/25"));
    assert_eq!(pools.next_free(&taken), Ok(subnet("10.10.2.0/24")));
    taken.push(subnet("10.10.2.0/23"));
    assert_eq!(
        pools.next_free(&taken).expect_err("full").to_string(),
        "the address pool (10.10.0.0/22) has no free /24 subnet left: remove unused networks, or give --subnet"
    );
    assert_eq!(Pools::new(&[], 0), Ok(Pools::default()));
    assert_eq!(Pools::new(&[], 30), Err(IpamError::InvalidSize(30)));
    assert!(matches!(
        Pools::new(&["10.0.0.0/26".into()], 24),
        Err(IpamError::PoolTooSmall(..))
    ));
}

#[test]
fn vnis_are_the_lowest_free_from_4096() {
    let mut taken = BTreeSet::from([1, 4096, 4097, 4099]);
    assert_eq!(next_vni(&taken), Ok(4098));
    taken.insert(4098);
    assert_eq!(next_vni(&taken), Ok(4100));
    let all: BTreeSet<u32> = (FIRST_VNI..=LAST_VNI).collect();
    assert_eq!(next_vni(&all), Err(IpamError::NoVni));
}

#[test]
fn an_address_space_keeps_the_network_broadcast_and_gateway() {
    let net = subnet("10.0.9.0/29");
    let gw = gateway(net, "").expect("gateway");
    assert_eq!(gw, Ipv4Addr::new(10, 0, 9, 1));
    let mut space = AddressSpace::new("front", net, gw).expect("space");
    let got: Vec<Ipv4Addr> = (0..5).map(|_| space.allocate().expect("free")).collect();
    assert_eq!(got.first(), Some(&Ipv4Addr::new(10, 0, 9, 2)));
    assert_eq!(got.last(), Some(&Ipv4Addr::new(10, 0, 9, 6)));
    assert_eq!(
        space.allocate().expect_err("full").to_string(),
        "network front has no free address left: remove unused tasks or services, or use a larger subnet"
    );
    space.release(Ipv4Addr::new(10, 0, 9, 4));
    assert_eq!(space.allocate(), Ok(Ipv4Addr::new(10, 0, 9, 4)));
    assert_eq!(
        space.reserve(Ipv4Addr::new(10, 0, 9, 4)),
        Err(IpamError::InUse(Ipv4Addr::new(10, 0, 9, 4), "front".into()))
    );
    assert!(matches!(
        gateway(net, "10.0.10.1"),
        Err(IpamError::GatewayOutside { .. })
    ));
    assert!(matches!(
        gateway(net, "10.0.9.7"),
        Err(IpamError::GatewayOutside { .. })
    ));
    assert!(matches!(
        AddressSpace::new("tiny", subnet("10.0.9.0/31"), Ipv4Addr::new(10, 0, 9, 0)),
        Err(IpamError::TooSmall(_))
    ));
}

#[derive(Debug, Clone)]
enum Op {
    Allocate,
    Release(u8),
    Reserve(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Allocate),
        1 => any::<u8>().prop_map(Op::Release),
        1 => any::<u8>().prop_map(Op::Reserve),
    ]
}

proptest! {
    /// Against a model set of taken addresses: an address is never handed out twice, never
    /// the network, broadcast or gateway address, and allocation fails only when the
    /// model has no free host left.
    #[test]
    fn an_address_space_never_hands_out_an_address_twice(
        prefix in 24u8..=30,
        gateway_at in 1u32..6,
        ops in proptest::collection::vec(op(), 1..400),
    ) {
        let net = Subnet::new(Ipv4Addr::new(10, 7, 0, 0), prefix).expect("aligned");
        let hosts = net.size() as u32 - 2;
        let gw = Ipv4Addr::from(u32::from(net.base()) + gateway_at.min(hosts));
        let mut space = AddressSpace::new("n", net, gw).expect("space");
        let mut model: BTreeSet<Ipv4Addr> = BTreeSet::from([gw]);
        let host = |n: u8| Ipv4Addr::from(u32::from(net.base()) + 1 + u32::from(n) % hosts);
        for op in ops {
            match op {
                Op::Allocate => match space.allocate() {
                    Ok(addr) => {
                        prop_assert!(net.is_host(addr), "{addr} is no host of {net}");
                        prop_assert!(model.insert(addr), "{addr} handed out twice");
                    }
                    Err(e) => {
                        prop_assert_eq!(e, IpamError::Full("n".into()));
                        prop_assert_eq!(model.len() as u32, hosts);
                    }
                },
                Op::Release(n) => {
                    let addr = host(n);
                    if addr != gw {
                        space.release(addr);
                        model.remove(&addr);
                    }
                }
                Op::Reserve(n) => {
                    let addr = host(n);
                    let result = space.reserve(addr);
                    prop_assert_eq!(result.is_ok(), model.insert(addr));
                }
            }
            prop_assert_eq!(space.free(), u64::from(hosts) - model.len() as u64);
        }
    }

    /// Whatever is taken, the subnet handed out lies in the pool, is aligned to its size,
    /// and overlaps nothing taken; and it is refused only when no such subnet exists.
    #[test]
    fn a_pool_never_hands_out_an_overlapping_subnet(
        taken in proptest::collection::vec((0u32..64, 22u8..=28), 0..40),
    ) {
        let pools = Pools::new(&["10.20.0.0/18".into()], 24).expect("pools");
        let taken: Vec<Subnet> = taken
            .into_iter()
            .map(|(i, prefix)| {
                let base = u32::from(Ipv4Addr::new(10, 20, 0, 0)) + (i << 8);
                Subnet::new(Ipv4Addr::from(base & (u32::MAX << (32 - prefix))), prefix)
                    .expect("aligned")
            })
            .collect();
        let pool = subnet("10.20.0.0/18");
        let free_exists = (0..64u32).any(|i| {
            let candidate = Subnet::new(
                Ipv4Addr::from(u32::from(pool.base()) + (i << 8)),
                24,
            ).expect("aligned");
            !taken.iter().any(|t| t.overlaps(&candidate))
        });
        match pools.next_free(&taken) {
            Ok(got) => {
                prop_assert!(pool.contains(got.base()));
                prop_assert_eq!(got.prefix(), 24);
                prop_assert!(!taken.iter().any(|t| t.overlaps(&got)), "{got} overlaps");
            }
            Err(_) => prop_assert!(!free_exists),
        }
    }
}
