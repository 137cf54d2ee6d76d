//! The one error type of the crate.

use std::path::PathBuf;

/// What went wrong in identity, CA, token, storage or TLS work. Messages are lowercase and
/// say what failed; none of them contains a token's secret or a private key.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("invalid join token: expected SHTKN-1-<digest>-<secret>")]
    InvalidToken,

    #[error("cannot parse {what}: {reason}")]
    Parse { what: &'static str, reason: String },

    #[error("cannot generate {what}: {source}")]
    Generate {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },

    #[error("cannot sign the certificate of node {node_id}: {reason}")]
    Sign { node_id: String, reason: String },

    #[error("the root ca key does not match the root ca certificate")]
    RootKeyMismatch,

    #[error("the node certificate for {dir} does not match the node key")]
    NodeKeyMismatch { dir: PathBuf },

    #[error("{path} is sealed with the node's data key, which is not at hand (a locked manager: run `shoal swarm unlock`)")]
    NodeKeySealed { path: PathBuf },

    #[error("{path} does not open with this node's data key: restore the data dir whole from one backup, or leave the swarm and join again")]
    NodeKeyUnsealable { path: PathBuf },

    #[error("certificate {field} {value:?} is not valid: {reason}")]
    BadField {
        field: &'static str,
        value: String,
        reason: &'static str,
    },

    #[error("certificate has no {0}")]
    MissingField(&'static str),

    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot build the tls configuration: {0}")]
    Tls(#[from] rustls::Error),

    #[error("invalid manager address {addr:?}: expected host:port")]
    BadAddress { addr: String },

    #[error("cannot connect to manager at {addr}: {reason}")]
    Connect { addr: String, reason: String },
}

impl PkiError {
    pub(crate) fn parse(what: &'static str, reason: impl std::fmt::Display) -> Self {
        PkiError::Parse {
            what,
            reason: reason.to_string(),
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        PkiError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// An error and its sources on one line: "a: b: c". tonic's transport errors say little
/// more than "transport error" at the top.
pub(crate) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        let s = e.to_string();
        if !out.ends_with(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        next = e.source();
    }
    out
}
