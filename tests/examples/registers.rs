//! The register workload by hand, against running managers (a lab's, say): clients read
//! and compare-and-set registers through each socket for SECONDS, then every register is
//! read once more and the history is checked for linearizability. Prints the tally and the
//! verdict; exits 1 when the history is not linearizable.
//!
//!   cargo run -p shoal-tests --example registers -- SECONDS SOCKET...
//!   (e.g. /run/shoal-lab/n1/shoald.sock /run/shoal-lab/n2/shoald.sock ...)
//!
//! The registers (services reg-0..reg-3) are created through the first socket: remove
//! them (`shoal service rm reg-0 reg-1 reg-2 reg-3`) before running it again.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use shoal_tests::linear::{self, Verdict};
use shoal_tests::registers::{self, History, Tally};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((seconds, sockets)) = args.split_first() else {
        bail!("usage: registers SECONDS SOCKET...");
    };
    let seconds: u64 = seconds.parse().context("SECONDS: a whole number")?;
    let sockets: Vec<PathBuf> = sockets.iter().map(PathBuf::from).collect();
    if sockets.is_empty() {
        bail!("usage: registers SECONDS SOCKET...");
    }
    let keys = Arc::new(registers::create(sockets[0].clone(), 4).await?);
    let (history, tally, stop) = (
        Arc::new(History::default()),
        Arc::new(Tally::default()),
        Arc::new(AtomicBool::new(false)),
    );
    let clients: Vec<_> = sockets
        .iter()
        .cycle()
        .take(sockets.len() * 2)
        .enumerate()
        .map(|(i, s)| {
            let (k, h, t, s2) = (keys.clone(), history.clone(), tally.clone(), stop.clone());
            tokio::spawn(registers::client(i, s.clone().into(), k, h, t, s2))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await?;
    }
    registers::read_all(sockets[0].clone(), 1000, &keys, &history).await?;
    let ops = history.history();
    let verdict = linear::check(&registers::model(), &ops, Duration::from_secs(120));
    println!(
        "{} operations ({}); {verdict:?}",
        ops.len(),
        tally.summary()
    );
    if matches!(verdict, Verdict::Not(_)) {
        std::process::exit(1);
    }
    Ok(())
}
