//! Waiting for a service to converge after `service create|update|rollback|restart|scale`,
//! as docker does unless `--detach`: poll the tasks every 200 ms, draw docker's per-slot
//! progress lines on a terminal (nothing on a pipe), and fail on a paused or rolled-back
//! update or after `--timeout`.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use shoal_proto::names::short_id;
use shoal_proto::{
    GetServiceRequest, ListTasksRequest, Service, ServiceMode, Task, TaskState, UpdateState,
    UpdateStatus,
};

use crate::client::Client;
use crate::parse::{self, flag};

const POLL: Duration = Duration::from_millis(200);

/// `--detach` and `--timeout`, shared by the commands that wait.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Exit immediately instead of waiting for the service to converge
    #[arg(short, long)]
    pub detach: bool,
    /// Give up waiting for convergence after this long (docker waits forever; shoal stops
    /// after 10m by default)
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = flag(parse::duration_ms))]
    pub timeout: i64,
}

/// What the write was: a rollback expects the rollback states an update must not reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Update,
    Rollback,
}

/// One progress line: a slot ("1/3") or a node, and where its task stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub label: String,
    /// None: no task yet.
    pub state: Option<TaskState>,
    pub err: String,
    pub done: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Waiting,
    /// Every slot runs the current spec, and the update's monitor window is still open:
    /// a task that fails now still pauses or rolls the update back (docker's "verify").
    Verifying,
    Converged,
    Failed(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    pub lines: Vec<Line>,
    pub done: usize,
    pub total: usize,
    pub job: bool,
    pub outcome: Outcome,
}

fn desired(t: &Task) -> TaskState {
    t.desired()
}

fn created(t: &Task) -> i64 {
    t.meta.as_ref().map_or(0, |m| m.created_at_ms)
}

fn err_of(t: &Task) -> String {
    t.status.as_ref().map_or(String::new(), |s| s.err.clone())
}

/// The task to show for a group: desired running first, then the newest.
fn pick<'a>(tasks: impl Iterator<Item = &'a Task>) -> Option<&'a Task> {
    tasks.max_by_key(|t| (desired(t) == TaskState::Running, created(t)))
}

fn line(label: String, task: Option<&Task>, done_state: TaskState) -> Line {
    Line {
        label,
        state: task.map(Task::state),
        err: task.map(err_of).unwrap_or_default(),
        done: task.is_some_and(|t| t.state() == done_state),
    }
}

/// Why the wait fails, from the service's update status; `before` is the status read
/// before the write, so a rollback of an earlier update does not count.
pub fn failure(
    op: Op,
    status: Option<&UpdateStatus>,
    before: Option<&UpdateStatus>,
) -> Option<String> {
    let status = status?;
    let state = UpdateState::try_from(status.state).unwrap_or(UpdateState::Unknown);
    let changed =
        before.is_none_or(|b| b.state != status.state || b.started_at_ms != status.started_at_ms);
    match state {
        UpdateState::Paused if op == Op::Update => {
            Some(format!("update paused: {}", status.message))
        }
        UpdateState::RollbackPaused => Some(format!("update paused: {}", status.message)),
        UpdateState::RollbackStarted | UpdateState::RollbackCompleted
            if op == Op::Update && changed =>
        {
            Some(format!("update rolled back: {}", status.message))
        }
        _ => None,
    }
}

