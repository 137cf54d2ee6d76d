//! Image references checked as Docker's reference grammar has them
//! (`[DOMAIN[:PORT]/]PATH[:TAG][@ALGO:HEX]`), so a reference that can never be pulled is
//! refused at create with Docker's own message instead of failing every task forever.

/// Why `reference` can never name an image, in Docker's words; `None` when it can.
pub fn reference_error(reference: &str) -> Option<String> {
    let bad = || Some("invalid reference format".to_string());
    if reference.is_empty() || reference.len() > 4096 {
        return bad();
    }
    let (rest, digest) = match reference.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (reference, None),
    };
    if let Some(digest) = digest {
        let Some((algorithm, hex)) = digest.split_once(':') else {
            return bad();
        };
        let algorithm_ok = !algorithm.is_empty()
            && algorithm
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+.-_".contains(c));
        let hex_ok = hex.len() >= 32 && hex.chars().all(|c| c.is_ascii_hexdigit());
        if !algorithm_ok || !hex_ok || (algorithm == "sha256" && hex.len() != 64) {
            return Some("invalid reference format: invalid digest".to_string());
        }
    }
    // A tag follows the last ':' that comes after the last '/' (a ':' before it is a port).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(tag) = tag {
        let mut chars = tag.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if !first_ok
            || tag.len() > 128
            || !chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        {
            return bad();
        }
    }
    let mut components: Vec<&str> = name.split('/').collect();
    if components.len() > 1 && is_domain(components[0]) {
        components.remove(0);
    }
    if components.is_empty() || components.iter().any(|c| c.is_empty()) {
        return bad();
    }
    for component in &components {
        if component.chars().any(|c| c.is_ascii_uppercase()) {
            return Some("invalid reference format: repository name must be lowercase".to_string());
        }
        if !path_component(component) {
            return bad();
        }
    }
    None
}

/// `localhost`, or a host name with a dot, or anything with a port.
fn is_domain(first: &str) -> bool {
    let (host, port) = match first.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (first, None),
    };
    if let Some(port) = port {
        if port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()) {
            return false;
        }
    }
    let host_ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    host_ok
        && (host == "localhost"
            || host.contains('.')
            || port.is_some()
            || host.chars().any(|c| c.is_ascii_uppercase()))
}

/// Lowercase letters and digits, separated by `.`, `_`, `__` or runs of `-`.
fn path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !bytes.first().copied().is_some_and(alnum) || !bytes.last().copied().is_some_and(alnum) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let ok = separator == "."
            || separator == "_"
            || separator == "__"
            || separator.chars().all(|c| c == '-');
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_docker_takes_and_refuses() {
        for good in [
            "busybox",
            "shoal-test/busybox:a",
            "library/nginx:1.25-alpine",
            "10.78.0.1:5000/app/web:v2",
            "localhost:5000/web",
            "registry.example.com/team/app_x__y.z:latest",
            "web@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "web:2@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "Registry.Example.com/web",
        ] {
            assert_eq!(reference_error(good), None, "{good}");
        }
        let lowercase = Some("invalid reference format: repository name must be lowercase".into());
        assert_eq!(reference_error("UPPER/Case"), lowercase);
        assert_eq!(reference_error("shoal-test/BusyBox:a"), lowercase);
        for bad in [
            "",
            "web:",
            "web:-x",
            "web::1",
            "/web",
            "web/",
            "a//b",
            "web:tag with",
            "-web",
            "web@sha256:abc",
        ] {
            assert!(reference_error(bad).is_some(), "{bad:?}");
        }
        assert_eq!(
            reference_error("web@sha256:xyz"),
            Some("invalid reference format: invalid digest".into())
        );
    }
}
