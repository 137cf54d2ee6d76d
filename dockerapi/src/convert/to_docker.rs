//! Shoal's objects as Docker writes them.

use std::collections::HashMap;

use shoal_proto as pb;

use super::enums;
use crate::clock::rfc3339_ms;
use crate::model::*;

const MS: i64 = 1_000_000;
/// 0444, the mode Docker gives secret and config files by default.
const DEFAULT_FILE_MODE: u32 = 0o444;

fn meta_times(meta: &Option<pb::Meta>) -> (Version, String, String) {
    let meta = (*meta).unwrap_or_default();
    (
        Version {
            index: meta.version,
        },
        rfc3339_ms(meta.created_at_ms),
        rfc3339_ms(meta.updated_at_ms),
    )
}

pub fn node(node: &pb::Node) -> Node {
    let (version, created_at, updated_at) = meta_times(&node.meta);
    let spec = node.spec.clone().unwrap_or_default();
    let description = node.description.clone().unwrap_or_default();
    let status = node.status.clone().unwrap_or_default();
    let platform = description.platform.unwrap_or_default();
    let resources = description.resources.unwrap_or_default();
    let ready = status.state() == pb::NodeState::Ready;
    Node {
        id: node.id.clone(),
        version,
        created_at,
        updated_at,
        spec: NodeSpec {
            name: String::new(),
            labels: spec.labels.clone().into_iter().collect(),
            role: enums::role(spec.role()).into(),
            availability: enums::availability(spec.availability()).into(),
        },
        description: NodeDescription {
            hostname: description.hostname,
            platform: Platform {
                architecture: platform.architecture,
                os: platform.os,
            },
            resources: Resources {
                nano_cpus: resources.nano_cpus,
                memory_bytes: resources.memory_bytes,
                ..Default::default()
            },
            engine: Engine {
                engine_version: description.engine_version,
                labels: description.engine_labels.into_iter().collect(),
                plugins: ["overlay", "bridge", "host", "null"]
                    .iter()
                    .map(|name| Plugin {
                        kind: "Network".into(),
                        name: (*name).into(),
                    })
                    .collect(),
            },
            tls_info: TlsInfo::default(),
        },
        status: NodeStatus {
            state: enums::node_state(status.state()).into(),
            message: status.message,
            addr: pb::names::host_of(&status.addr).to_string(),
        },
        manager_status: node.manager_status.as_ref().map(|m| ManagerStatus {
            leader: m.leader,
            reachability: if ready { "reachable" } else { "unreachable" }.into(),
            addr: m.addr.clone(),
        }),
    }
}

/// Running, desired and completed tasks, for `ServiceStatus`.
#[derive(Clone, Copy, Default, Debug)]
pub struct Counts {
    pub running: u64,
    pub desired: u64,
    pub completed: u64,
}

pub fn service(service: &pb::Service, counts: Option<Counts>) -> Service {
    let (mut version, created_at, updated_at) = meta_times(&service.meta);
    version.index = service.meta.as_ref().map_or(0, |m| m.version);
    let spec = service_spec(&service.spec.clone().unwrap_or_default());
    let previous_spec = service
        .previous_spec
        .as_ref()
        .filter(|_| service.previous_spec_version != 0)
        .map(service_spec);
    let endpoint_spec = spec.endpoint_spec.clone().unwrap_or_default();
    let job = matches!(
        service.spec.as_ref().map(|s| s.mode()),
        Some(pb::ServiceMode::ReplicatedJob | pb::ServiceMode::GlobalJob)
    );
    Service {
        id: service.id.clone(),
        version,
        created_at,
        updated_at,
        endpoint: Endpoint {
            ports: endpoint_spec.ports.clone(),
            spec: endpoint_spec,
            virtual_ips: service
                .vips
                .iter()
                .map(|vip| EndpointVirtualIp {
                    network_id: vip.network_id.clone(),
                    addr: vip.addr.clone(),
                })
                .collect(),
        },
        spec,
        previous_spec,
        update_status: service.update_status.as_ref().and_then(|u| {
            Some(UpdateStatus {
                state: enums::update_state(u.state())?.into(),
                started_at: (u.started_at_ms != 0).then(|| rfc3339_ms(u.started_at_ms)),
                completed_at: (u.completed_at_ms != 0).then(|| rfc3339_ms(u.completed_at_ms)),
                message: u.message.clone(),
            })
        }),
        service_status: counts.map(|c| ServiceStatus {
            running_tasks: c.running,
            desired_tasks: c.desired,
            completed_tasks: c.completed,
        }),
        job_status: job.then(|| {
            let status = service.job_status.unwrap_or_default();
            JobStatus {
                job_iteration: Version {
                    index: status.iteration,
                },
                last_execution: (status.started_at_ms != 0)
                    .then(|| rfc3339_ms(status.started_at_ms)),
            }
        }),
    }
}

