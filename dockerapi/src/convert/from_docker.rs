//! Docker's specs as Shoal's. What Shoal cannot do is refused with 400 naming the field,
//! never dropped: a spec that asks for a DNS server or a generic resource would otherwise
//! run without it and nobody would know.

use shoal_proto as pb;

use super::enums;
use crate::error::{ApiError, ApiResult};
use crate::model::*;

const MS: i64 = 1_000_000;

fn ms(ns: i64) -> i64 {
    ns / MS
}

pub fn service_spec(spec: ServiceSpec) -> ApiResult<pb::ServiceSpec> {
    let ServiceSpec {
        name,
        labels,
        task_template,
        mode,
        update_config: update,
        rollback_config: rollback,
        endpoint_spec,
    } = spec;
    let force_update = task_template.force_update;
    let task = task_spec(task_template)?;
    let (mode, replicas, max_concurrent) = service_mode(mode)?;
    let endpoint = endpoint_spec.map(endpoint).transpose()?;
    Ok(pb::ServiceSpec {
        name,
        labels: labels.into_iter().collect(),
        task: Some(task),
        mode: mode as i32,
        replicas,
        update: update.map(update_config).transpose()?,
        rollback: rollback.map(update_config).transpose()?,
        force_update,
        max_concurrent,
        endpoint,
        depends_on: Vec::new(),
    })
}

fn service_mode(mode: ServiceMode) -> ApiResult<(pb::ServiceMode, u64, u64)> {
    let given = [
        mode.replicated.is_some(),
        mode.global.is_some(),
        mode.replicated_job.is_some(),
        mode.global_job.is_some(),
    ]
    .iter()
    .filter(|set| **set)
    .count();
    if given > 1 {
        return Err(ApiError::bad_request(
            "invalid Mode: give only one of Replicated, Global, ReplicatedJob or GlobalJob",
        ));
    }
    Ok(if mode.global.is_some() {
        (pb::ServiceMode::Global, 0, 0)
    } else if let Some(job) = mode.replicated_job {
        let total = job.total_completions.unwrap_or(1);
        (
            pb::ServiceMode::ReplicatedJob,
            total,
            job.max_concurrent.unwrap_or(1),
        )
    } else if mode.global_job.is_some() {
        (pb::ServiceMode::GlobalJob, 0, 0)
    } else {
        let replicas = mode.replicated.and_then(|r| r.replicas).unwrap_or(1);
        (pb::ServiceMode::Replicated, replicas, 0)
    })
}

fn update_config(config: UpdateConfig) -> ApiResult<pb::UpdateConfig> {
    if !(0.0..=1.0).contains(&config.max_failure_ratio) {
        return Err(ApiError::bad_request(format!(
            "invalid UpdateConfig.MaxFailureRatio {}: give a share between 0 and 1",
            config.max_failure_ratio
        )));
    }
    Ok(pb::UpdateConfig {
        parallelism: Some(config.parallelism),
        delay_ms: ms(config.delay),
        order: enums::parse_order(&config.order)? as i32,
        failure_action: enums::parse_failure_action(&config.failure_action)? as i32,
        monitor_ms: (config.monitor != 0).then(|| ms(config.monitor)),
        max_failure_ratio: config.max_failure_ratio,
    })
}

fn endpoint(spec: EndpointSpec) -> ApiResult<pb::EndpointSpec> {
    Ok(pb::EndpointSpec {
        mode: enums::parse_endpoint_mode(&spec.mode)? as i32,
        ports: spec
            .ports
            .into_iter()
            .map(port)
            .collect::<ApiResult<Vec<_>>>()?,
    })
}

fn port(port: PortConfig) -> ApiResult<pb::PortConfig> {
    if port.target_port == 0 || port.target_port > 65535 || port.published_port > 65535 {
        return Err(ApiError::bad_request(format!(
            "invalid port {}:{}: ports are 1-65535 (a published port of 0 picks a free one)",
            port.published_port, port.target_port
        )));
    }
    Ok(pb::PortConfig {
        protocol: enums::parse_protocol(&port.protocol)? as i32,
        target_port: port.target_port,
        published_port: port.published_port,
        publish_mode: enums::parse_publish_mode(&port.publish_mode)? as i32,
        host_ip: String::new(),
    })
}

