//! The allocator on an in-memory store: networks, VIPs and task addresses, a leader change
//! (a fresh [`Ipam`] from the store), and a property test against double allocation.

use std::collections::HashSet;

use proptest::prelude::*;
use shoal_proto::{
    Cluster, EndpointSpec, Network, NetworkAttachmentConfig, NetworkSpec, Task, TaskState,
};

use super::*;
use crate::orchestrator::new_task;
use crate::testutil::{network_spec, port, publish, put, report, service};

/// Create a network as the Control API does: allocated inside the create transaction.
async fn create_network(store: &Store, id: &str, spec: NetworkSpec) -> Result<Network, String> {
    store
        .update(|tx| {
            let allocation = match pools(tx.read())
                .and_then(|pools| allocate_network(&tx.networks_now(), &spec, &pools))
            {
                Ok(a) => a,
                Err(e) => return Ok(Err(e.to_string())),
            };
            let network = Network {
                id: id.into(),
                meta: None,
                spec: Some(spec),
                allocation: Some(allocation),
            };
            tx.create(Object::Network(network.clone()))?;
            Ok::<_, StoreError>(Ok(network))
        })
        .await
        .expect("store write")
}

fn on_networks(id: &str, replicas: u64, networks: &[&str]) -> Service {
    let mut s = service(id, replicas);
    let spec = s.spec.as_mut().expect("spec");
    spec.task.as_mut().expect("task").networks = networks
        .iter()
        .map(|n| NetworkAttachmentConfig {
            target: n.to_string(),
            aliases: vec![format!("{id}-alias")],
        })
        .collect();
    s
}

fn tasks_of(service: &Service, n: u64) -> Vec<Object> {
    (1..=n)
        .map(|slot| Object::Task(new_task(service, slot, "", TaskState::Running)))
        .collect()
}

#[tokio::test]
async fn networks_take_the_next_free_subnet_and_vni_and_refuse_overlaps() {
    let store = Store::in_memory();
    let a = create_network(&store, "na", network_spec("a", ""))
        .await
        .expect("a");
    let b = create_network(&store, "nb", network_spec("b", ""))
        .await
        .expect("b");
    let c = create_network(&store, "nc", network_spec("c", "10.0.5.0/24"))
        .await
        .expect("c");
    let alloc = |n: &Network| {
        let a = n.allocation.clone().expect("allocated");
        (a.subnet, a.gateway, a.vni)
    };
    assert_eq!(alloc(&a), ("10.0.0.0/24".into(), "10.0.0.1".into(), 4096));
    assert_eq!(alloc(&b), ("10.0.1.0/24".into(), "10.0.1.1".into(), 4097));
    assert_eq!(alloc(&c), ("10.0.5.0/24".into(), "10.0.5.1".into(), 4098));
    assert_eq!(
        create_network(&store, "nd", network_spec("d", "10.0.0.0/16")).await,
        Err("subnet 10.0.0.0/16 overlaps subnet 10.0.0.0/24 of network a".into())
    );
    assert!(store.view(|r| r.network("nd").is_none()), "nothing written");
    let mut gw = network_spec("e", "10.9.0.0/24");
    gw.ipam.as_mut().expect("ipam").gateway = "10.9.0.254".into();
    let e = create_network(&store, "ne", gw).await.expect("e");
    assert_eq!(alloc(&e).1, "10.9.0.254");
}

#[tokio::test]
async fn the_pool_of_the_cluster_is_used_and_its_end_is_an_error() {
    let store = Store::in_memory();
    put(
        &store,
        vec![Object::Cluster(Cluster {
            id: "c".into(),
            default_addr_pool: vec!["10.50.0.0/23".into()],
            subnet_size: 24,
            ..Default::default()
        })],
    )
    .await;
    create_network(&store, "n1", network_spec("one", ""))
        .await
        .expect("one");
    let two = create_network(&store, "n2", network_spec("two", ""))
        .await
        .expect("two");
    assert_eq!(two.allocation.expect("allocated").subnet, "10.50.1.0/24");
    assert_eq!(
        create_network(&store, "n3", network_spec("three", "")).await,
        Err("the address pool (10.50.0.0/23) has no free /24 subnet left: remove unused networks, or give --subnet".into())
    );
}

