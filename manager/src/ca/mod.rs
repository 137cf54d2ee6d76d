//! The Ca service: joining nodes get their certificate here, members renew theirs.
//!
//! A join presents a token; the token's secret says the role (worker or manager token of
//! this cluster), its digest must be this cluster's root CA. The leader then gives the node
//! an id, records the Node object and signs the node's CSR with CN = node id, OU = role,
//! O = cluster id. Renewal signs a fresh CSR with the role the node's spec has now, which
//! is how a promotion or demotion reaches the node's certificate.

use std::time::Duration;

use shoal_pki::{Identity, JoinToken, Role};
use shoal_proto::{
    Availability, Cluster, GetJoinTokensResponse, GetRootCertificateRequest,
    GetRootCertificateResponse, IssueNodeCertificateRequest, IssueNodeCertificateResponse, Node,
    NodeDescription, NodeRole, NodeSpec, NodeState, NodeStatus, RenewNodeCertificateRequest,
};
use tonic::{Request, Response, Status};

pub mod rotation;

use crate::caller;
use crate::ids::new_id;
use crate::membership::not_leader;
use crate::store::{Object, Store, StoreError};

/// Node certificates live this long unless the cluster says otherwise.
pub const DEFAULT_CERT_EXPIRY: Duration = Duration::from_secs(90 * 24 * 3600);

pub struct CaApi {
    store: Store,
}

impl CaApi {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    fn cluster(&self) -> Result<Cluster, Status> {
        self.store.view(|r| r.cluster().cloned()).ok_or_else(|| {
            Status::unavailable("this manager has no cluster state yet; retry shortly")
        })
    }

    /// Record that `node_id` now holds a certificate from the root with `digest`; the last
    /// node to do so during a rotation finishes it.
    async fn record_root(&self, node_id: &str, digest: &str) -> Result<(), Status> {
        let changed = self.store.view(|r| {
            r.node(node_id)
                .is_some_and(|n| n.cert_root_digest != digest)
        });
        if !changed {
            return Ok(());
        }
        self.store
            .update(|tx| {
                let Some(mut node) = tx.node(node_id) else {
                    return Ok(());
                };
                node.cert_root_digest = digest.to_string();
                tx.update(Object::Node(node))?;
                rotation::finish_if_done(tx)
            })
            .await
            .map_err(store_status)
    }

    /// Managers answer addresses of every manager, the leader first where known.
    fn managers(&self) -> Vec<String> {
        self.store.view(|r| {
            let mut managers: Vec<(bool, String)> = r
                .nodes()
                .filter_map(|n| n.manager_status.as_ref())
                .map(|m| (!m.leader, m.addr.clone()))
                .collect();
            managers.sort();
            managers.into_iter().map(|(_, a)| a).collect()
        })
    }
}

/// How long the certificates this cluster signs now live.
pub fn expiry(cluster: &Cluster) -> Duration {
    cluster
        .spec
        .as_ref()
        .map(|s| s.cert_expiry_ms)
        .filter(|&ms| ms > 0)
        .map_or(DEFAULT_CERT_EXPIRY, |ms| Duration::from_millis(ms as u64))
}

pub(crate) fn store_status(e: StoreError) -> Status {
    match e {
        StoreError::NotLeader { leader_addr } => not_leader(leader_addr.as_deref()),
        other => Status::unavailable(other.to_string()),
    }
}

/// Equal in constant time, so a token's secret can't be guessed byte by byte.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The role a presented token grants in `cluster`.
pub fn role_of_token(cluster: &Cluster, presented: &str) -> Result<Role, Status> {
    let token = JoinToken::parse(presented).map_err(|e| Status::invalid_argument(e.to_string()))?;
    let digest = cluster
        .root_ca
        .as_ref()
        .map(|r| r.digest.as_str())
        .unwrap_or_default();
    if token.digest != digest {
        return Err(Status::permission_denied(
            "the join token is for another swarm: its CA digest does not match this swarm's root CA",
        ));
    }
    let tokens = cluster.tokens.clone().unwrap_or_default();
    let secret_of = |t: &str| JoinToken::parse(t).map(|t| t.secret).unwrap_or_default();
    if same_secret(&token.secret, &secret_of(&tokens.manager)) {
        Ok(Role::Manager)
    } else if same_secret(&token.secret, &secret_of(&tokens.worker)) {
        Ok(Role::Worker)
    } else {
        Err(Status::permission_denied(
            "invalid join token: it may have been rotated; get the current one with `shoal swarm join-token worker` (or manager) on a manager",
        ))
    }
}

