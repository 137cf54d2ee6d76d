//! Shoal's cluster identity and secure transport.
//!
//! This crate owns:
//! - identities: a node's id, role and cluster as its certificate states them (CN, OU, O);
//! - the cluster's root CA (`RootCa`): generated at `init`, signs node CSRs;
//! - join tokens (`SHTKN-1-<root digest>-<secret>`), which pin the root by its sha256;
//! - node keys, CSRs and the certificate files on disk (`NodeKey`, `NodeCerts`);
//! - the TLS transport for tonic: a server whose certificate can be swapped without a
//!   restart (`TlsServer`, `incoming`), clients that present a node certificate, none, or
//!   pin the root by digest (`TlsClient`, `channel`, `channel_lazy`);
//! - per-RPC authorization in one tower layer around the whole router (`AuthLayer`);
//! - keys at rest: AES-256-GCM sealing ([`seal`]) and a node's data key, kept in the open
//!   or locked by the user's unlock key ([`vault`]).
//!
//! It must not know the store, Raft, Docker or what any RPC does: callers decide which
//! identity to issue and when to renew; this crate only signs, verifies and enforces the
//! method-level policy in [`required_access`].
//!
//! Only the ring crypto provider is used, and configurations are built with it
//! explicitly, so nothing process-wide needs installing for this crate; binaries still call
//! `rustls::crypto::ring::default_provider().install_default()` first in `main` for the
//! rest of the process.
//!
//! Architecture invariant: this crate depends on nothing of Shoal's (shoal-proto only in
//! its tests).

mod auth;
mod ca;
mod error;
mod identity;
pub mod seal;
mod store;
mod tls;
mod token;
pub mod vault;

pub use auth::{authorize, required_access, Access, AuthLayer, AuthService, Gate};
pub use ca::{NodeKey, RootCa, BACKDATE, MANAGER_SAN, NODE_SAN, ROOT_CA_CN, ROOT_CA_VALIDITY};
pub use error::PkiError;
pub use identity::{
    cert_chain_der, digest_of_der, digest_of_pem, first_cert_der, identity_of_cert_der,
    identity_of_cert_pem, not_after, not_before, serial_of_cert_der, Identity, Role, MANAGER_OU,
    WORKER_OU,
};
pub use store::{NodeCerts, CERT_FILE, KEY_FILE, ROOT_FILE};
pub use tls::client::{
    channel, channel_lazy, channel_with, endpoint, handshake, node_channel_lazy, TlsClient,
    TlsConnector, CONNECT_TIMEOUT,
};
pub use tls::link::{Dialer, Link, LinkIo};
pub use tls::server::{
    incoming, peer_identity, peer_info, PeerInfo, TlsConn, TlsServer, HANDSHAKE_TIMEOUT,
};
pub use tls::tunnel::{Refused, TunnelTls, ALPN_TUNNEL};
pub use tls::{verify_node_cert, MANAGER_SERVER_NAME};
pub use token::{random_id, JoinToken};
