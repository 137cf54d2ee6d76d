//! Issue 12, item 3: how soon a manager whose store holds many objects serves again after
//! a restart. A one-member manager on disk (the segmented Raft log, the snapshot in sled)
//! is filled with OBJECTS tasks (of OBJECTS/100 services) in bounded transactions, then
//! WRITES small writes so the log runs past a snapshot, and closed. It is then opened
//! again, timed: `Manager::open` (the log scanned, the snapshot restored, the log after it
//! re-applied), leading again, and its first write committed. Not a test: run by hand,
//! recorded in docs/BENCHMARKS.md.
//!
//!   cargo run --release -p shoal-manager --example restart_bench -- [OBJECTS] [WRITES] [RUNS]
//!
//! Defaults: 100,000 objects, 6,000 writes after them (a snapshot every 5,000 entries),
//! 3 restarts. Prints RESULT lines.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use shoal_manager::orchestrator::new_task;
use shoal_manager::store::Object;
use shoal_manager::testutil::{put_many, service};
use shoal_manager::{Manager, ManagerConfig};
use shoal_proto::TaskState;

const ADDR: &str = "127.0.0.1:1";

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

async fn open(dir: &Path) -> Manager {
    let config = ManagerConfig::new("n1".into(), 1, dir.to_path_buf(), ADDR.into());
    Manager::open(config).await.expect("open the manager")
}

async fn lead(manager: &Manager) {
    let mut leadership = manager.raft().leadership();
    tokio::time::timeout(
        Duration::from_secs(30),
        leadership.wait_for(|l| l.is_leader),
    )
    .await
    .expect("leads within 30 s")
    .expect("leadership watch");
}

/// One small committed write (a service of no replicas).
async fn write(manager: &Manager, i: usize) {
    manager
        .store()
        .update(|tx| tx.create(Object::Service(service(&format!("w{i}"), 0))))
        .await
        .expect("write");
}

/// Fills a new manager in `dir` and closes it.
async fn fill(dir: &Path, objects: usize, writes: usize) {
    let started = Instant::now();
    let manager = open(dir).await;
    manager.raft().initialize(ADDR.into()).await.expect("init");
    lead(&manager).await;
    let services: Vec<_> = (0..objects.div_ceil(100))
        .map(|s| service(&format!("s{s}"), 0))
        .collect();
    let tasks: Vec<Object> = (0..objects)
        .map(|i| {
            let s = &services[i / 100];
            Object::Task(new_task(s, (i % 100) as u64 + 1, "", TaskState::Running))
        })
        .collect();
    put_many(
        manager.store(),
        services.iter().cloned().map(Object::Service),
    )
    .await;
    put_many(manager.store(), tasks).await;
    for i in 0..writes {
        write(&manager, i).await;
    }
    manager.shutdown().await.expect("shutdown");
    eprintln!(
        "restart_bench: {objects} tasks and {writes} writes made in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Opens the manager in `dir` as a restarted shoald does, timed.
async fn reopen(dir: &Path, objects: usize, run: usize) {
    let t0 = Instant::now();
    let manager = open(dir).await;
    let opened = t0.elapsed();
    let held = manager.store().view(|r| r.tasks().count());
    assert_eq!(held, objects, "every task restored");
    lead(&manager).await;
    let leading = t0.elapsed();
    write(&manager, 1_000_000 + run).await;
    let written = t0.elapsed();
    let log_bytes: u64 = std::fs::read_dir(dir.join("raft/log"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    println!(
        "RESULT restart_bench objects={objects} log_bytes={log_bytes} open_ms={:.0} leading_ms={:.0} first_write_ms={:.0}",
        opened.as_secs_f64() * 1000.0,
        leading.as_secs_f64() * 1000.0,
        written.as_secs_f64() * 1000.0,
    );
    manager.shutdown().await.expect("shutdown");
}

/// Runs this program again with `args`: each phase is a process of its own, as shoald
/// restarting is (a closed manager's sled database stays locked until its process ends).
fn phase(args: &[String]) {
    let exe = std::env::current_exe().expect("current exe");
    let status = std::process::Command::new(exe)
        .args(args)
        .status()
        .expect("run a phase");
    assert!(status.success(), "phase {args:?} failed");
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(phase @ ("--fill" | "--reopen")) = args.get(1).map(String::as_str) {
        // --fill DIR OBJECTS WRITES | --reopen DIR OBJECTS RUN
        let dir = PathBuf::from(&args[2]);
        let objects = arg(3, 0);
        let n = arg(4, 0);
        return match phase {
            "--fill" => fill(&dir, objects, n).await,
            _ => reopen(&dir, objects, n).await,
        };
    }
    let objects = arg(1, 100_000);
    let writes = arg(2, 6_000);
    let runs = arg(3, 3);
    let dir = tempfile::Builder::new()
        .prefix("shoal-restart-bench-")
        .tempdir_in("/var/tmp")
        .expect("tempdir");
    let path = dir.path().display().to_string();
    phase(&[
        "--fill".into(),
        path.clone(),
        objects.to_string(),
        writes.to_string(),
    ]);
    for run in 0..runs {
        phase(&[
            "--reopen".into(),
            path.clone(),
            objects.to_string(),
            run.to_string(),
        ]);
    }
}
