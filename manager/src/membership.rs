//! Raft membership: a new manager asks the leader to take it in.
//!
//! The leader adds the newcomer as a learner (which returns once it has caught up with the
//! log), then makes it a voter, then records its address in the node's `ManagerStatus`. A
//! follower refuses with the leader's address so the newcomer can ask there.

use shoal_proto::{
    ManagerStatus, RaftJoinRequest, RaftJoinResponse, RaftLeaveRequest, RaftLeaveResponse,
    RaftMember,
};
use shoal_raft::{RaftError, RaftNode};
use tonic::{Request, Response, Status};

use crate::caller;
use crate::store::{Object, Store, StoreError};

/// Metadata key carrying the leader's address on a "not the leader" refusal.
pub const LEADER_ADDR_KEY: &str = "shoal-leader-addr";

/// "Not the leader" as a gRPC status that names the leader, so callers can go there.
pub fn not_leader(leader_addr: Option<&str>) -> Status {
    let mut status = Status::unavailable(match leader_addr {
        Some(addr) => format!("this manager is not the leader; the leader is at {addr}"),
        None => {
            "this manager is not the leader and no leader is elected yet; retry shortly".to_string()
        }
    });
    if let Some(value) = leader_addr.and_then(|a| a.parse().ok()) {
        status.metadata_mut().insert(LEADER_ADDR_KEY, value);
    }
    status
}

/// The leader's address named by a [`not_leader`] status, if any.
pub fn leader_of(status: &Status) -> Option<String> {
    status
        .metadata()
        .get(LEADER_ADDR_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

pub struct MembershipApi {
    raft: RaftNode,
    store: Store,
}

impl MembershipApi {
    pub fn new(raft: RaftNode, store: Store) -> Self {
        Self { raft, store }
    }

    fn members(&self) -> Vec<RaftMember> {
        let status = self.raft.status();
        let node_of = |raft_id: u64| {
            self.store.view(|r| {
                r.nodes()
                    .find(|n| {
                        n.manager_status
                            .as_ref()
                            .is_some_and(|m| m.raft_id == raft_id)
                    })
                    .map(|n| n.id.clone())
                    .unwrap_or_default()
            })
        };
        status
            .voters
            .iter()
            .chain(status.learners.iter())
            .map(|(id, addr)| RaftMember {
                raft_id: *id,
                addr: addr.clone(),
                node_id: node_of(*id),
            })
            .collect()
    }
}

fn raft_status(e: RaftError) -> Status {
    match e {
        RaftError::NotLeader { leader_addr, .. } => not_leader(leader_addr.as_deref()),
        e @ RaftError::LastVoter => Status::failed_precondition(e.to_string()),
        other => Status::unavailable(other.to_string()),
    }
}

#[tonic::async_trait]
impl shoal_proto::RaftMembership for MembershipApi {
    async fn join(
        &self,
        request: Request<RaftJoinRequest>,
    ) -> Result<Response<RaftJoinResponse>, Status> {
        let caller = caller::identity(&request)?;
        let mut request = request.into_inner();
        caller::must_name(&caller, &request.node_id, "a raft join")?;
        request.node_id = caller.node_id;
        if request.raft_id == 0 || request.addr.is_empty() {
            return Err(Status::invalid_argument(
                "a raft join needs a raft id and an address",
            ));
        }
        self.raft.require_leader().map_err(raft_status)?;
        let known = self.store.view(|r| r.node(&request.node_id).cloned());
        let Some(node) = known else {
            return Err(Status::failed_precondition(format!(
                "node {} is not part of the swarm: join it with a manager token first",
                request.node_id
            )));
        };
        tracing::info!(node = %request.node_id, raft_id = request.raft_id, addr = %request.addr, "adding a manager to raft");
        self.raft
            .add_voter(request.raft_id, request.addr.clone())
            .await
            .map_err(raft_status)?;
        let raft_id = request.raft_id;
        let addr = request.addr.clone();
        self.store
            .update(|tx| {
                let mut node = tx.node(&node.id).unwrap_or(node);
                node.manager_status = Some(ManagerStatus {
                    raft_id,
                    addr,
                    leader: false,
                });
                tx.update(Object::Node(node))
            })
            .await
            .map_err(|e: StoreError| Status::unavailable(e.to_string()))?;
        Ok(Response::new(RaftJoinResponse {
            members: self.members(),
        }))
    }

    async fn leave(
        &self,
        request: Request<RaftLeaveRequest>,
    ) -> Result<Response<RaftLeaveResponse>, Status> {
        let caller = caller::identity(&request)?;
        let raft_id = request.into_inner().raft_id;
        self.raft.require_leader().map_err(raft_status)?;
        // A manager takes only itself out of Raft.
        let own = self.store.view(|r| {
            r.node(&caller.node_id)
                .and_then(|n| n.manager_status.as_ref())
                .is_some_and(|m| m.raft_id == raft_id)
        });
        if !own {
            return Err(Status::permission_denied(format!(
                "permission denied: raft member {raft_id} is not the caller's (node {}): a manager leaves raft only for itself",
                caller.node_id
            )));
        }
        self.raft.remove_voter(raft_id).await.map_err(raft_status)?;
        Ok(Response::new(RaftLeaveResponse {}))
    }
}
