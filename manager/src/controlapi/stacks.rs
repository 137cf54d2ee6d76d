//! Stacks on the server: `stack deploy` applies a stack's networks, secrets, configs and
//! services as one store transaction and records it as a new revision of the Stack object; `stack
//! rollback` applies an earlier revision the same way; `stack rm` removes what the stack
//! made. The compose file itself is the client's to read: a StackSpec arrives resolved,
//! with its objects already named `NAME_x` (Docker's naming).

use std::borrow::Cow;
use std::collections::BTreeSet;

use shoal_proto::{
    Config, DeployStackResponse, Network, NetworkSpec, Secret, Service, Stack, StackRevision,
    StackSpec, StackSummary, STACK_NAMESPACE_LABEL,
};

use super::files::{self, FileObject};
use super::{
    apply_spec, bind_spec, networks, new_service, stage_removal, validate, ControlApi, ControlError,
};
use crate::allocator;
use crate::ids::new_id;
use crate::store::{Object, WriteTx};

/// Revisions kept per stack (the oldest go first).
pub const HISTORY: usize = 10;

impl ControlApi {
    /// Deploy `spec` as the stack's next revision.
    pub async fn deploy_stack(
        &self,
        spec: StackSpec,
        prune: bool,
    ) -> Result<DeployStackResponse, ControlError> {
        let spec = validate_stack(spec)?;
        let name = spec.name.clone();
        let (changes, warnings) = self
            .store
            .update(|tx| {
                let (changes, warnings) = apply(tx, &spec, prune)?;
                record(tx, spec, &changes, 0)?;
                Ok::<_, ControlError>((changes, warnings))
            })
            .await?;
        Ok(DeployStackResponse {
            stack: self.store.view(|r| r.stack_named(&name).cloned()),
            changes,
            warnings,
        })
    }

    /// Deploy revision `revision` of stack `name` again (0: the one before the current),
    /// as a new revision.
    pub async fn rollback_stack(
        &self,
        name: &str,
        revision: u64,
    ) -> Result<DeployStackResponse, ControlError> {
        let (changes, warnings) = self
            .store
            .update(|tx| {
                let stack = stack_named(tx, name)?;
                let current = stack.revision();
                let target = if revision == 0 {
                    stack
                        .revisions
                        .iter()
                        .rev()
                        .find(|r| r.revision < current)
                        .ok_or_else(|| {
                            ControlError::Invalid(format!(
                                "stack {name} has no revision before {current} to roll back to"
                            ))
                        })?
                } else {
                    stack
                        .revisions
                        .iter()
                        .find(|r| r.revision == revision)
                        .ok_or_else(|| {
                            let kept: Vec<String> = stack
                                .revisions
                                .iter()
                                .map(|r| r.revision.to_string())
                                .collect();
                            ControlError::Invalid(format!(
                                "stack {name} has no revision {revision}: revisions kept are {}",
                                kept.join(", ")
                            ))
                        })?
                };
                let spec = target.spec.clone().unwrap_or_default();
                let to = target.revision;
                // What was the stack's at that revision and is no longer goes, as a
                // deploy with --prune would.
                let (changes, warnings) = apply(tx, &spec, true)?;
                record(tx, spec, &changes, to)?;
                Ok::<_, ControlError>((changes, warnings))
            })
            .await?;
        Ok(DeployStackResponse {
            stack: self.store.view(|r| r.stack_named(name).cloned()),
            changes,
            warnings,
        })
    }

    pub fn list_stacks(&self) -> Vec<StackSummary> {
        self.store.view(|r| {
            let mut named: Vec<StackSummary> = r
                .stacks()
                .map(|s| StackSummary {
                    name: s.name().to_string(),
                    revision: s.revision(),
                    services: r.services().filter(|x| x.stack() == Some(s.name())).count() as u64,
                    updated_at_ms: s.meta.as_ref().map_or(0, |m| m.updated_at_ms),
                })
                .collect();
            named.sort_by(|a, b| a.name.cmp(&b.name));
            named
        })
    }

    pub fn get_stack(&self, name: &str) -> Result<Stack, ControlError> {
        self.store.view(|r| {
            r.stack_named(name)
                .cloned()
                .ok_or_else(|| ControlError::StackNotFound(name.to_string()))
        })
    }

