//! A node's keys at rest, in `DATA_DIR/keys.json` (mode 0600): the data key that seals its
//! Raft log, snapshots and task database, kept either in the open or, with autolock,
//! sealed by the unlock key the user holds (`swarm init --autolock`). A locked node can
//! read nothing of its state until it is given that key (`swarm unlock`).
//!
//! In the open the data key only guards against a copy of the database files without
//! this one; autolock is what keeps a stolen disk unreadable.

use std::fmt;
use std::fs;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::seal;
use crate::store::{read_optional, sync_dir, write_atomic};

/// The file under the data dir.
pub const KEYS_FILE: &str = "keys.json";
/// How an unlock key reads: `SHKEY-1-` and 64 hex digits.
const UNLOCK_PREFIX: &str = "SHKEY-1-";

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(transparent)]
    File(#[from] crate::PkiError),
    #[error(
        "{path} is damaged ({why}): restore it from a backup, or leave the swarm and join again"
    )]
    Damaged { path: String, why: String },
    #[error("the unlock key is not this node's: check it with `shoal swarm unlock-key` on an unlocked manager (a manager that was down when the key was rotated opens with the previous key it also shows)")]
    WrongKey,
    #[error("invalid unlock key: expected SHKEY-1- followed by 64 hex digits, as `shoal swarm unlock-key` prints it")]
    BadUnlockKey,
    #[error("{0}")]
    Seal(#[from] seal::SealError),
}

/// The key that seals a node's state on disk. Cheap to clone; never printed.
#[derive(Clone)]
pub struct DataKey(Arc<Vec<u8>>);

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    /// A new random key (a node new to the swarm; tests).
    pub fn generate() -> Result<Self, VaultError> {
        Ok(DataKey(Arc::new(seal::new_key()?)))
    }

    pub fn seal(&self, plain: &[u8]) -> Result<Vec<u8>, seal::SealError> {
        seal::seal(&self.0, plain)
    }

    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, seal::SealError> {
        seal::open(&self.0, sealed)
    }
}

/// The user's key to a locked manager (`swarm unlock`).
#[derive(Clone, PartialEq, Eq)]
pub struct UnlockKey(Vec<u8>);

impl UnlockKey {
    pub fn generate() -> Result<Self, VaultError> {
        Ok(UnlockKey(seal::new_key()?))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, VaultError> {
        if bytes.len() != 32 {
            return Err(VaultError::BadUnlockKey);
        }
        Ok(UnlockKey(bytes.to_vec()))
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for UnlockKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{UNLOCK_PREFIX}{}", hex::encode(&self.0))
    }
}

impl fmt::Debug for UnlockKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UnlockKey(..)")
    }
}

impl FromStr for UnlockKey {
    type Err = VaultError;

    fn from_str(s: &str) -> Result<Self, VaultError> {
        let hex_part = s
            .trim()
            .strip_prefix(UNLOCK_PREFIX)
            .ok_or(VaultError::BadUnlockKey)?;
        let bytes = hex::decode(hex_part).map_err(|_| VaultError::BadUnlockKey)?;
        Self::from_bytes(&bytes)
    }
}

#[derive(Serialize, Deserialize)]
struct KeysFile {
    version: u32,
    /// Hex: the data key itself, or sealed by the unlock key when `locked`.
    data_key: String,
    locked: bool,
}

/// What a node finds at start.
#[derive(Debug)]
pub enum Keys {
    Open(DataKey),
    /// Sealed by an unlock key: [`unlock`] it.
    Locked,
}

/// The node's keys, made (in the open) the first time.
pub fn load_or_create(data_dir: &Path) -> Result<Keys, VaultError> {
    let path = data_dir.join(KEYS_FILE);
    match read(&path)? {
        Some(file) if file.locked => Ok(Keys::Locked),
        Some(file) => Ok(Keys::Open(DataKey(Arc::new(hex_field(
            &path,
            &file.data_key,
        )?)))),
        None => {
            let key = DataKey::generate()?;
            store(data_dir, &key, None)?;
            Ok(Keys::Open(key))
        }
    }
}

