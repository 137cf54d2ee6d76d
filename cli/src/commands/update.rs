//! `service update|rollback|restart`, and the `--update-*` / `--rollback-*` policy flags
//! that `service create` shares.

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use shoal_proto::{
    FailureAction, GetNetworkRequest, GetServiceRequest, Placement, RollbackServiceRequest,
    ServiceMode, ServiceSpec, UpdateConfig, UpdateOrder, UpdateServiceRequest, UpdateStatus,
};

use super::print;
use super::progress::{self, Op, WaitArgs};
use super::taskflags::{ResourceArgs, RestartArgs};
use crate::client::Client;
use crate::parse::{self, flag};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Order {
    StopFirst,
    StartFirst,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Action {
    Pause,
    Continue,
    Rollback,
}

/// One policy's flags, whichever prefix they were given with.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PolicyFlags {
    pub parallelism: Option<u64>,
    pub delay: Option<i64>,
    pub order: Option<Order>,
    pub failure_action: Option<Action>,
    pub monitor: Option<i64>,
    pub max_failure_ratio: Option<f32>,
}

macro_rules! policy_flags {
    ($name:ident, $prefix:literal, $verb:literal) => {
        #[derive(Clone, Debug, Default, Args)]
        pub struct $name {
            #[arg(long = concat!($prefix, "-parallelism"), id = concat!($prefix, "-parallelism"), value_name = "N",
                allow_negative_numbers = true, value_parser = flag(parse::count),
                help = concat!("Maximum number of tasks ", $verb, " at once (0 for all at once; default 1)"))]
            parallelism: Option<u64>,
            #[arg(long = concat!($prefix, "-delay"), id = concat!($prefix, "-delay"), value_name = "DURATION",
                value_parser = flag(parse::duration_ms),
                help = concat!("Delay between ", $prefix, "s of batches, e.g. 10s (default 0s)"))]
            delay: Option<i64>,
            #[arg(long = concat!($prefix, "-order"), id = concat!($prefix, "-order"), value_enum, value_name = "ORDER",
                help = concat!($prefix, " order: stop-first or start-first (default stop-first)"))]
            order: Option<Order>,
            #[arg(long = concat!($prefix, "-failure-action"), id = concat!($prefix, "-failure-action"), value_enum, value_name = "ACTION",
                help = concat!("Action on ", $prefix, " failure: pause, continue or rollback (default pause)"))]
            failure_action: Option<Action>,
            #[arg(long = concat!($prefix, "-monitor"), id = concat!($prefix, "-monitor"), value_name = "DURATION",
                value_parser = flag(parse::duration_ms),
                help = concat!("Time to watch each task after its ", $prefix, " for a failure, e.g. 5s (default 5s)"))]
            monitor: Option<i64>,
            #[arg(long = concat!($prefix, "-max-failure-ratio"), id = concat!($prefix, "-max-failure-ratio"), value_name = "RATIO",
                allow_negative_numbers = true, value_parser = flag(parse::ratio),
                help = concat!("Failure rate to tolerate during an ", $prefix, ", between 0 and 1 (default 0)"))]
            max_failure_ratio: Option<f32>,
        }

        impl $name {
            pub fn flags(&self) -> PolicyFlags {
                PolicyFlags {
                    parallelism: self.parallelism,
                    delay: self.delay,
                    order: self.order,
                    failure_action: self.failure_action,
                    monitor: self.monitor,
                    max_failure_ratio: self.max_failure_ratio,
                }
            }
        }
    };
}

policy_flags!(UpdatePolicyArgs, "update", "updated");
policy_flags!(RollbackPolicyArgs, "rollback", "rolled back");

