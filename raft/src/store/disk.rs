//! How values go to disk: encoded, then sealed with the node's data key when it has one
//! ([`crate::AtRest`]), so the log, the vote and the snapshots hold nothing in clear.
//!
//! A database records whether its values are sealed (`meta/sealed`) when it is created, so
//! one made before encryption at rest keeps working in clear (with a warning), and a sealed
//! one is never read without its key.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::types::{decode, encode};
use crate::{AtRest, RaftError};

const KEY_SEALED: &[u8] = b"sealed";

/// Encodes and seals values for one database.
#[derive(Clone)]
pub(crate) struct Disk {
    at_rest: Option<Arc<dyn AtRest>>,
}

impl Disk {
    /// Decide for `db` (new or not) whether its values are sealed.
    pub(crate) fn open(db: &sled::Db, at_rest: Option<Arc<dyn AtRest>>) -> Result<Self, RaftError> {
        let storage =
            |e: sled::Error| RaftError::Storage(format!("reading the raft database: {e}"));
        let meta = db.open_tree("meta").map_err(storage)?;
        let sealed = meta.get(KEY_SEALED).map_err(storage)?.is_some();
        let fresh = !sealed
            && meta.is_empty()
            && db.open_tree("logs").map_err(storage)?.is_empty()
            && db.open_tree("snapshot").map_err(storage)?.is_empty();
        match (sealed, fresh, at_rest) {
            (true, _, None) => Err(RaftError::Storage(
                "the raft data is encrypted and this node has no data key to open it".into(),
            )),
            (true, _, Some(key)) => Ok(Disk { at_rest: Some(key) }),
            (false, true, Some(key)) => {
                meta.insert(KEY_SEALED, b"1".as_slice()).map_err(storage)?;
                Ok(Disk { at_rest: Some(key) })
            }
            (false, false, Some(_)) => {
                tracing::warn!("the raft data was written before encryption at rest and stays in clear; leave and join again to encrypt it");
                Ok(Disk { at_rest: None })
            }
            (false, _, None) => Ok(Disk { at_rest: None }),
        }
    }

    pub(crate) fn write<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, String> {
        let bytes = encode(value).map_err(|e| e.to_string())?;
        Ok(match &self.at_rest {
            Some(key) => key.seal(&bytes)?,
            None => bytes,
        })
    }

    pub(crate) fn read<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, String> {
        match &self.at_rest {
            Some(key) => decode(&key.open(bytes)?).map_err(|e| e.to_string()),
            None => decode(bytes).map_err(|e| e.to_string()),
        }
    }
}
