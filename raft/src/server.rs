//! Incoming Raft RPCs: the tonic `Raft` service that hands peers' messages to openraft.
//!
//! openraft's own answer (success or its typed error) is encoded into the reply payload
//! for the peer's [`crate::network`] to decode; only malformed input becomes a
//! `tonic::Status`.

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::de::DeserializeOwned;
use serde::Serialize;
use shoal_proto::RaftPayload;
use tonic::{Request, Response, Status};

use crate::contacts::Contacts;
use crate::elector::{answer, LastLog, LeaderContact, PreVoteRequest, Timing};
use crate::types::{decode, encode, TypeConfig};
use crate::NodeId;

/// Serves one node's openraft instance to its peers.
pub(crate) struct PeerService {
    pub(crate) raft: openraft::Raft<TypeConfig>,
    /// Each call is news from its sender (the leader, or a candidate).
    pub(crate) contacts: Contacts,
    /// A leader's calls, and a vote granted, keep the elector quiet; it answers peers'
    /// pre-votes.
    pub(crate) leader: LeaderContact,
    pub(crate) timing: Timing,
    pub(crate) last_log: LastLog,
}

fn decode_request<T: DeserializeOwned>(what: &str, req: Request<RaftPayload>) -> Result<T, Status> {
    decode(&req.into_inner().data)
        .map_err(|e| Status::invalid_argument(format!("decoding raft {what} request: {e}")))
}

fn reply<T: Serialize>(what: &str, answer: &T) -> Result<Response<RaftPayload>, Status> {
    let data = encode(answer)
        .map_err(|e| Status::internal(format!("encoding raft {what} response: {e}")))?;
    Ok(Response::new(RaftPayload { data }))
}

#[tonic::async_trait]
impl shoal_proto::Raft for PeerService {
    async fn append_entries(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = decode_request("append entries", request)?;
        self.contacts.heard(rpc.vote.leader_id.node_id);
        self.leader.heard();
        let answer = self.raft.append_entries(rpc).await;
        reply("append entries", &answer)
    }

    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc: VoteRequest<NodeId> = decode_request("vote", request)?;
        self.contacts.heard(rpc.vote.leader_id.node_id);
        let ballot = self.leader.ballot().await;
        let answer = self.raft.vote(rpc).await;
        // Raft's rule: granting a vote restarts the election timer.
        if answer.as_ref().is_ok_and(|a| a.vote_granted) {
            self.leader.heard();
        }
        drop(ballot);
        reply("vote", &answer)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> = decode_request("install snapshot", request)?;
        self.contacts.heard(rpc.vote.leader_id.node_id);
        self.leader.heard();
        let answer = self.raft.install_snapshot(rpc).await;
        reply("install snapshot", &answer)
    }

    async fn pre_vote(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc: PreVoteRequest = decode_request("pre-vote", request)?;
        self.contacts.heard(rpc.candidate);
        reply(
            "pre-vote",
            &answer(&self.raft, &self.leader, self.timing, &self.last_log, &rpc),
        )
    }
}