/// `config` with the given flags applied; None when there was none and no flag is given.
/// `prefix` names the flags in messages ("update" or "rollback").
pub fn apply_policy(
    prefix: &str,
    config: Option<UpdateConfig>,
    flags: &PolicyFlags,
) -> Result<Option<UpdateConfig>> {
    if flags == &PolicyFlags::default() {
        return Ok(config);
    }
    let mut c = config.unwrap_or_default();
    if let Some(n) = flags.parallelism {
        c.parallelism = Some(n);
    }
    if let Some(ms) = flags.delay {
        c.delay_ms = ms;
    }
    if let Some(order) = flags.order {
        c.order = match order {
            Order::StopFirst => UpdateOrder::StopFirst,
            Order::StartFirst => UpdateOrder::StartFirst,
        } as i32;
    }
    if let Some(action) = flags.failure_action {
        if prefix == "rollback" && action == Action::Rollback {
            bail!("--rollback-failure-action cannot be rollback: use pause or continue");
        }
        c.failure_action = match action {
            Action::Pause => FailureAction::Pause,
            Action::Continue => FailureAction::Continue,
            Action::Rollback => FailureAction::Rollback,
        } as i32;
    }
    if let Some(ms) = flags.monitor {
        c.monitor_ms = Some(ms);
    }
    if let Some(ratio) = flags.max_failure_ratio {
        if !(0.0..=1.0).contains(&ratio) {
            bail!("--{prefix}-max-failure-ratio must be between 0 and 1");
        }
        c.max_failure_ratio = ratio;
    }
    Ok(Some(c))
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Service image tag
    #[arg(long)]
    image: Option<String>,
    /// Add or update an environment variable
    #[arg(long = "env-add", value_name = "KEY=VALUE", value_parser = flag(parse::env_from_process))]
    env_add: Vec<String>,
    /// Remove an environment variable
    #[arg(long = "env-rm", value_name = "KEY")]
    env_rm: Vec<String>,
    /// Add or update a service label
    #[arg(long = "label-add", value_name = "KEY=VALUE", value_parser = flag(parse::key_value))]
    label_add: Vec<(String, String)>,
    /// Remove a label by its key
    #[arg(long = "label-rm", value_name = "KEY", value_parser = flag(parse::label_key))]
    label_rm: Vec<String>,
    /// Number of tasks
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = flag(parse::replicas))]
    replicas: Option<u64>,
    /// Number of job tasks to run at once (replicated-job mode)
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = flag(parse::count))]
    max_concurrent: Option<u64>,
    /// Add or update a placement constraint
    #[arg(long = "constraint-add", value_name = "KEY==VALUE", value_parser = flag(parse::constraint))]
    constraint_add: Vec<String>,
    /// Remove a constraint
    #[arg(long = "constraint-rm", value_name = "KEY==VALUE")]
    constraint_rm: Vec<String>,
    /// Add a placement preference, e.g. spread=node.labels.zone
    #[arg(long = "placement-pref-add", value_name = "spread=DESCRIPTOR", value_parser = flag(parse::placement_pref))]
    placement_pref_add: Vec<String>,
    /// Remove a placement preference
    #[arg(long = "placement-pref-rm", value_name = "spread=DESCRIPTOR", value_parser = flag(parse::placement_pref))]
    placement_pref_rm: Vec<String>,
    /// Maximum number of tasks per node (0 = unlimited)
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = flag(parse::count))]
    replicas_max_per_node: Option<u64>,
    /// Add or update a container label
    #[arg(long = "container-label-add", value_name = "KEY=VALUE", value_parser = flag(parse::key_value))]
    container_label_add: Vec<(String, String)>,
    /// Remove a container label by its key
    #[arg(long = "container-label-rm", value_name = "KEY", value_parser = flag(parse::label_key))]
    container_label_rm: Vec<String>,
    /// Add a network: NAME, or name=NAME,alias=ALIAS
    #[arg(long = "network-add", value_name = "NETWORK", value_parser = flag(parse::network))]
    network_add: Vec<shoal_proto::NetworkAttachmentConfig>,
    /// Remove a network by name or id
    #[arg(long = "network-rm", value_name = "NETWORK")]
    network_rm: Vec<String>,
    /// Add or update a secret: NAME, or source=NAME,target=T,uid=U,gid=G,mode=0440
    #[arg(long = "secret-add", value_name = "SECRET", value_parser = flag(parse::file_reference))]
    secret_add: Vec<shoal_proto::FileReference>,
    /// Remove a secret by name
    #[arg(long = "secret-rm", value_name = "SECRET")]
    secret_rm: Vec<String>,
    /// Add or update a config, as --secret-add
    #[arg(long = "config-add", value_name = "CONFIG", value_parser = flag(parse::file_reference))]
    config_add: Vec<shoal_proto::FileReference>,
    /// Remove a config by name
    #[arg(long = "config-rm", value_name = "CONFIG")]
    config_rm: Vec<String>,
    /// Endpoint mode: vip or dnsrr
    #[arg(long, value_enum)]
    endpoint_mode: Option<super::service::EndpointModeArg>,
    /// Add or update a published port: published=8080,target=80[,protocol=udp],mode=host
    #[arg(long = "publish-add", value_name = "PORT", value_parser = flag(parse::publish))]
    publish_add: Vec<shoal_proto::PortConfig>,
    /// Remove a published port by its published port: 8080 or 8080/udp
    #[arg(long = "publish-rm", value_name = "PORT[/PROTOCOL]")]
    publish_rm: Vec<String>,
    #[command(flatten)]
    restart: RestartArgs,
    #[command(flatten)]
    resources: ResourceArgs,
    /// Roll back to the previous spec (as `service rollback`)
    #[arg(long)]
    rollback: bool,
    /// Service command args, e.g. "sleep 100"
    #[arg(long, value_name = "COMMAND", allow_hyphen_values = true)]
    args: Option<String>,
    /// Signal to stop the container
    #[arg(long, value_name = "SIGNAL")]
    stop_signal: Option<String>,
    /// Time to wait before force killing a container, e.g. 10s
    #[arg(long, value_name = "DURATION", value_parser = flag(parse::duration_ms))]
    stop_grace_period: Option<i64>,
    /// Force update even if no changes require it
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    update: UpdatePolicyArgs,
    #[command(flatten)]
    rollback_policy: RollbackPolicyArgs,
    #[command(flatten)]
    health: super::health::HealthArgs,
    #[command(flatten)]
    wait: WaitArgs,
    /// Service name, id or id prefix
    #[arg(value_name = "SERVICE")]
    service: String,
}

