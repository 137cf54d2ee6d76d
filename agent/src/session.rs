//! The agent's session with the managers' dispatcher.
//!
//! Opens a session, beats at the period the dispatcher asks for, hands every assignment set
//! to the [`Worker`], and reports task status in batches. When anything breaks it reconnects
//! with backoff, trying each known manager in turn; tasks keep running meanwhile and status
//! reports wait (the newest per task) until a session is back. While a session is open, the
//! node also answers `service logs` subscriptions ([`crate::logs`]) on the same manager.

use std::collections::HashMap;
use std::time::Duration;

use crate::tls::NodeTls;
use shoal_manager::caller::is_not_in_swarm;
use shoal_manager::membership::leader_of;
use shoal_proto::{
    AssignmentsRequest, DispatcherClient, HeartbeatRequest, NodeDescription, NodeRole,
    SessionMessage, SessionRequest, TaskStatus, TaskStatusUpdate, UpdateTaskStatusRequest,
};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::logs::Publisher;
use crate::network::Networks;
use crate::worker::Worker;

const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("connecting to manager {addr}: {source}")]
    Connect {
        addr: String,
        source: shoal_pki::PkiError,
    },
    #[error("manager {addr} refused the session: {status}")]
    Rpc { addr: String, status: tonic::Status },
    #[error("manager {0} closed the session")]
    Closed(String),
}

/// What a session heard that the daemon acts on, outside the session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Heard {
    /// The role the swarm wants this node to have.
    Role(NodeRole),
    /// The managers to fail over to changed: worth remembering across restarts.
    Managers(Vec<String>),
    /// The swarm removed this node: its certificate is refused from now on.
    Removed,
}

/// What the agent tells the managers about itself.
#[derive(Clone, Debug)]
pub struct AgentIdentity {
    pub node_id: String,
    pub description: NodeDescription,
    /// The address this node is reached on.
    pub addr: String,
}

/// What a session hands its news to on this node: the worker (tasks) and the overlay
/// networks (their views).
#[derive(Clone, Copy)]
pub struct Local<'a> {
    pub worker: &'a Worker,
    pub networks: Option<&'a Networks>,
    pub files: Option<&'a crate::files::TaskFiles>,
}

