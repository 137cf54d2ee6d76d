//! Registry credentials for `--with-registry-auth`: the ones `docker login` saved for the
//! registry of an image, read from `$DOCKER_CONFIG/config.json` (or `~/.docker/config.json`),
//! sent with the service so the nodes that run its tasks can pull it.

use std::path::PathBuf;

use anyhow::{Context, Result};
use shoal_proto::RegistryAuth;

/// Docker Hub's key in config.json.
const DOCKER_HUB: &str = "https://index.docker.io/v1/";

fn config_path() -> Option<PathBuf> {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) => Some(PathBuf::from(dir).join("config.json")),
        None => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json")),
    }
}

/// The registry an image reference names ("10.0.0.2:5000"), or Docker Hub's key.
pub fn registry_of(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first.to_string()
        }
        _ => DOCKER_HUB.to_string(),
    }
}

/// A config.json key as a bare host[:port].
fn host_of(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

/// The saved credentials for `image`'s registry, if any.
pub fn for_image(image: &str) -> Result<Option<RegistryAuth>> {
    let Some(path) = config_path() else {
        return Ok(None);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let config: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
    let registry = registry_of(image);
    let Some(auths) = config.get("auths").and_then(|a| a.as_object()) else {
        return Ok(None);
    };
    let found = auths.iter().find(|(key, _)| {
        key.as_str() == registry || (registry != DOCKER_HUB && host_of(key) == registry)
    });
    let Some((key, entry)) = found else {
        return Ok(None);
    };
    let Some(encoded) = entry.get("auth").and_then(|a| a.as_str()) else {
        return Ok(None);
    };
    let decoded = decode_base64(encoded)
        .with_context(|| format!("the saved credentials for {key} in {}", path.display()))?;
    let (username, password) = decoded.split_once(':').with_context(|| {
        format!(
            "the saved credentials for {key} in {} are not user:password",
            path.display()
        )
    })?;
    Ok(Some(RegistryAuth {
        username: username.to_string(),
        password: password.to_string(),
        server_address: key.clone(),
    }))
}

fn decode_base64(text: &str) -> Result<String> {
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.trim().bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            _ => anyhow::bail!("not base64"),
        };
        bits = (bits << 6) | u32::from(value);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    String::from_utf8(out).context("not text")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_found_by_the_images_registry() {
        assert_eq!(registry_of("10.78.0.2:5000/app/web:1"), "10.78.0.2:5000");
        assert_eq!(registry_of("busybox"), DOCKER_HUB);
        assert_eq!(registry_of("library/nginx"), DOCKER_HUB);
        assert_eq!(decode_base64("dXNlcjpwYXNz").expect("b64"), "user:pass");
        let dir = std::env::temp_dir().join(format!("shoal-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(
            dir.join("config.json"),
            r#"{"auths":{"https://10.78.0.2:5000":{"auth":"dXNlcjpwYXNz"}}}"#,
        )
        .expect("config");
        std::env::set_var("DOCKER_CONFIG", &dir);
        let auth = for_image("10.78.0.2:5000/app:1")
            .expect("read")
            .expect("found");
        assert_eq!(
            (auth.username.as_str(), auth.password.as_str()),
            ("user", "pass")
        );
        assert_eq!(for_image("other:5000/app:1").expect("read"), None);
        std::env::remove_var("DOCKER_CONFIG");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