#[derive(Debug, Args)]
pub struct ServiceArg {
    #[command(flatten)]
    wait: WaitArgs,
    /// Service name, id or id prefix
    #[arg(value_name = "SERVICE")]
    service: String,
}

/// The constraint a `--constraint-rm` value names, spaces around the operator ignored.
fn normalized(constraint: &str) -> String {
    constraint.chars().filter(|c| !c.is_whitespace()).collect()
}

/// The spec `service update` sends: the service's spec with the flags applied.
pub fn apply(args: &UpdateArgs, mut spec: ServiceSpec) -> Result<ServiceSpec> {
    if let Some(n) = args.replicas {
        if spec.mode == ServiceMode::Global as i32 {
            bail!("--replicas can only be used with replicated mode");
        }
        if spec.mode == ServiceMode::GlobalJob as i32 {
            bail!("--replicas can only be used with replicated-job mode");
        }
        spec.replicas = n;
    }
    if let Some(n) = args.max_concurrent {
        if spec.mode != ServiceMode::ReplicatedJob as i32 {
            bail!("--max-concurrent can only be used with replicated-job mode");
        }
        spec.max_concurrent = n;
    }
    for key in &args.label_rm {
        spec.labels.remove(key);
    }
    for (key, value) in &args.label_add {
        spec.labels.insert(key.clone(), value.clone());
    }
    spec.update = apply_policy("update", spec.update.take(), &args.update.flags())?;
    spec.rollback = apply_policy(
        "rollback",
        spec.rollback.take(),
        &args.rollback_policy.flags(),
    )?;
    if args.force {
        spec.force_update += 1;
    }
    if args.replicas_max_per_node.is_some()
        && matches!(
            ServiceMode::try_from(spec.mode),
            Ok(ServiceMode::Global | ServiceMode::GlobalJob)
        )
    {
        bail!("--replicas-max-per-node can only be used with replicated mode");
    }
    if let Some(mode) = args.endpoint_mode {
        spec.endpoint.get_or_insert_with(Default::default).mode = mode.mode();
    }
    if !args.publish_add.is_empty() || !args.publish_rm.is_empty() {
        let endpoint = spec.endpoint.get_or_insert_with(Default::default);
        let key = |p: &shoal_proto::PortConfig| (p.published_port.to_string(), p.protocol_name());
        endpoint.ports.retain(|p| {
            let (port, protocol) = key(p);
            !args
                .publish_rm
                .iter()
                .any(|rm| *rm == port || *rm == format!("{port}/{protocol}"))
        });
        for add in &args.publish_add {
            endpoint.ports.retain(|p| key(p) != key(add));
            endpoint.ports.push(add.clone());
        }
    }
    let task = spec.task.get_or_insert_with(Default::default);
    // `--network-rm` is applied by `update`, which knows the networks' ids.
    task.networks.extend(args.network_add.iter().cloned());
    let container = task.container.get_or_insert_with(Default::default);
    edit_references(&mut container.secrets, &args.secret_rm, &args.secret_add);
    edit_references(&mut container.configs, &args.config_rm, &args.config_add);
    task.restart = args.restart.apply(task.restart.take());
    task.limits = args.resources.limits(task.limits.take());
    task.reservations = args.resources.reservations(task.reservations.take());
    let container = task.container.get_or_insert_with(Default::default);
    if let Some(image) = &args.image {
        container.image = image.clone();
    }
    let key_of = |e: &str| e.split_once('=').map_or(e, |(k, _)| k).to_string();
    container.env.retain(|e| !args.env_rm.contains(&key_of(e)));
    for env in &args.env_add {
        let key = key_of(env);
        match container.env.iter_mut().find(|e| key_of(e) == key) {
            Some(e) => e.clone_from(env),
            None => container.env.push(env.clone()),
        }
    }
    if let Some(a) = &args.args {
        container.args = a.split_whitespace().map(str::to_string).collect();
    }
    if let Some(signal) = &args.stop_signal {
        container.stop_signal = signal.clone();
    }
    if let Some(ms) = args.stop_grace_period {
        container.stop_grace_period_ms = Some(ms);
    }
    container.healthcheck = args.health.apply(container.healthcheck.take());
    for key in &args.container_label_rm {
        container.labels.remove(key);
    }
    for (key, value) in &args.container_label_add {
        container.labels.insert(key.clone(), value.clone());
    }
    let placement_changes = !args.placement_pref_add.is_empty()
        || !args.placement_pref_rm.is_empty()
        || args.replicas_max_per_node.is_some();
    if placement_changes {
        let placement = task.placement.get_or_insert_with(Placement::default);
        placement
            .spread
            .retain(|p| !args.placement_pref_rm.contains(p));
        for p in &args.placement_pref_add {
            if !placement.spread.contains(p) {
                placement.spread.push(p.clone());
            }
        }
        if let Some(n) = args.replicas_max_per_node {
            placement.max_replicas = n;
        }
    }
    if !args.constraint_rm.is_empty() || !args.constraint_add.is_empty() {
        let placement = task.placement.get_or_insert_with(Placement::default);
        let removed: Vec<String> = args.constraint_rm.iter().map(|c| normalized(c)).collect();
        placement
            .constraints
            .retain(|c| !removed.contains(&normalized(c)));
        for c in &args.constraint_add {
            if !placement
                .constraints
                .iter()
                .any(|have| normalized(have) == normalized(c))
            {
                placement.constraints.push(c.clone());
            }
        }
    }
    Ok(spec)
}

