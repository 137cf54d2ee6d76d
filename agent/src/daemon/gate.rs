//! The Control and Logs services as shoald serves them, on the local socket and on the
//! manager port: the local manager's APIs when it leads, a call forwarded to the leader over
//! mTLS when it follows (a log stream is relayed as it comes), and a clear refusal on a
//! node that is no manager.

use std::sync::{Arc, Mutex, RwLock};

use crate::tls::NodeTls;
use shoal_manager::controlapi::ControlApi;
use shoal_manager::logbroker::LogsApi;
use shoal_proto::*;
use shoal_raft::RaftNode;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

#[derive(Clone, Default)]
pub struct ControlGate {
    target: Arc<RwLock<Option<Target>>>,
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

/// Where one call goes.
enum Route {
    Local(Target),
    Leader(Channel),
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

    fn route(&self) -> Result<Route, Status> {
        let target = self.target.read().unwrap_or_else(|p| p.into_inner()).clone().ok_or_else(|| {
            Status::failed_precondition(
                "this node is not a swarm manager: run `shoal swarm init` or join as a manager, or run the command on a manager",
            )
        })?;
        let leadership = target.raft.leadership().borrow().clone();
        let leader_addr = match (leadership.is_leader, leadership.leader_addr) {
            // Leading, or no leader known yet: the local API answers (or says why not).
            (true, _) | (false, None) => return Ok(Route::Local(target)),
            (false, Some(addr)) => addr,
        };
        let mut cached = target.leader.lock().unwrap_or_else(|p| p.into_inner());
        let channel = match cached.as_ref() {
            Some((addr, channel)) if *addr == leader_addr => channel.clone(),
            _ => {
                let channel =
                    shoal_pki::channel_lazy(&leader_addr, &target.tls.client()).map_err(|e| {
                        Status::unavailable(format!(
                            "cannot reach the leader at {leader_addr}: {e}"
                        ))
                    })?;
                *cached = Some((leader_addr, channel.clone()));
                channel
            }
        };
        Ok(Route::Leader(channel))
    }
}

macro_rules! delegate {
    ($($method:ident($req:ty) -> $resp:ty;)*) => {
        #[tonic::async_trait]
        impl Control for ControlGate {
            $(
                async fn $method(&self, request: Request<$req>) -> Result<Response<$resp>, Status> {
                    match self.route()? {
                        Route::Local(target) => Control::$method(&target.api, request).await,
                        Route::Leader(channel) => {
                            ControlClient::new(channel).$method(request.into_inner()).await
                        }
                    }
                }
            )*
        }
    };
}

delegate! {
    create_service(CreateServiceRequest) -> CreateServiceResponse;
    update_service(UpdateServiceRequest) -> UpdateServiceResponse;
    rollback_service(RollbackServiceRequest) -> RollbackServiceResponse;
    remove_service(RemoveServiceRequest) -> RemoveServiceResponse;
    get_service(GetServiceRequest) -> GetServiceResponse;
    list_services(ListServicesRequest) -> ListServicesResponse;
    list_tasks(ListTasksRequest) -> ListTasksResponse;
    list_nodes(ListNodesRequest) -> ListNodesResponse;
    get_node(GetNodeRequest) -> GetNodeResponse;
    update_node(UpdateNodeRequest) -> UpdateNodeResponse;
    remove_node(RemoveNodeRequest) -> RemoveNodeResponse;
    get_join_tokens(GetJoinTokensRequest) -> GetJoinTokensResponse;
    rotate_join_token(RotateJoinTokenRequest) -> GetJoinTokensResponse;
    create_network(CreateNetworkRequest) -> CreateNetworkResponse;
    get_network(GetNetworkRequest) -> GetNetworkResponse;
    list_networks(ListNetworksRequest) -> ListNetworksResponse;
    remove_network(RemoveNetworkRequest) -> RemoveNetworkResponse;
    create_secret(CreateSecretRequest) -> CreateSecretResponse;
    get_secret(GetSecretRequest) -> GetSecretResponse;
    list_secrets(ListSecretsRequest) -> ListSecretsResponse;
    remove_secret(RemoveSecretRequest) -> RemoveSecretResponse;
    create_config(CreateConfigRequest) -> CreateConfigResponse;
    get_config(GetConfigRequest) -> GetConfigResponse;
    list_configs(ListConfigsRequest) -> ListConfigsResponse;
    remove_config(RemoveConfigRequest) -> RemoveConfigResponse;
    deploy_stack(DeployStackRequest) -> DeployStackResponse;
    list_stacks(ListStacksRequest) -> ListStacksResponse;
    get_stack(GetStackRequest) -> GetStackResponse;
    remove_stack(RemoveStackRequest) -> RemoveStackResponse;
    rollback_stack(RollbackStackRequest) -> DeployStackResponse;
}

#[tonic::async_trait]
impl Logs for ControlGate {
    type SubscribeLogsStream = <LogsApi as Logs>::SubscribeLogsStream;

    async fn subscribe_logs(
        &self,
        request: Request<SubscribeLogsRequest>,
    ) -> Result<Response<Self::SubscribeLogsStream>, Status> {
        match self.route()? {
            Route::Local(target) => target.logs.subscribe_logs(request).await,
            Route::Leader(channel) => {
                let stream = LogsClient::new(channel)
                    .subscribe_logs(request.into_inner())
                    .await?
                    .into_inner();
                Ok(Response::new(Box::pin(stream)))
            }
        }
    }
}
