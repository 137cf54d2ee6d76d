//! Who may see the web view: whoever holds the node's token. `shoal web` prints a link
//! with it (`/login?token=...`); the login sets it as an HttpOnly, SameSite=Strict cookie,
//! and every other request must carry that cookie (or `Authorization: Bearer TOKEN`).
//! The token is made once, kept in the data dir (mode 0600), and never logged.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use hyper::header::{AUTHORIZATION, COOKIE};
use hyper::HeaderMap;
use rand::RngCore;

/// The cookie the login sets.
pub const COOKIE_NAME: &str = "shoal_web";

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("reading the web view's token {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing the web view's token {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the web view's token {path} is not 64 hex digits: remove it and restart shoald for a new one")]
    Malformed { path: PathBuf },
}

/// The secret that opens the web view.
#[derive(Clone)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// The token kept at `path`, made (32 random bytes, hex) when there is none.
    pub fn load_or_create(path: &Path) -> Result<Token, TokenError> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let token = text.trim();
                if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(TokenError::Malformed {
                        path: path.to_path_buf(),
                    });
                }
                Ok(Token(token.to_ascii_lowercase()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = [0u8; 32];
                rand::thread_rng().fill_bytes(&mut bytes);
                let token = hex::encode(bytes);
                let write = |source| TokenError::Write {
                    path: path.to_path_buf(),
                    source,
                };
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(write)?;
                file.write_all(token.as_bytes()).map_err(write)?;
                Ok(Token(token))
            }
            Err(source) => Err(TokenError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is the token, compared in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), presented.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    /// Whether a request with `headers` carries the token (cookie or bearer).
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        let bearer = headers
            .get_all(AUTHORIZATION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.strip_prefix("Bearer "))
            .any(|t| self.matches(t.trim()));
        let cookie = headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .any(|(name, value)| name == COOKIE_NAME && self.matches(value));
        bearer || cookie
    }

    /// The `Set-Cookie` value a login answers with.
    pub fn cookie(&self) -> String {
        format!(
            "{COOKIE_NAME}={}; Path=/; HttpOnly; SameSite=Strict",
            self.0
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn the_token_is_made_once_kept_private_and_read_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("web-token");
        let made = Token::load_or_create(&path).expect("made");
        assert_eq!(made.as_str().len(), 64);
        let again = Token::load_or_create(&path).expect("read");
        assert!(again.matches(made.as_str()));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(&path, "short").expect("write");
        let err = Token::load_or_create(&path).expect_err("malformed");
        assert!(
            err.to_string().contains("remove it and restart shoald"),
            "{err}"
        );
    }

    #[test]
    fn only_the_cookie_or_bearer_with_the_token_gets_in() {
        let token = Token("ab".repeat(32));
        let with = |name, value: String| {
            let mut headers = HeaderMap::new();
            headers.insert(name, HeaderValue::from_str(&value).expect("header"));
            headers
        };
        assert!(token.admits(&with(COOKIE, format!("a=b; shoal_web={}", "ab".repeat(32)))));
        assert!(token.admits(&with(AUTHORIZATION, format!("Bearer {}", "ab".repeat(32)))));
        assert!(!token.admits(&with(COOKIE, format!("shoal_web={}", "cd".repeat(32)))));
        assert!(!token.admits(&with(COOKIE, "shoal_web=ab".to_string())));
        assert!(!token.admits(&with(AUTHORIZATION, format!("Basic {}", "ab".repeat(32)))));
        assert!(!token.admits(&HeaderMap::new()));
    }
}