    /// Remove the stack: its services (their tasks shut down) and its record now, its
    /// networks once no task is attached to them any more. Returns what went, and what
    /// waits (the caller asks again once the tasks are gone).
    pub async fn remove_stack(
        &self,
        name: &str,
    ) -> Result<(Vec<String>, Vec<String>), ControlError> {
        self.store
            .update(|tx| {
                let stack = tx.read().stack_named(name).cloned();
                let services: Vec<Service> = tx
                    .services_now()
                    .into_iter()
                    .filter(|s| s.stack() == Some(name))
                    .map(Cow::into_owned)
                    .collect();
                let networks: Vec<Network> = tx
                    .networks_now()
                    .into_iter()
                    .filter(|n| n.stack() == Some(name))
                    .collect();
                let files_left = tx
                    .secrets_now()
                    .iter()
                    .any(|s| StackOwned::stack(s) == Some(name))
                    || tx
                        .configs_now()
                        .iter()
                        .any(|c| StackOwned::stack(c) == Some(name));
                if stack.is_none() && services.is_empty() && networks.is_empty() && !files_left {
                    return Err(ControlError::StackNotFound(name.to_string()));
                }
                let mut removed = Vec::new();
                let mut waiting = Vec::new();
                for service in services {
                    removed.push(format!("service {}", service.name()));
                    stage_removal(tx, service)?;
                }
                for network in networks {
                    let attached = networks::attached_tasks(tx.read(), &network.id);
                    if attached == 0 {
                        removed.push(format!("network {}", network.name()));
                        tx.remove(Object::Network(network));
                    } else {
                        waiting.push(format!(
                            "network {} ({attached} task{} still attached)",
                            network.name(),
                            if attached == 1 { "" } else { "s" }
                        ));
                    }
                }
                for secret in tx.secrets_now() {
                    if StackOwned::stack(&secret) == Some(name) {
                        removed.push(format!("secret {}", secret.name()));
                        files::stage_remove(tx, secret)?;
                    }
                }
                for config in tx.configs_now() {
                    if StackOwned::stack(&config) == Some(name) {
                        removed.push(format!("config {}", config.name()));
                        files::stage_remove(tx, config)?;
                    }
                }
                if let Some(stack) = stack {
                    tx.remove(Object::Stack(stack));
                }
                Ok((removed, waiting))
            })
            .await
    }
}

fn stack_named(tx: &WriteTx<'_>, name: &str) -> Result<Stack, ControlError> {
    tx.read()
        .stack_named(name)
        .cloned()
        .ok_or_else(|| ControlError::StackNotFound(name.to_string()))
}

/// Checks a stack's spec on its own: its name, its objects named `NAME_x`, each valid,
/// each labelled with the stack's namespace.
fn validate_stack(mut spec: StackSpec) -> Result<StackSpec, ControlError> {
    let name = spec.name.trim().to_string();
    if !validate::valid_name(&name) {
        return Err(ControlError::Invalid(format!(
            "invalid stack name {name:?}: use letters, digits, '_', '.' and '-', starting with a letter or digit"
        )));
    }
    let prefix = format!("{name}_");
    let mut seen = BTreeSet::new();
    let mut services = Vec::new();
    for mut service in std::mem::take(&mut spec.services) {
        if !service.name.starts_with(&prefix) {
            return Err(ControlError::Invalid(format!(
                "service {} of stack {name} must be named {prefix}...",
                service.name
            )));
        }
        if !seen.insert(service.name.clone()) {
            return Err(ControlError::Invalid(format!(
                "service {} is given twice in stack {name}",
                service.name
            )));
        }
        service
            .labels
            .insert(STACK_NAMESPACE_LABEL.to_string(), name.clone());
        let service_name = service.name.clone();
        services.push(
            validate::service_spec(service)
                .map_err(|e| ControlError::Invalid(format!("service {service_name}: {e}")))?,
        );
    }
    let mut networks = Vec::new();
    for mut network in std::mem::take(&mut spec.networks) {
        if !network.name.starts_with(&prefix) {
            return Err(ControlError::Invalid(format!(
                "network {} of stack {name} must be named {prefix}...",
                network.name
            )));
        }
        if network.ingress {
            return Err(ControlError::Invalid(format!(
                "network {}: a stack cannot make the ingress network",
                network.name
            )));
        }
        network
            .labels
            .insert(STACK_NAMESPACE_LABEL.to_string(), name.clone());
        let network_name = network.name.clone();
        networks.push(
            networks::validate(network)
                .map_err(|e| ControlError::Invalid(format!("network {network_name}: {e}")))?,
        );
    }
    for secret in spec.secrets.iter_mut() {
        check_owned("secret", &name, &prefix, &secret.name)?;
        if secret.data.is_empty() {
            return Err(ControlError::Invalid(format!(
                "secret {} is empty: give it some content",
                secret.name
            )));
        }
        secret
            .labels
            .insert(STACK_NAMESPACE_LABEL.to_string(), name.clone());
    }
    for config in spec.configs.iter_mut() {
        check_owned("config", &name, &prefix, &config.name)?;
        config
            .labels
            .insert(STACK_NAMESPACE_LABEL.to_string(), name.clone());
    }
    spec.name = name;
    spec.services = services;
    spec.networks = networks;
    Ok(spec)
}

