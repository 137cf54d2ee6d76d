//! Docker's Engine API on a lab manager (issue 13): the docker CLI that Debian ships,
//! pointed at shoald's `--docker-api` socket, runs one session over swarm objects
//! (tests/data/docker-cli/session.sh) and prints what it prints against a real Docker
//! Swarm for the same objects (tests/data/docker-cli/swarm/, recorded by
//! deploy/bench/swarm_cli_record.sh). Tables are compared column by column once ids,
//! hostnames, images and ages are put in neutral form; [`DIFFERENCES`] names every
//! difference that remains, and why.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use shoal_tests::lab::Lab;
use shoal_tests::require_lab;

/// Debian's docker CLI (20.10): what Swarm's users have.
const DOCKER: &str = "/usr/bin/docker";

/// The differences between Shoal's answers and Swarm's that the session shows: (step,
/// what differs, why). Any other difference fails the test.
const DIFFERENCES: &[(&str, &str, &str)] = &[];

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/docker-cli")
}

/// A step's files in `dir`: name -> (stdout, stderr, exit code).
fn steps(dir: &Path) -> BTreeMap<String, (String, String, String)> {
    let mut steps = BTreeMap::new();
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("rc") {
            continue;
        }
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("")
            .to_string();
        let read = |ext: &str| {
            std::fs::read_to_string(dir.join(format!("{stem}.{ext}"))).unwrap_or_default()
        };
        steps.insert(
            stem.clone(),
            (read("out"), read("err"), read("rc").trim().to_string()),
        );
    }
    steps
}

/// Ids, hostnames, images and ages in neutral form, so that two runs on different
/// clusters compare.
struct Neutral {
    replacements: Vec<(String, String)>,
}

impl Neutral {
    fn new(images: [&str; 2], hosts: &[&str]) -> Neutral {
        let mut replacements = vec![
            (images[0].to_string(), "<image-a>".to_string()),
            (images[1].to_string(), "<image-b>".to_string()),
        ];
        // Longest first: "swb-node1" before "n1".
        let mut hosts: Vec<&str> = hosts.to_vec();
        hosts.sort_by_key(|h| std::cmp::Reverse(h.len()));
        for host in hosts {
            replacements.push((host.to_string(), "<node>".to_string()));
        }
        Neutral { replacements }
    }

    fn cell(&self, cell: &str) -> String {
        let mut text = cell.trim().to_string();
        for (from, to) in &self.replacements {
            text = replace_word(&text, from, to);
        }
        let words: Vec<String> = text
            .split(' ')
            .map(|w| {
                let (core, tail) = w.split_at(w.find(['@', '*']).unwrap_or(w.len()));
                let core = neutral_ids(core);
                format!("{core}{tail}")
            })
            .collect();
        neutral_age(&words.join(" "))
    }
}

/// `from` replaced where it stands as a word of its own (a hostname "n1" never inside an id).
fn replace_word(text: &str, from: &str, to: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(from) {
        let before = rest[..at].chars().last();
        let after = rest[at + from.len()..].chars().next();
        let edge = |c: Option<char>| c.is_none_or(|c| !c.is_ascii_alphanumeric());
        out.push_str(&rest[..at]);
        out.push_str(if edge(before) && edge(after) {
            to
        } else {
            from
        });
        rest = &rest[at + from.len()..];
    }
    out.push_str(rest);
    out
}

/// Ids (12 or 25 base-36 characters, alone or after a dot: `web.1.<id>`) as `<id>`.
fn neutral_ids(word: &str) -> String {
    let is_id = |s: &str| {
        (s.len() == 12 || s.len() == 25)
            && s.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    };
    word.split('.')
        .map(|part| if is_id(part) { "<id>" } else { part })
        .collect::<Vec<_>>()
        .join(".")
}

/// "Running 5 seconds ago" -> "Running <ago>" (Docker's human durations: "less than a
/// second", "about a minute", "about an hour", "N seconds", ...).
fn neutral_age(text: &str) -> String {
    let Some(end) = text.find(" ago") else {
        return text.to_string();
    };
    let head = &text[..end];
    let lower = head.to_ascii_lowercase();
    let phrase = ["less than a second", "about a minute", "about an hour"]
        .iter()
        .find(|p| lower.ends_with(*p))
        .map(|p| p.len())
        .or_else(|| {
            let mut words = head.rsplitn(3, ' ');
            let unit = words.next()?;
            let count = words.next()?;
            count
                .chars()
                .all(|c| c.is_ascii_digit())
                .then_some(unit.len() + 1 + count.len())
        });
    match phrase {
        Some(len) => format!("{}<ago>{}", &head[..head.len() - len], &text[end + 4..]),
        None => text.to_string(),
    }
}

/// A docker table: its header's columns, and each row cut at the header's column starts,
/// in neutral form.
fn table(text: &str, neutral: &Neutral) -> (Vec<String>, Vec<Vec<String>>) {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return (Vec::new(), Vec::new());
    };
    // Columns start after a run of 2+ spaces (names like "DESIRED STATE" hold one).
    let mut starts = vec![0];
    let bytes = header.as_bytes();
    for i in 2..bytes.len() {
        if bytes[i] != b' ' && bytes[i - 1] == b' ' && bytes[i - 2] == b' ' {
            starts.push(i);
        }
    }
    let cut = |line: &str| -> Vec<String> {
        starts
            .iter()
            .enumerate()
            .map(|(n, &from)| {
                let to = starts.get(n + 1).copied().unwrap_or(usize::MAX);
                let from = from.min(line.len());
                let to = to.min(line.len());
                line.get(from..to).unwrap_or("").to_string()
            })
            .collect()
    };
    let columns = cut(header).iter().map(|c| c.trim().to_string()).collect();
    let mut rows: Vec<Vec<String>> = lines
        .map(|l| cut(l).iter().map(|c| neutral.cell(c)).collect())
        .collect();
    rows.sort();
    (columns, rows)
}