/// Where the service stands: one line per slot (replicated), node (global) or job task,
/// and whether it has converged or failed.
pub fn assess(
    service: &Service,
    tasks: &[Task],
    node_names: &HashMap<String, String>,
    op: Op,
    before: Option<&UpdateStatus>,
) -> Progress {
    let version = service.spec_version;
    let replicas = service.spec.as_ref().map_or(0, |s| s.replicas);
    let mode = service.mode();
    let node_label = |id: &str| {
        node_names
            .get(id)
            .cloned()
            .unwrap_or_else(|| short_id(id).to_string())
    };
    let (lines, total, job) = match mode {
        ServiceMode::Replicated => {
            let lines = (1..=replicas)
                .map(|slot| {
                    let task = pick(
                        tasks
                            .iter()
                            .filter(|t| t.slot == slot && t.spec_version == version),
                    );
                    line(format!("{slot}/{replicas}"), task, TaskState::Running)
                })
                .collect();
            (
                lines,
                usize::try_from(replicas).unwrap_or(usize::MAX),
                false,
            )
        }
        ServiceMode::Global => {
            // Every node that has a task desired running needs a current one running.
            let mut nodes: BTreeMap<&str, ()> = BTreeMap::new();
            for t in tasks.iter().filter(|t| desired(t) == TaskState::Running) {
                nodes.insert(t.node_id.as_str(), ());
            }
            let lines: Vec<Line> = nodes
                .keys()
                .map(|node| {
                    let task = pick(tasks.iter().filter(|t| {
                        t.node_id == *node
                            && t.spec_version == version
                            && desired(t) == TaskState::Running
                    }));
                    line(node_label(node), task, TaskState::Running)
                })
                .collect();
            let n = lines.len();
            (lines, n, false)
        }
        ServiceMode::ReplicatedJob | ServiceMode::GlobalJob => {
            let iteration = service.job_status.as_ref().map_or(0, |j| j.iteration);
            let current: Vec<&Task> = tasks
                .iter()
                .filter(|t| t.job_iteration == iteration)
                .collect();
            let mut groups: BTreeMap<(u64, String), Vec<&Task>> = BTreeMap::new();
            for t in &current {
                let key = if mode == ServiceMode::ReplicatedJob {
                    (t.slot, String::new())
                } else {
                    (0, t.node_id.clone())
                };
                groups.entry(key).or_default().push(t);
            }
            let lines: Vec<Line> = groups
                .iter()
                .map(|((slot, node), ts)| {
                    let task = ts
                        .iter()
                        .find(|t| t.state() == TaskState::Complete)
                        .copied()
                        .or_else(|| pick(ts.iter().copied()));
                    let label = if node.is_empty() {
                        slot.to_string()
                    } else {
                        node_label(node)
                    };
                    line(label, task, TaskState::Complete)
                })
                .collect();
            let total = if mode == ServiceMode::ReplicatedJob {
                usize::try_from(replicas).unwrap_or(usize::MAX)
            } else {
                lines.len()
            };
            (lines, total, true)
        }
    };
    let done = lines.iter().filter(|l| l.done).count();
    let current: Vec<&Task> = if job {
        let iteration = service.job_status.as_ref().map_or(0, |j| j.iteration);
        tasks
            .iter()
            .filter(|t| t.job_iteration == iteration)
            .collect()
    } else {
        tasks.iter().filter(|t| t.spec_version == version).collect()
    };
    let outcome = if let Some(why) = failure(op, service.update_status.as_ref(), before) {
        Outcome::Failed(why)
    } else if let Some(why) = hopeless(&current, done < total) {
        Outcome::Failed(why)
    } else if done >= total && (total > 0 || mode == ServiceMode::Replicated) {
        let updating = service.update_status.as_ref().is_some_and(|u| {
            matches!(
                UpdateState::try_from(u.state),
                Ok(UpdateState::Updating | UpdateState::RollbackStarted)
            )
        });
        if updating {
            Outcome::Verifying
        } else {
            Outcome::Converged
        }
    } else {
        Outcome::Waiting
    };
    Progress {
        lines,
        done: done.min(total),
        total,
        job,
        outcome,
    }
}

/// Attempts that failed alike before the wait gives up on a service that is not done.
pub const FAILS_ALIKE: usize = 3;

/// Why waiting longer is pointless: `pending` slots remain, nothing of the current version
/// runs or has completed, and its last [`FAILS_ALIKE`] attempts all failed with one error
/// (an image that does not exist, a command that is not there).
fn hopeless(current: &[&Task], pending: bool) -> Option<String> {
    if !pending
        || current
            .iter()
            .any(|t| matches!(t.state(), TaskState::Running | TaskState::Complete))
    {
        return None;
    }
    let mut failed: Vec<&&Task> = current
        .iter()
        .filter(|t| matches!(t.state(), TaskState::Failed | TaskState::Rejected))
        .collect();
    if failed.len() < FAILS_ALIKE {
        return None;
    }
    failed.sort_by_key(|t| created(t));
    let last = &failed[failed.len() - FAILS_ALIKE..];
    let err = err_of(last[0]);
    if last.iter().all(|t| err_of(t) == err) {
        Some(format!(
            "every attempt fails alike ({} tasks so far): {err}",
            failed.len()
        ))
    } else {
        None
    }
}

/// docker's steps towards running, out of 8.
fn step(state: Option<TaskState>) -> u64 {
    use TaskState::*;
    match state {
        None | Some(New) => 1,
        Some(Pending) => 2,
        Some(Assigned) => 3,
        Some(Accepted) => 4,
        Some(Preparing) => 5,
        Some(Ready) => 6,
        Some(Starting) => 7,
        Some(_) => 8,
    }
}