/// The data key of a locked node, with its unlock key.
pub fn unlock(data_dir: &Path, unlock_key: &UnlockKey) -> Result<DataKey, VaultError> {
    let path = data_dir.join(KEYS_FILE);
    let file = read(&path)?.ok_or_else(|| VaultError::Damaged {
        path: path.display().to_string(),
        why: "missing".into(),
    })?;
    let sealed = hex_field(&path, &file.data_key)?;
    if !file.locked {
        return Ok(DataKey(Arc::new(sealed)));
    }
    let key = seal::open(unlock_key.bytes(), &sealed).map_err(|_| VaultError::WrongKey)?;
    Ok(DataKey(Arc::new(key)))
}

/// Keep `key` sealed by `unlock_key` (autolock), or in the open when `None`.
pub fn store(
    data_dir: &Path,
    key: &DataKey,
    unlock_key: Option<&UnlockKey>,
) -> Result<(), VaultError> {
    let (data_key, locked) = match unlock_key {
        Some(u) => (hex::encode(seal::seal(u.bytes(), &key.0)?), true),
        None => (hex::encode(key.0.as_slice()), false),
    };
    let text = serde_json::to_vec_pretty(&KeysFile {
        version: 1,
        data_key,
        locked,
    })
    .map_err(|e| VaultError::Damaged {
        path: KEYS_FILE.into(),
        why: e.to_string(),
    })?;
    write_keys(data_dir, &text)
}

/// Whether the file holds the data key sealed by `unlock_key` (so nothing needs writing).
pub fn is_locked_with(data_dir: &Path, unlock_key: &UnlockKey) -> bool {
    let path = data_dir.join(KEYS_FILE);
    matches!(read(&path), Ok(Some(file)) if file.locked
        && hex::decode(&file.data_key).is_ok_and(|s| seal::open(unlock_key.bytes(), &s).is_ok()))
}

/// Whether the file keeps the data key in the open.
pub fn is_open(data_dir: &Path) -> bool {
    matches!(read(&data_dir.join(KEYS_FILE)), Ok(Some(file)) if !file.locked)
}

fn hex_field(path: &Path, value: &str) -> Result<Vec<u8>, VaultError> {
    hex::decode(value).map_err(|e| VaultError::Damaged {
        path: path.display().to_string(),
        why: e.to_string(),
    })
}

fn read(path: &Path) -> Result<Option<KeysFile>, VaultError> {
    let Some(text) = read_optional(path)? else {
        return Ok(None);
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| VaultError::Damaged {
            path: path.display().to_string(),
            why: e.to_string(),
        })
}

/// The keys file replaced whole, and the directory synced: never half a key file.
fn write_keys(dir: &Path, bytes: &[u8]) -> Result<(), VaultError> {
    fs::create_dir_all(dir).map_err(|e| crate::PkiError::io("creating", dir, e))?;
    write_atomic(dir, KEYS_FILE, bytes, 0o600)?;
    sync_dir(dir)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_locked_key_opens_only_with_its_unlock_key() {
        let dir = tempfile::tempdir().expect("dir");
        let Keys::Open(key) = load_or_create(dir.path()).expect("made") else {
            panic!("a new node's keys are open");
        };
        let sealed = key.seal(b"plain-needle").expect("sealed");
        assert!(is_open(dir.path()));
        let unlock_key = UnlockKey::generate().expect("key");
        store(dir.path(), &key, Some(&unlock_key)).expect("locked");
        assert!(is_locked_with(dir.path(), &unlock_key));
        assert!(matches!(load_or_create(dir.path()), Ok(Keys::Locked)));
        let file = fs::read(dir.path().join(KEYS_FILE)).expect("file");
        assert!(!String::from_utf8_lossy(&file).contains(&hex::encode(key.0.as_slice())));

        let other = UnlockKey::generate().expect("key");
        assert!(matches!(
            unlock(dir.path(), &other),
            Err(VaultError::WrongKey)
        ));
        let text = unlock_key.to_string();
        assert!(
            text.starts_with("SHKEY-1-") && text.len() == 8 + 64,
            "{text}"
        );
        let parsed: UnlockKey = format!(" {text}\n").parse().expect("parses");
        let opened = unlock(dir.path(), &parsed).expect("unlocked");
        assert_eq!(opened.open(&sealed).expect("same key"), b"plain-needle");
        assert!("SHKEY-1-zz".parse::<UnlockKey>().is_err());
        assert!("SWMKEY-1-abc".parse::<UnlockKey>().is_err());

        store(dir.path(), &opened, None).expect("unlocked for good");
        assert!(matches!(load_or_create(dir.path()), Ok(Keys::Open(_))));
    }
}
