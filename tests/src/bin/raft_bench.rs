//! Commit-rate benchmark, one load generator for Shoal and for etcd so neither side pays for
//! a slower client: CLIENTS tokio tasks each loop for SECONDS writing a new object and
//! removing it (two commits per loop, both counted), over CONNS HTTP/2 connections
//! (default: one per 100 clients). Used by deploy/bench (see docs/BENCHMARKS.md); not a
//! test.
//!
//!   raft_bench shoal ADDR DATA_DIR CLIENTS SECONDS [CONNS]
//!   raft_bench etcd ENDPOINT CLIENTS SECONDS [CONNS]
//!
//! Shoal: `CreateService` of a new service with 0 replicas, then `RemoveService` of it,
//! through the Control API over mTLS: each call is a Raft commit (proposed, appended and
//! flushed on a majority, applied) before it is answered. ADDR: the leader's host:port
//! (e.g. 10.79.0.11:4242, so run it inside that host's network namespace); DATA_DIR: a
//! manager's data dir (its certificates, the key sealed with the data key in keys.json).
//! etcd: `Put` of a new key with a 128-byte value, then `Delete` of it, over etcd's gRPC
//! API (etcd-client); ENDPOINT: the leader's client URL (http://127.0.0.1:12379).
//! Prints one line: commits/s and latency percentiles of single calls.
//!
//! With RAFT_BENCH_PRELOAD=N, N objects (services, or keys) are made first by all the
//! clients and left in place, untimed: the run then has a store of that size (snapshots
//! of it taken under the load, as the log grows).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use shoal_pki::TlsClient;
use shoal_proto::{ControlClient, CreateServiceRequest, RemoveServiceRequest};
use tokio::sync::Mutex;
use tonic::transport::Channel;

/// What each client task writes through.
#[derive(Clone)]
enum Writer {
    Shoal(ControlClient<Channel>),
    Etcd(etcd_client::KvClient),
}

/// Bytes of each etcd value (a service spec as the Control API stores it is of that order).
const ETCD_VALUE: usize = 128;

impl Writer {
    /// One commit that makes `name`.
    async fn make(&mut self, name: &str) -> Result<(), String> {
        match self {
            Writer::Shoal(c) => c
                .create_service(CreateServiceRequest {
                    spec: Some(shoal_tests::sleeping_service(name, 0)),
                })
                .await
                .map(|_| ())
                .map_err(|e| e.message().to_string()),
            Writer::Etcd(c) => c
                .put(name, vec![b'x'; ETCD_VALUE], None)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
        }
    }

    /// One commit that removes `name`.
    async fn remove(&mut self, name: &str) -> Result<(), String> {
        match self {
            Writer::Shoal(c) => c
                .remove_service(RemoveServiceRequest {
                    service: name.to_string(),
                })
                .await
                .map(|_| ())
                .map_err(|e| e.message().to_string()),
            Writer::Etcd(c) => c
                .delete(name, None)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
        }
    }
}

