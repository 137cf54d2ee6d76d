//! The Control and Logs services as shoald serves them, on the local socket and on the
//! manager port: the local manager's APIs when it leads, a call forwarded to the leader over
//! mTLS when it follows (a log stream is relayed as it comes), and a clear refusal on a
//! node that is no manager.
//!
//! What a call may be told, and how fast:
//! - During an election a call waits for the new leader, up to [`ELECTION_WAIT`]; a manager
//!   that knows it reaches too few managers refuses at once, naming the ones it cannot
//!   reach (Raft's [`shoal_raft::NoQuorum`]).
//! - Reads are linearizable: the leader answers after a read index; a follower forwards.
//!   A client that asks for this manager's own view ([`READ_HEADER`]: `stale`, the CLI's
//!   `--stale`) gets it at once, marked with [`STALE_HEADER`] when it may be behind.
//! - A forwarded call whose leader goes silent or changes is abandoned within the
//!   leader-silence window: a read is sent again to the new leader, a write is refused
//!   saying it may or may not have applied.

use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::tls::NodeTls;
use shoal_manager::controlapi::ControlApi;
use shoal_manager::logbroker::LogsApi;
use shoal_proto::*;
use shoal_raft::{Leadership, RaftError, RaftNode};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// How long a call waits for an election to end before it is refused.
pub const ELECTION_WAIT: Duration = Duration::from_secs(3);
/// Request metadata: `stale` asks for this manager's own view, without the leader.
pub const READ_HEADER: &str = "shoal-read";
/// Response metadata on a stale read that may be behind: why.
pub const STALE_HEADER: &str = "shoal-stale";
/// How often a forwarded call checks that its leader is still there.
const LEADER_CHECK: Duration = Duration::from_millis(200);

#[derive(Clone, Default)]
pub struct ControlGate {
    target: Arc<RwLock<Option<Target>>>,
    /// The node waits for `swarm unlock`: every call says so.
    locked: Arc<std::sync::atomic::AtomicBool>,
}

#[derive(Clone)]
struct Target {
    api: ControlApi,
    logs: LogsApi,
    raft: RaftNode,
    tls: NodeTls,
    /// The channel to the leader, by its address.
    leader: Arc<Mutex<Option<(String, Channel)>>>,
}

/// What a call does to the state.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Call {
    Write,
    /// `stale`: the client accepts this manager's own view.
    Read {
        stale: bool,
    },
}

impl Call {
    fn of<T>(kind: &str, request: &Request<T>) -> Call {
        if kind == "write" {
            return Call::Write;
        }
        let stale = request
            .metadata()
            .get(READ_HEADER)
            .is_some_and(|v| v.as_bytes() == b"stale");
        Call::Read { stale }
    }
}

/// Where one call goes.
enum Route {
    /// This manager answers; with a note when the answer may be stale.
    Local(Target, Option<String>),
    Leader(Channel, Target, Leadership),
}

/// How a forwarded call ended.
enum Forwarded<T> {
    Answer(Result<Response<T>, Status>),
    /// The leader went silent or changed while the call was out.
    LeaderLost(String),
}

fn raft_status(e: RaftError) -> Status {
    Status::unavailable(e.to_string())
}

impl ControlGate {
    pub fn open(&self, api: ControlApi, logs: LogsApi, raft: RaftNode, tls: NodeTls) {
        *self.target.write().unwrap_or_else(|p| p.into_inner()) = Some(Target {
            api,
            logs,
            raft,
            tls,
            leader: Arc::new(Mutex::new(None)),
        });
    }

