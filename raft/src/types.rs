//! openraft's type configuration for Shoal and the one binary codec used on disk and on
//! the wire.

use std::io::Cursor;

use bincode::Options;
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A command as the raft crate sees it: opaque bytes the [`crate::Applier`] interprets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Command(pub(crate) Vec<u8>);

/// The [`crate::Applier`]'s opaque answer to one applied command.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Response(pub(crate) Vec<u8>);

openraft::declare_raft_types!(
    /// Shoal's openraft configuration: opaque commands, `host:port` nodes, tokio.
    pub(crate) TypeConfig:
        D = Command,
        R = Response,
        NodeId = u64,
        Node = BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);

pub(crate) type Entry = openraft::Entry<TypeConfig>;
pub(crate) type LogId = openraft::LogId<u64>;
pub(crate) type StorageError = openraft::StorageError<u64>;
pub(crate) type StoredMembership = openraft::StoredMembership<u64, BasicNode>;
pub(crate) type SnapshotMeta = openraft::SnapshotMeta<u64, BasicNode>;

/// Largest value the codec decodes; bounds what a malformed peer message can make us
/// allocate.
const DECODE_LIMIT: u64 = 1 << 30;

fn options() -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .with_limit(DECODE_LIMIT)
}

/// Encodes a value with the codec every stored record and peer message uses.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, bincode::Error> {
    options().serialize(value)
}

/// Decodes what [`encode`] wrote; fails (never panics) on malformed or trailing bytes.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, bincode::Error> {
    options().deserialize(bytes)
}