/// docker's progress lines, drawn on stdout.
struct Display {
    multi: MultiProgress,
    overall: ProgressBar,
    slots: Vec<(String, ProgressBar)>,
    style: ProgressStyle,
}

impl Display {
    fn new() -> Result<Self> {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
        let overall = multi.add(ProgressBar::new(0));
        overall.set_style(ProgressStyle::with_template("{msg}")?);
        let style =
            ProgressStyle::with_template("{prefix} [{bar:50}] {msg}")?.progress_chars("=> ");
        Ok(Self {
            multi,
            overall,
            slots: Vec::new(),
            style,
        })
    }

    fn show(&mut self, p: &Progress) {
        let noun = if p.job { "completed" } else { "tasks" };
        let what = if p.job {
            format!("job progress: {} out of {} {noun}", p.done, p.total)
        } else {
            format!("overall progress: {} out of {} {noun}", p.done, p.total)
        };
        self.overall.set_message(what);
        for l in &p.lines {
            let bar = match self.slots.iter().find(|(label, _)| *label == l.label) {
                Some((_, bar)) => bar.clone(),
                None => {
                    let bar = self.multi.add(ProgressBar::new(8));
                    bar.set_style(self.style.clone());
                    self.slots.push((l.label.clone(), bar.clone()));
                    bar
                }
            };
            let state = l.state.map_or("new", TaskState::docker_name);
            // docker's layout: `1/3: running   [=====>   ] error, if any`
            bar.set_prefix(format!("{}: {state:<9}", l.label));
            bar.set_message(l.err.replace(['\n', '\r'], " "));
            bar.set_position(step(l.state));
        }
    }

    fn verifying(&self) {
        self.overall
            .set_message("verify: Waiting for the update's monitor window to pass");
    }

    fn finish(&self, verdict: &str) {
        for (_, bar) in &self.slots {
            bar.abandon();
        }
        self.overall.abandon();
        // Below the bars, which stay on screen.
        if !verdict.is_empty() {
            let _ = super::print(verdict);
        }
    }
}