/// Whether a field Docker sends says nothing: absent, null, false, 0, "", [], or an object
/// of such (the CLI sends `"Privileges": {"CredentialSpec": null, "SELinuxContext": null}`).
fn says_nothing(value: &Option<serde_json::Value>) -> bool {
    fn empty(v: &serde_json::Value) -> bool {
        use serde_json::Value::*;
        match v {
            Null => true,
            Bool(b) => !b,
            Number(n) => n.as_f64() == Some(0.0),
            String(s) => s.is_empty(),
            Array(a) => a.is_empty(),
            Object(o) => o.values().all(empty),
        }
    }
    value.as_ref().is_none_or(empty)
}

/// A field Shoal does not run, refused unless it says nothing: `where_` names it as the
/// spec does.
fn unsupported(value: &Option<serde_json::Value>, where_: &str, instead: &str) -> ApiResult<()> {
    if says_nothing(value) {
        return Ok(());
    }
    Err(ApiError::bad_request(format!(
        "{where_} is not supported by Shoal: remove it{instead}"
    )))
}

/// Placement.Platforms: Shoal's nodes run Linux, so a list without Linux can never be
/// placed; the architecture is not checked (a `node.platform.arch` constraint is).
fn platforms(value: &Option<serde_json::Value>) -> ApiResult<()> {
    let Some(list) = value.as_ref().and_then(|v| v.as_array()) else {
        return Ok(());
    };
    let linux = list.iter().any(|p| {
        let os = p
            .as_object()
            .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case("os")))
            .and_then(|(_, v)| v.as_str())
            .unwrap_or("");
        os.is_empty() || os.eq_ignore_ascii_case("linux")
    });
    if list.is_empty() || linux {
        return Ok(());
    }
    Err(ApiError::bad_request(
        "TaskTemplate.Placement.Platforms names no linux platform: Shoal's nodes run Linux",
    ))
}

fn resources(r: Option<Resources>) -> Option<pb::Resources> {
    r.filter(|r| r.nano_cpus != 0 || r.memory_bytes != 0)
        .map(|r| pb::Resources {
            nano_cpus: r.nano_cpus,
            memory_bytes: r.memory_bytes,
        })
}

pub fn task_spec(spec: TaskSpec) -> ApiResult<pb::TaskSpec> {
    if !matches!(spec.runtime.as_str(), "" | "container") {
        return Err(ApiError::bad_request(format!(
            "invalid TaskTemplate.Runtime {:?}: Shoal runs containers only (\"container\")",
            spec.runtime
        )));
    }
    let container = spec.container_spec.ok_or_else(|| {
        ApiError::bad_request(
            "TaskTemplate.ContainerSpec is missing: a service needs a container spec with an Image",
        )
    })?;
    let resources_given = spec.resources.unwrap_or_default();
    for (given, which) in [
        (&resources_given.limits, "Limits"),
        (&resources_given.reservations, "Reservations"),
    ] {
        if let Some(r) = given {
            unsupported(
                &r.generic_resources,
                &format!("TaskTemplate.Resources.{which}.GenericResources"),
                " (Shoal schedules by CPU and memory, and by node labels: use a constraint)",
            )?;
        }
    }
    let restart = spec.restart_policy.unwrap_or_default();
    let placement = spec.placement.unwrap_or_default();
    platforms(&placement.platforms)?;
    Ok(pb::TaskSpec {
        container: Some(container_spec(container)?),
        limits: resources(resources_given.limits),
        reservations: resources(resources_given.reservations),
        restart: Some(pb::RestartPolicy {
            condition: enums::parse_restart_condition(&restart.condition)? as i32,
            delay_ms: restart.delay.map(ms),
            max_attempts: restart.max_attempts.unwrap_or(0),
            window_ms: restart.window.map_or(0, ms),
        }),
        placement: Some(pb::Placement {
            constraints: placement.constraints,
            max_replicas: placement.max_replicas,
            spread: placement
                .preferences
                .into_iter()
                .filter_map(|p| p.spread.map(|s| s.spread_descriptor))
                .collect(),
        }),
        networks: spec
            .networks
            .into_iter()
            .map(|n| pb::NetworkAttachmentConfig {
                target: n.target,
                aliases: n.aliases,
            })
            .collect(),
    })
}

