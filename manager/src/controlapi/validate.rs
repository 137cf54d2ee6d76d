//! Checks on service and node specs before they reach the store, each error saying how to
//! fix it.

use shoal_proto::{
    Availability, FailureAction, NodeRole, NodeSpec, RestartCondition, ServiceMode, ServiceSpec,
    UpdateConfig, UpdateOrder,
};

use super::ControlError;
use crate::ids::new_id;
use crate::scheduler::{constraint, spread};

const MAX_NAME: usize = 63;

/// Validate `spec` and fill in what Swarm fills in (a generated name). Returns the spec to store.
pub fn service_spec(mut spec: ServiceSpec) -> Result<ServiceSpec, ControlError> {
    let invalid = |m: String| Err(ControlError::Invalid(m));
    let mode = ServiceMode::try_from(spec.mode).map_err(|_| {
        ControlError::Invalid(format!(
            "unknown service mode {}: use replicated, global, replicated-job or global-job",
            spec.mode
        ))
    })?;
    if let Some(endpoint) = spec.endpoint.as_ref() {
        ports(&endpoint.ports)?;
    }
    let task = spec.task.get_or_insert_with(Default::default);
    let container = task.container.get_or_insert_with(Default::default);
    if container.image.trim().is_empty() {
        return invalid(
            "a service needs an image: give it as the first argument after the flags".into(),
        );
    }
    if container.image.chars().any(char::is_whitespace) {
        return invalid(format!(
            "invalid image reference {:?}: it contains whitespace",
            container.image
        ));
    }
    if let Some(why) = super::image::reference_error(&container.image) {
        return invalid(format!("{why}: {:?}", container.image));
    }
    for env in &container.env {
        if env.split('=').next().is_none_or(|k| k.is_empty()) {
            return invalid(format!(
                "invalid environment variable {env:?}: use KEY=VALUE"
            ));
        }
    }
    if !container.stop_signal.is_empty() && !valid_signal(&container.stop_signal) {
        return invalid(format!(
            "invalid stop signal {:?}: use a signal name such as SIGTERM, SIGINT or KILL, or its number",
            container.stop_signal
        ));
    }
    if container.stop_grace_period_ms.is_some_and(|ms| ms < 0) {
        return invalid("the stop grace period cannot be negative".into());
    }
    if spec.name.is_empty() {
        let base = container
            .image
            .rsplit('/')
            .next()
            .and_then(|s| s.split([':', '@']).next())
            .filter(|s| !s.is_empty())
            .unwrap_or("service");
        spec.name = format!("{}-{}", sanitize(base), &new_id()[..5]);
    }
    if !valid_name(&spec.name) {
        return invalid(format!(
            "invalid service name {:?}: use letters, digits, '-', '_' and '.', starting with a letter or digit, at most {MAX_NAME} characters",
            spec.name
        ));
    }
    for (what, r) in [("reservation", &task.reservations), ("limit", &task.limits)] {
        if let Some(r) = r {
            if r.nano_cpus < 0 || r.memory_bytes < 0 {
                return invalid(format!("a resource {what} cannot be negative"));
            }
        }
    }
    for (flag, config) in [("update", &spec.update), ("rollback", &spec.rollback)] {
        if let Some(c) = config {
            update_config(flag, c)?;
        }
    }
    if let Some(restart) = &task.restart {
        if RestartCondition::try_from(restart.condition).is_err() {
            return invalid("unknown restart condition: use any, on-failure or none".into());
        }
        if restart.delay_ms.is_some_and(|d| d < 0) || restart.window_ms < 0 {
            return invalid("restart delay and window cannot be negative".into());
        }
    }
    if let Some(placement) = &task.placement {
        constraint::parse_all(&placement.constraints)
            .map_err(|e| ControlError::Invalid(e.to_string()))?;
        spread::parse_all(&placement.spread).map_err(|e| ControlError::Invalid(e.to_string()))?;
        if placement.max_replicas > 0
            && matches!(mode, ServiceMode::Global | ServiceMode::GlobalJob)
        {
            return invalid(
                "a maximum of replicas per node can only be used with replicated mode".into(),
            );
        }
    }
    if spec.max_concurrent > 0 && mode != ServiceMode::ReplicatedJob {
        return invalid("--max-concurrent can only be used with replicated-job mode".into());
    }
    if matches!(mode, ServiceMode::Global | ServiceMode::GlobalJob) {
        spec.replicas = 0;
    }
    Ok(spec)
}

