//! The node's record of its swarm membership, `<data-dir>/node.json`: written when the node
//! inits or joins, read at start so a restarted shoald rejoins as what it was.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const FILE: &str = "node.json";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub node_id: String,
    pub raft_id: u64,
    pub cluster_id: String,
    pub manager: bool,
    /// Where the node listens for other nodes (host:port).
    pub listen_addr: String,
    /// Where other nodes reach it (host:port).
    pub advertise_addr: String,
    /// Managers the agent may hold its session with.
    pub managers: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is damaged ({source}): move it away to start this node afresh")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

pub fn load(data_dir: &Path) -> Result<Option<NodeRecord>, RecordError> {
    let path = path(data_dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(RecordError::Read { path, source }),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| RecordError::Parse { path, source })
}

/// Write atomically: a crash leaves the old record or the new one, never half of one.
pub fn save(data_dir: &Path, record: &NodeRecord) -> Result<(), RecordError> {
    let path = path(data_dir);
    let tmp = data_dir.join(format!("{FILE}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(data_dir)?.sync_all()
    };
    write().map_err(|source| RecordError::Write { path, source })
}

pub fn remove(data_dir: &Path) -> Result<(), RecordError> {
    let path = path(data_dir);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(RecordError::Write { path, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_absent() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(load(dir.path()).expect("load"), None);
        let r = NodeRecord {
            node_id: "n".into(),
            raft_id: 7,
            cluster_id: "c".into(),
            manager: true,
            listen_addr: "0.0.0.0:4242".into(),
            advertise_addr: "127.0.0.1:4242".into(),
            managers: vec!["127.0.0.1:4242".into()],
        };
        save(dir.path(), &r).expect("save");
        assert_eq!(load(dir.path()).expect("load"), Some(r));
        std::fs::write(path(dir.path()), b"{").expect("damage");
        assert!(load(dir.path())
            .expect_err("damaged")
            .to_string()
            .contains("move it away"));
    }
}
