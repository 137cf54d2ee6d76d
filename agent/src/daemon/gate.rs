//! The Control service as the local socket serves it: the manager's Control API once this
//! node is a manager, a clear refusal before that.

use std::sync::{Arc, RwLock};

use shoal_manager::controlapi::ControlApi;
use shoal_proto::*;
use tonic::{Request, Response, Status};

#[derive(Clone, Default)]
pub struct ControlGate {
    api: Arc<RwLock<Option<ControlApi>>>,
}

impl ControlGate {
    pub fn open(&self, api: ControlApi) {
        *self.api.write().unwrap_or_else(|p| p.into_inner()) = Some(api);
    }

    pub fn close(&self) {
        *self.api.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn api(&self) -> Result<ControlApi, Status> {
        self.api
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| {
                Status::failed_precondition(
                    "this node is not a swarm manager: run `shoal swarm init` to make it one, or run the command on a manager",
                )
            })
    }
}

macro_rules! delegate {
    ($($method:ident($req:ty) -> $resp:ty;)*) => {
        #[tonic::async_trait]
        impl Control for ControlGate {
            $(
                async fn $method(&self, request: Request<$req>) -> Result<Response<$resp>, Status> {
                    Control::$method(&self.api()?, request).await
                }
            )*
        }
    };
}

delegate! {
    create_service(CreateServiceRequest) -> CreateServiceResponse;
    update_service(UpdateServiceRequest) -> UpdateServiceResponse;
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
}
