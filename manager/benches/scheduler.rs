//! Issue 12's scheduler benchmarks, mirroring swarmkit's (manager/scheduler
//! scheduler_test.go, `benchScheduler`): N ready nodes and T tasks waiting, all of one
//! service and spec; one scheduling pass places them all and commits its decisions (in as
//! many store transactions as they need) to an in-memory store (no Raft: the benchmark is
//! about the scheduler). "constrained" gives every third node a label the tasks require,
//! as swarmkit's network-plugin variant makes only every third node fit. The nodes are
//! hollow (store objects, no agents). Run by hand, recorded in docs/BENCHMARKS.md:
//!
//!   cargo bench -p shoal-manager --bench scheduler [-- FILTER]
//!
//! e.g. `-- 1k_nodes/10k_tasks`; the 100k-node cases take minutes of set-up.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode};
use shoal_manager::scheduler::Scheduler;
use shoal_manager::store::{Object, Store};
use shoal_manager::testutil::{node, put_many};
use shoal_proto::{Placement, Task, TaskSpec, TaskState, TaskStatus};

/// (nodes, tasks, constrained), as swarmkit's benchmarks.
const CASES: &[(usize, usize, bool)] = &[
    (1_000, 1_000, false),
    (1_000, 10_000, false),
    (1_000, 100_000, false),
    (100_000, 1_000, false),
    (100_000, 100_000, false),
    (1_000, 1_000, true),
    (1_000, 10_000, true),
    (5_000, 100_000, true),
];

fn label(n: usize) -> String {
    match n {
        n if n >= 1000 && n % 1000 == 0 => format!("{}k", n / 1000),
        n => n.to_string(),
    }
}

fn waiting_task(i: usize, constrained: bool) -> Task {
    let constraints = if constrained {
        vec!["node.labels.special==yes".to_string()]
    } else {
        Vec::new()
    };
    Task {
        id: format!("task{i}"),
        service_id: "bench".into(),
        slot: i as u64 + 1,
        spec_version: 1,
        desired_state: TaskState::Running as i32,
        spec: Some(TaskSpec {
            placement: Some(Placement {
                constraints,
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: Some(TaskStatus {
            state: TaskState::Pending as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A store holding `nodes` ready nodes and `tasks` waiting tasks, written in transactions
/// of bounded size as any writer must.
fn populate(rt: &tokio::runtime::Runtime, nodes: usize, tasks: usize, constrained: bool) -> Store {
    let store = Store::in_memory();
    rt.block_on(async {
        let objects = (0..nodes)
            .map(|i| {
                let mut n = node(&format!("node{i}"));
                if constrained && i % 3 == 0 {
                    let spec = n.spec.get_or_insert_with(Default::default);
                    spec.labels.insert("special".into(), "yes".into());
                }
                Object::Node(n)
            })
            .chain((0..tasks).map(|i| Object::Task(waiting_task(i, constrained))));
        put_many(&store, objects).await;
    });
    store
}

fn scheduler(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("scheduler");
    // Every sample one pass on a fresh store (the set-up is not timed).
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(1));
    group.warm_up_time(Duration::from_millis(1));
    for &(nodes, tasks, constrained) in CASES {
        let name = if constrained { "constrained" } else { "plain" };
        let id = BenchmarkId::new(
            name,
            format!("{}_nodes/{}_tasks", label(nodes), label(tasks)),
        );
        group.bench_function(id, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                // Kept until the samples are taken: a store dropped in the loop is torn
                // down by its committer task on the runtime, beside the next pass.
                let mut done = Vec::new();
                for _ in 0..iters {
                    let store = populate(&rt, nodes, tasks, constrained);
                    let start = Instant::now();
                    let placed = rt
                        .block_on(Scheduler::new(store.clone()).pass())
                        .expect("scheduling pass");
                    total += start.elapsed();
                    assert_eq!(placed, tasks, "every task placed");
                    let assigned = store.view(|r| {
                        r.tasks()
                            .filter(|t| t.state() == TaskState::Assigned)
                            .count()
                    });
                    assert_eq!(assigned, tasks, "every placement committed");
                    done.push(store);
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group!(benches, scheduler);
criterion_main!(benches);
