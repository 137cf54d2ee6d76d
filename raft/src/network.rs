//! Outgoing Raft RPCs: openraft's requests encoded into `RaftPayload.data` and sent over
//! tonic to the peer's [`crate::server`]. The peer answers with the encoded
//! `Result<response, openraft error>`; transport failures become openraft's
//! `Unreachable` / `NetworkError`.

use std::collections::HashMap;
use std::error::Error;
use std::sync::{Arc, Mutex, PoisonError};

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use shoal_proto::{RaftClient, RaftPayload};
use tonic::transport::{Channel, Endpoint};

use crate::contacts::Contacts;
use crate::types::{decode, encode, TypeConfig};
use crate::NodeId;

/// Largest gRPC message a Raft peer sends or accepts: an AppendEntries of
/// [`crate::MAX_PAYLOAD_ENTRIES`] entries of [`crate::MAX_ENTRY_BYTES`] each at most, and
/// room for its framing (snapshot chunks are far smaller). A limit, not an allocation: a
/// message this large is a follower catching up on hundreds of the largest entries.
pub(crate) const MAX_MESSAGE_SIZE: usize =
    crate::MAX_PAYLOAD_ENTRIES as usize * crate::MAX_ENTRY_BYTES + (16 << 20);

/// Builds the channel to a peer manager at `addr` (`host:port`). Connects lazily: the
/// first RPC dials, and a dead peer shows up as an unreachable RPC.
///
/// The one place peer transport security is decided: mTLS plugs in here.
pub(crate) fn peer_channel(addr: &str) -> Result<Channel, tonic::transport::Error> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(std::time::Duration::from_secs(2))
        .tcp_nodelay(true);
    Ok(endpoint.connect_lazy())
}

/// Creates one [`PeerClient`] per replication target.
#[derive(Clone, Default)]
pub(crate) struct NetworkFactory {
    pub(crate) connector: Option<crate::PeerConnector>,
    pub(crate) contacts: Contacts,
    /// One channel per peer, shared by every client openraft makes for it: openraft makes
    /// a new client for each leadership check (a linearizable read), which must not cost a
    /// new TLS handshake each time.
    pub(crate) channels: Channels,
    /// TEST ONLY: faults injected per target (the harness's duplicating network).
    pub(crate) faults: Option<crate::PeerFaults>,
}

/// Peers' channels by node id, with the address each was made for.
pub(crate) type Channels = Arc<Mutex<HashMap<NodeId, (String, RaftClient<Channel>)>>>;

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        PeerClient {
            target,
            node: node.clone(),
            client: None,
            connector: self.connector.clone(),
            contacts: self.contacts.clone(),
            channels: self.channels.clone(),
            faults: self.faults.clone(),
        }
    }
}

/// The connection to one peer.
pub(crate) struct PeerClient {
    target: NodeId,
    node: BasicNode,
    client: Option<RaftClient<Channel>>,
    connector: Option<crate::PeerConnector>,
    contacts: Contacts,
    channels: Channels,
    faults: Option<crate::PeerFaults>,
}

#[derive(Clone, Copy)]
enum Rpc {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

/// A local failure that is neither the peer's answer nor the transport's.
#[derive(Debug, thiserror::Error)]
enum CodecError {
    #[error("encoding raft request for node {target}: {source}")]
    Encode {
        target: NodeId,
        source: bincode::Error,
    },
    #[error("decoding raft response from node {target}: {source}")]
    Decode {
        target: NodeId,
        source: bincode::Error,
    },
}

/// The client for peer `target` at `addr`: the shared one, or a new one made with
/// `connector` (plain HTTP/2 without one) and shared from then on.
pub(crate) fn peer_client(
    channels: &Channels,
    connector: Option<&crate::PeerConnector>,
    target: NodeId,
    addr: &str,
) -> Result<RaftClient<Channel>, String> {
    let mut channels = channels.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((known, client)) = channels.get(&target) {
        if known == addr {
            return Ok(client.clone());
        }
    }
    let channel = match connector {
        Some(connect) => (connect.0)(addr)?,
        None => peer_channel(addr).map_err(|e| e.to_string())?,
    };
    let client = RaftClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    channels.insert(target, (addr.to_string(), client.clone()));
    Ok(client)
}

impl PeerClient {
    fn client(&mut self) -> Result<RaftClient<Channel>, String> {
        if let Some(client) = &self.client {
            return Ok(client.clone());
        }
        let client = peer_client(
            &self.channels,
            self.connector.as_ref(),
            self.target,
            &self.node.addr,
        )?;
        self.client = Some(client.clone());
        Ok(client)
    }