fn check_owned(kind: &str, stack: &str, prefix: &str, name: &str) -> Result<(), ControlError> {
    if !name.starts_with(prefix) {
        return Err(ControlError::Invalid(format!(
            "{kind} {name} of stack {stack} must be named {prefix}..."
        )));
    }
    if !validate::valid_name(name) {
        return Err(ControlError::Invalid(format!(
            "invalid {kind} name {name:?}"
        )));
    }
    Ok(())
}

/// Stage what makes the cluster hold `spec`: networks first (services join them), then
/// services created or updated, then (with `prune`) what the stack held and no longer
/// names. Returns the changes and the warnings.
fn apply(
    tx: &mut WriteTx<'_>,
    spec: &StackSpec,
    prune: bool,
) -> Result<(Vec<String>, Vec<String>), ControlError> {
    let stack = spec.name.as_str();
    let mut changes = Vec::new();
    let mut warnings = Vec::new();
    for network in &spec.networks {
        ensure_network(tx, stack, network, &mut changes, &mut warnings)?;
    }
    for secret in &spec.secrets {
        // Only a revision (a rollback) has a secret without content: revisions keep none,
        // so the secret stays as it is now.
        if secret.data.is_empty() {
            if !tx.secrets_now().iter().any(|s| s.name() == secret.name) {
                return Err(ControlError::Refused(format!(
                    "secret {} is gone and revisions keep no secret content: deploy the stack's file again",
                    secret.name
                )));
            }
            continue;
        }
        let object = Secret {
            id: new_id(),
            meta: None,
            spec: Some(secret.clone()),
            version: 1,
            digest: String::new(),
        };
        ensure_file(tx, stack, object, &mut changes)?;
    }
    for config in &spec.configs {
        let object = Config {
            id: new_id(),
            meta: None,
            spec: Some(config.clone()),
            version: 1,
            digest: String::new(),
        };
        ensure_file(tx, stack, object, &mut changes)?;
    }
    for wanted in &spec.services {
        let mut wanted = wanted.clone();
        let existing = tx
            .services_now()
            .into_iter()
            .find(|s| s.name() == wanted.name)
            .map(Cow::into_owned);
        if let Some(other) = existing
            .as_ref()
            .and_then(|s| s.stack().filter(|n| *n != stack))
        {
            return Err(ControlError::Refused(format!(
                "service {} belongs to stack {other}: rename it in this file",
                wanted.name
            )));
        }
        if existing.as_ref().is_some_and(|s| s.stack().is_none()) {
            return Err(ControlError::Refused(format!(
                "service {} exists and is not part of stack {stack}: remove it (`shoal service rm {}`) or rename it in the file",
                wanted.name, wanted.name
            )));
        }
        // What is wrong with a service's spec names the service; what the cluster refuses
        // is said as it is.
        let name = wanted.name.clone();
        bind_spec(tx, &mut wanted, existing.as_ref()).map_err(|e| match e {
            ControlError::Invalid(_) | ControlError::Ambiguous { .. } => {
                ControlError::Invalid(format!("service {name}: {e}"))
            }
            other => other,
        })?;
        match existing {
            None => {
                changes.push(format!("create service {}", wanted.name));
                tx.create(Object::Service(new_service(wanted)))?;
            }
            Some(mut service) => {
                if service.spec.as_ref() == Some(&wanted) {
                    continue;
                }
                let name = wanted.name.clone();
                apply_spec(&mut service, wanted)
                    .map_err(|e| ControlError::Invalid(format!("service {name}: {e}")))?;
                changes.push(format!("update service {name}"));
                tx.update(Object::Service(service))?;
            }
        }
    }
    let named_services: BTreeSet<&str> = spec.services.iter().map(|s| s.name.as_str()).collect();
    for service in tx.services_now() {
        if service.stack() != Some(stack) || named_services.contains(service.name()) {
            continue;
        }
        if prune {
            changes.push(format!("remove service {}", service.name()));
            stage_removal(tx, service.into_owned())?;
        } else {
            warnings.push(format!(
                "service {} is no longer in the file and keeps running: deploy with --prune to remove it",
                service.name()
            ));
        }
    }
    let named_networks: BTreeSet<&str> = spec.networks.iter().map(|n| n.name.as_str()).collect();
    let services = tx.services_now();
    for network in tx.networks_now() {
        if network.stack() != Some(stack) || named_networks.contains(network.name()) {
            continue;
        }
        let users: Vec<&str> = services
            .iter()
            .filter(|s| s.networks().any(|a| a.target == network.id))
            .map(|s| s.name())
            .collect();
        if prune && users.is_empty() {
            changes.push(format!("remove network {}", network.name()));
            tx.remove(Object::Network(network));
        } else if !prune {
            warnings.push(format!(
                "network {} is no longer in the file and stays: deploy with --prune to remove it",
                network.name()
            ));
        }
    }
    prune_files::<Secret>(
        tx,
        stack,
        &spec.secrets.iter().map(|s| s.name.as_str()).collect(),
        prune,
        &mut changes,
    )?;
    prune_files::<Config>(
        tx,
        stack,
        &spec.configs.iter().map(|c| c.name.as_str()).collect(),
        prune,
        &mut changes,
    )?;
    Ok((changes, warnings))
}

