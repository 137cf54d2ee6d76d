//! Waiting on a whole stack: after `stack deploy` until every service has converged
//! (replicated and global: every task running, healthy where it has a healthcheck; jobs:
//! completed), failing with the service and its task error; after `stack rm` until the
//! stack's tasks, and so its containers, are gone.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use anyhow::{bail, Result};
use shoal_proto::{ListServicesRequest, ListTasksRequest};

use super::super::print;
use super::super::progress::{self, Op, Outcome};
use crate::client::Client;

const POLL: Duration = Duration::from_millis(250);

/// Wait until every service of `stack` converges, printing each service's progress as it
/// changes (unless `quiet`), for at most `timeout_ms`.
pub async fn converged(
    client: &mut Client,
    stack: &str,
    timeout_ms: i64,
    quiet: bool,
) -> Result<()> {
    let timeout = Duration::from_millis(u64::try_from(timeout_ms).unwrap_or(0));
    let deadline = tokio::time::Instant::now() + timeout;
    let mut shown: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let services: Vec<_> = client
            .list_services(ListServicesRequest {})
            .await?
            .services
            .into_iter()
            .filter(|s| s.stack() == Some(stack))
            .collect();
        let mut pending = Vec::new();
        for service in &services {
            let resp = client
                .list_tasks(ListTasksRequest {
                    service: service.id.clone(),
                    node: String::new(),
                })
                .await?;
            let p = progress::assess(service, &resp.tasks, &resp.node_names, Op::Update, None);
            let noun = if p.job { "completed" } else { "running" };
            let line = match &p.outcome {
                Outcome::Converged => format!(
                    "{}: converged ({}/{} {noun})",
                    service.name(),
                    p.done,
                    p.total
                ),
                Outcome::Failed(why) => bail!("service {} failed: {why}", service.name()),
                Outcome::Verifying | Outcome::Waiting => {
                    pending.push(service.name().to_string());
                    let err = p
                        .lines
                        .iter()
                        .find(|l| !l.err.is_empty())
                        .map(|l| format!(" ({})", l.err))
                        .unwrap_or_default();
                    format!("{}: {}/{} {noun}{err}", service.name(), p.done, p.total)
                }
            };
            if !quiet && shown.get(service.name()) != Some(&line) {
                print(&line)?;
                shown.insert(service.name().to_string(), line);
            }
        }
        if pending.is_empty() {
            if !quiet {
                print(&format!("Stack {stack}: every service has converged"))?;
            }
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "stack {stack}: not converged after {}: still waiting for {}; `shoal stack ps {stack}` shows why",
                humantime::format_duration(timeout),
                pending.join(", ")
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Wait until no task of `services` (ids) is left in the cluster: deleting a task is what
/// removes its container on its node.
pub async fn tasks_gone(
    client: &mut Client,
    stack: &str,
    services: &HashSet<String>,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let left = client
            .list_tasks(ListTasksRequest::default())
            .await?
            .tasks
            .into_iter()
            .filter(|t| services.contains(&t.service_id))
            .count();
        if left == 0 {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("stack {stack}: {left} task(s) still stopping after 2m; `shoal stack ps {stack}` shows them");
        }
        tokio::time::sleep(POLL).await;
    }
}
