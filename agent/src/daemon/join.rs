//! Joining a swarm, the node's side: trust the manager only if its root CA has the digest
//! the token carries, get a certificate for a fresh key, and (for managers) ask the leader
//! to take this node into Raft. Followers name the leader; both calls follow them there.

use std::time::Duration;

use shoal_manager::membership::leader_of;
use shoal_pki::{digest_of_pem, JoinToken, NodeCerts, NodeKey, TlsClient};
use shoal_proto::{
    CaClient, IssueNodeCertificateRequest, NodeRole, RaftJoinRequest, RaftMembershipClient,
    RenewNodeCertificateRequest,
};
use tonic::transport::Channel;

use super::DaemonError;

/// How many "ask the leader instead" redirects a join follows.
const MAX_REDIRECTS: usize = 5;
/// A new manager's Raft join returns once it has caught up with the log.
const RAFT_JOIN_TIMEOUT: Duration = Duration::from_secs(120);

/// What the CA gave a joining node.
pub struct Joined {
    pub certs: NodeCerts,
    pub node_id: String,
    pub manager: bool,
    pub cluster_id: String,
    pub managers: Vec<String>,
}

/// Present `token` to the manager at `remote` and get this node's certificate.
pub async fn request_certificate(
    remote: &str,
    token: &str,
    node_name: &str,
    addr: &str,
) -> Result<Joined, DaemonError> {
    let parsed = JoinToken::parse(token)?;
    let pinned = TlsClient::pinned_digest(&parsed.digest)?;
    let key = NodeKey::generate()?;
    let csr_pem = key.csr_pem()?;
    let mut target = remote.to_string();
    for _ in 0..MAX_REDIRECTS {
        let channel = shoal_pki::channel(&target, &pinned).await.map_err(|e| {
            DaemonError::Join(format!(
                "cannot reach a manager of this token's swarm at {target}: {e}; check the address, and that the token is current"
            ))
        })?;
        let request = IssueNodeCertificateRequest {
            token: token.to_string(),
            csr_pem: csr_pem.clone(),
            node_name: node_name.to_string(),
            addr: addr.to_string(),
        };
        match CaClient::new(channel).issue_node_certificate(request).await {
            Ok(response) => {
                let response = response.into_inner();
                if digest_of_pem(&response.root_ca_pem)? != parsed.digest {
                    return Err(DaemonError::Join(format!(
                        "the manager at {target} sent a root CA that does not match the token: refusing to join"
                    )));
                }
                let mut managers = response.managers;
                if managers.is_empty() {
                    managers.push(target.clone());
                }
                return Ok(Joined {
                    certs: NodeCerts {
                        cert_pem: response.cert_pem,
                        key_pem: key.key_pem(),
                        root_pem: response.root_ca_pem,
                    },
                    node_id: response.node_id,
                    manager: response.role == NodeRole::Manager as i32,
                    cluster_id: response.cluster_id,
                    managers,
                });
            }
            Err(status) => match leader_of(&status) {
                Some(leader) => target = leader,
                None => return Err(DaemonError::Join(status.message().to_string())),
            },
        }
    }
    Err(DaemonError::Join(format!(
        "no leader answered the join after {MAX_REDIRECTS} redirects; retry"
    )))
}

/// Ask the leader (found through any of `managers`) to add this manager to Raft.
pub async fn raft_join(
    tls: &TlsClient,
    managers: &[String],
    raft_id: u64,
    addr: &str,
    node_id: &str,
) -> Result<(), DaemonError> {
    let others: Vec<String> = managers.iter().filter(|m| *m != addr).cloned().collect();
    on_leader(tls, &others, "joining raft", |channel| async move {
        let mut request = tonic::Request::new(RaftJoinRequest {
            raft_id,
            addr: addr.to_string(),
            node_id: node_id.to_string(),
        });
        request.set_timeout(RAFT_JOIN_TIMEOUT);
        RaftMembershipClient::new(channel)
            .join(request)
            .await
            .map(|_| ())
    })
    .await
}

/// Get a fresh certificate for this node from a manager (following redirects to the
/// leader); the CA signs it with the role the node's spec has now.
pub async fn renew_certificate(
    tls: &TlsClient,
    managers: &[String],
    current: &NodeCerts,
) -> Result<NodeCerts, DaemonError> {
    let key = NodeKey::generate()?;
    let csr_pem = key.csr_pem()?;
    let response = on_leader(tls, managers, "renewing the node certificate", |channel| {
        let request = RenewNodeCertificateRequest {
            csr_pem: csr_pem.clone(),
        };
        async move {
            CaClient::new(channel)
                .renew_node_certificate(request)
                .await
                .map(tonic::Response::into_inner)
        }
    })
    .await?;
    Ok(NodeCerts {
        cert_pem: response.cert_pem,
        key_pem: key.key_pem(),
        root_pem: if response.root_ca_pem.is_empty() {
            current.root_pem.clone()
        } else {
            response.root_ca_pem
        },
    })
}

/// Make `call` on a manager: each of `managers` in turn, and straight to the leader when a
/// follower names it.
async fn on_leader<T, F, Fut>(
    tls: &TlsClient,
    managers: &[String],
    what: &str,
    mut call: F,
) -> Result<T, DaemonError>
where
    F: FnMut(Channel) -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let mut candidates: Vec<String> = managers.to_vec();
    let mut last = String::from("no manager address known");
    let mut tried = 0;
    while let Some(target) = candidates.first().cloned() {
        tried += 1;
        if tried > managers.len() + MAX_REDIRECTS {
            break;
        }
        let channel = match shoal_pki::channel(&target, tls).await {
            Ok(c) => c,
            Err(e) => {
                last = format!("cannot reach {target}: {e}");
                candidates.remove(0);
                continue;
            }
        };
        match call(channel).await {
            Ok(value) => return Ok(value),
            Err(status) => match leader_of(&status) {
                Some(leader) if leader != target => candidates.insert(0, leader),
                _ => {
                    last = format!("{target}: {}", status.message());
                    candidates.remove(0);
                }
            },
        }
    }
    Err(DaemonError::Join(format!("{what} failed: {last}")))
}