/// The stack's secret or config exists with the file's content: made when missing, given
/// the new content (a new version, which rolls the services using it) when it changed.
fn ensure_file<T: FileObject + StackOwned>(
    tx: &mut WriteTx<'_>,
    stack: &str,
    wanted: T,
    changes: &mut Vec<String>,
) -> Result<(), ControlError> {
    let existing = T::all_now(tx)
        .into_iter()
        .find(|o| o.name() == wanted.name());
    match existing {
        None => {
            changes.push(format!("create {} {}", T::KIND, wanted.name()));
            files::stage_create(tx, wanted)
        }
        Some(found) if found.stack() != Some(stack) => Err(ControlError::Refused(format!(
            "{} {} exists and is not part of stack {stack}: remove it, or declare it `external: true` in the file",
            T::KIND,
            found.name()
        ))),
        Some(found)
            if found.digest() == crate::seal::digest(wanted.data())
                && found.labels() == wanted.labels() =>
        {
            Ok(())
        }
        Some(mut found) => {
            changes.push(format!("update {} {}", T::KIND, found.name()));
            found.set_data(wanted.data().to_vec(), wanted.labels().clone());
            let found = files::sealed(tx, found)?;
            tx.update(found.into_object())?;
            Ok(())
        }
    }
}

/// The stack's secrets or configs the file no longer names: removed with `prune` once no
/// service uses them.
fn prune_files<T: FileObject + StackOwned>(
    tx: &mut WriteTx<'_>,
    stack: &str,
    named: &BTreeSet<&str>,
    prune: bool,
    changes: &mut Vec<String>,
) -> Result<(), ControlError> {
    if !prune {
        return Ok(());
    }
    let services = tx.services_now();
    for object in T::all_now(tx) {
        if object.stack() != Some(stack) || named.contains(object.name()) {
            continue;
        }
        if files::users::<T>(&services, object.id()).is_empty() {
            changes.push(format!("remove {} {}", T::KIND, object.name()));
            files::stage_remove(tx, object)?;
        }
    }
    Ok(())
}

/// Secrets and configs carry their stack in a label, as services do.
trait StackOwned {
    fn labels(&self) -> &std::collections::HashMap<String, String>;
    fn stack(&self) -> Option<&str> {
        self.labels().get(STACK_NAMESPACE_LABEL).map(String::as_str)
    }
}

