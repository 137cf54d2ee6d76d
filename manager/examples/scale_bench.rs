//! Issue 12's orchestrator benchmark: the time from `service scale` of one service to its
//! new tasks being assigned, on a cluster of SERVICES services of REPLICAS tasks each, and
//! on a cluster holding that one service only. The leader's loops (orchestrator,
//! allocator, scheduler) run as a manager runs them, over an in-memory store (no Raft:
//! the benchmark is about the loops' cost as the cluster grows, not about commits); the
//! nodes are hollow (store objects, no agents). Not a test: run by hand, recorded in
//! docs/BENCHMARKS.md.
//!
//!   cargo run --release -p shoal-manager --example scale_bench -- [SERVICES] [REPLICAS] [NODES]
//!   cargo run --release -p shoal-manager --example scale_bench -- big [REPLICAS] [NODES]
//!
//! Defaults: 1000 services, 100 replicas, 100 nodes. `big`: one service of REPLICAS
//! (default 100,000) created on NODES (default 1000) nodes: the time until every replica
//! is assigned, and the entries it took (the largest must stay under the store's limit).
//! Prints RESULT lines.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use tokio::sync::broadcast::error::RecvError;

use shoal_manager::orchestrator::new_task;
use shoal_manager::store::MAX_BATCH_BYTES;
use shoal_manager::store::{Object, ReadTx, Store, StoreError, Stored};
use shoal_manager::testutil::{
    measured_store, node, put_many, service, start_leader_loops, wait_for,
};
use shoal_proto::{TaskState, TaskStatus};

/// Scale-ups measured per cluster; the median is reported.
const ROUNDS: usize = 7;
/// Scale-ups before those, not counted: the loops' first passes over the whole cluster
/// (counting loads, walking what waits) are still running when the first ones start.
const WARM_UP: usize = 2;
/// Tasks added by each scale-up.
const STEP: u64 = 10;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), StoreError> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("big") {
        args.remove(0);
        let n = |i: usize, default: u64| {
            args.get(i)
                .map_or(default, |a| a.parse().expect("a number"))
        };
        return big(n(0, 100_000), n(1, 1000)).await;
    }
    let args: Vec<u64> = args
        .iter()
        .map(|a| a.parse().expect("numbers: SERVICES REPLICAS NODES"))
        .collect();
    let services = args.first().copied().unwrap_or(1000);
    let replicas = args.get(1).copied().unwrap_or(100);
    let nodes = args.get(2).copied().unwrap_or(100);
    let empty = measure(1, replicas, nodes).await?;
    let full = measure(services, replicas, nodes).await?;
    println!(
        "RESULT scale_bench +{STEP} tasks: cluster of 1 service: median {:.1} ms; cluster of {services} services x {replicas} tasks: median {:.1} ms; ratio {:.2}",
        ms(empty),
        ms(full),
        full.as_secs_f64() / empty.as_secs_f64()
    );
    Ok(())
}

/// One service of `replicas` created on `nodes` empty nodes: until every replica is
/// assigned.
async fn big(replicas: u64, nodes: u64) -> Result<(), StoreError> {
    let (store, proposer) = measured_store();
    put_many(
        &store,
        (0..nodes).map(|n| Object::Node(node(&format!("node{n}")))),
    )
    .await;
    let cancel = start_leader_loops(&store);
    let before = proposer.entries();
    let assigned = |r: &ReadTx<'_>| {
        r.tasks_of_service("big")
            .filter(|t| t.state() >= TaskState::Assigned)
            .map(|t| t.id.clone())
            .collect::<HashSet<String>>()
    };
    // Counted from the events (a walk of every task on each would be the benchmark).
    let mut events = store.watch();
    let start = Instant::now();
    store
        .update(|tx| tx.create(Object::Service(service("big", replicas))))
        .await?;
    let mut seen = HashSet::new();
    while seen.len() < replicas as usize {
        match events.recv().await {
            Ok(event) => {
                if let Some(Stored::Task(t)) = event.object() {
                    if t.state() >= TaskState::Assigned {
                        seen.insert(t.id.clone());
                    }
                }
            }
            Err(RecvError::Lagged(_)) => seen = store.view(assigned),
            Err(RecvError::Closed) => break,
        }
    }
    let took = start.elapsed();
    assert_eq!(store.view(assigned).len(), replicas as usize);
    cancel.cancel();
    println!(
        "RESULT scale_bench big: {replicas} replicas on {nodes} nodes assigned in {:.2} s, {} entries, largest {} bytes (limit {MAX_BATCH_BYTES})",
        took.as_secs_f64(),
        proposer.entries() - before,
        proposer.largest(),
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The median time from a scale-up of one service to its new tasks all being assigned,
/// on a cluster of `services` services of `replicas` running tasks over `nodes` nodes.
async fn measure(services: u64, replicas: u64, nodes: u64) -> Result<Duration, StoreError> {
    let store = Store::in_memory();
    let setup = Instant::now();
    populate(&store, services, replicas, nodes).await?;
    let cancel = start_leader_loops(&store);
    // The loops' first pass finds everything in place.
    let target = "svc0".to_string();
    let mut times = Vec::new();
    let mut want = replicas;
    let mut warm_up = Vec::new();
    for round in 0..WARM_UP + ROUNDS {
        want += STEP;
        let start = Instant::now();
        store
            .update(|tx| {
                let mut s = tx.service(&target).expect("the measured service");
                s.spec.get_or_insert_with(Default::default).replicas = want;
                tx.update(Object::Service(s))
            })
            .await?;
        let want = want as usize;
        wait_for(&store, "the new tasks assigned", |r| {
            r.tasks_of_service(&target)
                .filter(|t| !t.node_id.is_empty() && t.state() >= TaskState::Assigned)
                .count()
                >= want
        })
        .await;
        if round < WARM_UP {
            warm_up.push(start.elapsed());
        } else {
            times.push(start.elapsed());
        }
    }
    cancel.cancel();
    times.sort();
    let rounded = |ts: &[Duration]| {
        ts.iter()
            .map(|t| (ms(*t) * 10.0).round() / 10.0)
            .collect::<Vec<_>>()
    };
    println!(
        "RESULT scale_bench cluster {services} x {replicas} on {nodes} nodes (set up in {:.1} s): +{STEP} tasks assigned in {:?} ms (warm-up, not counted: {:?} ms)",
        setup.elapsed().as_secs_f64(),
        rounded(&times),
        rounded(&warm_up),
    );
    Ok(times[times.len() / 2])
}

/// Nodes, services and their tasks, already assigned and running, written in batches.
async fn populate(
    store: &Store,
    services: u64,
    replicas: u64,
    nodes: u64,
) -> Result<(), StoreError> {
    let node_ids: Vec<String> = (0..nodes).map(|n| format!("node{n}")).collect();
    store
        .update(|tx| {
            for id in &node_ids {
                tx.create(Object::Node(node(id)))?;
            }
            Ok::<_, StoreError>(())
        })
        .await?;
    for s in 0..services {
        let svc = service(&format!("svc{s}"), replicas);
        store
            .update(|tx| {
                for slot in 1..=replicas {
                    let on = &node_ids[((s * replicas + slot) % nodes) as usize];
                    let mut task = new_task(&svc, slot, on, TaskState::Running);
                    task.status = Some(TaskStatus {
                        state: TaskState::Running as i32,
                        message: "started".into(),
                        ..Default::default()
                    });
                    tx.create(Object::Task(task))?;
                }
                tx.create(Object::Service(svc))
            })
            .await?;
    }
    Ok(())
}