/// `service update`: a read, then a write guarded by the version read.
pub async fn update(host: &str, args: &UpdateArgs) -> Result<()> {
    if args.rollback {
        // docker's `service update --rollback`: the previous spec, nothing else.
        let base = ServiceSpec {
            task: Some(shoal_proto::TaskSpec {
                container: Some(Default::default()),
                ..Default::default()
            }),
            ..Default::default()
        };
        if apply(args, base.clone())? != base || args.force {
            bail!("--rollback cannot be combined with other changes: roll back first, then update");
        }
        return rollback_service(host, &args.service, &args.wait).await;
    }
    let mut client = Client::connect(host).await?;
    // The spec holds network ids: `--network-rm` takes names too.
    let mut network_rm = Vec::new();
    for key in &args.network_rm {
        let network = client
            .get_network(GetNetworkRequest {
                network: key.clone(),
            })
            .await?
            .network
            .unwrap_or_default();
        network_rm.push(network.id);
    }
    let before = rewrite(&mut client, &args.service, |spec| {
        let mut spec = apply(args, spec)?;
        if let Some(task) = spec.task.as_mut() {
            task.networks.retain(|n| !network_rm.contains(&n.target));
        }
        Ok(spec)
    })
    .await?;
    print(&args.service)?;
    progress::wait(&mut client, &args.service, Op::Update, before, &args.wait).await
}

