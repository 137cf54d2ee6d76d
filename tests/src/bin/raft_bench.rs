//! Raft write benchmark through the real path: Control API calls over mTLS to a manager,
//! each one a Raft commit (proposed, appended and flushed on a majority, applied) before it
//! is answered. Used by deploy/bench (see docs/BENCHMARKS.md); not a test.
//!
//!   raft_bench ADDR DATA_DIR CLIENTS SECONDS [CONNS]
//!
//! ADDR: the leader's host:port (e.g. 10.79.0.11:4242, so run it inside that host's network
//! namespace); DATA_DIR: a manager's data dir (its certificates, the key sealed with the
//! data key in its keys.json).
//! CLIENTS tasks each loop for SECONDS: `CreateService` of a new service with 0 replicas,
//! then `RemoveService` of it (two commits per loop, both counted), over CONNS HTTP/2
//! connections (default: one per 100 clients). Prints one line: commits/s and latency
//! percentiles of single calls.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use shoal_pki::TlsClient;
use shoal_proto::{ControlClient, CreateServiceRequest, RemoveServiceRequest, ServiceSpec};
use tokio::sync::Mutex;

fn spec(name: String) -> ServiceSpec {
    shoal_tests::sleeping_service(&name, 0)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> Result<()> {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 5 {
        return Err(anyhow!(
            "usage: raft_bench ADDR DATA_DIR CLIENTS SECONDS [CONNS]"
        ));
    }
    let addr = a[1].clone();
    let certs = shoal_tests::node_certs(std::path::Path::new(&a[2]))?;
    let clients: usize = a[3].parse()?;
    let secs: f64 = a[4].parse()?;
    let conns: usize = match a.get(5) {
        Some(c) => c.parse()?,
        None => clients.div_ceil(100),
    };
    let tls = TlsClient::new(&certs)?;
    let mut chans = Vec::new();
    for _ in 0..conns.max(1) {
        chans.push(shoal_pki::channel(&addr, &tls).await?);
    }
    let lat = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let errors = Arc::new(Mutex::new((0usize, String::new())));
    let run = std::process::id();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let mut handles = Vec::new();
    for c in 0..clients {
        let mut client = ControlClient::new(chans[c % chans.len()].clone());
        let lat = lat.clone();
        let errors = errors.clone();
        handles.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                let name = format!("rb{run}-{c}-{i}");
                i += 1;
                let t = Instant::now();
                let r = client
                    .create_service(CreateServiceRequest {
                        spec: Some(spec(name.clone())),
                    })
                    .await;
                if let Err(e) = r {
                    let mut g = errors.lock().await;
                    g.0 += 1;
                    g.1 = e.message().to_string();
                    continue;
                }
                mine.push(t.elapsed());
                let t = Instant::now();
                match client
                    .remove_service(RemoveServiceRequest { service: name })
                    .await
                {
                    Ok(_) => mine.push(t.elapsed()),
                    Err(e) => {
                        let mut g = errors.lock().await;
                        g.0 += 1;
                        g.1 = e.message().to_string();
                    }
                }
            }
            lat.lock().await.extend(mine);
        }));
    }
    for h in handles {
        h.await?;
    }
    let wall = start.elapsed().as_secs_f64();
    let mut l = lat.lock().await.clone();
    l.sort();
    let e = errors.lock().await.clone();
    println!(
        "RESULT raft_bench clients={clients} conns={} secs={wall:.1}: commits={} commits/s={:.0} \
         latency ms p50={:.2} p90={:.2} p99={:.2} max={:.2} errors={}{}",
        chans.len(),
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
