//! The reliability suite (issue 11), Raft side: on a lab of 3 managers, clients keep
//! reading and compare-and-setting registers (services' labels, [`shoal_tests::registers`])
//! through every manager while the suite kills the leader with `kill -9` again and again,
//! or cuts a manager off (its link down, or one-way drops with nftables in its namespace).
//! Afterwards every register is read once more and the whole history, reads included, must
//! be linearizable: no acknowledged write lost, no read of a state that never was.
//!
//! Short by default (what CI runs); `deploy/reliability.sh` runs the full counts
//! (SHOAL_SUITE_KILLS=100, SHOAL_SUITE_PARTITIONS=20) and collects the RESULT lines into
//! docs/RELIABILITY.md's figures.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use shoal_tests::lab::Lab;
use shoal_tests::linear::Verdict;
use shoal_tests::registers::{Via, Workload};
use shoal_tests::{require_lab, wait_until};

const WAIT: Duration = Duration::from_secs(90);
const REGISTERS: usize = 4;

fn count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

/// "p50 X s, p99 Y s, max Z s" of `figures`.
fn spread(mut figures: Vec<f64>) -> String {
    figures.sort_by(f64::total_cmp);
    format!(
        "p50 {:.2} s, p99 {:.2} s, max {:.2} s",
        percentile(&figures, 0.5),
        percentile(&figures, 0.99),
        figures.last().copied().unwrap_or(f64::NAN)
    )
}

