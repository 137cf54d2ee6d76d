//! The connection to shoald: a unix socket (the default) or plain TCP, and the mapping of
//! gRPC failures to the one-line messages the user sees.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use hyper_util::rt::TokioIo;
use shoal_proto::{self as pb, ControlClient, EventsClient, LogsClient, NodeAdminClient};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Response, Status};

/// Where `-H` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Unix(PathBuf),
    /// An `http://host:port` URI.
    Tcp(String),
}

/// `unix:///run/shoal/shoald.sock`, `tcp://host:port` or `http://host:port`.
pub fn parse_host(url: &str) -> Result<Target> {
    let hint = "use unix:///path/to/socket or tcp://host:port";
    if let Some(path) = url.strip_prefix("unix://") {
        if path.is_empty() {
            bail!("invalid host {url:?}: the socket path is empty; {hint}");
        }
        return Ok(Target::Unix(PathBuf::from(path)));
    }
    let rest = url
        .strip_prefix("tcp://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(addr) if !addr.is_empty() && !addr.contains('/') => {
            Ok(Target::Tcp(format!("http://{addr}")))
        }
        Some(_) => bail!("invalid host {url:?}: expected host:port after the scheme; {hint}"),
        None => bail!("invalid host {url:?}: {hint}"),
    }
}

/// Set by `--stale`: reads carry `shoal-read: stale` (the daemon's `READ_HEADER`).
static STALE_READS: AtomicBool = AtomicBool::new(false);
/// Whether the stale-read warning was printed (once per command).
static STALE_WARNED: AtomicBool = AtomicBool::new(false);

/// `--stale`: accept the contacted manager's own view on reads.
pub fn allow_stale_reads(yes: bool) {
    STALE_READS.store(yes, Ordering::Relaxed);
}

/// A request to send: with `shoal-read: stale` under `--stale` (writes ignore it).
fn request<T>(body: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(body);
    if STALE_READS.load(Ordering::Relaxed) {
        request.metadata_mut().insert(
            "shoal-read",
            tonic::metadata::MetadataValue::from_static("stale"),
        );
    }
    request
}

/// Say once, on stderr, that an answer may be behind, and why.
fn warn_if_stale<T>(response: &Response<T>) {
    let Some(why) = response.metadata().get("shoal-stale") else {
        return;
    };
    if !STALE_WARNED.swap(true, Ordering::Relaxed) {
        let why = why
            .to_str()
            .unwrap_or("this manager may be behind the leader");
        eprintln!("WARNING: a stale read (--stale): {why}");
    }
}

/// How long one call may take before the CLI gives up.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Clients of the daemon's services over one channel, plus the URL for messages.
pub struct Client {
    url: String,
    control: ControlClient<Channel>,
    admin: NodeAdminClient<Channel>,
    logs: LogsClient<Channel>,
    events: EventsClient<Channel>,
}

impl Client {
    pub async fn connect(url: &str) -> Result<Self> {
        let channel = match parse_host(url)? {
            Target::Unix(path) => {
                // The URI is only a placeholder: the connector ignores it.
                Endpoint::from_static("http://localhost")
                        .timeout(CALL_TIMEOUT)
                        .connect_timeout(CONNECT_TIMEOUT)
                        .connect_with_connector(tower::service_fn(move |_: Uri| {
                            let path = path.clone();
                            async move {
                                Ok::<_, io::Error>(TokioIo::new(UnixStream::connect(path).await?))
                            }
                        }))
                        .await
            }
            Target::Tcp(uri) => {
                Endpoint::from_shared(uri)
                    .map_err(|e| anyhow!("invalid host {url:?}: {e}"))?
                    .timeout(CALL_TIMEOUT)
                    .connect_timeout(CONNECT_TIMEOUT)
                    .connect()
                    .await
            }
        }
        .map_err(|e| unreachable(url, &e))?;
        Ok(Self {
            url: url.to_string(),
            control: ControlClient::new(channel.clone()),
            admin: NodeAdminClient::new(channel.clone()),
            logs: LogsClient::new(channel.clone()),
            events: EventsClient::new(channel),
        })
    }

