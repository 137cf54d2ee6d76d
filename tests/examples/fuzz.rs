//! The fuzz targets of `shoal_tests::fuzz`, driven by a mutation loop on stable Rust (no
//! fuzzing engine): each target's seeds are mutated at random for `--seconds` each. A
//! panic, or an input that takes more than `--slow-ms`, is saved under `fuzz-failures/`
//! and fails the run. The test command runs it briefly; `fuzz/` has the libFuzzer crate
//! for long runs.
//!
//! ```text
//! cargo run -p shoal-tests --example fuzz -- --seconds 5 [--seed N] [--target NAME]
//! ```

use std::time::{Duration, Instant};

use shoal_tests::fuzz::{mutate, targets, Rng};

fn main() {
    let mut seconds = 5u64;
    let mut slow_ms = 2000u64;
    let mut seed = u64::from(std::process::id()) ^ 0x9e37_79b9_7f4a_7c15;
    let mut only: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_default();
        match arg.as_str() {
            "--seconds" => seconds = value().parse().unwrap_or(seconds),
            "--slow-ms" => slow_ms = value().parse().unwrap_or(slow_ms),
            "--seed" => seed = value().parse().unwrap_or(seed),
            "--target" => only = Some(value()),
            other => {
                eprintln!(
                    "unknown argument {other}: --seconds N, --slow-ms N, --seed N, --target NAME"
                );
                std::process::exit(2);
            }
        }
    }
    // A panic is reported by the hook's message and the saved input; keep stderr short.
    std::panic::set_hook(Box::new(|info| eprintln!("panic: {info}")));
    let mut rng = Rng(seed.max(1));
    let mut failed = false;
    for (name, target, seeds) in targets() {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let (mut runs, mut slowest) = (0u64, Duration::ZERO);
        while Instant::now() < deadline {
            let input = if runs < seeds.len() as u64 {
                seeds[runs as usize].clone()
            } else {
                mutate(&seeds[rng.below(seeds.len())], &mut rng)
            };
            let started = Instant::now();
            let outcome = std::panic::catch_unwind(|| target(&input));
            let took = started.elapsed();
            slowest = slowest.max(took);
            runs += 1;
            let why = match outcome {
                Err(_) => "panic",
                Ok(()) if took > Duration::from_millis(slow_ms) => "slow",
                Ok(()) => continue,
            };
            failed = true;
            let _ = std::fs::create_dir_all("fuzz-failures");
            let path = format!("fuzz-failures/{name}-{why}-{runs}.bin");
            let _ = std::fs::write(&path, &input);
            eprintln!(
                "{name}: {why} on an input saved as {path} ({} ms)",
                took.as_millis()
            );
            break;
        }
        println!(
            "fuzz {name}: {runs} inputs in {seconds} s, slowest {} ms (seed {seed})",
            slowest.as_millis()
        );
    }
    if failed {
        std::process::exit(1);
    }
}