    /// Sends one request and decodes the peer's `Result<Resp, RaftError<E>>`; records
    /// whether the peer answered ([`Contacts`]). openraft bounds every call with a deadline
    /// of its own and drops it when that passes, which counts as unanswered.
    async fn call<Req, Resp, E>(
        &mut self,
        rpc: Rpc,
        req: &Req,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: Error + DeserializeOwned,
    {
        let unanswered = Unanswered {
            contacts: self.contacts.clone(),
            target: self.target,
            started: std::time::Instant::now(),
            done: false,
        };
        let duplicate = self
            .faults
            .as_ref()
            .is_some_and(|f| (f.0)(self.target) == crate::PeerFault::Duplicate);
        if duplicate {
            let _ = self.call_once::<Req, Resp, E>(rpc, req).await;
        }
        let result = self.call_once(rpc, req).await;
        unanswered.finish();
        if matches!(result, Ok(_) | Err(RPCError::RemoteError(_))) {
            self.contacts.heard(self.target);
        }
        result
    }

    async fn call_once<Req, Resp, E>(
        &mut self,
        rpc: Rpc,
        req: &Req,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: Error + DeserializeOwned,
    {
        let target = self.target;
        let data = encode(req).map_err(|source| {
            RPCError::Network(NetworkError::new(&CodecError::Encode { target, source }))
        })?;
        let mut client = self.client().map_err(|e| {
            self.contacts.failed(target, e.clone());
            RPCError::Unreachable(Unreachable::new(&std::io::Error::other(e)))
        })?;
        let request = tonic::Request::new(RaftPayload { data });
        let reply = match rpc {
            Rpc::AppendEntries => client.append_entries(request).await,
            Rpc::Vote => client.vote(request).await,
            Rpc::InstallSnapshot => client.install_snapshot(request).await,
        };
        let reply = reply.map_err(|status| {
            self.contacts.failed(target, root_cause(&status));
            match status.code() {
                tonic::Code::Unavailable => RPCError::Unreachable(Unreachable::new(&status)),
                _ => RPCError::Network(NetworkError::new(&status)),
            }
        })?;
        let answer: Result<Resp, RaftError<NodeId, E>> =
            decode(&reply.into_inner().data).map_err(|source| {
                RPCError::Network(NetworkError::new(&CodecError::Decode { target, source }))
            })?;
        answer.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(target, self.node.clone(), e))
        })
    }
}

/// A call in flight: dropped unfinished (openraft's deadline passed), it counts as
/// unanswered for [`Contacts`].
struct Unanswered {
    contacts: Contacts,
    target: NodeId,
    started: std::time::Instant,
    done: bool,
}

impl Unanswered {
    fn finish(mut self) {
        self.done = true;
    }
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if !self.done {
            let waited = self.started.elapsed().as_millis();
            self.contacts
                .failed(self.target, format!("no answer within {waited}ms"));
        }
    }
}

/// What went wrong underneath a failed call, in words ("Connection refused (os error
/// 111)"), or the status's own message when it has no cause.
fn root_cause(status: &tonic::Status) -> String {
    let mut cause: Option<&(dyn Error + 'static)> = status.source();
    let mut root = None;
    while let Some(e) = cause {
        root = Some(e);
        cause = e.source();
    }
    match root {
        Some(e) => e.to_string(),
        None if status.message().is_empty() => status.code().description().to_string(),
        None => status.message().to_string(),
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(Rpc::AppendEntries, &rpc).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(Rpc::InstallSnapshot, &rpc).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(Rpc::Vote, &rpc).await
    }
}