pub fn service_spec(spec: &pb::ServiceSpec) -> ServiceSpec {
    let mode = match spec.mode() {
        pb::ServiceMode::Replicated => ServiceMode {
            replicated: Some(ReplicatedService {
                replicas: Some(spec.replicas),
            }),
            ..Default::default()
        },
        pb::ServiceMode::Global => ServiceMode {
            global: Some(Empty {}),
            ..Default::default()
        },
        pb::ServiceMode::ReplicatedJob => ServiceMode {
            replicated_job: Some(ReplicatedJob {
                max_concurrent: Some(if spec.max_concurrent == 0 {
                    spec.replicas
                } else {
                    spec.max_concurrent
                }),
                total_completions: Some(spec.replicas),
            }),
            ..Default::default()
        },
        pb::ServiceMode::GlobalJob => ServiceMode {
            global_job: Some(Empty {}),
            ..Default::default()
        },
    };
    let mut task_template = task_spec(&spec.task.clone().unwrap_or_default());
    task_template.force_update = spec.force_update;
    let endpoint = spec.endpoint.clone().unwrap_or_default();
    ServiceSpec {
        name: spec.name.clone(),
        labels: spec.labels.clone().into_iter().collect(),
        task_template,
        mode,
        update_config: spec.update.as_ref().map(update_config),
        rollback_config: spec.rollback.as_ref().map(update_config),
        endpoint_spec: Some(EndpointSpec {
            mode: enums::endpoint_mode(endpoint.mode()).into(),
            ports: endpoint.ports.iter().map(port).collect(),
        }),
    }
}

fn update_config(config: &pb::UpdateConfig) -> UpdateConfig {
    UpdateConfig {
        parallelism: config.parallelism.unwrap_or(1),
        delay: config.delay_ms * MS,
        failure_action: enums::failure_action(config.failure_action()).into(),
        monitor: config.monitor_ms.unwrap_or(5_000) * MS,
        max_failure_ratio: config.max_failure_ratio,
        order: enums::order(config.order()).into(),
    }
}

pub fn port(port: &pb::PortConfig) -> PortConfig {
    PortConfig {
        name: String::new(),
        protocol: enums::protocol(port.protocol()).into(),
        target_port: port.target_port,
        published_port: port.published_port,
        publish_mode: enums::publish_mode(port.publish_mode()).into(),
    }
}

fn resources(r: &Option<pb::Resources>) -> Option<Resources> {
    Some(r.as_ref().map_or_else(Resources::default, |r| Resources {
        nano_cpus: r.nano_cpus,
        memory_bytes: r.memory_bytes,
        ..Default::default()
    }))
}

pub fn task_spec(spec: &pb::TaskSpec) -> TaskSpec {
    let container = spec.container.clone().unwrap_or_default();
    let restart = spec.restart.unwrap_or_default();
    let placement = spec.placement.clone().unwrap_or_default();
    TaskSpec {
        container_spec: Some(container_spec(&container)),
        resources: Some(ResourceRequirements {
            limits: resources(&spec.limits),
            reservations: resources(&spec.reservations),
        }),
        restart_policy: Some(RestartPolicy {
            condition: enums::restart_condition(restart.condition()).into(),
            delay: restart.delay_ms.map(|ms| ms * MS),
            max_attempts: Some(restart.max_attempts),
            window: (restart.window_ms != 0).then_some(restart.window_ms * MS),
        }),
        placement: Some(Placement {
            constraints: placement.constraints,
            preferences: placement
                .spread
                .into_iter()
                .map(|descriptor| PlacementPreference {
                    spread: Some(SpreadOver {
                        spread_descriptor: descriptor,
                    }),
                })
                .collect(),
            max_replicas: placement.max_replicas,
            ..Default::default()
        }),
        networks: spec
            .networks
            .iter()
            .map(|n| NetworkAttachmentConfig {
                target: n.target.clone(),
                aliases: n.aliases.clone(),
            })
            .collect(),
        force_update: 0,
        runtime: "container".into(),
    }
}

