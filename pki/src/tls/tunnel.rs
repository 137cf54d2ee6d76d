//! TLS 1.3 for the overlay's encrypted tunnels (QUIC between nodes' data planes): both
//! sides present their node certificate and verify the other's against the cluster root,
//! by the name every node certificate carries ([`crate::NODE_SAN`]). Which node the peer
//! is comes from its certificate ([`crate::identity_of_cert_der`]), checked by the tunnel.
//! A node removed from the swarm ([`Refused`]) is refused in the handshake, both ways,
//! whatever its still valid certificate says.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DistinguishedName, ServerConfig};

use super::{no_resumption, presented_chain, private_key, provider, root_store};
use crate::{NodeCerts, PkiError};

/// The tunnels' ALPN.
pub const ALPN_TUNNEL: &[u8] = b"shoal-tunnel/1";

/// Both ends of a node's tunnels.
#[derive(Clone)]
pub struct TunnelTls {
    pub server: Arc<ServerConfig>,
    pub client: Arc<ClientConfig>,
}

impl TunnelTls {
    /// TLS 1.3 only (QUIC's), mutual, under `certs`' root; nodes in `refused` are refused
    /// (read at each handshake, so it may change under a running tunnel).
    pub fn new(certs: &NodeCerts, refused: Refused) -> Result<Self, PkiError> {
        let provider = provider();
        let general =
            |e: &dyn std::fmt::Display| PkiError::Tls(rustls::Error::General(e.to_string()));
        let roots = root_store(&certs.root_pem)?;
        let clients = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| general(&e))?;
        let clients = Arc::new(RefusingClients {
            inner: clients,
            refused: refused.clone(),
        });
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(clients)
            .with_single_cert(presented_chain(certs)?, private_key(&certs.key_pem)?)?;
        server.alpn_protocols = vec![ALPN_TUNNEL.to_vec()];
        no_resumption(&mut server);
        let servers = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| general(&e))?;
        let servers = Arc::new(RefusingServers {
            inner: servers,
            refused,
        });
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(servers)
            .with_client_auth_cert(presented_chain(certs)?, private_key(&certs.key_pem)?)?;
        client.alpn_protocols = vec![ALPN_TUNNEL.to_vec()];
        client.resumption = rustls::client::Resumption::disabled();
        Ok(TunnelTls {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }
}

/// Node ids refused in the handshake whatever their certificates say: the nodes removed
/// from the swarm, as the node last heard them. Cheap to clone; clones share the set.
#[derive(Clone, Debug, Default)]
pub struct Refused(Arc<RwLock<BTreeSet<String>>>);

impl Refused {
    /// From now on, refuse exactly `node_ids`.
    pub fn set(&self, node_ids: impl IntoIterator<Item = String>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = node_ids.into_iter().collect();
    }

    pub fn contains(&self, node_id: &str) -> bool {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(node_id)
    }

    /// `Err` when the certificate is a refused node's (after it verified).
    fn check(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let identity = crate::identity_of_cert_der(end_entity.as_ref())
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        if self.contains(&identity.node_id) {
            return Err(rustls::Error::General(format!(
                "node {} was removed from the swarm",
                identity.node_id
            )));
        }
        Ok(())
    }
}

/// The web PKI's client verification, then [`Refused`].
#[derive(Debug)]
struct RefusingClients {
    inner: Arc<dyn ClientCertVerifier>,
    refused: Refused,
}

impl ClientCertVerifier for RefusingClients {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        self.refused.check(end_entity)?;
        Ok(verified)
    }

    signatures_checked_by!(inner);
}

/// The web PKI's server verification, then [`Refused`].
#[derive(Debug)]
struct RefusingServers {
    inner: Arc<WebPkiServerVerifier>,
    refused: Refused,
}

impl ServerCertVerifier for RefusingServers {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        self.refused.check(end_entity)?;
        Ok(verified)
    }

    signatures_checked_by!(inner);
}