#[tokio::test]
async fn services_get_a_vip_per_network_and_tasks_an_address_each() {
    let store = Store::in_memory();
    create_network(&store, "front", network_spec("front", "10.1.0.0/24"))
        .await
        .expect("front");
    create_network(&store, "back", network_spec("back", "10.2.0.0/24"))
        .await
        .expect("back");
    let web = on_networks("web", 3, &["front", "back"]);
    let mut dns = on_networks("dns", 1, &["back"]);
    dns.spec.as_mut().expect("spec").endpoint = Some(EndpointSpec {
        mode: EndpointMode::Dnsrr as i32,
        ports: vec![],
    });
    let mut objects = vec![Object::Service(web.clone()), Object::Service(dns.clone())];
    objects.extend(tasks_of(&web, 3));
    objects.extend(tasks_of(&dns, 1));
    put(&store, objects).await;
    let allocator = Allocator::new(store.clone());
    assert_eq!(allocator.pass().await.expect("pass"), 5);
    assert_eq!(allocator.pass().await.expect("pass"), 0, "settled");

    store.view(|r| {
        let web = r.service("web").expect("web");
        let vips: Vec<(&str, &str)> = web
            .vips
            .iter()
            .map(|v| (v.network_id.as_str(), v.addr.as_str()))
            .collect();
        assert_eq!(vips, [("front", "10.1.0.2/24"), ("back", "10.2.0.2/24")]);
        assert!(
            r.service("dns").expect("dns").vips.is_empty(),
            "dnsrr has no VIP"
        );
        let mut seen = HashSet::new();
        for task in r.tasks() {
            assert!(task.is_attached(), "{task:?}");
            for a in &task.networks {
                assert_eq!(a.aliases, [format!("{}-alias", task.service_id)]);
                for addr in &a.addresses {
                    assert!(
                        seen.insert((a.network_id.clone(), addr.clone())),
                        "{addr} twice"
                    );
                }
            }
        }
        assert_eq!(seen.len(), 3 * 2 + 1);
    });
}

#[tokio::test]
async fn mesh_publishers_join_ingress_and_every_node_gets_a_router_until_it_goes() {
    let store = Store::in_memory();
    let mut spec = network_spec("ingress", "10.255.0.0/24");
    spec.ingress = true;
    create_network(&store, "ing", spec).await.expect("ingress");
    create_network(&store, "front", network_spec("front", "10.1.0.0/24"))
        .await
        .expect("front");
    let web = publish(
        on_networks("web", 2, &["front"]),
        vec![port(8080, 80, shoal_proto::PublishMode::Ingress)],
    );
    let mut objects = vec![
        Object::Node(crate::testutil::node("n1")),
        Object::Node(crate::testutil::node("n2")),
        Object::Service(web.clone()),
    ];
    objects.extend(tasks_of(&web, 2));
    put(&store, objects).await;
    // Not placeable before the allocator has given them ingress too.
    assert!(store.view(|r| r.tasks().all(|t| t.publishes_ingress() && !t.is_attached())));
    let allocator = Allocator::new(store.clone());
    allocator.pass().await.expect("pass");
    assert_eq!(allocator.pass().await.expect("pass"), 0, "settled");
    let routers: Vec<String> = store.view(|r| {
        for task in r.tasks() {
            assert!(task.is_attached(), "{task:?}");
            let ids: Vec<(&str, bool)> = task
                .networks
                .iter()
                .map(|a| (a.network_id.as_str(), a.ingress))
                .collect();
            // The spec's networks first, ingress last.
            assert_eq!(ids, [("front", false), ("ing", true)]);
        }
        r.nodes()
            .map(|n| n.ingress_addr().expect("a router").to_string())
            .collect()
    });
    assert_eq!(routers.len(), 2);
    let ipam = store.view(Ipam::load);
    assert!(routers.iter().all(|a| ipam.is_used("ing", a)));
    assert!(!routers.iter().any(|a| store.view(|r| r
        .tasks()
        .any(|t| t.networks.iter().any(|n| n.addresses.contains(a))))));
    // A node removed: its router address is free again.
    store
        .update(|tx| {
            let n2 = tx.read().node("n2").cloned().expect("n2");
            tx.remove(Object::Node(n2));
            Ok::<_, StoreError>(())
        })
        .await
        .expect("removed");
    let ipam = store.view(Ipam::load);
    let n2 = routers.iter().filter(|a| !ipam.is_used("ing", a)).count();
    assert_eq!(n2, 1);
}

