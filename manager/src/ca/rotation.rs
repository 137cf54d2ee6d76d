//! Root CA rotation (`swarm ca --rotate`), as Swarm's: a new root is made, with its
//! certificate cross-signed by the current root. While the rotation runs every node trusts
//! both roots, and the CA signs with the new one, sending the cross-signed certificate after
//! each node certificate so nodes that still trust only the old root accept it. Each
//! session tells its node to renew when its certificate is from the old root (the CA
//! records which root signed each node's certificate). Once every node holds one from the
//! new root, the new root replaces the old one, nodes stop trusting the old root, and the
//! join tokens change (they name the root's digest). No task restarts: a certificate is
//! only checked at a handshake, and established connections keep going.

use shoal_pki::RootCa;
use shoal_proto::{Cluster, GetRootCaResponse, RootCa as RootCaObject, RootRotation};
use tonic::Status;

use super::{expiry, new_tokens};
use crate::clock;
use crate::store::{Object, Store, StoreError, WriteTx};

/// What the CA signs with now.
pub struct Signer {
    pub ca: RootCa,
    /// Sent after each certificate it signs: the cross-signed new root while rotating.
    pub chain_suffix: String,
    pub digest: String,
}

impl Signer {
    /// A signed certificate (PEM) as the node receives it.
    pub fn chain(&self, cert_pem: String) -> String {
        if self.chain_suffix.is_empty() {
            cert_pem
        } else {
            format!("{cert_pem}{}", self.chain_suffix)
        }
    }
}

fn internal(what: &str, e: impl std::fmt::Display) -> Status {
    Status::internal(format!("loading {what}: {e}"))
}

/// The root that signs node certificates now: the new one while a rotation runs.
pub fn signer(cluster: &Cluster) -> Result<Signer, Status> {
    let root = cluster
        .root_ca
        .as_ref()
        .ok_or_else(|| Status::internal("the cluster has no root CA"))?;
    Ok(match &root.rotation {
        Some(next) => Signer {
            ca: RootCa::from_pem(&next.cert_pem, &next.key_pem)
                .map_err(|e| internal("the new root CA", e))?,
            chain_suffix: next.cross_signed_pem.clone(),
            digest: next.digest.clone(),
        },
        None => Signer {
            ca: RootCa::from_pem(&root.cert_pem, &root.key_pem)
                .map_err(|e| internal("the root CA", e))?,
            chain_suffix: String::new(),
            digest: root.digest.clone(),
        },
    })
}

/// The digest of the root that signs node certificates now.
pub fn signing_digest(cluster: &Cluster) -> &str {
    match cluster.root_ca.as_ref() {
        Some(RootCaObject {
            rotation: Some(next),
            ..
        }) => &next.digest,
        Some(root) => &root.digest,
        None => "",
    }
}

/// The roots every node must trust now, PEM: the current one, then the new one while a
/// rotation runs (the current root first, as join tokens name it).
pub fn trust_bundle(cluster: &Cluster) -> String {
    match cluster.root_ca.as_ref() {
        Some(root) => match &root.rotation {
            Some(next) => format!("{}{}", root.cert_pem, next.cert_pem),
            None => root.cert_pem.clone(),
        },
        None => String::new(),
    }
}

fn cluster_of(tx: &WriteTx<'_>) -> Result<Cluster, StoreError> {
    tx.cluster().ok_or_else(|| StoreError::NotFound {
        kind: "cluster",
        id: "default".into(),
    })
}

/// Start a rotation to a new root (restarting towards another one if one runs), and set
/// the node certificate lifetime when `cert_expiry_ms` is not 0. Finishes at once when no
/// node holds a certificate (never the case in a running swarm).
pub async fn rotate(store: &Store, cert_expiry_ms: i64) -> Result<GetRootCaResponse, Status> {
    if cert_expiry_ms < 0 {
        return Err(Status::invalid_argument("--cert-expiry must be positive"));
    }
    store
        .update(|tx| {
            let mut cluster = cluster_of(tx)?;
            let current = cluster.root_ca.clone().unwrap_or_default();
            let old = RootCa::from_pem(&current.cert_pem, &current.key_pem)
                .map_err(|e| StoreError::Propose(format!("loading the root CA: {e}")))?;
            let (next, cross) = old
                .next()
                .map_err(|e| StoreError::Propose(format!("making the new root CA: {e}")))?;
            if cert_expiry_ms > 0 {
                if let Some(spec) = cluster.spec.as_mut() {
                    spec.cert_expiry_ms = cert_expiry_ms;
                }
            }
            cluster.root_ca = Some(RootCaObject {
                rotation: Some(RootRotation {
                    cert_pem: next.cert_pem().to_string(),
                    key_pem: next.key_pem(),
                    digest: next.digest(),
                    cross_signed_pem: cross,
                    started_at_ms: clock::now_ms(),
                }),
                ..current
            });
            tx.update(Object::Cluster(cluster))?;
            finish_if_done(tx)
        })
        .await
        .map_err(super::store_status)?;
    tracing::info!("root CA rotation started");
    Ok(status(store))
}

/// Finish the rotation in `tx` when every node holds a certificate from the new root: the
/// new root becomes the only one, and the join tokens change with its digest. Called
/// whenever a node's certificate or the set of nodes changes.
pub fn finish_if_done(tx: &mut WriteTx<'_>) -> Result<(), StoreError> {
    let mut cluster = cluster_of(tx)?;
    let Some(root) = cluster.root_ca.as_mut() else {
        return Ok(());
    };
    let Some(next) = root.rotation.take() else {
        return Ok(());
    };
    if tx
        .nodes_now()
        .iter()
        .any(|n| n.cert_root_digest != next.digest)
    {
        return Ok(());
    }
    *root = RootCaObject {
        cert_pem: next.cert_pem,
        key_pem: next.key_pem,
        digest: next.digest,
        rotation: None,
    };
    cluster.tokens = Some(new_tokens(&root.digest));
    tracing::info!("root CA rotation done: every node holds a certificate from the new root");
    tx.update(Object::Cluster(cluster))?;
    Ok(())
}

/// `swarm ca`: the root, and how far a rotation is.
pub fn status(store: &Store) -> GetRootCaResponse {
    store.view(|r| {
        let Some(cluster) = r.cluster() else {
            return GetRootCaResponse::default();
        };
        let root = cluster.root_ca.clone().unwrap_or_default();
        let (cert_pem, digest) = match &root.rotation {
            Some(next) => (next.cert_pem.clone(), next.digest.clone()),
            None => (root.cert_pem.clone(), root.digest.clone()),
        };
        let mut left: Vec<String> = r
            .nodes()
            .filter(|n| n.cert_root_digest != digest)
            .map(|n| {
                if n.hostname().is_empty() {
                    n.id.clone()
                } else {
                    n.hostname().to_string()
                }
            })
            .collect();
        left.sort();
        let total = r.nodes().count() as u32;
        GetRootCaResponse {
            cert_pem,
            digest,
            rotating: root.rotation.is_some(),
            nodes_done: total - left.len() as u32,
            nodes_total: total,
            nodes_left: left,
            cert_expiry_ms: expiry(cluster).as_millis() as i64,
        }
    })
}
