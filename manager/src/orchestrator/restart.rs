//! The restart supervisor: decides whether and when a finished task is replaced.
//!
//! A replacement is created at once, with desired state READY when the policy has a delay,
//! so its node prepares the container while the delay runs; when the delay is over the
//! supervisor raises it to RUNNING. The delay deadlines and the attempt history live in
//! memory on the leader: a new leader starts a pending delay afresh, as Swarm's does.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use shoal_proto::{RestartCondition, RestartPolicy, Service, Task, TaskState};
use tokio::time::Instant;

use super::new_task;
use crate::store::{Object, StoreError, WriteTx};

/// Swarm's default restart delay.
pub const DEFAULT_RESTART_DELAY: Duration = Duration::from_secs(5);

/// Identifies a slot across its tasks: (service id, slot number or node id).
pub type SlotKey = (String, String);

pub fn slot_key(task: &Task) -> SlotKey {
    let slot = if task.slot > 0 {
        task.slot.to_string()
    } else {
        task.node_id.clone()
    };
    (task.service_id.clone(), slot)
}

/// Whose restarts count together: one slot's tasks of one spec version and (jobs) one run.
/// An update or a job's new run starts with no attempts used, as Swarm's restart history
/// starts afresh with a new spec.
type AttemptKey = (SlotKey, u64, u64);

fn attempt_key(task: &Task) -> AttemptKey {
    (slot_key(task), task.spec_version, task.job_iteration)
}

/// In-memory restart bookkeeping of the leader.
#[derive(Default)]
pub struct RestartSupervisor {
    delays: HashMap<String, Instant>,
    attempts: HashMap<AttemptKey, VecDeque<Instant>>,
}

impl RestartSupervisor {
    /// Look after the current task of a slot. Returns when it next needs a look.
    pub fn supervise(
        &mut self,
        tx: &mut WriteTx<'_>,
        service: &Service,
        task: &Task,
        now: Instant,
    ) -> Result<Option<Instant>, StoreError> {
        let policy = policy(service);
        let delay = policy.delay_ms.map_or(DEFAULT_RESTART_DELAY, |ms| {
            Duration::from_millis(ms.max(0) as u64)
        });
        match task.desired() {
            TaskState::Ready => {
                let due = *self.delays.entry(task.id.clone()).or_insert(now + delay);
                if now < due {
                    return Ok(Some(due));
                }
                self.delays.remove(&task.id);
                let mut started = task.clone();
                started.desired_state = TaskState::Running as i32;
                tx.update(Object::Task(started))?;
                Ok(None)
            }
            // A job's completed task is its result: never restarted, whatever the policy.
            TaskState::Running
                if task.state() == TaskState::Complete && super::is_job(service.mode()) =>
            {
                Ok(None)
            }
            TaskState::Running if task.state().is_terminal() => {
                if !self.should_restart(&policy, task, now) {
                    return Ok(None);
                }
                let mut old = task.clone();
                old.desired_state = TaskState::Shutdown as i32;
                tx.update(Object::Task(old))?;
                let desired = if delay.is_zero() {
                    TaskState::Running
                } else {
                    TaskState::Ready
                };
                let replacement = new_task(service, task.slot, &task.node_id, desired);
                self.attempts
                    .entry(attempt_key(task))
                    .or_default()
                    .push_back(now);
                let next = if delay.is_zero() {
                    None
                } else {
                    self.delays.insert(replacement.id.clone(), now + delay);
                    Some(now + delay)
                };
                tx.create(Object::Task(replacement))?;
                Ok(next)
            }
            _ => Ok(None),
        }
    }

    fn should_restart(&mut self, policy: &RestartPolicy, task: &Task, now: Instant) -> bool {
        let condition =
            RestartCondition::try_from(policy.condition).unwrap_or(RestartCondition::Any);
        match condition {
            RestartCondition::None => return false,
            RestartCondition::OnFailure if task.state() == TaskState::Complete => return false,
            _ => {}
        }
        if policy.max_attempts == 0 {
            return true;
        }
        let window = Duration::from_millis(policy.window_ms.max(0) as u64);
        let attempts = self.attempts.entry(attempt_key(task)).or_default();
        if !window.is_zero() {
            while attempts
                .front()
                .is_some_and(|t| now.duration_since(*t) > window)
            {
                attempts.pop_front();
            }
        }
        (attempts.len() as u64) < policy.max_attempts
    }

    /// Forget slots and tasks that no longer exist.
    pub fn forget_service(&mut self, service_id: &str) {
        self.attempts.retain(|((s, _), _, _), _| s != service_id);
    }
}

/// The service's restart policy; unset, it is Swarm's default: condition any for services,
/// on-failure for jobs.
fn policy(service: &Service) -> RestartPolicy {
    service
        .spec
        .as_ref()
        .and_then(|s| s.task.as_ref())
        .and_then(|t| t.restart)
        .unwrap_or_else(|| RestartPolicy {
            condition: if super::is_job(service.mode()) {
                RestartCondition::OnFailure as i32
            } else {
                RestartCondition::Any as i32
            },
            ..Default::default()
        })
}