    /// The body of a response, or the failure as the user should read it.
    fn answer<T>(&self, result: Result<Response<T>, Status>) -> Result<T> {
        if let Ok(response) = &result {
            warn_if_stale(response);
        }
        result
            .map(Response::into_inner)
            .map_err(|s| status_error(&self.url, &s))
    }
}

impl Client {
    /// The swarm's events from the manager's journal (`shoal events`). No call timeout:
    /// the stream runs until `until` or until the reader goes.
    pub async fn watch_events(
        &mut self,
        request: pb::WatchEventsRequest,
    ) -> Result<tonic::Streaming<pb::WatchEventsMessage>> {
        let result = self.events.watch(request).await;
        self.answer(result)
    }

    /// Starts a log subscription; read it with [`Client::next_logs`].
    pub async fn subscribe_logs(
        &mut self,
        request: pb::SubscribeLogsRequest,
    ) -> Result<tonic::Streaming<pb::SubscribeLogsMessage>> {
        let result = self.logs.subscribe_logs(request).await;
        self.answer(result)
    }

    /// The next message of a log subscription; `None` at its end.
    pub async fn next_logs(
        &self,
        stream: &mut tonic::Streaming<pb::SubscribeLogsMessage>,
    ) -> Result<Option<pb::SubscribeLogsMessage>> {
        stream
            .message()
            .await
            .map_err(|s| status_error(&self.url, &s))
    }
}

/// One method per RPC, each returning the response body or the one-line failure.
macro_rules! rpcs {
    ($($client:ident . $method:ident ($req:ident) -> $resp:ident;)*) => {
        impl Client {
            $(
                pub async fn $method(&mut self, body: pb::$req) -> Result<pb::$resp> {
                    let result = self.$client.$method(request(body)).await;
                    self.answer(result)
                }
            )*
        }
    };
}

rpcs! {
    control.create_service(CreateServiceRequest) -> CreateServiceResponse;
    control.update_service(UpdateServiceRequest) -> UpdateServiceResponse;
    control.rollback_service(RollbackServiceRequest) -> RollbackServiceResponse;
    control.remove_service(RemoveServiceRequest) -> RemoveServiceResponse;
    control.get_service(GetServiceRequest) -> GetServiceResponse;
    control.list_services(ListServicesRequest) -> ListServicesResponse;
    control.list_tasks(ListTasksRequest) -> ListTasksResponse;
    control.list_nodes(ListNodesRequest) -> ListNodesResponse;
    control.get_node(GetNodeRequest) -> GetNodeResponse;
    control.update_node(UpdateNodeRequest) -> UpdateNodeResponse;
    control.remove_node(RemoveNodeRequest) -> RemoveNodeResponse;
    control.get_join_tokens(GetJoinTokensRequest) -> GetJoinTokensResponse;
    control.rotate_join_token(RotateJoinTokenRequest) -> GetJoinTokensResponse;
    control.get_root_ca(GetRootCaRequest) -> GetRootCaResponse;
    control.rotate_root_ca(RotateRootCaRequest) -> GetRootCaResponse;
    control.update_swarm(UpdateSwarmRequest) -> UpdateSwarmResponse;
    control.get_unlock_key(GetUnlockKeyRequest) -> GetUnlockKeyResponse;
    control.create_network(CreateNetworkRequest) -> CreateNetworkResponse;
    control.get_network(GetNetworkRequest) -> GetNetworkResponse;
    control.list_networks(ListNetworksRequest) -> ListNetworksResponse;
    control.remove_network(RemoveNetworkRequest) -> RemoveNetworkResponse;
    control.create_secret(CreateSecretRequest) -> CreateSecretResponse;
    control.get_secret(GetSecretRequest) -> GetSecretResponse;
    control.list_secrets(ListSecretsRequest) -> ListSecretsResponse;
    control.remove_secret(RemoveSecretRequest) -> RemoveSecretResponse;
    control.create_config(CreateConfigRequest) -> CreateConfigResponse;
    control.get_config(GetConfigRequest) -> GetConfigResponse;
    control.list_configs(ListConfigsRequest) -> ListConfigsResponse;
    control.remove_config(RemoveConfigRequest) -> RemoveConfigResponse;
    control.deploy_stack(DeployStackRequest) -> DeployStackResponse;
    control.list_stacks(ListStacksRequest) -> ListStacksResponse;
    control.get_stack(GetStackRequest) -> GetStackResponse;
    control.remove_stack(RemoveStackRequest) -> RemoveStackResponse;
    control.rollback_stack(RollbackStackRequest) -> DeployStackResponse;
    admin.init(InitRequest) -> InitResponse;
    admin.join(JoinRequest) -> JoinResponse;
    admin.leave(LeaveRequest) -> LeaveResponse;
    admin.info(InfoRequest) -> InfoResponse;
    admin.resolve_image(ResolveImageRequest) -> ResolveImageResponse;
    admin.unlock(UnlockRequest) -> UnlockResponse;
}

