//! The multi-host lab: Shoal hosts that are network namespaces on this machine, each with
//! its own dockerd and its own `shoald`, on a private underlay (10.78.0.0/24, host K at
//! 10.78.0.(10+K)). `deploy/lab.sh` builds and tears it down; [`Lab`] drives it from a test.
//!
//! Hosts are numbered from 1, managers first. The CLI and docker calls go straight to the
//! host's sockets (`/run/shoal-lab/nK/{shoald,docker}.sock`); everything else goes through
//! `lab.sh`, so the script stays the one description of the lab.
//!
//! ```no_run
//! use shoal_tests::{lab::Lab, require_lab};
//! # fn t() {
//! require_lab!();
//! let lab = Lab::up_no_join(1, 2).expect("the lab comes up");
//! lab.shoal_ok(1, &["info"]);
//! # }
//! ```

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::bail;

use crate::{bin_dir, wait_until, Run};

/// The script that builds the lab.
pub const LAB_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/lab.sh");
/// Where `lab.sh` keeps each host's sockets and pid files (`nK/` below it).
pub const LAB_RUN: &str = "/run/shoal-lab";
/// Where `lab.sh` keeps each host's state and logs (`nK/` below it).
pub const LAB_DATA: &str = "/var/lib/shoal-lab";
/// The port every host's shoald listens on for other nodes.
pub const LAB_PORT: u16 = 4242;