    pub fn close(&self) {
        *self.target.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    pub fn set_locked(&self, locked: bool) {
        self.locked
            .store(locked, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the node waits for `swarm unlock`.
    pub fn is_locked(&self) -> bool {
        self.locked.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn target(&self) -> Result<Target, Status> {
        if self.is_locked() {
            return Err(Status::failed_precondition(
                "this manager is locked (autolock): run `shoal swarm unlock` and enter the unlock key",
            ));
        }
        self.target.read().unwrap_or_else(|p| p.into_inner()).clone().ok_or_else(|| {
            Status::failed_precondition(
                "this node is not a swarm manager: run `shoal swarm init` or join as a manager, or run the command on a manager",
            )
        })
    }

    async fn route(&self, call: Call) -> Result<Route, Status> {
        let target = self.target()?;
        if call == (Call::Read { stale: true }) {
            let note = match target.raft.no_quorum() {
                Some(why) => Some(why.to_string()),
                None if !target.raft.leadership().borrow().is_leader => Some(
                    "this manager follows the leader and may not have applied its latest changes"
                        .to_string(),
                ),
                None => None,
            };
            return Ok(Route::Local(target, note));
        }
        let leadership = target
            .raft
            .wait_for_leader(ELECTION_WAIT)
            .await
            .map_err(raft_status)?;
        let leader_addr = match (leadership.is_leader, &leadership.leader_addr) {
            (true, _) | (false, None) => {
                if call != Call::Write {
                    target.raft.read_barrier().await.map_err(raft_status)?;
                }
                return Ok(Route::Local(target, None));
            }
            (false, Some(addr)) => addr.clone(),
        };
        let channel = {
            let mut cached = target.leader.lock().unwrap_or_else(|p| p.into_inner());
            match cached.as_ref() {
                Some((addr, channel)) if *addr == leader_addr => channel.clone(),
                _ => {
                    let channel = shoal_pki::channel_lazy(&leader_addr, &target.tls.client())
                        .map_err(|e| {
                            Status::unavailable(format!(
                                "cannot reach the leader at {leader_addr}: {e}"
                            ))
                        })?;
                    *cached = Some((leader_addr, channel.clone()));
                    channel
                }
            }
        };
        Ok(Route::Leader(channel, target, leadership))
    }
}

/// Run a call forwarded to `leader` until it answers, or until this manager no longer
/// hears that leader (it went silent, or another was elected).
async fn forward<T>(
    target: &Target,
    leader: &Leadership,
    call: impl Future<Output = Result<Response<T>, Status>>,
) -> Forwarded<T> {
    tokio::pin!(call);
    loop {
        tokio::select! {
            answer = &mut call => return Forwarded::Answer(answer),
            () = tokio::time::sleep(LEADER_CHECK) => {
                let now = target.raft.wait_for_leader(Duration::ZERO).await;
                let still = now.as_ref().is_ok_and(|l| l.leader_id == leader.leader_id);
                if !still {
                    let addr = leader.leader_addr.as_deref().unwrap_or("?");
                    let why = match now {
                        Err(e) => format!("the leader at {addr} stopped answering ({e})"),
                        Ok(_) => format!("the leader at {addr} was replaced"),
                    };
                    return Forwarded::LeaderLost(why);
                }
            }
        }
    }
}

fn stale_noted<T>(mut response: Response<T>, note: Option<String>) -> Response<T> {
    if let Some(value) = note
        .and_then(|n| tonic::metadata::MetadataValue::try_from(n.replace(['\r', '\n'], " ")).ok())
    {
        response.metadata_mut().insert(STALE_HEADER, value);
    }
    response
}

macro_rules! delegate {
    ($($kind:ident $method:ident($req:ty) -> $resp:ty;)*) => {
        #[tonic::async_trait]
        impl Control for ControlGate {
            $(
                async fn $method(&self, request: Request<$req>) -> Result<Response<$resp>, Status> {
                    let call = Call::of(stringify!($kind), &request);
                    let body = request.into_inner();
                    let mut lost = None;
                    // A read whose leader is lost mid-call is sent once more, to the next.
                    for _ in 0..2 {
                        match self.route(call).await? {
                            Route::Local(target, note) => {
                                let response = Control::$method(&target.api, Request::new(body)).await?;
                                return Ok(stale_noted(response, note));
                            }
                            Route::Leader(channel, target, leader) => {
                                let mut client = ControlClient::new(channel);
                                let sent = client.$method(body.clone());
                                match forward(&target, &leader, sent).await {
                                    Forwarded::Answer(answer) => return answer,
                                    Forwarded::LeaderLost(why) if call == Call::Write => {
                                        return Err(Status::unavailable(format!(
                                            "{why} while the change was out: it may or may not have applied; check, then retry"
                                        )));
                                    }
                                    Forwarded::LeaderLost(why) => lost = Some(why),
                                }
                            }
                        }
                    }
                    Err(Status::unavailable(lost.unwrap_or_default()))
                }
            )*
        }
    };
}

delegate! {
    write create_service(CreateServiceRequest) -> CreateServiceResponse;
    write update_service(UpdateServiceRequest) -> UpdateServiceResponse;
    write rollback_service(RollbackServiceRequest) -> RollbackServiceResponse;
    write remove_service(RemoveServiceRequest) -> RemoveServiceResponse;
    read get_service(GetServiceRequest) -> GetServiceResponse;
    read list_services(ListServicesRequest) -> ListServicesResponse;
    read list_tasks(ListTasksRequest) -> ListTasksResponse;
    read list_nodes(ListNodesRequest) -> ListNodesResponse;
    read get_node(GetNodeRequest) -> GetNodeResponse;
    write update_node(UpdateNodeRequest) -> UpdateNodeResponse;
    write remove_node(RemoveNodeRequest) -> RemoveNodeResponse;
    read get_join_tokens(GetJoinTokensRequest) -> GetJoinTokensResponse;
    write rotate_join_token(RotateJoinTokenRequest) -> GetJoinTokensResponse;
    read get_root_ca(GetRootCaRequest) -> GetRootCaResponse;
    write rotate_root_ca(RotateRootCaRequest) -> GetRootCaResponse;
    write update_swarm(UpdateSwarmRequest) -> UpdateSwarmResponse;
    write get_unlock_key(GetUnlockKeyRequest) -> GetUnlockKeyResponse;
    write create_network(CreateNetworkRequest) -> CreateNetworkResponse;
    read get_network(GetNetworkRequest) -> GetNetworkResponse;
    read list_networks(ListNetworksRequest) -> ListNetworksResponse;
    write remove_network(RemoveNetworkRequest) -> RemoveNetworkResponse;
    write create_secret(CreateSecretRequest) -> CreateSecretResponse;
    read get_secret(GetSecretRequest) -> GetSecretResponse;
    read list_secrets(ListSecretsRequest) -> ListSecretsResponse;
    write remove_secret(RemoveSecretRequest) -> RemoveSecretResponse;
    write update_secret(UpdateFileLabelsRequest) -> UpdateSecretResponse;
    write update_config(UpdateFileLabelsRequest) -> UpdateConfigResponse;
    write create_config(CreateConfigRequest) -> CreateConfigResponse;
    read get_config(GetConfigRequest) -> GetConfigResponse;
    read list_configs(ListConfigsRequest) -> ListConfigsResponse;
    write remove_config(RemoveConfigRequest) -> RemoveConfigResponse;
    write deploy_stack(DeployStackRequest) -> DeployStackResponse;
    read list_stacks(ListStacksRequest) -> ListStacksResponse;
    read get_stack(GetStackRequest) -> GetStackResponse;
    write remove_stack(RemoveStackRequest) -> RemoveStackResponse;
    write rollback_stack(RollbackStackRequest) -> DeployStackResponse;
}

#[tonic::async_trait]
impl Logs for ControlGate {
    type SubscribeLogsStream = <LogsApi as Logs>::SubscribeLogsStream;

    async fn subscribe_logs(
        &self,
        request: Request<SubscribeLogsRequest>,
    ) -> Result<Response<Self::SubscribeLogsStream>, Status> {
        match self.route(Call::Read { stale: false }).await? {
            Route::Local(target, _) => target.logs.subscribe_logs(request).await,
            Route::Leader(channel, _, _) => {
                let stream = LogsClient::new(channel)
                    .subscribe_logs(request.into_inner())
                    .await?
                    .into_inner();
                Ok(Response::new(Box::pin(stream)))
            }
        }
    }
}

/// Events come from this manager's own journal, never forwarded: every manager applies
/// the same changes at the same positions, so a stream here outlives a leader change.
#[tonic::async_trait]
impl Events for ControlGate {
    type WatchStream = shoal_manager::events::EventStream;

    async fn watch(
        &self,
        request: Request<WatchEventsRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let target = self.target()?;
        Ok(Response::new(target.api.watch_events(request.into_inner())))
    }
}
