//! The NodeAdmin service of the local socket: init, leave, info.

use shoal_proto::{
    InfoRequest, InfoResponse, InitRequest, InitResponse, JoinRequest, JoinResponse, LeaveRequest,
    LeaveResponse,
};
use tonic::{Request, Response, Status};

use super::{Daemon, DaemonError};

pub struct AdminApi {
    daemon: Daemon,
}

impl AdminApi {
    pub fn new(daemon: Daemon) -> Self {
        Self { daemon }
    }
}

impl From<DaemonError> for Status {
    fn from(e: DaemonError) -> Self {
        let message = e.to_string();
        match e {
            DaemonError::AlreadyInSwarm
            | DaemonError::NotInSwarm
            | DaemonError::ManagerMustForce => Status::failed_precondition(message),
            DaemonError::Address { .. } => Status::invalid_argument(message),
            DaemonError::Docker { .. } => Status::unavailable(message),
            _ => Status::internal(message),
        }
    }
}

#[tonic::async_trait]
impl shoal_proto::NodeAdmin for AdminApi {
    async fn init(&self, request: Request<InitRequest>) -> Result<Response<InitResponse>, Status> {
        let request = request.into_inner();
        let record = self
            .daemon
            .init(&request.listen_addr, &request.advertise_addr)
            .await?;
        Ok(Response::new(InitResponse {
            node_id: record.node_id,
            cluster_id: record.cluster_id,
        }))
    }

    async fn join(&self, _request: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        Err(Status::unimplemented("swarm join is not available yet"))
    }

    async fn leave(
        &self,
        request: Request<LeaveRequest>,
    ) -> Result<Response<LeaveResponse>, Status> {
        self.daemon.leave(request.into_inner().force).await?;
        Ok(Response::new(LeaveResponse {}))
    }

    async fn info(&self, _request: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        Ok(Response::new(self.daemon.info().await))
    }
}
