//! The way in to the swarm: shoald's own local socket, with the Control, Logs and
//! NodeAdmin clients the `shoal` CLI uses.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use shoal_proto::{ControlClient, EventsClient, LogsClient, NodeAdminClient};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::error::{ApiError, ApiResult};

/// How long one call may take; a forwarded write during an election waits a few seconds.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct Backend {
    pub control: ControlClient<Channel>,
    pub logs: LogsClient<Channel>,
    pub admin: NodeAdminClient<Channel>,
    pub events: EventsClient<Channel>,
}

impl Backend {
    /// Clients of the shoald serving `socket`; connected on first use, again after a
    /// failure.
    pub fn unix(socket: PathBuf) -> Backend {
        // The URI is only a placeholder: the connector ignores it.
        let channel = Endpoint::from_static("http://localhost")
            .connect_timeout(Duration::from_secs(5))
            .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
                let socket = socket.clone();
                async move { Ok::<_, io::Error>(TokioIo::new(UnixStream::connect(socket).await?)) }
            }));
        Backend {
            control: ControlClient::new(channel.clone()),
            logs: LogsClient::new(channel.clone()),
            admin: NodeAdminClient::new(channel.clone()),
            events: EventsClient::new(channel),
        }
    }

    /// What this node is, for `/info`, `/_ping` and the refusal a worker gives.
    pub async fn info(&self) -> ApiResult<shoal_proto::InfoResponse> {
        let mut admin = self.admin.clone();
        let request = tonic::Request::new(shoal_proto::InfoRequest {});
        Ok(admin
            .info(request)
            .await
            .map_err(ApiError::from)?
            .into_inner())
    }

    /// A call's answer, or its failure as Docker's (see [`Backend::refusal`]).
    pub async fn answer<T>(
        &self,
        result: Result<tonic::Response<T>, tonic::Status>,
    ) -> ApiResult<T> {
        match result {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => Err(self.refusal(status).await),
        }
    }

    /// Every service, with its running and desired task counts.
    pub async fn services(&self) -> ApiResult<shoal_proto::ListServicesResponse> {
        let mut control = self.control.clone();
        let request = call(shoal_proto::ListServicesRequest {});
        self.answer(control.list_services(request).await).await
    }

    /// Every network.
    pub async fn networks(&self) -> ApiResult<Vec<shoal_proto::Network>> {
        let mut control = self.control.clone();
        let request = call(shoal_proto::ListNetworksRequest {});
        Ok(self
            .answer(control.list_networks(request).await)
            .await?
            .networks)
    }

    /// The tasks of a service and/or a node (an id, name or id prefix; "" for any).
    pub async fn tasks(&self, service: &str, node: &str) -> ApiResult<Vec<shoal_proto::Task>> {
        let mut control = self.control.clone();
        let request = call(shoal_proto::ListTasksRequest {
            service: service.into(),
            node: node.into(),
        });
        Ok(self.answer(control.list_tasks(request).await).await?.tasks)
    }

    /// A Control call's failure as Docker's: on a node that is no manager, dockerd's 503
    /// and wording.
    pub async fn refusal(&self, status: tonic::Status) -> ApiError {
        if status.code() == tonic::Code::FailedPrecondition
            && status.message().contains("not a swarm manager")
        {
            let in_swarm = self
                .info()
                .await
                .is_ok_and(|info| info.swarm_state == "active");
            return ApiError::not_a_manager(in_swarm);
        }
        ApiError::from(status)
    }
}

/// A request with the call timeout.
pub fn call<T>(body: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(body);
    request.set_timeout(CALL_TIMEOUT);
    request
}
