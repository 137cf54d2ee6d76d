//! Mutual TLS for tonic: the server side (`TlsServer`, `incoming`, `TlsConn`), the client
//! side (`TlsClient`, `channel`), and what both share.

/// The three signature checks of a rustls verifier that wraps another, handed to
/// `self.<inner>` (a field or a call; the verifiers here add checks to certificates, not
/// signatures).
macro_rules! signatures_checked_by {
    ($($inner:tt)+) => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            self.$($inner)+.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            self.$($inner)+.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.$($inner)+.supported_verify_schemes()
        }
    };
}

pub(crate) mod client;
pub(crate) mod link;
pub(crate) mod server;
pub(crate) mod tunnel;

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;

use crate::identity::{cert_chain_der, first_cert_der};
use crate::{NodeCerts, PkiError};

/// The name clients verify a manager's certificate against (not its IP), as Swarm does.
pub const MANAGER_SERVER_NAME: &str = crate::ca::MANAGER_SAN;

/// ALPN for gRPC.
const ALPN_H2: &[u8] = b"h2";

/// No TLS session resumption on a server: a resumed session skips the certificate checks,
/// so an old ticket would outlive a dropped root, an expired certificate or a removed node.
/// Node-to-node connections are long-lived; a full handshake each time costs nothing that
/// matters.
fn no_resumption(server: &mut rustls::ServerConfig) {
    server.send_tls13_tickets = 0;
    server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
}

/// The ring provider, built per configuration so nothing process-wide must be installed.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub(crate) const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

pub(crate) fn root_store(root_pem: &str) -> Result<Arc<RootCertStore>, PkiError> {
    let mut roots = RootCertStore::empty();
    for der in cert_chain_der(root_pem)? {
        roots.add(der)?;
    }
    Ok(Arc::new(roots))
}

/// Whether `cert_pem`'s leaf verifies as a client certificate under `root_pem` (one root
/// or a bundle), using the intermediates after the leaf only when `intermediates` is set.
/// How a test or a check tells which root signed a node's certificate.
pub fn verify_node_cert(
    cert_pem: &str,
    root_pem: &str,
    intermediates: bool,
) -> Result<(), PkiError> {
    let chain = cert_chain_der(cert_pem)?;
    let (leaf, rest) = chain
        .split_first()
        .ok_or(PkiError::MissingField("a certificate"))?;
    let rest = if intermediates { rest } else { &[] };
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        root_store(root_pem)?,
        provider(),
    )
    .build()
    .map_err(|e| PkiError::Tls(rustls::Error::General(e.to_string())))?;
    verifier.verify_client_cert(leaf, rest, rustls::pki_types::UnixTime::now())?;
    Ok(())
}

pub(crate) fn private_key(key_pem: &str) -> Result<PrivateKeyDer<'static>, PkiError> {
    PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| PkiError::parse("node key", e))
}

/// The chain a node presents: its certificate(s), then the root, so that a joining node
/// that pins the root by digest finds it in the handshake.
pub(crate) fn presented_chain(certs: &NodeCerts) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let mut chain = cert_chain_der(&certs.cert_pem)?;
    let root = first_cert_der(&certs.root_pem)?;
    if chain.last() != Some(&root) {
        chain.push(root);
    }
    Ok(chain)
}

pub(crate) fn certified_key(
    certs: &NodeCerts,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, PkiError> {
    let chain = presented_chain(certs)?;
    let key = CertifiedKey::from_der(chain, private_key(&certs.key_pem)?, provider)?;
    Ok(Arc::new(key))
}
