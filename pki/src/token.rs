//! Join tokens: `SHTKN-1-<root digest>-<secret>`.
//!
//! The digest pins the root CA a joining node must find on the manager it dials; the secret
//! proves to the manager that the node may join, and with which role.

use std::fmt;

use crate::PkiError;

const PREFIX: &str = "SHTKN";
const VERSION: &str = "1";
/// Length of the hex sha256 digest in a token.
pub const DIGEST_LEN: usize = 64;
/// Length of a token's secret: 128 random bits in lowercase base 36.
pub const SECRET_LEN: usize = 25;

/// A parsed join token. `Debug` hides the secret; `Display` gives the full token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// Hex sha256 of the root CA certificate's DER.
    pub digest: String,
    /// 25 lowercase base-36 characters.
    pub secret: String,
}

impl JoinToken {
    /// A new token for the root with this digest, with a fresh secret.
    pub fn generate(digest: &str) -> Self {
        JoinToken {
            digest: digest.to_ascii_lowercase(),
            secret: random_id(),
        }
    }

    /// Parses `SHTKN-1-<digest>-<secret>`; surrounding whitespace is ignored.
    pub fn parse(s: &str) -> Result<Self, PkiError> {
        let mut parts = s.trim().split('-');
        let (Some(prefix), Some(version), Some(digest), Some(secret), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(PkiError::InvalidToken);
        };
        let digest_ok = digest.len() == DIGEST_LEN
            && digest
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let secret_ok = secret.len() == SECRET_LEN
            && secret
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase());
        if prefix != PREFIX || version != VERSION || !digest_ok || !secret_ok {
            return Err(PkiError::InvalidToken);
        }
        Ok(JoinToken {
            digest: digest.to_string(),
            secret: secret.to_string(),
        })
    }

    /// Whether `presented` is this token, comparing the secret in constant time.
    pub fn matches(&self, presented: &JoinToken) -> bool {
        let a = self.secret.as_bytes();
        let b = presented.secret.as_bytes();
        let mut diff = u8::from(a.len() != b.len());
        for (x, y) in a.iter().zip(b) {
            diff |= x ^ y;
        }
        diff == 0 && self.digest == presented.digest
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}-{VERSION}-{}-{}", self.digest, self.secret)
    }
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken")
            .field("digest", &self.digest)
            .field("secret", &"<hidden>")
            .finish()
    }
}

impl std::str::FromStr for JoinToken {
    type Err = PkiError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JoinToken::parse(s)
    }
}

/// 25 lowercase base-36 characters from 128 random bits: token secrets, and the ids of
/// every object of the cluster (Swarm's identifier format).
pub fn random_id() -> String {
    base36_secret(rand::random())
}

/// `n` in lowercase base 36, left-padded with zeros to 25 characters (36^25 > 2^128).
fn base36_secret(mut n: u128) -> String {
    let mut out = [b'0'; SECRET_LEN];
    for slot in out.iter_mut().rev() {
        let digit = (n % 36) as u8;
        *slot = if digit < 10 {
            b'0' + digit
        } else {
            b'a' + digit - 10
        };
        n /= 36;
    }
    out.iter().map(|&b| char::from(b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base36_covers_the_extremes() {
        assert_eq!(base36_secret(0), "0".repeat(25));
        assert_eq!(base36_secret(35), format!("{}z", "0".repeat(24)));
        let max = base36_secret(u128::MAX);
        assert_eq!(max.len(), 25);
        assert_eq!(max, "f5lxx1zz5pnorynqglhzmsp33");
    }
}