/// Lines, in neutral form and sorted (for output that is not a table: ids, logs). A
/// progress display (`service create` without -d) is its first line (what was done) and
/// its last (how it ended): the lines between depend on timing.
fn lines(text: &str, neutral: &Neutral) -> Vec<String> {
    if text.contains("overall progress:") {
        let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let ends = [all.first(), all.last()];
        return ends.iter().flatten().map(|l| neutral.cell(l)).collect();
    }
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| neutral.cell(l))
        .collect();
    lines.sort();
    lines
}

fn is_table(text: &str) -> bool {
    text.lines().next().is_some_and(|l| {
        l.contains("  ") && l.chars().filter(|c| c.is_ascii_uppercase()).count() > 3
    })
}

#[test]
fn neutral_form() {
    let neutral = Neutral::new(["swb/busybox:a", "swb/busybox:b"], &["swb-node1", "n1"]);
    assert_eq!(
        neutral.cell("web.1.a102o5qcjj7i@swb-node1    | started"),
        "web.1.<id>@<node> | started".replace(" | ", "    | ")
    );
    assert_eq!(neutral.cell("Running 5 seconds ago"), "Running <ago>");
    assert_eq!(
        neutral.cell("Shutdown about a minute ago"),
        "Shutdown <ago>"
    );
    assert_eq!(neutral.cell("Less than a second ago"), "<ago>");
    assert_eq!(neutral.cell("emlg5glkvlvtvhmcxuqrjyxqg *"), "<id> *");
    assert_eq!(neutral.cell("swb/busybox:a"), "<image-a>");
    assert_eq!(neutral.cell("n1"), "<node>");
    assert_eq!(neutral.cell("n1x"), "n1x");
}

#[test]
fn the_docker_cli_prints_against_shoal_what_it_prints_against_swarm() {
    require_lab!();
    let lab = Lab::up(1, 2).expect("the lab comes up");
    let url = lab.script_ok(&["docker-api", "n1"]).trim().to_string();
    let out = std::env::temp_dir().join(format!("shoal-docker-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let status = Command::new(data_dir().join("session.sh"))
        .arg(&out)
        .env("DOCKER_HOST", &url)
        .env("DOCKER", DOCKER)
        .env("IMG_A", "shoal-test/busybox:a")
        .env("IMG_B", "shoal-test/busybox:b")
        .current_dir(data_dir())
        .status()
        .expect("running the session");
    assert!(status.success(), "session.sh failed");

    let swarm = steps(&data_dir().join("swarm"));
    let shoal = steps(&out);
    assert!(
        !swarm.is_empty(),
        "no recorded Swarm session in tests/data/docker-cli/swarm"
    );
    let swarm_neutral = Neutral::new(
        ["swb/busybox:a", "swb/busybox:b"],
        &["swb-node1", "swb-node2", "swb-node3"],
    );
    let shoal_neutral = Neutral::new(
        ["shoal-test/busybox:a", "shoal-test/busybox:b"],
        &["n1", "n2", "n3"],
    );
    let mut differences = Vec::new();
    for (step, (swarm_out, swarm_err, swarm_rc)) in &swarm {
        let Some((shoal_out, shoal_err, shoal_rc)) = shoal.get(step) else {
            differences.push(format!("{step}: not run against Shoal"));
            continue;
        };
        let allowed = DIFFERENCES.iter().any(|(s, _, _)| s == step);
        if swarm_rc != shoal_rc {
            differences.push(format!(
                "{step}: exit code {shoal_rc}, Swarm's {swarm_rc}\n  shoal stderr: {shoal_err}\n  swarm stderr: {swarm_err}"
            ));
            continue;
        }
        if swarm_rc != "0" {
            // Failures: the same first line of the error.
            let first = |t: &str| shoal_neutral.cell(t.lines().next().unwrap_or(""));
            let theirs = swarm_neutral.cell(swarm_err.lines().next().unwrap_or(""));
            if first(shoal_err) != theirs && !allowed {
                differences.push(format!(
                    "{step}: error {:?}, Swarm's {theirs:?}",
                    first(shoal_err)
                ));
            }
            continue;
        }
        let same = if is_table(swarm_out) {
            let (theirs_cols, theirs_rows) = table(swarm_out, &swarm_neutral);
            let (ours_cols, ours_rows) = table(shoal_out, &shoal_neutral);
            if theirs_cols != ours_cols {
                differences.push(format!(
                    "{step}: columns {ours_cols:?}, Swarm's {theirs_cols:?}"
                ));
            }
            (ours_rows == theirs_rows)
                .then_some(())
                .ok_or(format!("{ours_rows:#?}\nSwarm's:\n{theirs_rows:#?}"))
        } else {
            let theirs = lines(swarm_out, &swarm_neutral);
            let ours = lines(shoal_out, &shoal_neutral);
            (ours == theirs)
                .then_some(())
                .ok_or(format!("{ours:#?}\nSwarm's:\n{theirs:#?}"))
        };
        if let Err(shown) = same {
            if !allowed {
                differences.push(format!("{step}: output differs:\n{shown}"));
            }
        }
    }
    assert!(
        differences.is_empty(),
        "the docker CLI prints differently against Shoal ({} differences):\n{}\n(Shoal's session: {})",
        differences.len(),
        differences.join("\n"),
        out.display()
    );
}