/// Validate a node spec from `UpdateNode`: known role and availability, labels with keys.
pub fn node_spec(spec: NodeSpec) -> Result<NodeSpec, ControlError> {
    let invalid = |m: String| Err(ControlError::Invalid(m));
    if NodeRole::try_from(spec.role).is_err() {
        return invalid(format!(
            "unknown node role {}: use manager or worker",
            spec.role
        ));
    }
    if Availability::try_from(spec.availability).is_err() {
        return invalid(format!(
            "unknown availability {}: use active, pause or drain",
            spec.availability
        ));
    }
    if let Some((key, value)) = spec.labels.iter().find(|(k, _)| k.trim().is_empty()) {
        return invalid(format!(
            "invalid node label {key:?}={value:?}: a label needs a key; use KEY=VALUE"
        ));
    }
    Ok(spec)
}

/// An update or rollback policy; `flag` is "update" or "rollback", as the CLI's flags say.
fn update_config(flag: &str, c: &UpdateConfig) -> Result<(), ControlError> {
    let invalid = |m: String| Err(ControlError::Invalid(m));
    if c.delay_ms < 0 {
        return invalid(format!("--{flag}-delay cannot be negative"));
    }
    if c.monitor_ms.is_some_and(|ms| ms < 0) {
        return invalid(format!("--{flag}-monitor cannot be negative"));
    }
    if !(0.0..=1.0).contains(&c.max_failure_ratio) {
        return invalid(format!(
            "--{flag}-max-failure-ratio must be between 0 and 1"
        ));
    }
    if UpdateOrder::try_from(c.order).is_err() {
        return invalid(format!(
            "unknown --{flag}-order: use stop-first or start-first"
        ));
    }
    if FailureAction::try_from(c.failure_action).is_err() {
        return invalid(format!(
            "unknown --{flag}-failure-action: use pause, continue or rollback"
        ));
    }
    if flag == "rollback" && c.failure_action == FailureAction::Rollback as i32 {
        return invalid(
            "--rollback-failure-action cannot be rollback: use pause or continue".into(),
        );
    }
    Ok(())
}

pub(super) fn valid_name(name: &str) -> bool {
    name.len() <= MAX_NAME
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn sanitize(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    if cleaned.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        cleaned
    } else {
        format!("s{cleaned}")
    }
}