/// `service restart`: an update that replaces every task.
pub async fn restart(host: &str, args: &ServiceArg) -> Result<()> {
    let mut client = Client::connect(host).await?;
    let before = rewrite(&mut client, &args.service, |mut spec| {
        spec.force_update += 1;
        Ok(spec)
    })
    .await?;
    print(&args.service)?;
    progress::wait(&mut client, &args.service, Op::Update, before, &args.wait).await
}

/// `service rollback`: the previous spec comes back.
pub async fn rollback(host: &str, args: &ServiceArg) -> Result<()> {
    rollback_service(host, &args.service, &args.wait).await
}

async fn rollback_service(host: &str, service: &str, wait: &WaitArgs) -> Result<()> {
    let mut client = Client::connect(host).await?;
    client
        .rollback_service(RollbackServiceRequest {
            service: service.to_string(),
        })
        .await?;
    print(service)?;
    progress::wait(&mut client, service, Op::Rollback, None, wait).await
}

async fn rewrite(
    client: &mut Client,
    name: &str,
    change: impl FnOnce(ServiceSpec) -> Result<ServiceSpec>,
) -> Result<Option<UpdateStatus>> {
    let service = client
        .get_service(GetServiceRequest {
            service: name.to_string(),
        })
        .await?
        .service
        .unwrap_or_default();
    let spec = change(service.spec.clone().unwrap_or_default())?;
    client
        .update_service(UpdateServiceRequest {
            service: service.id.clone(),
            version: service.version(),
            spec: Some(spec),
        })
        .await?;
    Ok(service.update_status)
}

