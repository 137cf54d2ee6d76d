//! Which keys a compose file may hold, and what Shoal does with them: applied, known to
//! compose but not applied by Shoal (a warning naming the key and its line), or unknown
//! (an error with its line, column and the nearest known key as a hint). Checked on the
//! located tree, before the typed model reads it.

use crate::resolve::Place;
use crate::yaml::{Key, Node, Value};

/// Top-level keys.
const TOP: &[&str] = &[
    "version", "name", "services", "networks", "volumes", "secrets", "configs",
];
/// Top-level keys of the Compose Specification Shoal does not apply.
const TOP_IGNORED: &[&str] = &["include", "models"];

/// Service keys Shoal applies.
const SERVICE: &[&str] = &[
    "image",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "deploy",
    "healthcheck",
    "labels",
    "networks",
    "ports",
    "volumes",
    "secrets",
    "configs",
    "stop_signal",
    "stop_grace_period",
    "user",
    "working_dir",
    "hostname",
    "cap_add",
    "cap_drop",
    "sysctls",
    "ulimits",
    "tmpfs",
    "init",
    "read_only",
    "depends_on",
    "profiles",
    "extends",
];
/// Service keys of the Compose Specification Shoal does not apply (as `docker stack
/// deploy` ignores most of them).
const SERVICE_IGNORED: &[&str] = &[
    "annotations",
    "attach",
    "blkio_config",
    "build",
    "cgroup",
    "cgroup_parent",
    "container_name",
    "cpu_count",
    "cpu_percent",
    "cpu_period",
    "cpu_quota",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "cpu_shares",
    "cpus",
    "cpuset",
    "credential_spec",
    "develop",
    "device_cgroup_rules",
    "devices",
    "dns",
    "dns_opt",
    "dns_search",
    "domainname",
    "driver_opts",
    "expose",
    "external_links",
    "extra_hosts",
    "gpus",
    "group_add",
    "ipc",
    "isolation",
    "label_file",
    "links",
    "logging",
    "mac_address",
    "mem_limit",
    "mem_reservation",
    "mem_swappiness",
    "memswap_limit",
    "models",
    "network_mode",
    "oom_kill_disable",
    "oom_score_adj",
    "pid",
    "pids_limit",
    "platform",
    "post_start",
    "pre_stop",
    "privileged",
    "provider",
    "pull_policy",
    "restart",
    "runtime",
    "scale",
    "security_opt",
    "shm_size",
    "stdin_open",
    "storage_opt",
    "tty",
    "use_api_socket",
    "userns_mode",
    "uts",
    "volumes_from",
];
/// `deploy` keys (all applied).
const DEPLOY: &[&str] = &[
    "mode",
    "replicas",
    "endpoint_mode",
    "labels",
    "placement",
    "resources",
    "restart_policy",
    "update_config",
    "rollback_config",
];

/// A key Shoal reads past.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    pub place: Place,
    /// "services.web.build".
    pub path: String,
}

impl std::fmt::Display for Ignored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} is not applied by Shoal (ignored)",
            self.place, self.path
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{place}: unknown key {path}{hint}")]
pub struct UnknownKey {
    pub place: Place,
    pub path: String,
    /// ": did you mean image?" or empty.
    pub hint: String,
}

/// Check the keys of a whole compose document (`doc`, from `file`): the keys Shoal does
/// not apply, or the first unknown key.
pub fn check_keys(doc: &Node, file: &str) -> Result<Vec<Ignored>, UnknownKey> {
    let mut ignored = Vec::new();
    let Value::Map(top) = &doc.value else {
        return Ok(ignored);
    };
    for (key, node) in top {
        level(file, "", key, TOP, TOP_IGNORED, &mut ignored)?;
        if key.name != "services" {
            continue;
        }
        let Value::Map(services) = &node.value else {
            continue;
        };
        for (service, body) in services {
            let Value::Map(entries) = &body.value else {
                continue;
            };
            let prefix = format!("services.{}.", service.name);
            for (key, value) in entries {
                level(file, &prefix, key, SERVICE, SERVICE_IGNORED, &mut ignored)?;
                if key.name == "deploy" {
                    if let Value::Map(deploy) = &value.value {
                        let prefix = format!("{prefix}deploy.");
                        for (key, _) in deploy {
                            level(file, &prefix, key, DEPLOY, &[], &mut ignored)?;
                        }
                    }
                }
            }
        }
    }
    Ok(ignored)
}

/// One key at one level: applied, ignored (noted) or unknown (the error).
fn level(
    file: &str,
    prefix: &str,
    key: &Key,
    applied: &[&str],
    known: &[&str],
    ignored: &mut Vec<Ignored>,
) -> Result<(), UnknownKey> {
    let name = key.name.as_str();
    let place = || Place {
        file: file.to_string(),
        pos: key.pos,
    };
    if name.starts_with("x-") || applied.contains(&name) {
        return Ok(());
    }
    if known.contains(&name) {
        ignored.push(Ignored {
            place: place(),
            path: format!("{prefix}{name}"),
        });
        return Ok(());
    }
    let nearest = applied
        .iter()
        .chain(known)
        .map(|k| (distance(name, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min();
    Err(UnknownKey {
        place: place(),
        path: format!("{prefix}{name}"),
        hint: nearest.map_or_else(String::new, |(_, k)| format!(": did you mean {k}?")),
    })
}

/// Levenshtein distance.
pub(crate) fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse;

    #[test]
    fn ignored_keys_are_noted_and_unknown_ones_refused_with_a_hint() {
        let doc = parse(
            "version: '3.8'\nx-common: &c {}\nservices:\n  web:\n    image: nginx\n    \
             build: .\n    container_name: web\n    deploy:\n      replicas: 2\n",
        )
        .expect("parses");
        let ignored = check_keys(&doc, "stack.yml").expect("no unknown key");
        let text: Vec<String> = ignored.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "stack.yml:6:5: services.web.build is not applied by Shoal (ignored)",
                "stack.yml:7:5: services.web.container_name is not applied by Shoal (ignored)"
            ]
        );
        let doc = parse("services:\n  web:\n    imag: nginx\n").expect("parses");
        assert_eq!(
            check_keys(&doc, "stack.yml")
                .expect_err("unknown")
                .to_string(),
            "stack.yml:3:5: unknown key services.web.imag: did you mean image?"
        );
        let doc = parse("services:\n  web:\n    deploy:\n      replica: 2\n").expect("parses");
        assert_eq!(
            check_keys(&doc, "stack.yml")
                .expect_err("unknown")
                .to_string(),
            "stack.yml:4:7: unknown key services.web.deploy.replica: did you mean replicas?"
        );
        let doc = parse("servics: {}\n").expect("parses");
        assert!(check_keys(&doc, "s.yml")
            .expect_err("unknown")
            .to_string()
            .ends_with("did you mean services?"));
    }

    #[test]
    fn distance_counts_edits() {
        assert_eq!(distance("imag", "image"), 1);
        assert_eq!(distance("replica", "replicas"), 1);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