/// The CONNS connections' writers for the target the arguments name, and the arguments
/// after the target's own (CLIENTS SECONDS [CONNS]).
async fn writers(a: &[String]) -> Result<(Vec<Writer>, usize, f64)> {
    let usage = || {
        anyhow!(
            "usage: raft_bench shoal ADDR DATA_DIR CLIENTS SECONDS [CONNS] | raft_bench etcd ENDPOINT CLIENTS SECONDS [CONNS]"
        )
    };
    let (rest, target) = match a.get(1).map(String::as_str) {
        Some("shoal") if a.len() >= 6 => (&a[4..], "shoal"),
        Some("etcd") if a.len() >= 5 => (&a[3..], "etcd"),
        _ => return Err(usage()),
    };
    let clients: usize = rest[0].parse()?;
    let secs: f64 = rest[1].parse()?;
    let conns = match rest.get(2) {
        Some(c) => c.parse()?,
        None => clients.div_ceil(100),
    }
    .max(1);
    let mut out = Vec::new();
    if target == "shoal" {
        let certs = shoal_tests::node_certs(std::path::Path::new(&a[3]))?;
        let tls = TlsClient::new(&certs)?;
        for _ in 0..conns {
            let channel = shoal_pki::channel(&a[2], &tls).await?;
            out.push(Writer::Shoal(ControlClient::new(channel)));
        }
    } else {
        for _ in 0..conns {
            let client = etcd_client::Client::connect([a[2].as_str()], None).await?;
            out.push(Writer::Etcd(client.kv_client()));
        }
    }
    Ok((out, clients, secs))
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// Makes `total` objects that stay, over the clients, untimed.
async fn preload(conns: &[Writer], clients: usize, total: usize, run: u32) -> Result<()> {
    let start = Instant::now();
    let mut handles = Vec::new();
    for c in 0..clients {
        let mut writer = conns[c % conns.len()].clone();
        handles.push(tokio::spawn(async move {
            for i in (c..total).step_by(clients) {
                writer.make(&format!("pre{run}-{i}")).await?;
            }
            Ok::<_, String>(())
        }));
    }
    for h in handles {
        h.await?.map_err(|e| anyhow!("preloading: {e}"))?;
    }
    eprintln!(
        "raft_bench: preloaded {total} objects in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let a: Vec<String> = std::env::args().collect();
    let (conns, clients, secs) = writers(&a).await?;
    // (latency, when the call started, from the start of the run)
    let lat = Arc::new(Mutex::new(Vec::<(Duration, Duration)>::new()));
    let errors = Arc::new(Mutex::new((0usize, String::new())));
    let run = std::process::id();
    if let Some(total) = std::env::var("RAFT_BENCH_PRELOAD")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
    {
        preload(&conns, 500, total, run).await?;
    }
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let mut handles = Vec::new();
    for c in 0..clients {
        let mut writer = conns[c % conns.len()].clone();
        let lat = lat.clone();
        let errors = errors.clone();
        handles.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            let mut i = 0u64;
            let failed = |e: String| {
                let errors = errors.clone();
                async move {
                    let mut g = errors.lock().await;
                    g.0 += 1;
                    g.1 = e;
                }
            };
            while Instant::now() < deadline {
                let name = format!("rb{run}-{c}-{i}");
                i += 1;
                let t = Instant::now();
                if let Err(e) = writer.make(&name).await {
                    failed(e).await;
                    continue;
                }
                mine.push((t.elapsed(), t - start));
                let t = Instant::now();
                match writer.remove(&name).await {
                    Ok(()) => mine.push((t.elapsed(), t - start)),
                    Err(e) => failed(e).await,
                }
            }
            lat.lock().await.extend(mine);
        }));
    }
    for h in handles {
        h.await?;
    }
    let wall = start.elapsed().as_secs_f64();
    let mut calls = lat.lock().await.clone();
    calls.sort();
    let l: Vec<Duration> = calls.iter().map(|(d, _)| *d).collect();
    let e = errors.lock().await.clone();
    // The slowest calls and when they started (UTC), to set beside the servers' logs.
    let started_at = std::time::SystemTime::now() - start.elapsed();
    for (d, at) in calls.iter().rev().take(5) {
        let when = (started_at + *at)
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        eprintln!(
            "raft_bench: slow call {:.1} ms at {}.{:03} s (unix)",
            d.as_secs_f64() * 1000.0,
            when.as_secs(),
            when.subsec_millis()
        );
    }
    println!(
        "RESULT raft_bench {} clients={clients} conns={} secs={wall:.1}: commits={} commits/s={:.0} \
         latency ms p50={:.2} p90={:.2} p99={:.2} max={:.2} errors={}{}",
        a[1],
        conns.len(),
        l.len(),
        l.len() as f64 / wall,
        pct(&l, 0.5),
        pct(&l, 0.9),
        pct(&l, 0.99),
        pct(&l, 1.0),
        e.0,
        if e.0 > 0 {
            format!(" (last: {})", e.1)
        } else {
            String::new()
        }
    );
    Ok(())
}
