//! A node's certificates on disk. The private key is sealed with the node's data key
//! ([`crate::vault`]) when one is given, so with autolock a stolen disk holds no usable
//! node key either; a key found in clear with a data key at hand (a node from before
//! sealing) is sealed on the spot.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::identity::{identity_of_cert_pem, Identity};
use crate::vault::DataKey;
use crate::{NodeKey, PkiError};

/// The node certificate (PEM, leaf first).
pub const CERT_FILE: &str = "node.crt";
/// The node's private key (PEM, mode 0600).
pub const KEY_FILE: &str = "node.key";
/// The cluster's root CA certificate (PEM).
pub const ROOT_FILE: &str = "root-ca.crt";
/// How a sealed key file begins and ends (hex of the sealed PEM between).
const SEALED_BEGIN: &str = "-----BEGIN SHOAL SEALED NODE KEY-----";
const SEALED_END: &str = "-----END SHOAL SEALED NODE KEY-----";

/// Everything a node needs for TLS: its certificate, its key and the cluster's root.
#[derive(Clone, PartialEq, Eq)]
pub struct NodeCerts {
    pub cert_pem: String,
    pub key_pem: String,
    pub root_pem: String,
}

impl std::fmt::Debug for NodeCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCerts")
            .field("identity", &self.identity().ok())
            .finish_non_exhaustive()
    }
}

impl NodeCerts {
    /// Writes the three files under `dir` (created if missing), each atomically (a
    /// temporary file, fsync, rename, fsync of the directory); the key is mode 0600, and
    /// sealed with `data_key` when one is given. The key and certificate are checked to
    /// match first, so a bad pair is never stored.
    pub fn save(&self, dir: &Path, data_key: Option<&DataKey>) -> Result<(), PkiError> {
        self.check(dir)?;
        fs::create_dir_all(dir).map_err(|e| PkiError::io("creating", dir, e))?;
        // Root first, then key, then certificate: `load` refuses a key and certificate that
        // do not match, so a crash between the last two is seen, not silently used.
        write_atomic(dir, ROOT_FILE, self.root_pem.as_bytes(), 0o644)?;
        write_atomic(dir, KEY_FILE, &key_file(&self.key_pem, data_key)?, 0o600)?;
        write_atomic(dir, CERT_FILE, self.cert_pem.as_bytes(), 0o644)?;
        sync_dir(dir)
    }

    /// Reads the files under `dir`; `None` when none of them exist (a node that has not
    /// joined yet). A partial set, a key that does not match its certificate, or a sealed
    /// key without the `data_key` that opens it, is an error.
    pub fn load(dir: &Path, data_key: Option<&DataKey>) -> Result<Option<Self>, PkiError> {
        let cert = read_optional(&dir.join(CERT_FILE))?;
        let key = read_optional(&dir.join(KEY_FILE))?;
        let root = read_optional(&dir.join(ROOT_FILE))?;
        match (cert, key, root) {
            (None, None, None) => Ok(None),
            (Some(cert_pem), Some(key_file), Some(root_pem)) => {
                let path = dir.join(KEY_FILE);
                let (key_pem, sealed) = open_key_file(&path, &key_file, data_key)?;
                let certs = NodeCerts {
                    cert_pem,
                    key_pem,
                    root_pem,
                };
                certs.check(dir)?;
                if let (false, Some(k)) = (sealed, data_key) {
                    write_atomic(dir, KEY_FILE, &key_file_sealed(&certs.key_pem, k)?, 0o600)?;
                    sync_dir(dir)?;
                }
                Ok(Some(certs))
            }
            (cert, key, root) => {
                let missing = [(cert, CERT_FILE), (key, KEY_FILE), (root, ROOT_FILE)]
                    .into_iter()
                    .find(|(content, _)| content.is_none())
                    .map_or(CERT_FILE, |(_, name)| name);
                Err(PkiError::io(
                    "reading",
                    dir.join(missing),
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "missing while the other certificate files exist",
                    ),
                ))
            }
        }
    }

    /// The identity in the node certificate.
    pub fn identity(&self) -> Result<Identity, PkiError> {
        identity_of_cert_pem(&self.cert_pem)
    }

    fn check(&self, dir: &Path) -> Result<(), PkiError> {
        let key = NodeKey::from_pem(&self.key_pem)?;
        if !key.matches_cert(&self.cert_pem)? {
            return Err(PkiError::NodeKeyMismatch {
                dir: dir.to_path_buf(),
            });
        }
        crate::identity::first_cert_der(&self.root_pem)?;
        Ok(())
    }
}

/// What `node.key` holds: the PEM, or the PEM sealed with `data_key`.
fn key_file(key_pem: &str, data_key: Option<&DataKey>) -> Result<Vec<u8>, PkiError> {
    match data_key {
        Some(k) => key_file_sealed(key_pem, k),
        None => Ok(key_pem.as_bytes().to_vec()),
    }
}

fn key_file_sealed(key_pem: &str, data_key: &DataKey) -> Result<Vec<u8>, PkiError> {
    let sealed = data_key
        .seal(key_pem.as_bytes())
        .map_err(|e| PkiError::parse("the node key to seal", e))?;
    Ok(format!("{SEALED_BEGIN}\n{}\n{SEALED_END}\n", hex::encode(sealed)).into_bytes())
}

/// The key PEM in a `node.key` file, and whether it was sealed.
fn open_key_file(
    path: &Path,
    text: &str,
    data_key: Option<&DataKey>,
) -> Result<(String, bool), PkiError> {
    let Some(body) = text.trim().strip_prefix(SEALED_BEGIN) else {
        return Ok((text.to_string(), false));
    };
    let data_key = data_key.ok_or_else(|| PkiError::NodeKeySealed {
        path: path.to_path_buf(),
    })?;
    let unsealable = || PkiError::NodeKeyUnsealable {
        path: path.to_path_buf(),
    };
    let hex_part = body.strip_suffix(SEALED_END).ok_or_else(unsealable)?;
    let sealed = hex::decode(hex_part.trim()).map_err(|_| unsealable())?;
    let plain = data_key.open(&sealed).map_err(|_| unsealable())?;
    let pem = String::from_utf8(plain).map_err(|_| unsealable())?;
    Ok((pem, true))
}

/// The file at `path`, or `None` when there is none.
pub(crate) fn read_optional(path: &Path) -> Result<Option<String>, PkiError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(PkiError::io("reading", path, e)),
    }
}

/// `dir`'s entries made durable (after renames into it).
pub(crate) fn sync_dir(dir: &Path) -> Result<(), PkiError> {
    let d = fs::File::open(dir).map_err(|e| PkiError::io("opening", dir, e))?;
    d.sync_all().map_err(|e| PkiError::io("syncing", dir, e))
}

/// `dir/name` replaced whole: a temporary file with `mode`, fsync, rename.
pub(crate) fn write_atomic(dir: &Path, name: &str, data: &[u8], mode: u32) -> Result<(), PkiError> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| PkiError::io("creating", &tmp, e))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(|e| PkiError::io("writing", &tmp, e))?;
    drop(f);
    fs::rename(&tmp, &path).map_err(|e| PkiError::io("renaming into place", &path, e))
}