#[tokio::test]
async fn a_replacement_already_bound_to_its_node_is_attached_too() {
    let store = Store::in_memory();
    create_network(&store, "front", network_spec("front", "10.5.0.0/24"))
        .await
        .expect("front");
    let web = on_networks("web", 1, &["front"]);
    // A restart's replacement keeps its slot's node before the scheduler sees it.
    let task = new_task(&web, 1, "n3", TaskState::Running);
    put(
        &store,
        vec![Object::Service(web), Object::Task(task.clone())],
    )
    .await;
    Allocator::new(store.clone()).pass().await.expect("pass");
    let got = store.view(|r| r.task(&task.id).cloned()).expect("task");
    assert!(got.is_attached(), "{got:?}");
}

#[tokio::test]
async fn an_address_is_free_again_once_its_holder_is_gone_and_a_new_leader_agrees() {
    let store = Store::in_memory();
    create_network(&store, "tiny", network_spec("tiny", "10.3.0.0/29"))
        .await
        .expect("tiny");
    // /29: 6 hosts, the gateway takes one, the VIP one: 4 for tasks.
    let web = on_networks("web", 5, &["tiny"]);
    let mut objects = vec![Object::Service(web.clone())];
    objects.extend(tasks_of(&web, 5));
    put(&store, objects).await;
    let allocator = Allocator::new(store.clone());
    allocator.pass().await.expect("pass");
    let (attached, waiting): (Vec<Task>, Vec<Task>) =
        store.view(|r| r.tasks().cloned().partition(|t| t.is_attached()));
    assert_eq!(attached.len(), 4);
    assert_eq!(waiting.len(), 1);
    let why = waiting[0].status.clone().expect("status").err;
    assert_eq!(
        why,
        "waiting for an overlay address: network tiny has no free address left: remove unused tasks or services, or use a larger subnet"
    );
    // The scheduler leaves it alone meanwhile.
    assert!(store.view(|r| crate::scheduler::plan(r)
        .iter()
        .all(|(t, _)| t.id != waiting[0].id)));

    // One task's container stops for good: its address goes to the waiting task.
    let freed = attached[0].networks[0].addresses[0].clone();
    report(&store, &attached[0].id, TaskState::Failed).await;
    allocator.pass().await.expect("pass");
    let got = store
        .view(|r| r.task(&waiting[0].id).cloned())
        .expect("task");
    assert_eq!(got.networks[0].addresses, std::slice::from_ref(&freed));

    // A new leader rebuilds the same picture from the store alone.
    let ipam = store.view(Ipam::load);
    assert!(ipam.is_used("tiny", &freed));
    assert!(ipam.is_used("tiny", "10.3.0.2/29"), "the VIP");
    assert!(ipam.is_used("tiny", "10.3.0.1"), "the gateway");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Whatever tasks come, die and are removed, no two holders ever share an address, and
    /// every task still wanted ends attached while the subnet has room.
    #[test]
    fn no_address_is_ever_held_twice(ops in proptest::collection::vec((0u8..3, 0u8..16), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let store = Store::in_memory();
            create_network(&store, "n", network_spec("n", "10.4.0.0/27")).await.expect("n");
            let web = on_networks("web", 0, &["n"]);
            put(&store, vec![Object::Service(web.clone())]).await;
            let allocator = Allocator::new(store.clone());
            let mut slot = 0;
            for (op, pick) in ops {
                let ids: Vec<String> = store.view(|r| r.tasks().map(|t| t.id.clone()).collect());
                let target = (!ids.is_empty()).then(|| ids[pick as usize % ids.len()].clone());
                match (op, target) {
                    (0, _) | (_, None) => {
                        slot += 1;
                        put(&store, tasks_of_slot(&web, slot)).await;
                    }
                    (1, Some(id)) => report(&store, &id, TaskState::Complete).await,
                    (_, Some(id)) => {
                        store
                            .update(|tx| {
                                if let Some(t) = tx.task(&id) {
                                    tx.remove(Object::Task(t));
                                }
                                Ok::<_, StoreError>(())
                            })
                            .await
                            .expect("remove");
                    }
                }
                allocator.pass().await.expect("pass");
                let holders = store.view(|r| {
                    let mut seen = HashSet::new();
                    for vip in &r.service("web").expect("web").vips {
                        assert!(seen.insert(vip.addr.clone()));
                    }
                    for t in r.tasks().filter(|t| t.holds_addresses()) {
                        for a in &t.networks {
                            for addr in &a.addresses {
                                assert!(seen.insert(addr.clone()), "{addr} held twice");
                            }
                        }
                    }
                    seen.len()
                });
                // /27: 30 hosts, minus the gateway.
                let waiting = store.view(|r| r.tasks().filter(|t| waits(t)).count());
                assert!(waiting == 0 || holders == 29, "{waiting} wait with {holders} taken");
            }
        });
    }
}