/// The first of `hosts` to name a leader other than `not`, asking all at once (each
/// `node ls` is a linearizable read: it answers once a leader is elected and reachable).
fn first_answer(lab: &Lab, hosts: &[usize], not: usize) -> usize {
    let (tx, rx) = std::sync::mpsc::channel();
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        for &h in hosts {
            let (tx, done) = (tx.clone(), &done);
            s.spawn(move || {
                let deadline = Instant::now() + WAIT;
                while !done.load(Ordering::Relaxed) && Instant::now() < deadline {
                    if let Some(l) = leader(lab, h).filter(|&l| l != not) {
                        let _ = tx.send(l);
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
        }
        drop(tx);
        let first = rx.recv_timeout(WAIT);
        done.store(true, Ordering::Relaxed);
        first.unwrap_or_else(|_| panic!("no new leader among {hosts:?}\n{}", lab.status()))
    })
}

/// The leader's host as `host` sees it.
fn leader(lab: &Lab, host: usize) -> Option<usize> {
    lab.leader(host).map(|name| Lab::host_of(&name))
}

/// Register clients writing through every manager's socket, recorded.
struct Load {
    runtime: tokio::runtime::Runtime,
    workload: Workload,
}

impl Load {
    fn start(managers: &[usize]) -> Load {
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        let vias: Vec<Via> = managers
            .iter()
            .map(|&h| Lab::shoald_socket(h).into())
            .collect();
        let workload = runtime
            .block_on(Workload::start(&vias, REGISTERS))
            .expect("registers created");
        Load { runtime, workload }
    }

    /// Wait until `more` writes beyond what is acknowledged now are acknowledged.
    fn wait_for_writes(&self, lab: &Lab, host: usize, more: u64) {
        let target = self.workload.acknowledged() + more;
        lab.wait(host, "the clients' writes acknowledged again", WAIT, || {
            (self.workload.acknowledged() >= target).then_some(())
        });
    }

    /// Stop the clients, read every register through each manager, and check the history.
    fn finish(self, managers: &[usize]) -> (Verdict, usize, String) {
        let vias: Vec<Via> = managers
            .iter()
            .map(|&h| Lab::shoald_socket(h).into())
            .collect();
        self.runtime
            .block_on(self.workload.finish(&vias))
            .expect("the final reads answer")
    }
}

#[test]
fn leader_kills_under_load_lose_no_acknowledged_write() {
    require_lab!();
    let kills = count("SHOAL_SUITE_KILLS", 3);
    let lab = Lab::up(3, 0).expect("lab comes up");
    let managers = [1, 2, 3];
    lab.wait(1, "a leader", WAIT, || leader(&lab, 1));
    let load = Load::start(&managers);
    load.wait_for_writes(&lab, 1, 20);

    let mut elections = Vec::new();
    let mut answers = Vec::new();
    for round in 0..kills {
        let old = lab.wait(1, "a leader", WAIT, || {
            managers.iter().find_map(|&h| leader(&lab, h))
        });
        let others: Vec<usize> = managers.iter().copied().filter(|&h| h != old).collect();
        let killed_at = SystemTime::now();
        let killed = Instant::now();
        lab.stop(old);
        let new = first_answer(&lab, &others, old);
        let answered = killed.elapsed().as_secs_f64();
        // The election itself, from the new leader's own log.
        let elected = lab
            .elected_at(new)
            .into_iter()
            .filter_map(|t| t.duration_since(killed_at).ok())
            .min()
            .map_or(f64::NAN, |d| d.as_secs_f64());
        elections.push(elected);
        answers.push(answered);
        println!(
            "RESULT kill {round}: n{old} killed, n{new} elected {elected:.2} s later, \
             answering {answered:.2} s later"
        );
        load.wait_for_writes(&lab, new, 5);
        lab.start(old);
        lab.wait(old, "the killed manager following again", WAIT, || {
            leader(&lab, old).filter(|&l| l != old)
        });
    }

    let (verdict, ops, tally) = load.finish(&managers);
    println!(
        "RESULT {kills} leader kills: new leader elected {}; answering {}; \
         {ops} operations recorded ({tally}); history {verdict:?}",
        spread(elections),
        spread(answers),
    );
    assert_eq!(verdict, Verdict::Linearizable, "{tally}");
}

/// How a manager is cut off.
#[derive(Clone, Copy, Debug)]
enum Cut {
    /// Its underlay link down: nothing in or out.
    LinkDown,
    /// nftables in its namespace drops what other managers send it (it still sends).
    DropInbound,
    /// nftables in its namespace drops what it sends other managers (it still hears).
    DropOutbound,
}

impl Cut {
    const ALL: [Cut; 3] = [Cut::LinkDown, Cut::DropInbound, Cut::DropOutbound];

    fn apply(self, lab: &Lab, host: usize, on: bool) {
        match self {
            Cut::LinkDown => lab.link(host, !on),
            Cut::DropInbound | Cut::DropOutbound => {
                let ns = format!("shl-n{host}");
                let script = if on {
                    let (hook, field) = match self {
                        Cut::DropInbound => ("input", "saddr"),
                        _ => ("output", "daddr"),
                    };
                    format!(
                        "table inet shoal_fault {{\n chain c {{\n type filter hook {hook} priority 0;\n \
                         ip {field} 10.78.0.0/24 ip {field} != {} drop\n }}\n}}\n",
                        lab.ip(host)
                    )
                } else {
                    "delete table inet shoal_fault".to_string()
                };
                let out = std::process::Command::new("ip")
                    .args(["netns", "exec", &ns, "nft", "-f", "-"])
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .and_then(|mut child| {
                        use std::io::Write;
                        child
                            .stdin
                            .take()
                            .expect("stdin")
                            .write_all(script.as_bytes())?;
                        child.wait_with_output()
                    })
                    .expect("nft runs");
                assert!(
                    out.status.success(),
                    "nft in {ns} ({script}): {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}

#[test]
fn partitions_leave_the_minority_refusing_and_heal_without_divergence() {
    require_lab!();
    let partitions = count("SHOAL_SUITE_PARTITIONS", 3);
    let lab = Lab::up(3, 0).expect("lab comes up");
    let managers = [1, 2, 3];
    lab.wait(1, "a leader", WAIT, || leader(&lab, 1));
    let load = Load::start(&managers);
    load.wait_for_writes(&lab, 1, 20);

    let mut refusals = Vec::new();
    for round in 0..partitions {
        let cut = Cut::ALL[round % Cut::ALL.len()];
        let current = lab.wait(1, "a leader", WAIT, || {
            managers.iter().find_map(|&h| leader(&lab, h))
        });
        // Alternate between cutting off the leader and a follower.
        let host = if (round / Cut::ALL.len()).is_multiple_of(2) {
            current
        } else {
            managers
                .iter()
                .copied()
                .find(|&h| h != current)
                .expect("a follower")
        };
        let others: Vec<usize> = managers.iter().copied().filter(|&h| h != host).collect();
        let cut_at = Instant::now();
        cut.apply(&lab, host, true);
        // A write through the cut-off manager: refused, saying why.
        let name = format!("cut-{round}");
        let write = lab.create_sleeping(host, &name, 0, &[]);
        let refused_after = cut_at.elapsed().as_secs_f64();
        assert!(
            !write.ok(),
            "round {round} ({cut:?} on n{host}): a write through the cut-off manager was accepted"
        );
        let said = write.stderr.to_lowercase();
        assert!(
            said.contains("quorum") || said.contains("leader") || said.contains("reach"),
            "round {round} ({cut:?} on n{host}): the refusal does not say why: {}",
            write.stderr
        );
        refusals.push(refused_after);
        // The majority leads and takes writes.
        let new = lab.wait(others[0], "the majority leading", WAIT, || {
            others
                .iter()
                .find_map(|&h| leader(&lab, h).filter(|l| others.contains(l)))
        });
        load.wait_for_writes(&lab, new, 5);
        println!(
            "RESULT partition {round}: {cut:?} on n{host} (leader was n{current}): its write refused \
             {refused_after:.2} s after the cut; n{new} leads the majority"
        );
        cut.apply(&lab, host, false);
        lab.wait(host, "the cut-off manager following again", WAIT, || {
            leader(&lab, host)
        });
        load.wait_for_writes(&lab, new, 5);
    }

    // No divergence: every manager's own view (a stale read) comes to the same services.
    let view = |host: usize| {
        let mut args = vec!["service", "inspect", "--stale", "--format", "json"];
        args.extend(["reg-0", "reg-1", "reg-2", "reg-3"]);
        let registers = lab.shoal(host, &args).stdout;
        let all = lab.shoal(host, &["service", "ls", "--stale", "--format", "json"]);
        format!("{}{registers}", all.stdout)
    };
    let (verdict, ops, tally) = load.finish(&managers);
    wait_until("every manager's own view the same", WAIT, || {
        let first = view(1);
        managers.iter().all(|&h| view(h) == first).then_some(())
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}: managers diverge:\n{}\n{}\n{}",
            view(1),
            view(2),
            view(3)
        )
    });
    println!(
        "RESULT {partitions} partitions: the cut-off manager's write refused {} after the cut; \
         {ops} operations recorded ({tally}); history {verdict:?}",
        spread(refusals),
    );
    assert_eq!(verdict, Verdict::Linearizable, "{tally}");
}

#[test]
fn a_full_disk_refuses_writes_clearly_and_loses_nothing() {
    require_lab!();
    let lab = Lab::up(1, 0).expect("lab comes up");
    let create = |name: &str| lab.create_sleeping(1, name, 0, &[]);
    let listed = || lab.shoal_ok(1, &["service", "ls", "--format", "json"]);
    assert!(create("before").ok());
    // The manager's data dir moves onto a 48 MiB tmpfs, inside its host's mount namespace.
    let dir = "/var/lib/shoal-lab/n1/shoald";
    lab.stop(1);
    lab.script_ok(&[
        "exec",
        "n1",
        "sh",
        "-c",
        &format!(
            "cp -a {dir} /tmp/shoald-moving && mount -t tmpfs -o size=48m tmpfs {dir} && \
             cp -a /tmp/shoald-moving/. {dir}/ && rm -rf /tmp/shoald-moving"
        ),
    ]);
    lab.start(1);
    assert!(create("on-small-disk").ok());

    // Something else fills the disk.
    lab.script(&[
        "exec",
        "n1",
        "sh",
        "-c",
        &format!("dd if=/dev/zero of={dir}/filler bs=1M"),
    ]);
    let asked = Instant::now();
    let refused = create("while-full");
    let took = asked.elapsed().as_secs_f64();
    assert!(!refused.ok(), "a write on a full disk was accepted");
    assert!(
        refused.stderr.contains("disk full") && refused.stderr.contains(dir),
        "the refusal says what is full and where: {}",
        refused.stderr
    );
    assert!(listed().contains("on-small-disk"), "reads still answer");

    // Room again: writes go on, and everything acknowledged survives a kill -9.
    lab.script_ok(&["exec", "n1", "rm", &format!("{dir}/filler")]);
    lab.wait(1, "a write accepted again", WAIT, || {
        create("after").ok().then_some(())
    });
    lab.stop(1);
    lab.start(1);
    let after_restart = listed();
    for name in ["before", "on-small-disk", "after"] {
        assert!(
            after_restart.contains(&format!("\"{name}\"")),
            "{name} lost: {after_restart}"
        );
    }
    assert!(
        !after_restart.contains("while-full"),
        "the refused write is nowhere"
    );
    println!(
        "RESULT disk full (48 MiB tmpfs filled by dd): a write refused in {took:.2} s saying \
         \"{}\"; writes resumed once space returned; nothing lost across a kill -9",
        refused.stderr.trim()
    );
}