impl StackOwned for Secret {
    fn labels(&self) -> &std::collections::HashMap<String, String> {
        self.spec.as_ref().map_or(&EMPTY, |s| &s.labels)
    }
}

impl StackOwned for Config {
    fn labels(&self) -> &std::collections::HashMap<String, String> {
        self.spec.as_ref().map_or(&EMPTY, |s| &s.labels)
    }
}

static EMPTY: std::sync::LazyLock<std::collections::HashMap<String, String>> =
    std::sync::LazyLock::new(std::collections::HashMap::new);

/// The stack's network `spec` exists: made (and allocated) when missing; one of the same
/// name that belongs elsewhere is refused; one whose spec changed stays as it is (networks
/// cannot change in place) with a warning.
fn ensure_network(
    tx: &mut WriteTx<'_>,
    stack: &str,
    spec: &NetworkSpec,
    changes: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Result<(), ControlError> {
    let all = tx.networks_now();
    match all.iter().find(|n| n.name() == spec.name) {
        Some(found) if found.stack() != Some(stack) => Err(ControlError::Refused(format!(
            "network {} exists and is not part of stack {stack}: remove it, or declare it `external: true` in the file",
            spec.name
        ))),
        Some(found) => {
            if found.spec.as_ref() != Some(spec) {
                warnings.push(format!(
                    "network {} changed in the file, but a network cannot change in place: it stays as it was (remove the stack and deploy it again to remake it)",
                    spec.name
                ));
            }
            Ok(())
        }
        None => {
            let allocation = allocator::pools(tx.read())
                .and_then(|pools| allocator::allocate_network(&all, spec, &pools))
                .map_err(|e| ControlError::Invalid(format!("network {}: {e}", spec.name)))?;
            tx.create(Object::Network(Network {
                id: new_id(),
                meta: None,
                spec: Some(spec.clone()),
                allocation: Some(allocation),
            }))?;
            changes.push(format!("create network {}", spec.name));
            Ok(())
        }
    }
}

/// Record `spec` as the stack's next revision (a stack made now starts at 1). A deploy
/// that changed nothing and holds the same document adds no revision.
fn record(
    tx: &mut WriteTx<'_>,
    mut spec: StackSpec,
    changes: &[String],
    rolled_back_to: u64,
) -> Result<(), ControlError> {
    // A revision keeps no secret's content: it is in the Secret object, sealed.
    for secret in spec.secrets.iter_mut() {
        secret.data.clear();
    }
    let existing = tx.read().stack_named(&spec.name).cloned();
    let now = crate::clock::now_ms();
    match existing {
        None => {
            let stack = Stack {
                id: new_id(),
                meta: None,
                revisions: vec![StackRevision {
                    revision: 1,
                    deployed_at_ms: now,
                    spec: Some(spec),
                    changes: changes.to_vec(),
                    rolled_back_to,
                }],
            };
            tx.create(Object::Stack(stack))?;
        }
        Some(mut stack) => {
            let same = stack.current().and_then(|r| r.spec.as_ref()) == Some(&spec);
            if same && changes.is_empty() {
                return Ok(());
            }
            let revision = stack.revision() + 1;
            stack.revisions.push(StackRevision {
                revision,
                deployed_at_ms: now,
                spec: Some(spec),
                changes: changes.to_vec(),
                rolled_back_to,
            });
            let excess = stack.revisions.len().saturating_sub(HISTORY);
            stack.revisions.drain(..excess);
            tx.update(Object::Stack(stack))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use shoal_proto::{ContainerSpec, NetworkAttachmentConfig, ServiceSpec, TaskSpec};

    use super::*;
    use crate::store::Store;
    use crate::testutil::{network_spec, put};

    fn service(stack: &str, name: &str, image: &str, networks: &[&str]) -> ServiceSpec {
        ServiceSpec {
            name: format!("{stack}_{name}"),
            replicas: 1,
            task: Some(TaskSpec {
                container: Some(ContainerSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                networks: networks
                    .iter()
                    .map(|n| NetworkAttachmentConfig {
                        target: format!("{stack}_{n}"),
                        aliases: vec![name.to_string()],
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn stack(services: Vec<ServiceSpec>, networks: &[&str]) -> StackSpec {
        StackSpec {
            name: "app".into(),
            document: "services: {}".into(),
            services,
            networks: networks
                .iter()
                .map(|n| network_spec(&format!("app_{n}"), ""))
                .collect(),
            ..Default::default()
        }
    }

    async fn api() -> ControlApi {
        let store = Store::in_memory();
        put(
            &store,
            vec![Object::Cluster(shoal_proto::Cluster {
                id: "c".into(),
                default_addr_pool: vec!["10.50.0.0/16".into()],
                subnet_size: 24,
                ..Default::default()
            })],
        )
        .await;
        ControlApi::new(store)
    }

    fn image_of(api: &ControlApi, name: &str) -> String {
        api.store.view(|r| {
            r.services()
                .find(|s| s.name() == name)
                .and_then(|s| s.spec.as_ref())
                .and_then(|s| s.task.as_ref())
                .and_then(|t| t.container.as_ref())
                .map(|c| c.image.clone())
                .unwrap_or_default()
        })
    }

    #[tokio::test]
    async fn a_deploy_makes_networks_and_services_in_one_change_and_records_a_revision() {
        let api = api().await;
        let spec = stack(
            vec![
                service("app", "web", "web:1", &["front"]),
                service("app", "db", "db:1", &["front", "back"]),
            ],
            &["front", "back"],
        );
        let out = api
            .deploy_stack(spec.clone(), false)
            .await
            .expect("deployed");
        assert_eq!(out.changes.len(), 4, "{:?}", out.changes);
        let stack = out.stack.expect("stored");
        assert_eq!(stack.revision(), 1);
        api.store.view(|r| {
            let networks: Vec<_> = r.networks().filter(|n| n.stack() == Some("app")).collect();
            assert_eq!(networks.len(), 2);
            let subnets: BTreeSet<_> = networks
                .iter()
                .map(|n| n.allocation.as_ref().map(|a| a.subnet.clone()))
                .collect();
            assert_eq!(
                subnets.len(),
                2,
                "two networks made in one change get two subnets"
            );
            let db = r.services().find(|s| s.name() == "app_db").expect("db");
            assert_eq!(db.networks().count(), 2);
            assert!(db
                .networks()
                .all(|a| networks.iter().any(|n| n.id == a.target)));
        });

        // The same file again: nothing changes, no new revision.
        let out = api.deploy_stack(spec.clone(), false).await.expect("again");
        assert!(out.changes.is_empty(), "{:?}", out.changes);
        assert_eq!(out.stack.expect("stack").revision(), 1);

        // A new image: one update, revision 2; then a rollback to 1 is revision 3.
        let mut changed = spec.clone();
        changed.services[0] = service("app", "web", "web:2", &["front"]);
        let out = api.deploy_stack(changed, false).await.expect("updated");
        assert_eq!(out.changes, ["update service app_web"]);
        assert_eq!(image_of(&api, "app_web"), "web:2");
        let out = api.rollback_stack("app", 0).await.expect("rolled back");
        assert_eq!(out.changes, ["update service app_web"]);
        assert_eq!(image_of(&api, "app_web"), "web:1");
        let stack = api.get_stack("app").expect("stack");
        assert_eq!(stack.revision(), 3);
        assert_eq!(stack.current().map(|r| r.rolled_back_to), Some(1));
    }

    #[tokio::test]
    async fn prune_removes_what_the_file_dropped_and_without_it_a_warning_says_so() {
        let api = api().await;
        let both = stack(
            vec![
                service("app", "web", "web:1", &["front"]),
                service("app", "old", "old:1", &["back"]),
            ],
            &["front", "back"],
        );
        api.deploy_stack(both, false).await.expect("deployed");
        let web_only = stack(vec![service("app", "web", "web:1", &["front"])], &["front"]);
        let out = api
            .deploy_stack(web_only.clone(), false)
            .await
            .expect("kept");
        assert!(out.changes.is_empty());
        assert_eq!(out.warnings.len(), 2, "{:?}", out.warnings);
        let out = api.deploy_stack(web_only, true).await.expect("pruned");
        assert_eq!(
            out.changes,
            ["remove service app_old", "remove network app_back"]
        );
    }

    #[tokio::test]
    async fn a_refused_service_leaves_nothing_half_made() {
        let api = api().await;
        let mut spec = stack(
            vec![
                service("app", "web", "web:1", &["front"]),
                service("app", "bad", "db:1", &["nowhere"]),
            ],
            &["front"],
        );
        let e = api
            .deploy_stack(spec.clone(), false)
            .await
            .expect_err("unknown network");
        assert!(
            e.to_string()
                .contains("service app_bad: network app_nowhere not found"),
            "{e}"
        );
        api.store.view(|r| {
            assert_eq!(r.services().count(), 0);
            assert!(r.networks().all(|n| n.stack().is_none()));
            assert_eq!(r.stacks().count(), 0);
        });
        spec.services[1].name = "other_bad".into();
        let e = api.deploy_stack(spec, false).await.expect_err("misnamed");
        assert!(e.to_string().contains("must be named app_"), "{e}");
    }

    #[tokio::test]
    async fn remove_takes_every_service_and_network_of_the_stack() {
        let api = api().await;
        let spec = stack(vec![service("app", "web", "web:1", &["front"])], &["front"]);
        api.deploy_stack(spec, false).await.expect("deployed");
        let (removed, waiting) = api.remove_stack("app").await.expect("removed");
        assert_eq!(removed, ["service app_web", "network app_front"]);
        assert!(waiting.is_empty());
        api.store.view(|r| {
            assert_eq!(r.services().count(), 0);
            assert_eq!(r.stacks().count(), 0);
        });
        assert!(matches!(
            api.remove_stack("app").await,
            Err(ControlError::StackNotFound(_))
        ));
    }
}

#[cfg(test)]
mod file_tests {
    use shoal_proto::{ContainerSpec, FileReference, SecretSpec, ServiceSpec, TaskSpec};

    use super::*;
    use crate::store::Store;

    fn spec(data: &[u8]) -> StackSpec {
        StackSpec {
            name: "app".into(),
            services: vec![ServiceSpec {
                name: "app_web".into(),
                replicas: 1,
                task: Some(TaskSpec {
                    container: Some(ContainerSpec {
                        image: "web".into(),
                        secrets: vec![FileReference {
                            name: "app_token".into(),
                            target: "token".into(),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            secrets: vec![SecretSpec {
                name: "app_token".into(),
                data: data.to_vec(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn new_secret_content_is_a_new_version_that_rolls_its_services() {
        let store = Store::in_memory();
        crate::testutil::put(&store, vec![Object::Cluster(Default::default())]).await;
        let api = ControlApi::new(store);
        let out = api
            .deploy_stack(spec(b"one"), false)
            .await
            .expect("deployed");
        assert_eq!(
            out.changes,
            ["create secret app_token", "create service app_web"]
        );
        let out = api.deploy_stack(spec(b"one"), false).await.expect("same");
        assert!(out.changes.is_empty(), "{:?}", out.changes);
        let out = api
            .deploy_stack(spec(b"two"), false)
            .await
            .expect("new content");
        assert_eq!(
            out.changes,
            ["update secret app_token", "update service app_web"]
        );
        api.store.view(|r| {
            let secret = r.secrets().next().expect("one secret");
            assert_eq!(secret.version, 2);
            let web = r.services().next().expect("web");
            let reference = &web
                .spec
                .as_ref()
                .and_then(|s| s.task.as_ref())
                .and_then(|t| t.container.as_ref())
                .expect("c")
                .secrets[0];
            assert_eq!(reference.version, 2);
            assert_eq!(web.spec_version, 2, "the service rolls");
        });
        // A rollback to revision 1 keeps the content as it is now (revisions keep none).
        let out = api.rollback_stack("app", 1).await.expect("rolled back");
        assert!(out.changes.is_empty(), "{:?}", out.changes);
        assert_eq!(
            api.store.view(|r| r.secrets().next().map(|s| s.version)),
            Some(2)
        );
        // Nobody else may take it out from under the service; the stack's rm does.
        assert!(api.remove_secret("app_token").await.is_err());
        let (removed, _) = api.remove_stack("app").await.expect("removed");
        assert!(
            removed.contains(&"secret app_token".to_string()),
            "{removed:?}"
        );
        assert_eq!(api.list_secrets().len(), 0);
    }
}