/// `--secret-rm|--config-rm` (by name or id), then `--secret-add|--config-add` (one with
/// the same name or target replaces the old).
fn edit_references(
    refs: &mut Vec<shoal_proto::FileReference>,
    rm: &[String],
    add: &[shoal_proto::FileReference],
) {
    refs.retain(|r| !rm.iter().any(|k| *k == r.name || *k == r.id));
    for new in add {
        refs.retain(|r| r.name != new.name && (new.target.is_empty() || r.target != new.target));
        refs.push(new.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::service::ServiceCommand;
    use crate::Cli;
    use clap::Parser;
    use shoal_proto::{ContainerSpec, TaskSpec};

    fn parse(argv: &[&str]) -> Result<Box<UpdateArgs>, String> {
        let mut full = vec!["shoal", "service", "update"];
        full.extend_from_slice(argv);
        let cli = Cli::try_parse_from(full).map_err(|e| e.to_string())?;
        match cli.command {
            crate::Command::Service(ServiceCommand::Update(args)) => Ok(args),
            _ => Err("not an update".into()),
        }
    }

    fn updated(argv: &[&str], spec: ServiceSpec) -> Result<ServiceSpec, String> {
        let args = parse(argv)?;
        apply(&args, spec).map_err(|e| e.to_string())
    }

    fn spec() -> ServiceSpec {
        ServiceSpec {
            name: "web".into(),
            labels: [("a".to_string(), "1".to_string())].into(),
            task: Some(TaskSpec {
                container: Some(ContainerSpec {
                    image: "nginx:1".into(),
                    env: vec!["A=1".into(), "B=2".into()],
                    args: vec!["old".into()],
                    ..Default::default()
                }),
                placement: Some(Placement {
                    constraints: vec!["node.role==manager".into()],
                    ..Default::default()
                }),
                ..Default::default()
            }),
            mode: ServiceMode::Replicated as i32,
            replicas: 2,
            ..Default::default()
        }
    }

    #[test]
    fn flags_change_only_what_they_name() {
        let s = updated(
            &[
                "--env-add",
                "B=3",
                "--env-add",
                "C=4",
                "--env-rm",
                "A",
                "--label-add",
                "b=2",
                "--label-rm",
                "a",
                "--constraint-rm",
                "node.role == manager",
                "--constraint-add",
                "node.labels.zone==a",
                "--stop-signal",
                "SIGINT",
                "--stop-grace-period",
                "20s",
                "web",
            ],
            spec(),
        )
        .unwrap_or_default();
        let task = s.task.clone().unwrap_or_default();
        let c = task.container.clone().unwrap_or_default();
        assert_eq!(c.image, "nginx:1");
        assert_eq!(c.env, ["B=3", "C=4"]);
        assert_eq!(c.args, ["old"]);
        assert_eq!(c.stop_signal, "SIGINT");
        assert_eq!(c.stop_grace_period_ms, Some(20_000));
        assert_eq!(s.labels, [("b".to_string(), "2".to_string())].into());
        assert_eq!(
            task.placement.unwrap_or_default().constraints,
            ["node.labels.zone==a"]
        );
        assert_eq!(s.replicas, 2);
        assert_eq!(s.update, None, "no policy flag, no policy");
        assert_eq!(s.force_update, 0);
    }

    #[test]
    fn restart_resource_placement_and_container_label_flags() {
        let mut base = spec();
        if let Some(task) = base.task.as_mut() {
            task.restart = Some(shoal_proto::RestartPolicy {
                condition: shoal_proto::RestartCondition::OnFailure as i32,
                delay_ms: Some(1_000),
                max_attempts: 3,
                window_ms: 0,
            });
            task.limits = Some(shoal_proto::Resources {
                nano_cpus: 1_000_000_000,
                memory_bytes: 1 << 20,
            });
            if let Some(p) = task.placement.as_mut() {
                p.spread = vec!["node.labels.zone".into()];
            }
            if let Some(c) = task.container.as_mut() {
                c.labels = [
                    ("keep".to_string(), "1".to_string()),
                    ("drop".to_string(), "x".to_string()),
                ]
                .into();
            }
        }
        let s = updated(
            &[
                "--restart-max-attempts",
                "5",
                "--limit-memory",
                "64M",
                "--reserve-cpu",
                "0.5",
                "--placement-pref-rm",
                "spread=node.labels.zone",
                "--placement-pref-add",
                "spread=node.labels.rack",
                "--replicas-max-per-node",
                "2",
                "--container-label-rm",
                "drop",
                "--container-label-add",
                "new=2",
                "web",
            ],
            base,
        )
        .expect("valid flags");
        let task = s.task.unwrap_or_default();
        let restart = task.restart.unwrap_or_default();
        assert_eq!(
            (restart.condition, restart.delay_ms, restart.max_attempts),
            (
                shoal_proto::RestartCondition::OnFailure as i32,
                Some(1_000),
                5
            ),
            "only the attempts change"
        );
        let limits = task.limits.unwrap_or_default();
        assert_eq!(
            (limits.nano_cpus, limits.memory_bytes),
            (1_000_000_000, 64 << 20)
        );
        assert_eq!(task.reservations.map(|r| r.nano_cpus), Some(500_000_000));
        let placement = task.placement.unwrap_or_default();
        assert_eq!(placement.spread, ["node.labels.rack"]);
        assert_eq!(placement.max_replicas, 2);
        assert_eq!(placement.constraints, ["node.role==manager"]);
        assert_eq!(
            task.container.unwrap_or_default().labels,
            [
                ("keep".to_string(), "1".to_string()),
                ("new".to_string(), "2".to_string())
            ]
            .into()
        );
    }

    #[tokio::test]
    async fn rollback_flag_rolls_back_and_takes_no_other_change() {
        let host = "unix:///nonexistent/shoal-test/shoald.sock";
        let with_image = parse(&["--rollback", "--image", "x:1", "web"]).expect("parses");
        assert_eq!(
            update(host, &with_image).await.map_err(|e| e.to_string()),
            Err(
                "--rollback cannot be combined with other changes: roll back first, then update"
                    .into()
            )
        );
        // Alone, it goes to the daemon as a rollback (here: no daemon to reach).
        let alone = parse(&["--rollback", "--detach", "web"]).expect("parses");
        let err = update(host, &alone).await.map_err(|e| e.to_string());
        assert!(err.is_err_and(|e| e.starts_with("cannot reach shoald")));
    }

    #[test]
    fn policy_flags_merge_into_the_existing_policy() {
        let mut base = spec();
        base.update = Some(UpdateConfig {
            parallelism: Some(4),
            delay_ms: 1_000,
            ..Default::default()
        });
        let s = updated(
            &["--update-delay", "1m30s", "--rollback-monitor", "2s", "web"],
            base,
        )
        .unwrap_or_default();
        assert_eq!(
            s.update,
            Some(UpdateConfig {
                parallelism: Some(4),
                delay_ms: 90_000,
                ..Default::default()
            })
        );
        assert_eq!(s.rollback.and_then(|r| r.monitor_ms), Some(2_000));
    }

    #[test]
    fn bad_values_say_what_is_wrong() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["--update-monitor", "5x", "web"],
                r#"invalid duration "5x" for --update-monitor"#,
            ),
            (
                &["--update-max-failure-ratio", "2", "web"],
                "--update-max-failure-ratio must be between 0 and 1",
            ),
            (
                &["--update-max-failure-ratio", "lots", "web"],
                r#"invalid ratio "lots" for --update-max-failure-ratio"#,
            ),
            (
                &["--rollback-failure-action", "rollback", "web"],
                "--rollback-failure-action cannot be rollback",
            ),
            (
                &["--update-failure-action", "panic", "web"],
                "invalid value 'panic'",
            ),
            (
                &["--replicas", "-2", "web"],
                r#"invalid replica count "-2" for --replicas"#,
            ),
            (&[], "SERVICE"),
        ];
        for (argv, want) in cases {
            let err = updated(argv, spec()).err().unwrap_or_default();
            assert!(err.contains(want), "{argv:?}: {err}");
        }
    }

    #[test]
    fn restart_and_rollback_take_one_service() {
        for cmd in ["restart", "rollback"] {
            assert!(Cli::try_parse_from(["shoal", "service", cmd, "web"]).is_ok());
            assert!(Cli::try_parse_from(["shoal", "service", cmd, "-d", "web"]).is_ok());
            assert!(Cli::try_parse_from(["shoal", "service", cmd]).is_err());
        }
    }

    #[test]
    fn secret_flags_add_replace_and_remove_references() {
        let r = |name: &str, target: &str| shoal_proto::FileReference {
            name: name.into(),
            target: target.into(),
            ..Default::default()
        };
        let mut refs = vec![r("a", "a"), r("b", "b")];
        edit_references(&mut refs, &["a".into()], &[r("c", "b")]);
        assert_eq!(refs, [r("c", "b")], "a removed; c takes b's file");
        let parsed =
            crate::parse::file_reference("source=tok,target=t,uid=1,mode=0400").expect("long form");
        assert_eq!(
            (
                parsed.name.as_str(),
                parsed.target.as_str(),
                parsed.uid.as_str(),
                parsed.mode
            ),
            ("tok", "t", "1", 0o400)
        );
        assert_eq!(
            crate::parse::file_reference("tok").expect("short").name,
            "tok"
        );
        assert!(crate::parse::file_reference("target=t").is_err());
        assert!(crate::parse::file_reference("source=t,mode=999").is_err());
    }
}
