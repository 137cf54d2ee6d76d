//! Sealing with a 256-bit key (AES-256-GCM, a random nonce per sealing): what Shoal keeps
//! at rest. The manager seals secrets' content in the store with the cluster's secrets key;
//! a node seals its Raft log and task database with its data key ([`crate::vault`]).

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("the cluster has no usable secrets key")]
    Key,
    #[error(
        "a sealed secret does not open with the cluster's key (damaged or from another cluster)"
    )]
    Open,
    #[error("no randomness for sealing")]
    Random,
}

/// A new random key.
pub fn new_key() -> Result<Vec<u8>, SealError> {
    let mut key = vec![0u8; 32];
    SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| SealError::Random)?;
    Ok(key)
}

fn key(bytes: &[u8]) -> Result<LessSafeKey, SealError> {
    UnboundKey::new(&AES_256_GCM, bytes)
        .map(LessSafeKey::new)
        .map_err(|_| SealError::Key)
}

/// `plain` sealed: nonce, then ciphertext and tag.
pub fn seal(key_bytes: &[u8], plain: &[u8]) -> Result<Vec<u8>, SealError> {
    let key = key(key_bytes)?;
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| SealError::Random)?;
    let mut sealed = plain.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::empty(),
        &mut sealed,
    )
    .map_err(|_| SealError::Key)?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// The content `sealed` holds.
pub fn open(key_bytes: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
    let key = key(key_bytes)?;
    if sealed.len() < NONCE_LEN {
        return Err(SealError::Open);
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Open)?;
    let mut body = body.to_vec();
    let plain = key
        .open_in_place(nonce, Aad::empty(), &mut body)
        .map_err(|_| SealError::Open)?;
    Ok(plain.to_vec())
}

/// sha256 of `data`, hex.
pub fn digest(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_content_opens_only_with_its_key_and_never_shows_in_clear() {
        let key = new_key().expect("key");
        let sealed = seal(&key, b"hunter2-secret").expect("sealed");
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"), "no clear text");
        assert_eq!(open(&key, &sealed).expect("opens"), b"hunter2-secret");
        assert_ne!(
            seal(&key, b"hunter2-secret").expect("again"),
            sealed,
            "a fresh nonce"
        );
        let other = new_key().expect("key");
        assert_eq!(open(&other, &sealed), Err(SealError::Open));
        assert_eq!(open(&key, &sealed[..5]), Err(SealError::Open));
        assert_eq!(seal(b"short", b"x"), Err(SealError::Key));
    }
}