/// Waits until `service` converges; `before` is its update status before the write.
pub async fn wait(
    client: &mut Client,
    service: &str,
    op: Op,
    before: Option<UpdateStatus>,
    args: &WaitArgs,
) -> Result<()> {
    if args.detach {
        return Ok(());
    }
    let timeout = Duration::from_millis(u64::try_from(args.timeout).unwrap_or(0));
    let deadline = tokio::time::Instant::now() + timeout;
    let mut display = if std::io::stdout().is_terminal() {
        Some(Display::new()?)
    } else {
        None
    };
    loop {
        let svc = client
            .get_service(GetServiceRequest {
                service: service.to_string(),
            })
            .await?
            .service
            .unwrap_or_default();
        let resp = client
            .list_tasks(ListTasksRequest {
                service: svc.id.clone(),
                node: String::new(),
            })
            .await?;
        let p = assess(&svc, &resp.tasks, &resp.node_names, op, before.as_ref());
        if let Some(d) = display.as_mut() {
            d.show(&p);
        }
        match p.outcome {
            Outcome::Converged => {
                if let Some(d) = &display {
                    d.finish(if p.job {
                        "verify: Job complete"
                    } else {
                        "verify: Service converged"
                    });
                }
                return Ok(());
            }
            Outcome::Failed(why) => {
                if let Some(d) = &display {
                    d.finish("");
                }
                bail!("{why}");
            }
            Outcome::Verifying => {
                if let Some(d) = &display {
                    d.verifying();
                }
            }
            Outcome::Waiting => {}
        }
        if tokio::time::Instant::now() + POLL > deadline {
            if let Some(d) = &display {
                d.finish("");
            }
            bail!(
                "service {service} did not converge within {} ({} of {} tasks done); it goes on in the background: see `shoal service ps {service}`",
                humantime::format_duration(timeout),
                p.done,
                p.total
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::{JobStatus, Meta, ServiceSpec, TaskStatus};

    fn svc(mode: ServiceMode, replicas: u64, status: Option<(UpdateState, &str)>) -> Service {
        Service {
            id: "s1".into(),
            spec: Some(ServiceSpec {
                name: "web".into(),
                mode: mode as i32,
                replicas,
                ..Default::default()
            }),
            spec_version: 2,
            update_status: status.map(|(s, m)| UpdateStatus {
                state: s as i32,
                message: m.into(),
                started_at_ms: 5,
                completed_at_ms: 0,
            }),
            job_status: Some(JobStatus {
                iteration: 3,
                started_at_ms: 0,
            }),
            ..Default::default()
        }
    }

    /// (slot, node, spec_version / job iteration, desired, state, err)
    fn t(slot: u64, node: &str, v: u64, desired: TaskState, state: TaskState, err: &str) -> Task {
        Task {
            id: format!("t{slot}{node}{v}"),
            meta: Some(Meta {
                created_at_ms: i64::try_from(v).unwrap_or(0),
                ..Default::default()
            }),
            slot,
            node_id: node.into(),
            spec_version: v,
            job_iteration: v,
            desired_state: desired as i32,
            status: Some(TaskStatus {
                state: state as i32,
                err: err.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    use TaskState::{Complete, Pending, Rejected, Running, Shutdown, Starting};

    /// (what, service, tasks, op, outcome, (done, total))
    type Case = (
        &'static str,
        Service,
        Vec<Task>,
        Op,
        Outcome,
        (usize, usize),
    );

    #[test]
    fn convergence() {
        let paused = Some((UpdateState::Paused, "task t1 failed: exit 1"));
        let rolled = Some((UpdateState::RollbackCompleted, "task t1 failed: exit 1"));
        let cases: Vec<Case> = vec![
            (
                "all slots running the new version",
                svc(ServiceMode::Replicated, 2, None),
                vec![
                    t(1, "n1", 2, Running, Running, ""),
                    t(2, "n1", 2, Running, Running, ""),
                    t(1, "n1", 1, Shutdown, Shutdown, ""),
                ],
                Op::Update,
                Outcome::Converged,
                (2, 2),
            ),
            (
                "an old task still running does not count",
                svc(ServiceMode::Replicated, 2, None),
                vec![
                    t(1, "n1", 2, Running, Running, ""),
                    t(2, "n1", 1, Running, Running, ""),
                ],
                Op::Update,
                Outcome::Waiting,
                (1, 2),
            ),
            (
                "a rejected task keeps us waiting",
                svc(ServiceMode::Replicated, 1, None),
                vec![t(1, "n1", 2, Running, Rejected, "image nope not found")],
                Op::Update,
                Outcome::Waiting,
                (0, 1),
            ),
            (
                "zero replicas converge at once",
                svc(ServiceMode::Replicated, 0, None),
                vec![],
                Op::Update,
                Outcome::Converged,
                (0, 0),
            ),
            (
                "every slot new, the update still monitoring: verify",
                svc(
                    ServiceMode::Replicated,
                    1,
                    Some((UpdateState::Updating, "update in progress")),
                ),
                vec![t(1, "n1", 2, Running, Running, "")],
                Op::Update,
                Outcome::Verifying,
                (1, 1),
            ),
            (
                "a rollback verifies too",
                svc(
                    ServiceMode::Global,
                    0,
                    Some((UpdateState::RollbackStarted, "manually requested rollback")),
                ),
                vec![t(0, "n1", 2, Running, Running, "")],
                Op::Rollback,
                Outcome::Verifying,
                (1, 1),
            ),
            (
                "paused update fails",
                svc(ServiceMode::Replicated, 1, paused),
                vec![t(1, "n1", 2, Running, Running, "")],
                Op::Update,
                Outcome::Failed("update paused: task t1 failed: exit 1".into()),
                (1, 1),
            ),
            (
                "rolled back update fails",
                svc(ServiceMode::Replicated, 1, rolled),
                vec![],
                Op::Update,
                Outcome::Failed("update rolled back: task t1 failed: exit 1".into()),
                (0, 1),
            ),
            (
                "a rollback expects the rollback states",
                svc(ServiceMode::Replicated, 1, rolled),
                vec![t(1, "n1", 2, Running, Running, "")],
                Op::Rollback,
                Outcome::Converged,
                (1, 1),
            ),
            (
                "global: every node with a task desired running",
                svc(ServiceMode::Global, 0, None),
                vec![
                    t(0, "n1", 2, Running, Running, ""),
                    t(0, "n2", 1, Running, Running, ""),
                    t(0, "n2", 2, Running, Starting, ""),
                ],
                Op::Update,
                Outcome::Waiting,
                (1, 2),
            ),
            (
                "global converged",
                svc(ServiceMode::Global, 0, None),
                vec![
                    t(0, "n1", 2, Running, Running, ""),
                    t(0, "n2", 2, Running, Running, ""),
                    t(0, "n2", 1, Shutdown, Shutdown, ""),
                ],
                Op::Update,
                Outcome::Converged,
                (2, 2),
            ),
            (
                "replicated job counts completions of this iteration",
                svc(ServiceMode::ReplicatedJob, 3, None),
                vec![
                    t(1, "n1", 3, Complete, Complete, ""),
                    t(2, "n1", 3, Complete, Complete, ""),
                    t(3, "n1", 3, Complete, Pending, ""),
                    t(3, "n1", 2, Complete, Complete, ""),
                ],
                Op::Update,
                Outcome::Waiting,
                (2, 3),
            ),
            (
                "replicated job complete",
                svc(ServiceMode::ReplicatedJob, 2, None),
                vec![
                    t(1, "n1", 3, Complete, Complete, ""),
                    t(2, "n1", 3, Complete, Complete, ""),
                ],
                Op::Update,
                Outcome::Converged,
                (2, 2),
            ),
            (
                "global job with no task yet waits",
                svc(ServiceMode::GlobalJob, 0, None),
                vec![],
                Op::Update,
                Outcome::Waiting,
                (0, 0),
            ),
        ];
        for (what, service, tasks, op, want, counts) in cases {
            let p = assess(&service, &tasks, &HashMap::new(), op, None);
            assert_eq!(p.outcome, want, "{what}");
            assert_eq!((p.done, p.total), counts, "{what}");
        }
    }

    #[test]
    fn display_templates_parse() {
        assert!(Display::new().is_ok());
    }

    #[test]
    fn lines_show_slot_state_and_error() {
        let service = svc(ServiceMode::Replicated, 2, None);
        let tasks = [t(1, "n1", 2, Running, Rejected, "image nope not found")];
        let p = assess(&service, &tasks, &HashMap::new(), Op::Update, None);
        assert_eq!(
            p.lines,
            [
                Line {
                    label: "1/2".into(),
                    state: Some(Rejected),
                    err: "image nope not found".into(),
                    done: false
                },
                Line {
                    label: "2/2".into(),
                    state: None,
                    err: String::new(),
                    done: false
                }
            ]
        );
    }

    #[test]
    fn an_earlier_rollback_does_not_fail_a_new_update() {
        let before = UpdateStatus {
            state: UpdateState::RollbackCompleted as i32,
            message: "old".into(),
            started_at_ms: 5,
            completed_at_ms: 0,
        };
        assert_eq!(failure(Op::Update, Some(&before), Some(&before)), None);
        let now = UpdateStatus {
            started_at_ms: 9,
            ..before.clone()
        };
        assert_eq!(
            failure(Op::Update, Some(&now), Some(&before)).as_deref(),
            Some("update rolled back: old")
        );
    }
}

#[cfg(test)]
mod hopeless_tests {
    use super::*;
    use shoal_proto::{Meta, ServiceSpec, TaskStatus};

    fn failed(n: i64, err: &str) -> Task {
        Task {
            id: format!("t{n}"),
            meta: Some(Meta {
                created_at_ms: n,
                ..Default::default()
            }),
            slot: 1,
            spec_version: 1,
            desired_state: TaskState::Shutdown as i32,
            status: Some(TaskStatus {
                state: TaskState::Rejected as i32,
                err: err.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn service() -> Service {
        Service {
            spec: Some(ServiceSpec {
                name: "web".into(),
                replicas: 1,
                ..Default::default()
            }),
            spec_version: 1,
            ..Default::default()
        }
    }

    fn outcome(tasks: &[Task]) -> Outcome {
        assess(&service(), tasks, &HashMap::new(), Op::Update, None).outcome
    }

    #[test]
    fn a_service_whose_every_attempt_fails_alike_fails_the_wait() {
        let nope = "No such image: busybox:nope";
        assert_eq!(
            outcome(&[failed(1, nope), failed(2, nope)]),
            Outcome::Waiting
        );
        match outcome(&[failed(1, nope), failed(2, nope), failed(3, nope)]) {
            Outcome::Failed(why) => assert!(why.ends_with(nope), "{why}"),
            other => panic!("{other:?}"),
        }
        // Different errors: something is changing, keep waiting.
        assert_eq!(
            outcome(&[failed(1, nope), failed(2, "exit 1"), failed(3, nope)]),
            Outcome::Waiting
        );
        // One running: not hopeless.
        let mut running = failed(4, "");
        running.status = Some(TaskStatus {
            state: TaskState::Running as i32,
            ..Default::default()
        });
        running.slot = 1;
        let mut tasks = vec![failed(1, nope), failed(2, nope), failed(3, nope), running];
        assert_eq!(outcome(&tasks), Outcome::Converged);
        tasks.pop();
        assert!(matches!(outcome(&tasks), Outcome::Failed(_)));
    }
}
