//! TLS 1.3 for the overlay's encrypted tunnels (QUIC between nodes' data planes): both
//! sides present their node certificate and verify the other's against the cluster root,
//! by the name every node certificate carries ([`crate::NODE_SAN`]). Which node the peer
//! is comes from its certificate ([`crate::identity_of_cert_der`]), checked by the tunnel.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ServerConfig};

use super::{presented_chain, private_key, provider, root_store};
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
    /// TLS 1.3 only (QUIC's), mutual, under `certs`' root.
    pub fn new(certs: &NodeCerts) -> Result<Self, PkiError> {
        let provider = provider();
        let general =
            |e: &dyn std::fmt::Display| PkiError::Tls(rustls::Error::General(e.to_string()));
        let roots = root_store(&certs.root_pem)?;
        let clients = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| general(&e))?;
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(clients)
            .with_single_cert(presented_chain(certs)?, private_key(&certs.key_pem)?)?;
        server.alpn_protocols = vec![ALPN_TUNNEL.to_vec()];
        let servers = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| general(&e))?;
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_webpki_verifier(servers)
            .with_client_auth_cert(presented_chain(certs)?, private_key(&certs.key_pem)?)?;
        client.alpn_protocols = vec![ALPN_TUNNEL.to_vec()];
        Ok(TunnelTls {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }
}