#[tonic::async_trait]
impl shoal_proto::Ca for CaApi {
    async fn get_root_certificate(
        &self,
        _request: Request<GetRootCertificateRequest>,
    ) -> Result<Response<GetRootCertificateResponse>, Status> {
        let cluster = self.cluster()?;
        let cert_pem = cluster.root_ca.map(|r| r.cert_pem).unwrap_or_default();
        Ok(Response::new(GetRootCertificateResponse { cert_pem }))
    }

    async fn issue_node_certificate(
        &self,
        request: Request<IssueNodeCertificateRequest>,
    ) -> Result<Response<IssueNodeCertificateResponse>, Status> {
        let request = request.into_inner();
        let cluster = self.cluster()?;
        let role = role_of_token(&cluster, &request.token)?;
        if request.node_name.trim().is_empty() {
            return Err(Status::invalid_argument(
                "a joining node needs a name (shoald --node-name)",
            ));
        }
        let taken = self.store.view(|r| {
            r.nodes()
                .find(|n| n.hostname() == request.node_name && n.state() != NodeState::Down)
                .map(|n| n.id.clone())
        });
        if let Some(other) = taken {
            return Err(Status::already_exists(format!(
                "node name {} is already in use by node {other}: start shoald with another --node-name, or remove that node first",
                request.node_name
            )));
        }
        let node_id = new_id();
        let identity = Identity {
            node_id: node_id.clone(),
            role,
            cluster_id: cluster.id.clone(),
        };
        let signer = rotation::signer(&cluster)?;
        let cert_pem = signer
            .ca
            .sign_csr(&request.csr_pem, &identity, expiry(&cluster))
            .map_err(|e| {
                Status::invalid_argument(format!("signing the node's certificate request: {e}"))
            })?;
        let node = Node {
            id: node_id.clone(),
            meta: None,
            spec: Some(NodeSpec {
                role: proto_role(role) as i32,
                availability: Availability::Active as i32,
                labels: Default::default(),
            }),
            description: Some(NodeDescription {
                hostname: request.node_name.clone(),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                state: NodeState::Unknown as i32,
                message: "joined; waiting for its first session".into(),
                addr: request.addr.clone(),
            }),
            manager_status: None,
            attachments: Vec::new(),
            cert_root_digest: signer.digest.clone(),
        };
        self.store
            .update(|tx| tx.create(Object::Node(node)))
            .await
            .map_err(store_status)?;
        tracing::info!(node = %node_id, name = %request.node_name, role = ?role, "node joined");
        Ok(Response::new(IssueNodeCertificateResponse {
            node_id,
            cert_pem: signer.chain(cert_pem),
            root_ca_pem: rotation::trust_bundle(&cluster),
            role: proto_role(role) as i32,
            cluster_id: cluster.id,
            managers: self.managers(),
        }))
    }

    async fn renew_node_certificate(
        &self,
        request: Request<RenewNodeCertificateRequest>,
    ) -> Result<Response<IssueNodeCertificateResponse>, Status> {
        let peer = shoal_pki::peer_identity(&request).ok_or_else(|| {
            Status::unauthenticated("renewing a certificate needs the current one")
        })?;
        let cluster = self.cluster()?;
        if caller::revoked(&cluster, &peer.node_id) {
            return Err(caller::not_in_swarm(&peer.node_id));
        }
        let node = self
            .store
            .view(|r| r.node(&peer.node_id).cloned())
            .ok_or_else(|| caller::not_in_swarm(&peer.node_id))?;
        let role = match node.role() {
            NodeRole::Manager => Role::Manager,
            NodeRole::Worker => Role::Worker,
        };
        let identity = Identity {
            node_id: node.id.clone(),
            role,
            cluster_id: cluster.id.clone(),
        };
        let signer = rotation::signer(&cluster)?;
        let cert_pem = signer
            .ca
            .sign_csr(&request.into_inner().csr_pem, &identity, expiry(&cluster))
            .map_err(|e| {
                Status::invalid_argument(format!("signing the node's certificate request: {e}"))
            })?;
        self.record_root(&node.id, &signer.digest).await?;
        Ok(Response::new(IssueNodeCertificateResponse {
            node_id: node.id,
            cert_pem: signer.chain(cert_pem),
            root_ca_pem: rotation::trust_bundle(&cluster),
            role: proto_role(role) as i32,
            cluster_id: cluster.id,
            managers: self.managers(),
        }))
    }
}

