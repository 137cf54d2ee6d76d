//! The two Raft log stores on one disk: sled's `logs` tree (what `RaftNode` opens) and the
//! append-only segmented log, each driven through openraft's storage trait. Not a test:
//! run by hand to choose between them.
//!
//!   cargo run --release -p shoal-raft --example log_bench
//!
//! Per store, on a fresh directory under /var/tmp (a disk, where /tmp may be memory):
//! - sequential: one ~300-byte entry per append, each waited for until it is on disk,
//!   2000 times: p50 and p99 latency;
//! - group: 1000 appends submitted from concurrent tasks (in index order, as openraft's
//!   core submits them), each task waiting for its own: entries per second.
//!
//! Prints RESULT lines.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_raft::bench::Log;
use shoal_raft::RaftError;

const SEQUENTIAL: usize = 2000;
const GROUP: usize = 1000;
/// With the entry's log id, encoding and record header, about 300 bytes on disk.
const COMMAND: usize = 270;

type Open = fn(&Path) -> Result<Log, RaftError>;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), RaftError> {
    let root = tempfile::Builder::new()
        .prefix("shoal-log-bench-")
        .tempdir_in("/var/tmp")
        .map_err(|e| RaftError::Storage(format!("creating a directory in /var/tmp: {e}")))?;
    println!("stores under {}", root.path().display());
    let stores: [(&str, Open); 2] = [("sled", Log::sled), ("segments", Log::segments)];
    for (name, open) in stores {
        let log = open(&root.path().join(name))?;
        let mut latencies = sequential(&log).await?;
        latencies.sort();
        println!(
            "RESULT log_bench store={name} case=sequential appends={SEQUENTIAL} p50_us={} p99_us={}",
            percentile(&latencies, 50).as_micros(),
            percentile(&latencies, 99).as_micros(),
        );
        let elapsed = group(&log, SEQUENTIAL as u64 + 1).await?;
        println!(
            "RESULT log_bench store={name} case=group appends={GROUP} entries_per_s={:.0} elapsed_ms={:.1}",
            GROUP as f64 / elapsed.as_secs_f64(),
            elapsed.as_secs_f64() * 1000.0,
        );
    }
    Ok(())
}

fn command() -> Vec<u8> {
    vec![b'x'; COMMAND]
}

/// Entries 1..=SEQUENTIAL, one at a time: how long each took to be on disk.
async fn sequential(log: &Log) -> Result<Vec<Duration>, RaftError> {
    let mut latencies = Vec::with_capacity(SEQUENTIAL);
    for index in 1..=SEQUENTIAL as u64 {
        let start = Instant::now();
        log.submit(index, command()).await?.wait().await?;
        latencies.push(start.elapsed());
    }
    Ok(latencies)
}

/// GROUP entries from `first` on, each from a task of its own: the time until all are on
/// disk.
async fn group(log: &Log, first: u64) -> Result<Duration, RaftError> {
    // Taken in turn (tokio's mutex is fair), so entries reach the store in index order.
    let next = Arc::new(tokio::sync::Mutex::new(first));
    let start = Instant::now();
    let tasks: Vec<_> = (0..GROUP)
        .map(|_| {
            let log = log.clone();
            let next = next.clone();
            tokio::spawn(async move {
                let durable = {
                    let mut next = next.lock().await;
                    let index = *next;
                    *next += 1;
                    log.submit(index, command()).await?
                };
                durable.wait().await
            })
        })
        .collect();
    for task in tasks {
        task.await
            .map_err(|e| RaftError::Storage(format!("an append task failed: {e}")))??;
    }
    Ok(start.elapsed())
}

/// The `p`th percentile of sorted `values`.
fn percentile(values: &[Duration], p: usize) -> Duration {
    let at = (values.len() * p / 100).min(values.len().saturating_sub(1));
    values.get(at).copied().unwrap_or_default()
}
