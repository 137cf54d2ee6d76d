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
use std::time::Duration;

use anyhow::{bail, Context};
use shoal_tests::linear::Verdict;
use shoal_tests::registers::{Via, Workload};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((seconds, sockets)) = args.split_first() else {
        bail!("usage: registers SECONDS SOCKET...");
    };
    let seconds: u64 = seconds.parse().context("SECONDS: a whole number")?;
    let vias: Vec<Via> = sockets.iter().map(|s| PathBuf::from(s).into()).collect();
    if vias.is_empty() {
        bail!("usage: registers SECONDS SOCKET...");
    }
    let workload = Workload::start(&vias, 4).await?;
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (verdict, ops, tally) = workload.finish(&vias[..1]).await?;
    println!("{ops} operations ({tally}); {verdict:?}");
    if matches!(verdict, Verdict::Not(_)) {
        std::process::exit(1);
    }
    Ok(())
}
