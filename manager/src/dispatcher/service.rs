//! The Dispatcher gRPC service: sessions, heartbeats, assignments, status reports.

use std::pin::Pin;

use futures::Stream;
use shoal_proto::{
    AssignmentsMessage, AssignmentsRequest, HeartbeatRequest, HeartbeatResponse,
    ImageHoldersRequest, ImageHoldersResponse, NetworkView, NodeState, NodeStatus, SessionMessage,
    SessionRequest, UpdateTaskStatusRequest, UpdateTaskStatusResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::networks::network_views;
use super::{
    assignments, file_contents, file_refs, with_credentials, Dispatcher, DispatcherError, FileRef,
};
use crate::ca::rotation;
use crate::caller;
use crate::ids::new_id;
use crate::runloop::{self, Wake};
use crate::store::{Event, Object, StoreError, Stored};

type Stream_<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The tonic service over a [`Dispatcher`].
pub struct DispatcherApi {
    dispatcher: Dispatcher,
}

impl DispatcherApi {
    pub fn new(dispatcher: Dispatcher) -> Self {
        Self { dispatcher }
    }

    /// The node of `session_id`, which must be the caller's own: a session id is no
    /// credential, the certificate is.
    fn session_node<T>(&self, request: &Request<T>, session_id: &str) -> Result<String, Status> {
        let caller = caller::identity(request)?;
        let node_id = self.dispatcher.node_of(session_id)?;
        caller::must_name(&caller, &node_id, "a session")?;
        Ok(node_id)
    }
}

impl From<DispatcherError> for Status {
    fn from(e: DispatcherError) -> Self {
        match e {
            DispatcherError::UnknownSession(_) => Status::not_found(e.to_string()),
            DispatcherError::NotInSwarm(node_id) => caller::not_in_swarm(&node_id),
            DispatcherError::Store(StoreError::NotLeader { leader_addr }) => {
                crate::membership::not_leader(leader_addr.as_deref())
            }
            DispatcherError::Store(_) | DispatcherError::Closed => {
                Status::unavailable(e.to_string())
            }
        }
    }
}

#[tonic::async_trait]
impl shoal_proto::Dispatcher for DispatcherApi {
    type SessionStream = Stream_<SessionMessage>;
    type AssignmentsStream = Stream_<AssignmentsMessage>;

    async fn session(
        &self,
        request: Request<SessionRequest>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let caller = caller::identity(&request)?;
        let request = request.into_inner();
        caller::must_name(&caller, &request.node_id, "a session")?;
        let node_id = caller.node_id;
        // The node's description and address as its session gives them; it is ready.
        mark_ready(&self.dispatcher, &node_id, Some(&request)).await?;
        let session_id = new_id();
        self.dispatcher
            .open_session(session_id.clone(), node_id.clone());
        tracing::info!(node = %node_id, session = %session_id, "session opened");
        let (tx, rx) = mpsc::channel(1);
        let dispatcher = self.dispatcher.clone();
        tokio::spawn(async move {
            // The first message, then a new one whenever the node's role or the set of
            // managers changes, until the agent goes away.
            let mut events = dispatcher.store().watch();
            let cancel = tokio_util::sync::CancellationToken::new();
            let mut sent: Option<SessionMessage> = None;
            loop {
                let state = dispatcher.store().view(|r| {
                    let cluster = r.cluster();
                    r.node(&node_id).map(|n| {
                        let signing = cluster.map_or("", rotation::signing_digest);
                        let removed = cluster
                            .map(|c| c.removed_nodes.iter().map(|r| r.node_id.clone()).collect());
                        (
                            n.role() as i32,
                            cluster.map(rotation::trust_bundle).unwrap_or_default(),
                            !signing.is_empty() && n.cert_root_digest != signing,
                            removed.unwrap_or_default(),
                        )
                    })
                });
                let Some((role, root_ca_pem, renew_certificate, removed_nodes)) = state else {
                    // Removed from the swarm: the session ends now, not at the next beat.
                    let _ = tx.send(Err(caller::not_in_swarm(&node_id))).await;
                    break;
                };
                let message = SessionMessage {
                    session_id: session_id.clone(),
                    heartbeat_period_ms: dispatcher.period().as_millis() as i64,
                    managers: dispatcher.managers(),
                    role,
                    root_ca_pem,
                    renew_certificate,
                    removed_nodes,
                };
                if sent.as_ref() != Some(&message) {
                    if tx.send(Ok(message.clone())).await.is_err() {
                        break;
                    }
                    sent = Some(message);
                }
                let nodes =
                    |e: &Event| matches!(e.object(), Some(Stored::Node(_) | Stored::Cluster(_)));
                tokio::select! {
                    _ = tx.closed() => break,
                    wake = runloop::next(&mut events, nodes, None, &cancel) => if wake == Wake::Shutdown { break },
                }
            }
            dispatcher.close_session(&session_id);
            tracing::info!(session = %session_id, "session closed");
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let node_id = self.session_node(&request, &request.get_ref().session_id)?;
        self.dispatcher.beat(&node_id);
        let down = self.dispatcher.store().view(|r| {
            r.node(&node_id)
                .is_some_and(|n| n.state() != NodeState::Ready)
        });
        if down {
            mark_ready(&self.dispatcher, &node_id, None).await?;
        }
        Ok(Response::new(HeartbeatResponse {
            period_ms: self.dispatcher.period().as_millis() as i64,
        }))
    }

    async fn assignments(
        &self,
        request: Request<AssignmentsRequest>,
    ) -> Result<Response<Self::AssignmentsStream>, Status> {
        let node_id = self.session_node(&request, &request.get_ref().session_id)?;
        let (tx, rx) = mpsc::channel(4);
        let store = self.dispatcher.store().clone();
        tokio::spawn(async move {
            let cancel = tokio_util::sync::CancellationToken::new();
            let closed = {
                let tx = tx.clone();
                let cancel = cancel.clone();
                tokio::spawn(async move {
                    tx.closed().await;
                    cancel.cancel();
                })
            };
            let mut events = store.watch();
            type Sent = (Vec<(String, i32, u64)>, Vec<NetworkView>, Vec<FileRef>);
            let mut sent: Option<Sent> = None;
            loop {
                // What the node holds is compared by ids, versions and views; content is
                // read (and opened) only for a message that goes out.
                let next = store.view(|r| {
                    let tasks = assignments(r, &node_id);
                    let networks = network_views(r, &node_id);
                    let files = file_refs(r, &tasks);
                    let mut fingerprint: Vec<(String, i32, u64)> = tasks
                        .iter()
                        .map(|t| (t.id.clone(), t.desired_state, t.spec_version))
                        .collect();
                    fingerprint.sort();
                    let now = (fingerprint, networks, files);
                    (sent.as_ref() != Some(&now)).then(|| {
                        let message = AssignmentsMessage {
                            tasks: with_credentials(r, tasks),
                            networks: now.1.clone(),
                            files: file_contents(r, &now.2),
                        };
                        (message, now)
                    })
                });
                if let Some((message, now)) = next {
                    tracing::debug!(node = %node_id, tasks = message.tasks.len(), "assignments sent");
                    if tx.send(Ok(message)).await.is_err() {
                        break;
                    }
                    sent = Some(now);
                }
                // Its own tasks, and anything another node's task, a service, a network or a
                // node changes in the networks it carries.
                let mine = |e: &Event| match e.object() {
                    Some(Stored::Task(t)) => t.node_id == node_id || !t.networks.is_empty(),
                    Some(Stored::Service(s)) => {
                        s.networks().next().is_some() || s.ports().iter().any(|p| p.is_ingress())
                    }
                    Some(
                        Stored::Network(_)
                        | Stored::Node(_)
                        | Stored::Secret(_)
                        | Stored::Config(_),
                    ) => true,
                    _ => false,
                };
                if runloop::next(&mut events, mine, None, &cancel).await == Wake::Shutdown {
                    break;
                }
            }
            closed.abort();
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn update_task_status(
        &self,
        request: Request<UpdateTaskStatusRequest>,
    ) -> Result<Response<UpdateTaskStatusResponse>, Status> {
        let node_id = self.session_node(&request, &request.get_ref().session_id)?;
        let request = request.into_inner();
        self.dispatcher
            .statuses()
            .submit(node_id, request.updates)
            .await?;
        Ok(Response::new(UpdateTaskStatusResponse {}))
    }

    async fn image_holders(
        &self,
        request: Request<ImageHoldersRequest>,
    ) -> Result<Response<ImageHoldersResponse>, Status> {
        let caller = caller::identity(&request)?;
        let image = &request.get_ref().image;
        let holders = self
            .dispatcher
            .store()
            .view(|r| super::images::holders(r.nodes(), r.tasks(), &caller.node_id, image));
        Ok(Response::new(ImageHoldersResponse { holders }))
    }
}

/// Mark `node_id` ready, refreshing its description and address from `session` when one
/// opens. The node must be in the store already (joining put it there): a session never
/// creates one.
async fn mark_ready(
    dispatcher: &Dispatcher,
    node_id: &str,
    session: Option<&SessionRequest>,
) -> Result<(), DispatcherError> {
    dispatcher
        .store()
        .update(|tx| {
            let Some(mut node) = tx.node(node_id) else {
                // A follower that lags (just joined, restarted from an old snapshot) may
                // not hold the node yet: it sends the agent to the leader instead of
                // telling it, for good, that it is not in the swarm.
                dispatcher.store().require_leader()?;
                return Err(DispatcherError::NotInSwarm(node_id.to_string()));
            };
            let mut addr = node
                .status
                .as_ref()
                .map(|s| s.addr.clone())
                .unwrap_or_default();
            if let Some(session) = session {
                node.description = session.description.clone();
                if !session.addr.is_empty() {
                    addr = session.addr.clone();
                }
            }
            node.status = Some(NodeStatus {
                state: NodeState::Ready as i32,
                message: String::new(),
                addr,
            });
            tx.update(Object::Node(node))?;
            Ok(())
        })
        .await
}