fn file_reference(
    file: Option<FileTarget>,
    id: String,
    name: String,
    what: &str,
) -> ApiResult<pb::FileReference> {
    let file = file.unwrap_or_default();
    if id.is_empty() && name.is_empty() {
        return Err(ApiError::bad_request(format!(
            "a {what} reference names no {what}: give {}ID or {}Name",
            capitalized(what),
            capitalized(what)
        )));
    }
    let mode = if file.mode == 0 { 0o444 } else { file.mode };
    if mode > 0o7777 {
        return Err(ApiError::bad_request(format!(
            "invalid {what} file mode {mode}: give the mode in decimal (0444 is 292)"
        )));
    }
    let uid = if file.uid == "0" {
        String::new()
    } else {
        file.uid
    };
    let gid = if file.gid == "0" {
        String::new()
    } else {
        file.gid
    };
    Ok(pb::FileReference {
        id: if id.is_empty() { name.clone() } else { id },
        name,
        target: file.name,
        uid,
        gid,
        mode,
        version: 0,
    })
}

fn capitalized(what: &str) -> String {
    let mut chars = what.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

fn container_spec(c: ContainerSpec) -> ApiResult<pb::ContainerSpec> {
    if c.image.trim().is_empty() {
        return Err(ApiError::bad_request(
            "TaskTemplate.ContainerSpec.Image is empty: a service needs an image",
        ));
    }
    const SPEC: &str = "TaskTemplate.ContainerSpec";
    unsupported(&c.groups, &format!("{SPEC}.Groups"), "")?;
    unsupported(&c.privileges, &format!("{SPEC}.Privileges"), "")?;
    unsupported(&c.tty, &format!("{SPEC}.TTY"), " (tasks have no terminal)")?;
    unsupported(
        &c.open_stdin,
        &format!("{SPEC}.OpenStdin"),
        " (tasks have no stdin)",
    )?;
    unsupported(
        &c.hosts,
        &format!("{SPEC}.Hosts"),
        " (the swarm's names resolve on its networks)",
    )?;
    unsupported(
        &c.dns_config,
        &format!("{SPEC}.DNSConfig"),
        " (the swarm's resolver answers on every network)",
    )?;
    if !matches!(c.isolation.as_str(), "" | "default") {
        return Err(ApiError::bad_request(format!(
            "invalid ContainerSpec.Isolation {:?}: Linux containers have only \"default\"",
            c.isolation
        )));
    }
    let mounts = c
        .mounts
        .into_iter()
        .map(|m| {
            let kind = enums::parse_mount_type(&m.kind)?;
            let volume = m.volume_options.unwrap_or_default();
            Ok(pb::Mount {
                r#type: kind as i32,
                source: m.source,
                target: m.target,
                read_only: m.read_only,
                no_copy: volume.no_copy,
                tmpfs_size_bytes: m.tmpfs_options.map_or(0, |t| t.size_bytes),
                volume_labels: volume.labels.into_iter().collect(),
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let secrets = c
        .secrets
        .into_iter()
        .map(|s| file_reference(s.file, s.secret_id, s.secret_name, "secret"))
        .collect::<ApiResult<Vec<_>>>()?;
    let configs = c
        .configs
        .into_iter()
        .map(|s| file_reference(s.file, s.config_id, s.config_name, "config"))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(pb::ContainerSpec {
        image: c.image,
        command: c.command,
        args: c.args,
        env: c.env,
        labels: c.labels.into_iter().collect(),
        stop_signal: c.stop_signal,
        stop_grace_period_ms: c.stop_grace_period.map(ms),
        healthcheck: c.healthcheck.map(|h| pb::HealthConfig {
            test: h.test,
            interval_ms: ms(h.interval),
            timeout_ms: ms(h.timeout),
            retries: h.retries,
            start_period_ms: ms(h.start_period),
        }),
        user: c.user,
        working_dir: c.dir,
        hostname: c.hostname,
        cap_add: c.capability_add,
        cap_drop: c.capability_drop,
        sysctls: c.sysctls.into_iter().collect(),
        ulimits: c
            .ulimits
            .into_iter()
            .map(|u| pb::Ulimit {
                name: u.name,
                soft: u.soft,
                hard: u.hard,
            })
            .collect(),
        init: c.init.unwrap_or(false),
        read_only: c.read_only,
        mounts,
        secrets,
        configs,
        registry_auth: None,
        sealed_registry_auth: Vec::new(),
    })
}

/// A node spec as Shoal's; the name is not Shoal's to change (the hostname names nodes).
pub fn node_spec(spec: NodeSpec) -> ApiResult<pb::NodeSpec> {
    Ok(pb::NodeSpec {
        role: enums::parse_role(&spec.role)? as i32,
        availability: enums::parse_availability(&spec.availability)? as i32,
        labels: spec.labels.into_iter().collect(),
    })
}
