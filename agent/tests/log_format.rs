//! shoald's log as a file or a log shipper gets it: plain text with no colour codes when
//! stderr is not a terminal, and one JSON object per line with `--log-format json`.
//! Runs the real binary on a scratch data dir (no swarm, no engine needed to serve).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Kills the daemon when the test ends, however it ends.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start shoald with `extra` flags and return its stderr lines up to and including the
/// one that says it serves (or panic after 30 s).
fn lines_until_serving(extra: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| dir.path().join(name).display().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_shoald"))
        .args([
            "--data-dir",
            &path("data"),
            "--socket",
            &path("shoald.sock"),
            "--docker-host",
            &format!("unix://{}", path("no-engine.sock")),
            "--plugin-dir",
            &path("plugins"),
            "--files-dir",
            &path("files"),
            "--node-name",
            "logtest",
        ])
        .args(extra)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("shoald starts");
    let stderr = child.stderr.take().expect("stderr piped");
    let _daemon = Daemon(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lines = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("shoald never said it serves; it wrote: {lines:#?}"));
        let serving = line.contains("shoald is serving");
        lines.push(line);
        if serving {
            return lines;
        }
    }
}

#[test]
fn a_log_that_is_not_a_terminal_has_no_colour_codes() {
    let lines = lines_until_serving(&[]);
    for line in &lines {
        assert!(!line.contains('\u{1b}'), "a colour code in {line:?}");
    }
    let last = lines.last().expect("a line");
    assert!(last.contains("INFO") && last.contains("socket="), "{last}");
}

#[test]
fn the_json_log_is_one_object_per_line() {
    let lines = lines_until_serving(&["--log-format", "json"]);
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object ({e}): {line:?}"));
        assert!(v["timestamp"].is_string() && v["level"].is_string(), "{v}");
    }
    let last: serde_json::Value =
        serde_json::from_str(lines.last().expect("a line")).expect("json");
    assert_eq!(last["fields"]["message"], "shoald is serving");
    assert!(last["fields"]["socket"]
        .as_str()
        .is_some_and(|s| s.ends_with("shoald.sock")));
}