/// Hold a session with some manager until `cancel`.
pub async fn run(
    identity: AgentIdentity,
    mut managers: Vec<String>,
    tls: NodeTls,
    local: Local<'_>,
    mut statuses: mpsc::Receiver<(String, TaskStatus)>,
    heard_tx: mpsc::Sender<Heard>,
    cancel: CancellationToken,
) {
    let mut pending: HashMap<String, TaskStatus> = HashMap::new();
    let mut backoff = MIN_BACKOFF;
    let mut next = 0usize;
    while !cancel.is_cancelled() {
        let Some(addr) = managers.get(next % managers.len().max(1)).cloned() else {
            tracing::error!("no manager address known: the agent cannot open a session");
            cancel.cancelled().await;
            return;
        };
        let result = session(
            &identity,
            &addr,
            &tls,
            local,
            &mut statuses,
            &mut pending,
            &mut managers,
            &heard_tx,
            &cancel,
        )
        .await;
        match result {
            Ok(()) => return,
            Err(SessionError::Rpc { status, .. }) if is_not_in_swarm(&status) => {
                // Removed from the swarm: say so once, stop its tasks, stop trying.
                tracing::error!("{}", status.message());
                local.worker.assign(Vec::new()).await;
                let _ = heard_tx.try_send(Heard::Removed);
                cancel.cancelled().await;
                return;
            }
            Err(SessionError::Rpc { status, .. }) if leader_of(&status).is_some() => {
                // A follower named the leader: go there next, at once.
                let leader = leader_of(&status).unwrap_or_default();
                tracing::info!(leader = %leader, "manager {addr} is a follower; moving the session to the leader");
                if !managers.contains(&leader) {
                    managers.push(leader.clone());
                }
                next = managers.iter().position(|m| *m == leader).unwrap_or(next);
                backoff = MIN_BACKOFF;
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "session lost; reconnecting");
                next += 1;
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One session; returns `Ok` only when cancelled.
#[allow(clippy::too_many_arguments)]
async fn session(
    identity: &AgentIdentity,
    addr: &str,
    tls: &NodeTls,
    local: Local<'_>,
    statuses: &mut mpsc::Receiver<(String, TaskStatus)>,
    pending: &mut HashMap<String, TaskStatus>,
    managers: &mut Vec<String>,
    heard_tx: &mpsc::Sender<Heard>,
    cancel: &CancellationToken,
) -> Result<(), SessionError> {
    let rpc = |status| SessionError::Rpc {
        addr: addr.to_string(),
        status,
    };
    let worker = local.worker;
    let channel: Channel = shoal_pki::channel(addr, &tls.client())
        .await
        .map_err(|source| SessionError::Connect {
            addr: addr.to_string(),
            source,
        })?;
    let mut client = DispatcherClient::new(channel.clone());
    let mut session_stream = client
        .session(SessionRequest {
            node_id: identity.node_id.clone(),
            description: Some(identity.description.clone()),
            addr: identity.addr.clone(),
        })
        .await
        .map_err(rpc)?
        .into_inner();
    let first = session_stream
        .next()
        .await
        .ok_or_else(|| SessionError::Closed(addr.to_string()))?
        .map_err(rpc)?;
    let session_id = first.session_id.clone();
    heard(&first, managers, heard_tx);
    trust(&first, tls);
    let period = Duration::from_millis(first.heartbeat_period_ms.max(100) as u64);
    tracing::info!(manager = addr, session = %session_id, "session open");
    pending.extend(worker.statuses());

    let mut assignments = client
        .assignments(AssignmentsRequest {
            session_id: session_id.clone(),
        })
        .await
        .map_err(rpc)?
        .into_inner();
    // `service logs` subscriptions ride on the same manager, for as long as this session.
    let logs = cancel.child_token();
    let _stop_logs = logs.clone().drop_guard();
    let publisher = Publisher::new(channel, identity.node_id.clone(), worker.executor());
    tokio::spawn(publisher.serve(worker.feed(), logs));

    let mut heartbeat = tokio::time::interval(period);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if !pending.is_empty() {
            let updates = pending
                .iter()
                .map(|(task_id, status)| TaskStatusUpdate {
                    task_id: task_id.clone(),
                    status: Some(status.clone()),
                })
                .collect();
            client
                .update_task_status(UpdateTaskStatusRequest {
                    session_id: session_id.clone(),
                    updates,
                })
                .await
                .map_err(rpc)?;
            pending.clear();
        }
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = heartbeat.tick() => {
                client
                    .heartbeat(HeartbeatRequest { session_id: session_id.clone() })
                    .await
                    .map_err(rpc)?;
            }
            message = assignments.next() => match message {
                Some(Ok(set)) => {
                    tracing::debug!(tasks = set.tasks.len(), "assignments received");
                    // Networks first: a task's container joins them when it is made.
                    if let Some(networks) = local.networks {
                        networks.apply(&set.networks).await;
                    }
                    // Secrets and configs before the tasks that use them.
                    if let Some(files) = local.files {
                        files.update(set.files);
                    }
                    worker.assign(set.tasks).await
                }
                Some(Err(status)) => return Err(rpc(status)),
                None => return Err(SessionError::Closed(addr.to_string())),
            },
            message = session_stream.next() => match message {
                Some(Ok(message)) => {
                    heard(&message, managers, heard_tx);
                    trust(&message, tls);
                }
                Some(Err(status)) => return Err(rpc(status)),
                None => return Err(SessionError::Closed(addr.to_string())),
            },
            report = statuses.recv() => match report {
                Some((task_id, status)) => {
                    pending.insert(task_id, status);
                    // Take whatever else is already queued into the same report.
                    while let Ok((task_id, status)) = statuses.try_recv() {
                        pending.insert(task_id, status);
                    }
                }
                None => return Ok(()),
            },
        }
    }
}

/// Follow the roots the swarm trusts (a root CA rotation): renew the certificate at once
/// when it is not from the root that signs now, and trust what the managers trust; refuse
/// the nodes removed from the swarm.
fn trust(message: &SessionMessage, tls: &NodeTls) {
    let refused = tls.refused();
    if message.removed_nodes.iter().any(|id| !refused.contains(id)) {
        tracing::info!(
            removed = message.removed_nodes.len(),
            "refusing the nodes removed from the swarm"
        );
    }
    refused.set(message.removed_nodes.iter().cloned());
    // The roots first (the newest word on them: a renewal's answer never undoes it), then
    // the certificate.
    if !message.root_ca_pem.is_empty() && message.root_ca_pem != tls.certs().root_pem {
        match tls.trust(&message.root_ca_pem) {
            Ok(()) => tracing::info!("now trusting the swarm's current root CA"),
            Err(e) => tracing::warn!(error = %e, "taking the swarm's new root CA failed"),
        }
    }
    if message.renew_certificate {
        tls.renew_now();
    }
}

/// Take in what a session message says: the managers to fail over to, and the node's role.
fn heard(message: &SessionMessage, managers: &mut Vec<String>, daemon: &mpsc::Sender<Heard>) {
    // The daemon keeps the newest; a full queue means one is already pending.
    if !message.managers.is_empty() && message.managers != *managers {
        *managers = message.managers.clone();
        let _ = daemon.try_send(Heard::Managers(managers.clone()));
    }
    if let Ok(role) = NodeRole::try_from(message.role) {
        let _ = daemon.try_send(Heard::Role(role));
    }
}