fn valid_signal(s: &str) -> bool {
    if s.parse::<u8>().is_ok_and(|n| (1..=64).contains(&n)) {
        return true;
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    const NAMES: &[&str] = &[
        "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2",
        "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG",
        "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
    ];
    NAMES.contains(&name) || name.starts_with("RTMIN") || name.starts_with("RTMAX")
}

/// Published ports: real port numbers, a host address only in host mode and one that is
/// an address, each binding once. Whether another service holds a port is the store's
/// question ([`super::ports`]).
pub fn ports(ports: &[shoal_proto::PortConfig]) -> Result<(), ControlError> {
    let mut seen = std::collections::HashSet::new();
    for p in ports {
        let protocol = p.protocol_name();
        if p.target_port == 0 || p.target_port > 65_535 {
            return Err(ControlError::Invalid(format!(
                "invalid target port {}: give the container's port, 1 to 65535",
                p.target_port
            )));
        }
        if p.published_port > 65_535 {
            return Err(ControlError::Invalid(format!(
                "invalid published port {}: give a port from 1 to 65535",
                p.published_port
            )));
        }
        if !p.host_ip.is_empty() && p.is_ingress() {
            return Err(ControlError::Invalid(format!(
                "port {}:{}/{protocol} names a host address ({}), which only host mode can bind: add mode=host, or drop the address to publish on every node through the routing mesh",
                p.published_port, p.target_port, p.host_ip
            )));
        }
        if !p.host_ip.is_empty() && p.host_ip.parse::<std::net::Ipv4Addr>().is_err() {
            return Err(ControlError::Invalid(format!(
                "invalid host address {:?} for port {}: give an IPv4 address of the node, e.g. published=10.0.0.5:{}",
                p.host_ip, p.published_port, p.published_port
            )));
        }
        let key = if p.is_ingress() {
            // The mesh binds every address.
            (String::new(), p.published_port, p.protocol)
        } else {
            (p.host_ip.clone(), p.published_port, p.protocol)
        };
        if p.published_port != 0 && !seen.insert(key) {
            return Err(ControlError::Invalid(format!(
                "port {}/{protocol} is published twice: publish each port once",
                p.published_port
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::{ContainerSpec, Placement, TaskSpec};

    fn spec(name: &str, image: &str) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            task: Some(TaskSpec {
                container: Some(ContainerSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            replicas: 1,
            ..Default::default()
        }
    }

    #[test]
    fn good_spec_passes_and_a_name_is_generated() {
        assert!(service_spec(spec("web", "shoal-test/busybox:a")).is_ok());
        let named = service_spec(spec("", "shoal-test/busybox:a")).expect("valid");
        assert!(named.name.starts_with("busybox-"), "{}", named.name);
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        let cases: Vec<(ServiceSpec, &str)> = vec![
            (spec("web", ""), "needs an image"),
            (spec("we b", "img"), "invalid service name"),
            (spec("-web", "img"), "invalid service name"),
            (
                {
                    let mut s = spec("web", "img");
                    s.task.as_mut().expect("task").placement = Some(Placement {
                        constraints: vec!["node.role=manager".into()],
                        ..Default::default()
                    });
                    s
                },
                "invalid constraint",
            ),
            (
                {
                    let mut s = spec("web", "img");
                    s.task.as_mut().expect("task").placement = Some(Placement {
                        spread: vec!["spread=node.labels.zone".into()],
                        ..Default::default()
                    });
                    s
                },
                "invalid spread preference \"spread=node.labels.zone\": use node.labels.NAME or engine.labels.NAME",
            ),
            (
                {
                    let mut s = spec("web", "img");
                    s.mode = ServiceMode::Global as i32;
                    s.task.as_mut().expect("task").placement = Some(Placement {
                        max_replicas: 2,
                        ..Default::default()
                    });
                    s
                },
                "a maximum of replicas per node can only be used with replicated mode",
            ),
            (
                {
                    let mut s = spec("web", "img");
                    s.task
                        .as_mut()
                        .and_then(|t| t.container.as_mut())
                        .expect("c")
                        .stop_signal = "SIGNOPE".into();
                    s
                },
                "invalid stop signal",
            ),
        ];
        for (s, want) in cases {
            let err = service_spec(s).expect_err(want).to_string();
            assert!(err.contains(want), "{err:?} should contain {want:?}");
        }
    }

    #[test]
    fn placement_preferences_and_maximum_pass() {
        let mut s = spec("web", "img");
        s.task.as_mut().expect("task").placement = Some(Placement {
            max_replicas: 1,
            spread: vec!["node.labels.zone".into(), "engine.labels.rack".into()],
            ..Default::default()
        });
        assert!(service_spec(s).is_ok());
    }

    #[test]
    fn node_specs() {
        assert!(node_spec(NodeSpec::default()).is_ok());
        let labelled = NodeSpec {
            labels: [("".to_string(), "a".to_string())].into(),
            ..Default::default()
        };
        assert_eq!(
            node_spec(labelled)
                .map_err(|e| e.to_string())
                .err()
                .as_deref(),
            Some(r#"invalid node label ""="a": a label needs a key; use KEY=VALUE"#)
        );
    }

    #[test]
    fn signals() {
        for ok in ["SIGTERM", "TERM", "KILL", "sigint", "9", "SIGRTMIN+3"] {
            assert!(valid_signal(ok), "{ok}");
        }
        for bad in ["", "SIGNOPE", "0", "99"] {
            assert!(!valid_signal(bad), "{bad}");
        }
    }

    #[test]
    fn published_ports() {
        use shoal_proto::{PortConfig, PublishMode};
        let host = |published: u32, target: u32, ip: &str| PortConfig {
            published_port: published,
            target_port: target,
            publish_mode: PublishMode::Host as i32,
            host_ip: ip.into(),
            ..Default::default()
        };
        assert!(ports(&[
            host(8080, 80, ""),
            host(8081, 80, "10.0.0.5"),
            host(0, 81, "")
        ])
        .is_ok());
        let mesh = |published: u32, target: u32| PortConfig {
            published_port: published,
            target_port: target,
            ..Default::default()
        };
        assert!(ports(&[mesh(8080, 80), mesh(0, 81)]).is_ok());
        let err = |p: &[PortConfig]| ports(p).expect_err("refused").to_string();
        assert!(err(&[PortConfig {
            host_ip: "10.0.0.5".into(),
            ..mesh(8080, 80)
        }])
        .contains("only host mode can bind"));
        assert!(err(&[mesh(8080, 80), mesh(8080, 81)]).contains("published twice"));
        assert!(err(&[host(8080, 0, "")]).contains("invalid target port 0"));
        assert!(err(&[host(8080, 80, "nope")]).contains("invalid host address"));
        assert!(err(&[host(8080, 80, ""), host(8080, 81, "")]).contains("published twice"));
    }
}