/// Why the lab cannot run here, if it cannot.
pub fn lab_skip_reason() -> Option<String> {
    if !crate::is_root() {
        return Some("the lab needs root (network namespaces, one dockerd per host)".into());
    }
    let has = |cmd: &str, arg: &str| {
        Command::new(cmd)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !has("dockerd", "--version") {
        return Some("no dockerd binary: run deploy/ensure-host.sh (docker.io)".into());
    }
    if !has("docker", "--version") {
        return Some("no docker CLI: run deploy/ensure-host.sh (docker.io)".into());
    }
    if !std::path::Path::new("/bin/busybox").exists() {
        return Some("no /bin/busybox for the test images: apt-get install busybox-static".into());
    }
    if !lab_script().exists() {
        return Some(format!("{} is missing", lab_script().display()));
    }
    crate::binaries_missing()
}

/// Skip the calling test (return early) with a printed reason when the lab can't run here
/// (fails instead under [`crate::E2E_REQUIRED`]).
#[macro_export]
macro_rules! require_lab {
    () => {
        if let Some(why) = $crate::lab::lab_skip_reason() {
            $crate::skipping(&why);
            return;
        }
    };
}

pub fn lab_script() -> PathBuf {
    PathBuf::from(LAB_SCRIPT)
}

/// Run `lab.sh ARGS`, with the binaries of this build.
pub fn lab_sh(args: &[&str]) -> Run {
    Run::from(
        Command::new("bash")
            .arg(lab_script())
            .args(args)
            .env("SHOAL_BIN_DIR", bin_dir())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running lab.sh {args:?}: {e}")),
    )
}

/// A running lab. Dropping it tears everything down (`lab.sh down`).
pub struct Lab {
    hosts: Vec<usize>,
    managers: usize,
}

impl Lab {
    /// A fresh lab (`lab.sh down`, then `up`): `managers` managers and `workers` workers,
    /// n1 initialised as the first manager and every other host joined.
    pub fn up(managers: usize, workers: usize) -> anyhow::Result<Lab> {
        Self::build(managers, workers, &[])
    }

    /// A fresh lab whose hosts are all up, with n1 in a swarm of its own (`swarm init`) and
    /// no other host joined (`lab.sh up --no-join`).
    pub fn up_no_join(managers: usize, workers: usize) -> anyhow::Result<Lab> {
        Self::build(managers, workers, &["--no-join"])
    }

    fn build(managers: usize, workers: usize, extra: &[&str]) -> anyhow::Result<Lab> {
        if let Some(why) = lab_skip_reason() {
            bail!("the lab cannot run here: {why}");
        }
        let down = lab_sh(&["down"]);
        if !down.ok() {
            bail!("lab.sh down failed ({}):\n{}", down.code, down.stderr);
        }
        // From here on, dropping `lab` cleans up whatever `up` managed to build.
        let lab = Lab {
            hosts: (1..=managers + workers).collect(),
            managers,
        };
        let (m, w) = (managers.to_string(), workers.to_string());
        let mut args = vec!["up", "--managers", m.as_str(), "--workers", w.as_str()];
        args.extend_from_slice(extra);
        let up = lab_sh(&args);
        if !up.ok() {
            bail!("lab.sh {args:?} failed ({}):\n{}", up.code, up.stderr);
        }
        Ok(lab)
    }

    /// The hosts (1-based numbers), managers first.
    pub fn hosts(&self) -> &[usize] {
        &self.hosts
    }

    /// How many of the first hosts were made managers.
    pub fn managers(&self) -> usize {
        self.managers
    }

    /// `lab.sh ARGS` against this lab.
    pub fn script(&self, args: &[&str]) -> Run {
        lab_sh(args)
    }

    /// `lab.sh ARGS`, insisting it succeeds; its stdout.
    pub fn script_ok(&self, args: &[&str]) -> String {
        let run = lab_sh(args);
        assert!(
            run.ok(),
            "lab.sh {args:?} failed ({}): {}{}",
            run.code,
            run.stdout,
            run.stderr
        );
        run.stdout
    }

    pub fn name(host: usize) -> String {
        format!("n{host}")
    }

    pub fn shoald_socket(host: usize) -> PathBuf {
        PathBuf::from(format!("{LAB_RUN}/n{host}/shoald.sock"))
    }

    pub fn docker_socket(host: usize) -> PathBuf {
        PathBuf::from(format!("{LAB_RUN}/n{host}/docker.sock"))
    }

    pub fn log_path(host: usize) -> PathBuf {
        PathBuf::from(format!("{LAB_DATA}/n{host}/shoald.log"))
    }

    /// The shoal CLI against `host`'s shoald.
    pub fn shoal(&self, host: usize, args: &[&str]) -> Run {
        Run::from(
            Command::new(bin_dir().join("shoal"))
                .arg("-H")
                .arg(format!("unix://{}", Self::shoald_socket(host).display()))
                .args(args)
                .stdin(Stdio::null())
                .output()
                .unwrap_or_else(|e| panic!("running shoal {args:?}: {e}")),
        )
    }

    /// The shoal CLI against `host`'s shoald, left running (`service logs -f`).
    pub fn shoal_streaming(&self, host: usize, args: &[&str]) -> crate::Streaming {
        let mut command = Command::new(bin_dir().join("shoal"));
        command
            .arg("-H")
            .arg(format!("unix://{}", Self::shoald_socket(host).display()))
            .args(args);
        crate::Streaming::spawn(command)
    }

    /// The shoal CLI against `host`, insisting it succeeds; its stdout.
    pub fn shoal_ok(&self, host: usize, args: &[&str]) -> String {
        let run = self.shoal(host, args);
        assert!(
            run.ok(),
            "shoal {args:?} on n{host} failed ({}): {}\n{}",
            run.code,
            run.stderr,
            self.log_tail(host)
        );
        run.stdout
    }

    /// The docker CLI against `host`'s own engine.
    pub fn docker(&self, host: usize, args: &[&str]) -> Run {
        Run::from(
            Command::new("docker")
                .arg("-H")
                .arg(format!("unix://{}", Self::docker_socket(host).display()))
                .args(args)
                .stdin(Stdio::null())
                .output()
                .unwrap_or_else(|e| panic!("running docker {args:?}: {e}")),
        )
    }

    /// Run a command inside `host` (its network namespaces), e.g. `["ping", "-c1", "10.78.0.12"]`;
    /// a tool missing here that busybox has (ping, nc, wget) runs as a busybox applet.
    pub fn exec(&self, host: usize, cmd: &[&str]) -> Run {
        let name = Self::name(host);
        let mut args = vec!["exec", name.as_str()];
        args.extend_from_slice(cmd);
        lab_sh(&args)
    }

    /// A long-running command inside `host` (a server the test drives); killed on drop.
    pub fn exec_streaming(&self, host: usize, cmd: &[&str]) -> crate::Streaming {
        let mut command = Command::new("bash");
        command
            .arg(lab_script())
            .args(["exec", Self::name(host).as_str()])
            .args(cmd)
            .env("SHOAL_BIN_DIR", bin_dir());
        crate::Streaming::spawn(command)
    }

    /// `host`'s underlay address, e.g. "10.78.0.12".
    pub fn ip(&self, host: usize) -> String {
        self.script_ok(&["ip", &Self::name(host)])
            .trim()
            .to_string()
    }

    /// `host`'s node address, "IP:4242".
    pub fn addr(&self, host: usize) -> String {
        format!("{}:{LAB_PORT}", self.ip(host))
    }

    /// `service create --detach --name NAME --replicas N EXTRA... shoal-test/busybox:a sleep
    /// 1000000` through `host`.
    pub fn create_sleeping(&self, host: usize, name: &str, replicas: usize, extra: &[&str]) -> Run {
        let replicas = replicas.to_string();
        let mut args = vec![
            "service",
            "create",
            "--detach",
            "--name",
            name,
            "--replicas",
            &replicas,
        ];
        args.extend_from_slice(extra);
        args.extend(["shoal-test/busybox:a", "sleep", "1000000"]);
        self.shoal(host, &args)
    }

    /// Every container shoal runs on every host: "nK/id" -> its start time and restart
    /// count (unchanged when it was neither restarted nor replaced).
    pub fn task_containers(&self) -> std::collections::BTreeMap<String, String> {
        let mut all = std::collections::BTreeMap::new();
        for &host in self.hosts() {
            let ps = self.docker(host, &["ps", "-q", "--filter", "label=shoal.task.id"]);
            for id in ps.stdout.split_whitespace() {
                let inspect = self.docker(
                    host,
                    &[
                        "inspect",
                        "--format",
                        "{{.State.StartedAt}} {{.RestartCount}}",
                        id,
                    ],
                );
                all.insert(format!("n{host}/{id}"), inspect.stdout.trim().to_string());
            }
        }
        all
    }

    /// The hostname of the leader as `host` sees it (`node ls`), if it answers.
    pub fn leader(&self, host: usize) -> Option<String> {
        let run = self.shoal(host, &["node", "ls", "--format", "json"]);
        if !run.ok() {
            return None;
        }
        crate::json_lines(&run.stdout)
            .into_iter()
            .find(|n| n["ManagerStatus"] == "Leader")
            .and_then(|n| n["Hostname"].as_str().map(str::to_string))
    }

    /// When `host`'s shoald said it became leader, each time its log says so (the log's
    /// own timestamps: RFC 3339, UTC).
    pub fn elected_at(&self, host: usize) -> Vec<std::time::SystemTime> {
        let log = std::fs::read_to_string(Self::log_path(host)).unwrap_or_default();
        log.lines()
            .filter(|l| l.contains("became leader"))
            .filter_map(|l| {
                let stamp: String = l
                    .chars()
                    .skip_while(|c| !c.is_ascii_digit())
                    .take_while(|c| c.is_ascii_digit() || "-T:.Z".contains(*c))
                    .collect();
                crate::parse_utc(&stamp)
            })
            .collect()
    }

    /// The host number of a lab hostname ("n3" -> 3; 0 for anything else).
    pub fn host_of(hostname: &str) -> usize {
        hostname.trim_start_matches('n').parse().unwrap_or(0)
    }

    /// `kill -9` `host`'s shoald (its dockerd and containers stay).
    pub fn stop(&self, host: usize) {
        self.script_ok(&["stop", &Self::name(host)]);
    }

    /// Start `host`'s shoald again on the same data dir; returns once it answers `info`.
    pub fn start(&self, host: usize) {
        self.script_ok(&["start", &Self::name(host)]);
    }

    /// Take `host`'s underlay link down (`up: false`) or up again.
    pub fn link(&self, host: usize, up: bool) {
        self.script_ok(&["link", &Self::name(host), if up { "up" } else { "down" }]);
    }

    /// Add the next host and join it as a worker; its number.
    pub fn add_worker(&mut self) -> usize {
        let out = self.script_ok(&["add-worker"]);
        let host = out
            .lines()
            .last()
            .and_then(|l| l.trim().strip_prefix('n'))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("lab.sh add-worker printed no host name: {out:?}"));
        self.hosts.push(host);
        host
    }

    /// `shoal swarm leave --force` on `host`, then remove the host entirely.
    pub fn remove(&mut self, host: usize) {
        self.script_ok(&["remove", &Self::name(host)]);
        self.hosts.retain(|&h| h != host);
    }

    /// The last lines of `host`'s shoald log, for failure messages.
    pub fn log_tail(&self, host: usize) -> String {
        let log = std::fs::read_to_string(Self::log_path(host)).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        format!(
            "n{host} shoald log (tail):\n{}",
            lines[lines.len().saturating_sub(40)..].join("\n")
        )
    }

    /// `lab.sh status`: one line per host.
    pub fn status(&self) -> String {
        self.script(&["status"]).stdout
    }

    /// [`wait_until`], failing with `host`'s log and the lab's status when it never holds.
    pub fn wait<T>(
        &self,
        host: usize,
        what: &str,
        timeout: Duration,
        f: impl FnMut() -> Option<T>,
    ) -> T {
        wait_until(what, timeout, f)
            .unwrap_or_else(|e| panic!("{e}\n{}\n{}", self.status(), self.log_tail(host)))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // SHOAL_LAB_KEEP_LOGS=DIR: each host's shoald log is copied to DIR/nK.log first.
        if let Ok(dir) = std::env::var("SHOAL_LAB_KEEP_LOGS") {
            let _ = std::fs::create_dir_all(&dir);
            for &host in &self.hosts {
                let _ = std::fs::copy(Self::log_path(host), format!("{dir}/n{host}.log"));
            }
        }
        let down = lab_sh(&["down"]);
        if !down.ok() {
            eprintln!("lab.sh down failed ({}):\n{}", down.code, down.stderr);
        }
    }
}