fn file_target(file: &pb::FileReference) -> FileTarget {
    FileTarget {
        name: file.target.clone(),
        uid: if file.uid.is_empty() {
            "0".into()
        } else {
            file.uid.clone()
        },
        gid: if file.gid.is_empty() {
            "0".into()
        } else {
            file.gid.clone()
        },
        mode: if file.mode == 0 {
            DEFAULT_FILE_MODE
        } else {
            file.mode
        },
    }
}

fn container_spec(c: &pb::ContainerSpec) -> ContainerSpec {
    ContainerSpec {
        image: c.image.clone(),
        labels: c.labels.clone().into_iter().collect(),
        command: c.command.clone(),
        args: c.args.clone(),
        hostname: c.hostname.clone(),
        env: c.env.clone(),
        dir: c.working_dir.clone(),
        user: c.user.clone(),
        init: c.init.then_some(true),
        read_only: c.read_only,
        mounts: c
            .mounts
            .iter()
            .map(|m| Mount {
                kind: enums::mount_type(m.r#type()).into(),
                source: m.source.clone(),
                target: m.target.clone(),
                read_only: m.read_only,
                volume_options: (m.r#type() == pb::MountType::Volume
                    && (m.no_copy || !m.volume_labels.is_empty()))
                .then(|| VolumeOptions {
                    no_copy: m.no_copy,
                    labels: m.volume_labels.clone().into_iter().collect(),
                }),
                tmpfs_options: (m.r#type() == pb::MountType::Tmpfs && m.tmpfs_size_bytes != 0)
                    .then_some(TmpfsOptions {
                        size_bytes: m.tmpfs_size_bytes,
                    }),
            })
            .collect(),
        stop_signal: c.stop_signal.clone(),
        stop_grace_period: c.stop_grace_period_ms.map(|ms| ms * MS),
        healthcheck: c.healthcheck.as_ref().map(|h| HealthConfig {
            test: h.test.clone(),
            interval: h.interval_ms * MS,
            timeout: h.timeout_ms * MS,
            start_period: h.start_period_ms * MS,
            retries: h.retries,
        }),
        secrets: c
            .secrets
            .iter()
            .map(|s| SecretReference {
                file: Some(file_target(s)),
                secret_id: s.id.clone(),
                secret_name: s.name.clone(),
            })
            .collect(),
        configs: c
            .configs
            .iter()
            .map(|s| ConfigReference {
                file: Some(file_target(s)),
                config_id: s.id.clone(),
                config_name: s.name.clone(),
            })
            .collect(),
        isolation: "default".into(),
        sysctls: c.sysctls.clone().into_iter().collect(),
        capability_add: c.cap_add.clone(),
        capability_drop: c.cap_drop.clone(),
        ulimits: c
            .ulimits
            .iter()
            .map(|u| Ulimit {
                name: u.name.clone(),
                soft: u.soft,
                hard: u.hard,
            })
            .collect(),
        ..Default::default()
    }
}

pub fn task(task: &pb::Task, networks: &HashMap<String, pb::Network>) -> Task {
    let (version, created_at, updated_at) = meta_times(&task.meta);
    let status = task.status.clone().unwrap_or_default();
    let mut spec = task_spec(&task.spec.clone().unwrap_or_default());
    // Docker's tasks carry the service's force-update counter in their spec.
    spec.force_update = 0;
    Task {
        id: task.id.clone(),
        version,
        created_at,
        updated_at,
        labels: Default::default(),
        spec,
        service_id: task.service_id.clone(),
        slot: task.slot,
        node_id: task.node_id.clone(),
        status: TaskStatus {
            timestamp: rfc3339_ms(status.timestamp_ms),
            state: task.state().docker_name().into(),
            message: status.message.clone(),
            err: status.err.clone(),
            container_status: (!status.container_id.is_empty() || status.exit_code != 0).then(
                || ContainerStatus {
                    container_id: status.container_id.clone(),
                    pid: 0,
                    exit_code: i64::from(status.exit_code),
                },
            ),
            port_status: PortStatus {
                ports: if task.state() == pb::TaskState::Running {
                    task.ports
                        .iter()
                        .filter(|p| p.publish_mode() == pb::PublishMode::Host)
                        .map(port)
                        .collect()
                } else {
                    Vec::new()
                },
            },
        },
        desired_state: task.desired().docker_name().into(),
        networks_attachments: task
            .networks
            .iter()
            .filter_map(|a| {
                let network = networks.get(&a.network_id)?;
                Some(NetworkAttachment {
                    network: swarm_network(network),
                    addresses: a.addresses.clone(),
                })
            })
            .collect(),
        job_iteration: (task.job_iteration != 0).then_some(Version {
            index: task.job_iteration,
        }),
    }
}

/// A network as `swarm.Network` (inside a task's attachments).
fn swarm_network(network: &pb::Network) -> SwarmNetwork {
    let (version, created_at, updated_at) = meta_times(&network.meta);
    let resource = self::network(network);
    SwarmNetwork {
        id: network.id.clone(),
        version,
        created_at,
        updated_at,
        spec: serde_json::json!({
            "Name": resource.name,
            "Labels": resource.labels,
            "DriverConfiguration": {"Name": resource.driver},
            "Scope": "swarm",
            "Internal": resource.internal,
            "Attachable": resource.attachable,
            "Ingress": resource.ingress,
        }),
        driver_state: serde_json::json!({"Name": resource.driver, "Options": resource.options}),
        ipam_options: serde_json::json!({"Driver": {"Name": "default"}, "Configs": resource.ipam.config}),
    }
}

pub fn network(network: &pb::Network) -> NetworkResource {
    let spec = network.spec.clone().unwrap_or_default();
    let allocation = network.allocation.clone().unwrap_or_default();
    let mut options: Labels = spec.driver_opts.clone().into_iter().collect();
    if allocation.vni != 0 {
        options.insert(
            "com.docker.network.driver.overlay.vxlanid_list".into(),
            allocation.vni.to_string(),
        );
    }
    let subnet = if allocation.subnet.is_empty() {
        spec.ipam.clone().unwrap_or_default().subnet
    } else {
        allocation.subnet.clone()
    };
    let gateway = if allocation.gateway.is_empty() {
        spec.ipam.clone().unwrap_or_default().gateway
    } else {
        allocation.gateway.clone()
    };
    let config = if subnet.is_empty() {
        Vec::new()
    } else {
        vec![IpamConfig {
            subnet,
            ip_range: String::new(),
            gateway,
        }]
    };
    NetworkResource {
        name: spec.name.clone(),
        id: network.id.clone(),
        created: rfc3339_ms(network.meta.as_ref().map_or(0, |m| m.created_at_ms)),
        scope: "swarm".into(),
        driver: if spec.driver.is_empty() {
            "overlay".into()
        } else {
            spec.driver.clone()
        },
        enable_ipv6: false,
        ipam: Ipam {
            driver: "default".into(),
            options: Labels::new(),
            config,
        },
        internal: spec.internal,
        attachable: spec.attachable,
        ingress: spec.ingress,
        config_from: ConfigFrom::default(),
        config_only: false,
        containers: Default::default(),
        options,
        labels: spec.labels.clone().into_iter().collect(),
    }
}

pub fn secret(secret: &pb::Secret) -> FileObject {
    let spec = secret.spec.clone().unwrap_or_default();
    file_object(&secret.id, &secret.meta, spec.name, spec.labels, None)
}

pub fn config(config: &pb::Config) -> FileObject {
    use base64::Engine as _;
    let spec = config.spec.clone().unwrap_or_default();
    let data = base64::engine::general_purpose::STANDARD.encode(&spec.data);
    file_object(&config.id, &config.meta, spec.name, spec.labels, Some(data))
}

/// A secret or config: the same shape; only a config's data is ever written.
fn file_object(
    id: &str,
    meta: &Option<pb::Meta>,
    name: String,
    labels: std::collections::HashMap<String, String>,
    data: Option<String>,
) -> FileObject {
    let (version, created_at, updated_at) = meta_times(meta);
    FileObject {
        id: id.to_string(),
        version,
        created_at,
        updated_at,
        spec: FileSpec {
            name,
            labels: labels.into_iter().collect(),
            data,
            driver: None,
            templating: None,
        },
    }
}
