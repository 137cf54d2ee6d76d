//! The broker's two gRPC faces: `Logs` for the CLI, `LogBroker` for the agents.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use shoal_proto::{
    ListenSubscriptionsRequest, LogSubscription, PublishLogsMessage, PublishLogsResponse,
    SubscribeLogsMessage, SubscribeLogsRequest,
};
use tokio_stream::wrappers::{ReceiverStream, UnboundedReceiverStream};
use tonic::{Request, Response, Status, Streaming};

use super::{LogBroker, LogsError, Published};
use crate::caller;

type Stream_<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

impl From<LogsError> for Status {
    fn from(e: LogsError) -> Self {
        match e {
            LogsError::NotFound(_) => Status::not_found(e.to_string()),
            LogsError::Ambiguous { .. } => Status::failed_precondition(e.to_string()),
            LogsError::NotLeader { leader_addr } => {
                crate::membership::not_leader(leader_addr.as_deref())
            }
            LogsError::NoSubscription => Status::invalid_argument(e.to_string()),
        }
    }
}

/// `Logs`: the CLI's subscriptions.
#[derive(Clone)]
pub struct LogsApi {
    broker: LogBroker,
}

impl LogsApi {
    pub fn new(broker: LogBroker) -> Self {
        Self { broker }
    }
}

#[tonic::async_trait]
impl shoal_proto::Logs for LogsApi {
    type SubscribeLogsStream = Stream_<SubscribeLogsMessage>;

    async fn subscribe_logs(
        &self,
        request: Request<SubscribeLogsRequest>,
    ) -> Result<Response<Self::SubscribeLogsStream>, Status> {
        let rx = self.broker.subscribe(request.into_inner())?;
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// `LogBroker`: the agents' listeners and publish streams.
pub struct LogBrokerApi {
    broker: LogBroker,
}

impl LogBrokerApi {
    pub fn new(broker: LogBroker) -> Self {
        Self { broker }
    }
}

/// Unregisters a listener when its stream is dropped (the agent went away).
struct Unlisten {
    broker: LogBroker,
    node_id: String,
    id: u64,
}

impl Drop for Unlisten {
    fn drop(&mut self) {
        self.broker.unlisten(&self.node_id, self.id);
    }
}

#[tonic::async_trait]
impl shoal_proto::LogBroker for LogBrokerApi {
    type ListenSubscriptionsStream = Stream_<LogSubscription>;

    async fn listen_subscriptions(
        &self,
        request: Request<ListenSubscriptionsRequest>,
    ) -> Result<Response<Self::ListenSubscriptionsStream>, Status> {
        let caller = caller::identity(&request)?;
        caller::must_name(&caller, &request.get_ref().node_id, "a log listener")?;
        let node_id = caller.node_id;
        if !self.broker.has_node(&node_id) {
            return Err(caller::not_in_swarm(&node_id));
        }
        let (id, rx) = self.broker.listen(&node_id);
        tracing::debug!(node = %node_id, "log listener open");
        let guard = Unlisten {
            broker: self.broker.clone(),
            node_id,
            id,
        };
        let stream = UnboundedReceiverStream::new(rx).map(move |s| {
            let _ = &guard;
            Ok(s)
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn publish_logs(
        &self,
        request: Request<Streaming<PublishLogsMessage>>,
    ) -> Result<Response<PublishLogsResponse>, Status> {
        let caller = caller::identity(&request)?;
        let mut stream = request.into_inner();
        let Some(first) = stream.message().await? else {
            return Ok(Response::new(PublishLogsResponse {}));
        };
        if first.subscription_id.is_empty() {
            return Err(LogsError::NoSubscription.into());
        }
        caller::must_name(&caller, &first.node_id, "a log stream")?;
        let node_id = caller.node_id.clone();
        // The reader is gone: nothing to relay, and the agent stops when this returns.
        let Some(driver) = self.broker.publisher(&first.subscription_id) else {
            return Ok(Response::new(PublishLogsResponse {}));
        };
        let mut next = Some(first);
        loop {
            let message = match next.take() {
                Some(m) => m,
                None => match stream.message().await {
                    Ok(Some(m))
                        if caller::must_name(&caller, &m.node_id, "a log stream").is_ok() =>
                    {
                        m
                    }
                    // The end, a broken stream, or a message naming another node.
                    _ => {
                        let _ = driver
                            .send(Published::Closed {
                                node_id: node_id.clone(),
                                error: String::new(),
                                clean: false,
                            })
                            .await;
                        break;
                    }
                },
            };
            let lines = Published::Lines {
                node_id: node_id.clone(),
                messages: message.messages,
            };
            if driver.send(lines).await.is_err() {
                break;
            }
            if message.close {
                let _ = driver
                    .send(Published::Closed {
                        node_id: node_id.clone(),
                        error: message.error,
                        clean: true,
                    })
                    .await;
                break;
            }
        }
        Ok(Response::new(PublishLogsResponse {}))
    }
}