fn proto_role(role: Role) -> NodeRole {
    match role {
        Role::Manager => NodeRole::Manager,
        Role::Worker => NodeRole::Worker,
    }
}

/// The current join tokens and the managers' addresses (leader first).
pub fn join_tokens(store: &Store) -> Result<GetJoinTokensResponse, Status> {
    let api = CaApi::new(store.clone());
    let tokens = api.cluster()?.tokens.unwrap_or_default();
    Ok(GetJoinTokensResponse {
        worker: tokens.worker,
        manager: tokens.manager,
        managers: api.managers(),
    })
}

/// Replace one role's join token; the old one is refused from now on. Nodes that joined
/// with it stay.
pub async fn rotate_join_token(
    store: &Store,
    role: NodeRole,
) -> Result<GetJoinTokensResponse, Status> {
    store
        .update(|tx| {
            let mut cluster = tx
                .read()
                .cluster()
                .cloned()
                .ok_or_else(|| StoreError::NotFound {
                    kind: "cluster",
                    id: "default".into(),
                })?;
            let digest = cluster
                .root_ca
                .as_ref()
                .map(|r| r.digest.clone())
                .unwrap_or_default();
            let tokens = cluster.tokens.get_or_insert_with(Default::default);
            let fresh = JoinToken::generate(&digest).to_string();
            match role {
                NodeRole::Manager => tokens.manager = fresh,
                NodeRole::Worker => tokens.worker = fresh,
            }
            tx.update(Object::Cluster(cluster))
        })
        .await
        .map_err(store_status)?;
    join_tokens(store)
}

/// Fresh worker and manager tokens for a root CA digest.
pub fn new_tokens(digest: &str) -> shoal_proto::JoinTokens {
    shoal_proto::JoinTokens {
        worker: JoinToken::generate(digest).to_string(),
        manager: JoinToken::generate(digest).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::{JoinTokens, RootCa as RootCaObject};

    fn cluster() -> (Cluster, JoinTokens) {
        let ca = shoal_pki::RootCa::generate("c1").expect("ca");
        let tokens = new_tokens(&ca.digest());
        let cluster = Cluster {
            id: "c1".into(),
            root_ca: Some(RootCaObject {
                cert_pem: ca.cert_pem().to_string(),
                key_pem: ca.key_pem(),
                digest: ca.digest(),
                rotation: None,
            }),
            tokens: Some(tokens.clone()),
            ..Default::default()
        };
        (cluster, tokens)
    }

    #[test]
    fn tokens_grant_their_role_and_nothing_else() {
        let (c, tokens) = cluster();
        assert_eq!(
            role_of_token(&c, &tokens.worker).expect("worker"),
            Role::Worker
        );
        assert_eq!(
            role_of_token(&c, &tokens.manager).expect("manager"),
            Role::Manager
        );
        let rotated = new_tokens(&c.root_ca.as_ref().expect("ca").digest).worker;
        let err = role_of_token(&c, &rotated).expect_err("rotated");
        assert!(
            err.message().contains("may have been rotated"),
            "{}",
            err.message()
        );
        let (other, other_tokens) = cluster();
        let err = role_of_token(&c, &other_tokens.worker).expect_err("other swarm");
        assert!(err.message().contains("another swarm"), "{}", err.message());
        let _ = other;
        let err = role_of_token(&c, "SHTKN-garbage").expect_err("malformed");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
    }
}
