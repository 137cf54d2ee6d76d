//! A mutation fuzzer for the compose loader: seeds (built-in samples, and every file of a
//! corpus directory) are mutated at random, with compose's own tokens among the bytes,
//! and loaded as `stack config` loads a file. A panic or an input that takes more than
//! `--slow-ms` is saved beside the working directory and fails the run. Runs on stable
//! Rust with no fuzzing engine, so CI runs it on every change:
//!
//! ```text
//! cargo run -p shoal-compose --example fuzz_load -- --seconds 30 [--seed N] [CORPUS_DIR]
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use shoal_tests::fuzz::Rng;

const SAMPLES: &[&str] = &[
    "services:\n  web:\n    image: web:${TAG:-1}\n    ports: ['8080:80']\n    deploy:\n      replicas: 2\n",
    "x-d: &d {image: a}\nservices:\n  a:\n    <<: *d\n    environment: [A=1, B]\n  b:\n    extends: a\n",
    "services:\n  a:\n    image: a\n    depends_on:\n      b: {condition: service_healthy}\n  b:\n    image: b\n    healthcheck: {test: [CMD, true], interval: 1s}\n",
    "services:\n  a:\n    image: a\n    secrets: [s]\n    volumes: [data:/d, ./x:/x:ro]\nsecrets:\n  s: {file: ./s.txt}\nvolumes:\n  data: {}\n",
    "version: '3.8'\nservices:\n  a:\n    image: \"${A:?need A}\"\n    command: sh -c 'echo $$HOME'\n",
];

const TOKENS: &[&str] = &[
    "${",
    "}",
    "$$",
    "${A:-",
    "${A:?",
    ":",
    "-",
    "\n",
    "  ",
    "    ",
    "&a ",
    "*a",
    "<<: *a",
    "[",
    "]",
    "{",
    "\"",
    "'",
    "x-",
    "extends: ",
    "services:",
    "image: ",
    "deploy:",
    "replicas: ",
    "ports:",
    "- ",
    "~",
    "null",
    "0o7",
    "1e999",
    "\u{feff}",
    "\r\n",
    "\t",
    "!!str ",
    "? ",
    "|",
    ">",
    "#",
    "depends_on: [",
    "profiles: [",
    "env_file: ",
    "file: ",
    "mode: ",
    "0440",
    "1m30s",
    "512M",
];

fn mutate(seed: &str, rng: &mut Rng) -> Vec<u8> {
    let mut bytes = seed.as_bytes().to_vec();
    for _ in 0..=rng.below(8) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(6) {
            0 => {
                let token = TOKENS[rng.below(TOKENS.len())].as_bytes();
                bytes.splice(at..at, token.iter().copied());
            }
            1 if !bytes.is_empty() => {
                let end = (at + rng.below(16)).min(bytes.len());
                bytes.drain(at.min(end)..end);
            }
            2 if at < bytes.len() => bytes[at] = (rng.next_u64() & 0xff) as u8,
            3 => {
                // A line repeated: duplicate keys, deeper nesting.
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let lines: Vec<&str> = text.lines().collect();
                if !lines.is_empty() {
                    let line = lines[rng.below(lines.len())];
                    let indent = " ".repeat(rng.below(4) * 2);
                    bytes.splice(at..at, format!("{indent}{line}\n").into_bytes());
                }
            }
            4 => {
                // Deep nesting.
                let depth = rng.below(64);
                let nested = "[".repeat(depth) + &"]".repeat(depth);
                bytes.splice(at..at, nested.into_bytes());
            }
            _ => {
                let token = TOKENS[rng.below(TOKENS.len())].as_bytes();
                bytes.extend_from_slice(token);
            }
        }
    }
    bytes
}

fn seeds(dir: Option<&Path>) -> Vec<String> {
    let mut seeds: Vec<String> = SAMPLES.iter().map(|s| s.to_string()).collect();
    if let Some(dir) = dir {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                let yaml = path.extension().is_some_and(|e| e == "yml" || e == "yaml");
                if yaml {
                    if let Ok(text) = std::fs::read_to_string(&path) {
                        seeds.push(text);
                    }
                }
            }
        }
    }
    seeds
}

fn main() {
    let mut seconds = 20u64;
    let mut seed = Instant::now().elapsed().as_nanos() as u64 ^ u64::from(std::process::id());
    let mut slow_ms = 2_000u128;
    let mut corpus: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        match arg.as_str() {
            "--seconds" => seconds = value(),
            "--seed" => seed = value(),
            "--slow-ms" => slow_ms = u128::from(value()),
            other => corpus = Some(PathBuf::from(other)),
        }
    }
    let seed = seed.max(1);
    let mut rng = Rng(seed);
    let seeds = seeds(corpus.as_deref());
    let work = std::env::temp_dir().join(format!("shoal-fuzz-{}", std::process::id()));
    if std::fs::create_dir_all(&work).is_err() {
        eprintln!("cannot make {}", work.display());
        std::process::exit(2);
    }
    // Files the samples name, so their paths resolve sometimes.
    let _ = std::fs::write(work.join("s.txt"), "secret");
    let input = work.join("compose.yml");
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let environment = |name: &str| (name == "TAG").then(|| "2".to_string());
    let (mut runs, mut loaded) = (0u64, 0u64);
    eprintln!(
        "fuzzing the compose loader for {seconds}s with {} seeds, --seed {seed}",
        seeds.len()
    );
    while Instant::now() < deadline {
        let bytes = mutate(&seeds[rng.below(seeds.len())], &mut rng);
        if std::fs::write(&input, &bytes).is_err() {
            continue;
        }
        let files = [input.clone()];
        let started = Instant::now();
        let result = std::panic::catch_unwind(|| {
            shoal_compose::load(&shoal_compose::Request {
                files: &files,
                env_file: None,
                profiles: &[],
                environment: &environment,
            })
            .map(|l| l.to_string())
        });
        let took = started.elapsed().as_millis();
        runs += 1;
        let failure = match &result {
            Err(_) => Some("panicked"),
            Ok(_) if took > slow_ms => Some("was slow"),
            Ok(Ok(_)) => {
                loaded += 1;
                None
            }
            Ok(Err(e)) if !e.to_string().contains(':') => Some("failed without a place"),
            Ok(Err(_)) => None,
        };
        if let Some(what) = failure {
            let saved = PathBuf::from(format!("fuzz-load-{seed}-{runs}.yml"));
            let _ = std::fs::write(&saved, &bytes);
            eprintln!(
                "the loader {what} ({took} ms) on {}: reproduce with `shoal stack config -c {}`",
                saved.display(),
                saved.display()
            );
            if let Ok(Err(e)) = &result {
                eprintln!("error: {e}");
            }
            let _ = std::fs::remove_dir_all(&work);
            std::process::exit(1);
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    eprintln!("{runs} inputs, {loaded} loaded, the rest refused with a place; no panic, none slow");
}
