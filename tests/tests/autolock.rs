//! Encryption at rest and autolock on a lab of 1 manager and 1 worker: with autolock on, a
//! manager killed and started again serves nothing until `swarm unlock` (a wrong key is
//! refused), then takes its tasks back as they were; no data dir holds a service's
//! environment or a private key in clear; after `unlock-key --rotate` only the new key
//! opens it.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use shoal_tests::lab::{Lab, LAB_DATA};
use shoal_tests::{bin_dir, files_holding, require_lab};

const WAIT: Duration = Duration::from_secs(90);
const NEEDLE: &str = "needle-of-the-env-4711";

fn data_dir(host: usize) -> PathBuf {
    PathBuf::from(format!("{LAB_DATA}/n{host}/shoald"))
}

/// `swarm unlock` on `host` with `key` on stdin.
fn unlock(host: usize, key: &str) -> std::process::Output {
    let mut child = Command::new(bin_dir().join("shoal"))
        .arg("-H")
        .arg(format!("unix://{}", Lab::shoald_socket(host).display()))
        .args(["swarm", "unlock"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("shoal runs");
    let mut stdin = child.stdin.take().expect("stdin");
    writeln!(stdin, "{key}").expect("key written");
    drop(stdin);
    child.wait_with_output().expect("shoal ran")
}

#[test]
fn an_autolocked_manager_serves_nothing_until_unlocked() {
    require_lab!();
    let lab = Lab::up(1, 1).expect("lab comes up");
    let out = lab.shoal_ok(1, &["swarm", "update", "--autolock=true"]);
    let key = lab
        .shoal_ok(1, &["swarm", "unlock-key", "-q"])
        .trim()
        .to_string();
    assert!(out.contains(&key) && key.starts_with("SHKEY-1-"), "{out}");
    lab.shoal_ok(
        1,
        &[
            "service",
            "create",
            "--name",
            "web",
            "--replicas",
            "2",
            "--env",
            &format!("TOKEN={NEEDLE}"),
            "shoal-test/busybox:a",
            "sleep",
            "1000000",
        ],
    );
    let containers = |host: usize| {
        lab.docker(host, &["ps", "-q", "--filter", "label=shoal.task.id"])
            .stdout
    };
    lab.wait(1, "2 running tasks", WAIT, || {
        let n = containers(1).split_whitespace().count() + containers(2).split_whitespace().count();
        (n == 2).then_some(())
    });
    let before = (containers(1), containers(2));
    lab.wait(1, "n1's data key locked", WAIT, || {
        let keys = std::fs::read_to_string(data_dir(1).join("keys.json")).unwrap_or_default();
        keys.contains("\"locked\": true").then_some(())
    });

    // Restarted, it is locked: it says so and answers nothing else.
    lab.stop(1);
    lab.start(1);
    let info = lab.shoal_ok(1, &["info"]);
    assert!(info.contains("locked"), "{info}");
    let refused = lab.shoal(1, &["node", "ls"]);
    assert!(
        !refused.ok() && refused.stderr.contains("swarm unlock"),
        "{}",
        refused.stderr
    );

    // Nothing of the service's environment, and no node's private key, lies in clear in
    // any data dir.
    for host in [1, 2] {
        let (found, scanned) = files_holding(&data_dir(host), NEEDLE.as_bytes());
        assert!(found.is_empty(), "n{host}: clear text in {found:?}");
        assert!(scanned > 3, "n{host}: the scan read the data dir");
        let (keys, _) = files_holding(&data_dir(host), b"PRIVATE KEY");
        assert!(
            keys.is_empty(),
            "n{host}: a private key in clear in {keys:?}"
        );
    }
    let (sanity, _) = files_holding(&data_dir(1), b"\"node_id\"");
    assert!(
        !sanity.is_empty(),
        "the scan finds what is in clear (node.json)"
    );

    // A wrong key is refused; the right one brings it back with the same containers.
    let wrong = unlock(
        1,
        "SHKEY-1-0000000000000000000000000000000000000000000000000000000000000000",
    );
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("not this node's"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );
    let garbage = unlock(1, "letmein");
    assert!(
        String::from_utf8_lossy(&garbage.stderr).contains("SHKEY-1-"),
        "{}",
        String::from_utf8_lossy(&garbage.stderr)
    );
    let right = unlock(1, &key);
    assert!(
        right.status.success(),
        "{}",
        String::from_utf8_lossy(&right.stderr)
    );
    let services = lab.wait(1, "the manager serving again", WAIT, || {
        let run = lab.shoal(1, &["service", "ls"]);
        run.ok().then_some(run.stdout)
    });
    assert!(services.contains("2/2"), "{services}");
    assert_eq!(
        (containers(1), containers(2)),
        before,
        "the containers were kept, not restarted"
    );

    // The key rotated: the manager reseals its data key with the new one, so the next
    // restart opens only with it; `unlock-key` shows the previous one too (for a manager
    // that was down during the rotation).
    let rotated = lab.shoal_ok(1, &["swarm", "unlock-key", "--rotate", "-q"]);
    let rotated = rotated.trim().to_string();
    assert!(
        rotated.starts_with("SHKEY-1-") && rotated != key,
        "{rotated}"
    );
    let shown = lab.shoal_ok(1, &["swarm", "unlock-key"]);
    assert!(shown.contains(&rotated) && shown.contains(&key), "{shown}");
    lab.wait(1, "n1's data key sealed with the new key", WAIT, || {
        let dir = data_dir(1);
        let new = rotated.parse().expect("an unlock key");
        shoal_pki::vault::is_locked_with(&dir, &new).then_some(())
    });
    lab.stop(1);
    lab.start(1);
    let old = unlock(1, &key);
    assert!(
        !old.status.success() && String::from_utf8_lossy(&old.stderr).contains("previous key"),
        "{}",
        String::from_utf8_lossy(&old.stderr)
    );
    let new = unlock(1, &rotated);
    assert!(
        new.status.success(),
        "{}",
        String::from_utf8_lossy(&new.stderr)
    );
    lab.wait(1, "serving with the rotated key", WAIT, || {
        lab.shoal(1, &["node", "ls"]).ok().then_some(())
    });

    // Autolock off: the next restart needs no key.
    lab.shoal_ok(1, &["swarm", "update", "--autolock=false"]);
    lab.wait(1, "n1's data key in the open", WAIT, || {
        let keys = std::fs::read_to_string(data_dir(1).join("keys.json")).unwrap_or_default();
        keys.contains("\"locked\": false").then_some(())
    });
    lab.stop(1);
    lab.start(1);
    lab.wait(1, "serving without a key", WAIT, || {
        lab.shoal(1, &["node", "ls"]).ok().then_some(())
    });
}