fn cannot_reach(url: &str) -> anyhow::Error {
    anyhow!("cannot reach shoald at {url}: is it running?")
}

/// A failed connect: the daemon is not there, unless the socket refused us.
fn unreachable(url: &str, err: &(dyn std::error::Error + 'static)) -> anyhow::Error {
    let mut source = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if io.kind() == io::ErrorKind::PermissionDenied {
                return anyhow!(
                    "cannot reach shoald at {url}: permission denied (run as root or use -H)"
                );
            }
        }
        source = e.source();
    }
    cannot_reach(url)
}

/// A gRPC failure as one line: the server's message as it is, or the transport's
/// failure in words.
pub fn status_error(url: &str, status: &Status) -> anyhow::Error {
    // Statuses made locally by the transport carry their cause; the server's do not.
    let local = std::error::Error::source(status).is_some();
    match status.code() {
        Code::Unavailable if local => cannot_reach(url),
        Code::Cancelled | Code::DeadlineExceeded if local => anyhow!(
            "shoald at {url} did not answer within {}s",
            CALL_TIMEOUT.as_secs()
        ),
        code if status.message().is_empty() => anyhow!("{}", code.description()),
        _ => anyhow!("{}", status.message()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        let unix = |p: &str| Some(Target::Unix(PathBuf::from(p)));
        let tcp = |u: &str| Some(Target::Tcp(u.to_string()));
        let cases = [
            (
                "unix:///run/shoal/shoald.sock",
                unix("/run/shoal/shoald.sock"),
            ),
            ("tcp://10.0.0.1:4243", tcp("http://10.0.0.1:4243")),
            ("http://localhost:4243", tcp("http://localhost:4243")),
            ("unix://", None),
            ("tcp://", None),
            ("tcp://host:1/path", None),
            ("https://host:1", None),
            ("/run/shoal/shoald.sock", None),
        ];
        for (url, want) in cases {
            assert_eq!(parse_host(url).ok(), want, "{url}");
        }
    }

    #[test]
    fn server_messages_pass_through() {
        let s = Status::not_found("service web not found");
        assert_eq!(
            status_error("unix:///x", &s).to_string(),
            "service web not found"
        );
        let s = Status::unavailable("no leader elected yet");
        assert_eq!(
            status_error("unix:///x", &s).to_string(),
            "no leader elected yet"
        );
    }

    #[tokio::test]
    async fn missing_socket_cannot_be_reached() {
        let url = "unix:///nonexistent/shoal-test/shoald.sock";
        let err = Client::connect(url).await.err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "cannot reach shoald at unix:///nonexistent/shoal-test/shoald.sock: is it running?"
            )
        );
    }
}
