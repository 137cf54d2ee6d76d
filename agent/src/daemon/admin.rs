//! The NodeAdmin service of the local socket: init, leave, info.

use shoal_pki::vault::{UnlockKey, VaultError};
use shoal_proto::{
    InfoRequest, InfoResponse, InitRequest, InitResponse, JoinRequest, JoinResponse, LeaveRequest,
    LeaveResponse, ResolveImageRequest, ResolveImageResponse, UnlockRequest, UnlockResponse,
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

use shoal_manager::allocator::ipam::Pools;
use shoal_manager::allocator::AddrPool;

impl From<DaemonError> for Status {
    fn from(e: DaemonError) -> Self {
        let message = e.to_string();
        match e {
            DaemonError::AlreadyInSwarm
            | DaemonError::NotInSwarm
            | DaemonError::ManagerMustForce => Status::failed_precondition(message),
            DaemonError::Address { .. } => Status::invalid_argument(message),
            DaemonError::Join(_) | DaemonError::Pki(_) => Status::failed_precondition(message),
            DaemonError::Docker { .. } => Status::unavailable(message),
            DaemonError::Resolve { .. } => Status::not_found(message),
            DaemonError::Locked | DaemonError::NotLocked => Status::failed_precondition(message),
            DaemonError::Vault(VaultError::WrongKey | VaultError::BadUnlockKey) => {
                Status::invalid_argument(message)
            }
            _ => Status::internal(message),
        }
    }
}

#[tonic::async_trait]
impl shoal_proto::NodeAdmin for AdminApi {
    async fn init(&self, request: Request<InitRequest>) -> Result<Response<InitResponse>, Status> {
        let request = request.into_inner();
        if request.force_new_cluster {
            let record = self.daemon.force_new_cluster().await?;
            return Ok(Response::new(InitResponse {
                node_id: record.node_id,
                cluster_id: record.cluster_id,
                unlock_key: String::new(),
            }));
        }
        let expiry = (request.cert_expiry_ms > 0)
            .then(|| std::time::Duration::from_millis(request.cert_expiry_ms as u64));
        let addr_pool = AddrPool {
            cidrs: request.default_addr_pool,
            subnet_size: request.default_addr_pool_mask_length,
        };
        // Checked before anything is made, so a bad pool leaves the node as it was.
        Pools::new(&addr_pool.cidrs, addr_pool.subnet_size)
            .map_err(|e| Status::invalid_argument(format!("invalid --default-addr-pool: {e}")))?;
        let unlock_key = match request.autolock {
            true => Some(UnlockKey::generate().map_err(DaemonError::from)?),
            false => None,
        };
        let record = self
            .daemon
            .init(
                &request.listen_addr,
                &request.advertise_addr,
                expiry,
                addr_pool,
                unlock_key.clone(),
            )
            .await?;
        Ok(Response::new(InitResponse {
            node_id: record.node_id,
            cluster_id: record.cluster_id,
            unlock_key: unlock_key.map(|k| k.to_string()).unwrap_or_default(),
        }))
    }

    async fn join(&self, request: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        let request = request.into_inner();
        let record = self
            .daemon
            .join(
                &request.token,
                &request.remote_addr,
                &request.listen_addr,
                &request.advertise_addr,
            )
            .await?;
        Ok(Response::new(JoinResponse {
            node_id: record.node_id,
            manager: record.manager,
        }))
    }

    async fn leave(
        &self,
        request: Request<LeaveRequest>,
    ) -> Result<Response<LeaveResponse>, Status> {
        self.daemon.leave(request.into_inner().force).await?;
        Ok(Response::new(LeaveResponse {}))
    }

    async fn resolve_image(
        &self,
        request: Request<ResolveImageRequest>,
    ) -> Result<Response<ResolveImageResponse>, Status> {
        let request = request.into_inner();
        let reference = self
            .daemon
            .resolve_image(&request.image, request.auth)
            .await?;
        Ok(Response::new(ResolveImageResponse { reference }))
    }

    async fn unlock(
        &self,
        request: Request<UnlockRequest>,
    ) -> Result<Response<UnlockResponse>, Status> {
        let key: UnlockKey = request
            .into_inner()
            .unlock_key
            .parse()
            .map_err(|e: VaultError| Status::invalid_argument(e.to_string()))?;
        self.daemon.unlock(&key).await?;
        Ok(Response::new(UnlockResponse {}))
    }

    async fn info(&self, _request: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        Ok(Response::new(self.daemon.info().await))
    }
}