fn tasks_of_slot(service: &Service, slot: u64) -> Vec<Object> {
    vec![Object::Task(new_task(
        service,
        slot,
        "",
        TaskState::Running,
    ))]
}

/// The run loop keeps what waits from the events: objects written in many transactions,
/// in an order that makes some wait (tasks before their network exists, a pool that runs
/// out and is freed again), all end attached, and the kept sets match a walk afresh.
#[tokio::test]
async fn the_run_loop_attaches_from_its_kept_sets_as_a_full_pass_would() {
    let store = Store::in_memory();
    let cancel = tokio_util::sync::CancellationToken::new();
    tokio::spawn(Allocator::new(store.clone()).run(cancel.clone()));
    // Tasks first: they wait for a network that does not exist yet.
    let web = on_networks("web", 4, &["small"]);
    put(&store, vec![Object::Service(web.clone())]).await;
    for task in tasks_of(&web, 4) {
        put(&store, vec![task]).await;
    }
    // A /29: 5 usable addresses after the gateway, for a VIP and 4 tasks, then no more.
    create_network(&store, "small", network_spec("small", "10.9.0.0/29"))
        .await
        .expect("network");
    crate::testutil::wait_for(&store, "web's VIP and 4 tasks attached", |r| {
        r.service("web").is_some_and(|s| s.vips.len() == 1)
            && r.tasks_of_service("web")
                .filter(|t| t.is_attached())
                .count()
                == 4
    })
    .await;
    // One more task finds the pool empty and waits, saying why...
    let extra = new_task(&web, 5, "", TaskState::Running);
    put(&store, vec![Object::Task(extra.clone())]).await;
    crate::testutil::wait_for(&store, "the fifth task told why it waits", |r| {
        r.task(&extra.id)
            .and_then(|t| t.status.as_ref())
            .is_some_and(|s| s.err.contains("waiting for an overlay address"))
    })
    .await;
    // ...until a task that held an address is gone.
    let gone = store.view(|r| {
        r.tasks_of_service("web")
            .find(|t| t.is_attached())
            .cloned()
            .expect("an attached task")
    });
    store
        .update(|tx| {
            tx.remove(Object::Task(gone));
            Ok::<_, StoreError>(())
        })
        .await
        .expect("remove");
    crate::testutil::wait_for(&store, "the fifth task attached", |r| {
        r.task(&extra.id).is_some_and(|t| t.is_attached())
    })
    .await;
    cancel.cancel();
    // What a pass would find to do afresh: nothing, as the kept sets say.
    let mut fresh = Pending::default();
    let ingress = store.view(ingress_id);
    let work = store.view(|r| fresh.work(r, ingress.as_deref()));
    assert!(work.nodes.is_empty() && work.services.is_empty() && work.tasks.is_empty());
}

#[tokio::test]
async fn kept_sets_follow_the_events() {
    let store = Store::in_memory();
    let mut events = store.watch();
    let mut pending = Pending::default();
    // The first pass walks everything; after it, the sets are what waits.
    store.view(|r| pending.work(r, None));
    let web = on_networks("web", 2, &["n"]);
    let mut objects = vec![Object::Service(web.clone())];
    objects.extend(tasks_of(&web, 2));
    put(&store, objects).await;
    while let Ok(e) = events.try_recv() {
        assert!(pending.note(&e), "a new waiting object calls for a pass");
    }
    let mut fresh = Pending::default();
    let kept = store.view(|r| {
        pending.work(r, None);
        pending.ids()
    });
    let walked = store.view(|r| {
        fresh.work(r, None);
        fresh.ids()
    });
    assert_eq!(kept, walked);
    assert_eq!(kept[1].len(), 1, "the service waits for its VIP");
    assert_eq!(kept[2].len(), 2, "both tasks wait for addresses");
}
