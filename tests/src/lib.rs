//! Shoal's end-to-end harness: real `shoald` processes on a real Docker Engine, driven
//! through the real `shoal` CLI.
//!
//! Each [`Node`] gets its own data dir, socket and node name, so tests never touch each
//! other's state or containers (containers carry the node's id as a label). Tests wait for
//! conditions with [`wait_until`], never for a fixed time. The harness knows nothing of
//! Shoal's internals: it sees what a user sees. The [`fuzz`] targets are the exception:
//! they feed parsers, the Control API and the store's applier directly.

pub mod fuzz;
pub mod harness;
pub mod lab;
pub mod linear;
pub mod registers;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

/// A service of `replicas` tasks of the test image that only sleep: for tests and loads
/// that need services, not work from them.
pub fn sleeping_service(name: &str, replicas: u64) -> shoal_proto::ServiceSpec {
    use shoal_proto::{ContainerSpec, ServiceMode, ServiceSpec, TaskSpec};
    ServiceSpec {
        name: name.into(),
        replicas,
        mode: ServiceMode::Replicated as i32,
        task: Some(TaskSpec {
            container: Some(ContainerSpec {
                image: "shoal-test/busybox:a".into(),
                args: vec!["sleep".into(), "1000000".into()],
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}

/// Why `shoald` and `shoal` can't be used, if they are not built.
pub fn binaries_missing() -> Option<String> {
    ["shoald", "shoal"]
        .iter()
        .map(|bin| bin_dir().join(bin))
        .find(|path| !path.exists())
        .map(|path| {
            format!(
                "{} not built: run `cargo build --workspace --bins` first",
                path.display()
            )
        })
}

/// Why the end-to-end tests cannot run here, if they cannot.
pub fn skip_reason() -> Option<String> {
    if !is_root() {
        return Some("needs root (shoald talks to dockerd and owns /run/shoal)".into());
    }
    match Command::new("docker")
        .args(["image", "inspect", "shoal-test/busybox:a"])
        .output()
    {
        Ok(o) if o.status.success() => {}
        Ok(_) => {
            return Some(
                "test image shoal-test/busybox:a missing: run deploy/build-test-images.sh".into(),
            )
        }
        Err(e) => return Some(format!("no docker CLI: {e}")),
    }
    binaries_missing()
}

/// Set (to anything) where every end-to-end test must run: a test that would skip fails
/// instead, so a broken machine setup cannot pass. `.ci/run` sets it.
pub const E2E_REQUIRED: &str = "SHOAL_E2E_REQUIRED";

/// Report why a test cannot run here: a printed skip, or a failure under [`E2E_REQUIRED`].
pub fn skipping(why: &str) {
    if std::env::var_os(E2E_REQUIRED).is_some() {
        panic!("{E2E_REQUIRED} is set, and this end-to-end test cannot run here: {why}");
    }
    eprintln!("SKIPPED: {why}");
}

/// Skip the calling test (return early) with a printed reason when the machine can't run it
/// (fails instead under [`E2E_REQUIRED`]).
#[macro_export]
macro_rules! require_env {
    () => {
        if let Some(why) = $crate::skip_reason() {
            $crate::skipping(&why);
            return;
        }
    };
}

/// Every file under `dir` whose bytes hold `needle`, and how many files were read (so a
/// test can tell an empty answer from a scan that read nothing).
pub fn files_holding(dir: &Path, needle: &[u8]) -> (Vec<PathBuf>, usize) {
    let (mut found, mut scanned) = (Vec::new(), 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        } else if let Ok(bytes) = std::fs::read(&path) {
            scanned += 1;
            if bytes.windows(needle.len()).any(|w| w == needle) {
                found.push(path);
            }
        }
    }
    (found, scanned)
}

/// A node's certificates from its data dir, the key opened with the node's data key (in
/// `keys.json`; an autolocked manager's cannot be read this way).
pub fn node_certs(data_dir: &Path) -> anyhow::Result<shoal_pki::NodeCerts> {
    let key = match shoal_pki::vault::load_or_create(data_dir)? {
        shoal_pki::vault::Keys::Open(key) => key,
        shoal_pki::vault::Keys::Locked => bail!("{} is autolocked", data_dir.display()),
    };
    let dir = data_dir.join("certificates");
    shoal_pki::NodeCerts::load(&dir, Some(&key))?
        .with_context(|| format!("no certificates in {}", dir.display()))
}

/// An RFC 3339 UTC time as logs write it ("2026-12-01T02:10:11.123456Z").
pub fn parse_utc(stamp: &str) -> Option<std::time::SystemTime> {
    let (date, time) = stamp.trim_end_matches('Z').split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.splitn(3, ':');
    let (h, min) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let secs: f64 = t.next()?.parse().ok()?;
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
    let yy = if m <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + day - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let whole = days * 86_400 + h * 3_600 + min * 60;
    let at = Duration::from_secs(u64::try_from(whole).ok()?) + Duration::from_secs_f64(secs);
    Some(std::time::UNIX_EPOCH + at)
}

/// Where the built `shoald` and `shoal` are: `$SHOAL_BIN_DIR`, else the target dir the test
/// binary runs from.
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("SHOAL_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    // target/debug/deps/test-binary -> target/debug
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Poll `f` until it returns `Some`, every 50 ms, or fail after `timeout` saying `what`.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A command's outcome, with its output as text.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(o: Output) -> Self {
        Self {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    pub fn ok(&self) -> bool {
        self.code == 0
    }
}

pub fn docker(args: &[&str]) -> Run {
    Run::from(
        Command::new("docker")
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running docker {args:?}: {e}")),
    )
}

/// One `shoald` with its own data dir and socket.
pub struct Node {
    dir: tempfile::TempDir,
    pub name: String,
    child: Option<Child>,
    /// Extra environment for shoald (its flags' `SHOALD_*` variables).
    env: Vec<(String, String)>,
}

impl Node {
    /// Start a fresh `shoald` (not yet in a swarm) and wait for its socket.
    pub fn start(prefix: &str) -> anyhow::Result<Self> {
        Self::start_with(|dir| {
            format!(
                "{prefix}-{}",
                &dir.file_name().unwrap_or_default().to_string_lossy()[10..]
            )
        })
    }

    /// Start a fresh `shoald` whose node name is exactly `name`.
    pub fn start_named(name: &str) -> anyhow::Result<Self> {
        Self::start_with(|_| name.to_string())
    }

    /// [`Node::start`] with shoald's environment extended by `env` (e.g.
    /// `SHOALD_DOCKER_API`), each value's `{dir}` replaced by the node's own directory.
    pub fn start_env(prefix: &str, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::start_full(
            |dir| {
                format!(
                    "{prefix}-{}",
                    &dir.file_name().unwrap_or_default().to_string_lossy()[10..]
                )
            },
            env,
        )
    }

    fn start_with(name: impl FnOnce(&Path) -> String) -> anyhow::Result<Self> {
        Self::start_full(name, &[])
    }

    fn start_full(
        name: impl FnOnce(&Path) -> String,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("shoal-e2e-").tempdir()?;
        let name = name(dir.path());
        let here = dir.path().display().to_string();
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.replace("{dir}", &here)))
            .collect();
        let mut node = Self {
            dir,
            name,
            child: None,
            env,
        };
        node.spawn()?;
        Ok(node)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("shoald.sock")
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// Its Docker Engine API socket (shoald's default: beside its own socket).
    pub fn docker_api(&self) -> PathBuf {
        self.dir.path().join("docker-api.sock")
    }

    pub fn log(&self) -> PathBuf {
        self.dir.path().join("shoald.log")
    }

    /// (Re)start the daemon on the same data dir.
    pub fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())?;
        let child = Command::new(bin_dir().join("shoald"))
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--socket")
            .arg(self.socket())
            .arg("--node-name")
            .arg(&self.name)
            .env("RUST_LOG", "info,openraft=warn")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting shoald")?;
        self.child = Some(child);
        wait_until(
            "shoald to answer on its socket",
            Duration::from_secs(20),
            || self.shoal(&["info"]).ok().then_some(()),
        )
        .with_context(|| self.log_tail())
    }

    /// `kill -9` the daemon, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// [`wait_until`], failing with the daemon's log when the condition never holds.
    pub fn wait<T>(&self, what: &str, timeout: Duration, f: impl FnMut() -> Option<T>) -> T {
        wait_until(what, timeout, f).unwrap_or_else(|e| panic!("{e}\n{}", self.log_tail()))
    }

    /// The last lines of the daemon's log, for failure messages; backtrace frames left
    /// out, so an error's own lines are not pushed out by its backtrace.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log()).unwrap_or_default();
        let frame = |l: &str| {
            let l = l.trim_start();
            l.starts_with("at ")
                || l.split_once(": ")
                    .is_some_and(|(n, _)| n.parse::<u32>().is_ok())
        };
        let lines: Vec<&str> = log.lines().filter(|l| !frame(l)).collect();
        format!(
            "shoald log (tail):\n{}",
            lines[lines.len().saturating_sub(40)..].join("\n")
        )
    }

    /// Run the CLI against this node.
    pub fn shoal(&self, args: &[&str]) -> Run {
        Run::from(
            Command::new(bin_dir().join("shoal"))
                .arg("-H")
                .arg(self.host())
                .args(args)
                .output()
                .unwrap_or_else(|e| panic!("running shoal {args:?}: {e}")),
        )
    }

    /// Start the CLI against this node and leave it running (`service logs -f`).
    pub fn shoal_streaming(&self, args: &[&str]) -> Streaming {
        let mut command = Command::new(bin_dir().join("shoal"));
        command.arg("-H").arg(self.host()).args(args);
        Streaming::spawn(command)
    }

    /// Run the CLI and insist it succeeds; its stdout.
    pub fn shoal_ok(&self, args: &[&str]) -> String {
        let run = self.shoal(args);
        assert!(
            run.ok(),
            "shoal {args:?} failed ({}): {}\n{}",
            run.code,
            run.stderr,
            self.log_tail()
        );
        run.stdout
    }

    /// `swarm init` on loopback with a free port.
    pub fn init(&self) -> String {
        self.shoal_ok(&["swarm", "init", "--listen-addr", "127.0.0.1:0"]);
        self.node_id()
    }

    /// The address other nodes reach this one on (from its record).
    pub fn addr(&self) -> String {
        self.record_field("advertise_addr")
    }

    pub fn node_id(&self) -> String {
        self.record_field("node_id")
    }

    fn record_field(&self, field: &str) -> String {
        let record = std::fs::read(self.data_dir().join("node.json")).unwrap_or_default();
        serde_json::from_slice::<Value>(&record)
            .ok()
            .and_then(|v| v[field].as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// `service ps --format json` as objects.
    pub fn tasks(&self, service: &str) -> Vec<Value> {
        json_lines(&self.shoal_ok(&["service", "ps", "--no-trunc", "--format", "json", service]))
    }

    /// Tasks of `service` whose desired and current state are both running.
    pub fn running_tasks(&self, service: &str) -> Vec<Value> {
        self.tasks(service)
            .into_iter()
            .filter(|t| {
                t["DesiredState"]
                    .as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case("running"))
                    && t["CurrentState"]
                        .as_str()
                        .is_some_and(|s| s.to_ascii_lowercase().starts_with("running"))
            })
            .collect()
    }

    /// Ids of the containers this node's agent made (`all`: exited ones too).
    pub fn containers(&self, all: bool) -> Vec<String> {
        let filter = format!("label=shoal.node.id={}", self.node_id());
        let mut args = vec!["ps", "-q", "--no-trunc", "--filter", filter.as_str()];
        if all {
            args.push("-a");
        }
        let run = docker(&args);
        run.stdout.lines().map(str::to_string).collect()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let id = self.node_id();
        self.kill9();
        if !id.is_empty() {
            let filter = format!("label=shoal.node.id={id}");
            let run = docker(&["ps", "-aq", "--filter", filter.as_str()]);
            let ids: Vec<&str> = run.stdout.lines().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(ids);
                docker(&args);
            }
            // The overlay namespaces it made (named ones outlive their process).
            let prefix = format!("shoal-{}-", id.chars().take(8).collect::<String>());
            let listed = Command::new("ip").args(["netns", "list"]).output();
            let names = listed
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            for ns in names
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .filter(|n| n.starts_with(&prefix))
            {
                let _ = Command::new("ip").args(["netns", "del", ns]).output();
            }
        }
    }
}

pub fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A command left running (`service logs -f`), its output collected line by line as it
/// comes. Killed when dropped.
pub struct Streaming {
    child: Child,
    stdout: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stderr: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Streaming {
    pub fn spawn(mut command: Command) -> Self {
        use std::io::BufRead;
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("running {command:?}: {e}"));
        let collect = |pipe: Option<Box<dyn std::io::Read + Send>>| {
            let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            if let Some(pipe) = pipe {
                let sink = lines.clone();
                std::thread::spawn(move || {
                    for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                        sink.lock().unwrap_or_else(|p| p.into_inner()).push(line);
                    }
                });
            }
            lines
        };
        let stdout = collect(child.stdout.take().map(|p| Box::new(p) as _));
        let stderr = collect(child.stderr.take().map(|p| Box::new(p) as _));
        Self {
            child,
            stdout,
            stderr,
        }
    }

    /// Every stdout line so far.
    pub fn stdout(&self) -> Vec<String> {
        self.stdout
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Every stderr line so far.
    pub fn stderr(&self) -> Vec<String> {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The exit code once the command ended.
    pub fn exited(&mut self) -> Option<i32> {
        self.child
            .try_wait()
            .ok()
            .flatten()
            .map(|s| s.code().unwrap_or(-1))
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_timestamps_parse_to_the_instant_they_name() {
        let since_epoch = |stamp: &str| {
            parse_utc(stamp)
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs_f64())
        };
        assert_eq!(
            since_epoch("2026-12-01T02:10:11.250000Z"),
            Some(1_796_091_011.25)
        );
        assert_eq!(since_epoch("2024-02-29T00:00:00Z"), Some(1_709_164_800.0));
        assert_eq!(parse_utc("yesterday"), None);
        assert_eq!(parse_utc("2026-13-01T00:00"), None);
    }
}
