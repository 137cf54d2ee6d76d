//! Networks: `network create|ls|inspect|rm`, and a service's `--network` resolved to ids.
//!
//! A network's subnet, gateway and VNI are allocated inside its create transaction
//! ([`crate::allocator::allocate_network`]), so an overlapping subnet or an exhausted pool
//! is refused at once and nothing is written.

use shoal_proto::{Network, NetworkSpec, ServiceSpec};

use super::{ControlApi, ControlError};
use crate::allocator;
use crate::ids::new_id;
use crate::store::{lookup, Lookup, Object, ReadTx};

/// The driver option that sets a network's MTU, as docker's.
pub const MTU_OPT: &str = "com.docker.network.driver.mtu";
/// The driver option that encrypts a network's traffic between nodes.
pub const ENCRYPTED_OPT: &str = "encrypted";

impl ControlApi {
    pub async fn create_network(&self, spec: NetworkSpec) -> Result<Network, ControlError> {
        let spec = validate(spec)?;
        let network = self
            .store
            .update(|tx| {
                let r = tx.read();
                if let Some(other) = r.networks().find(|n| n.name() == spec.name) {
                    return Err(ControlError::Exists(format!(
                        "network {} already exists (id {}): choose another name",
                        spec.name, other.id
                    )));
                }
                if spec.ingress {
                    if let Some(ingress) = r.networks().find(|n| n.is_ingress()) {
                        return Err(ControlError::Refused(format!(
                            "an ingress network exists already: {}; remove it first",
                            ingress.name()
                        )));
                    }
                }
                let allocation = allocator::pools(r)
                    .and_then(|pools| {
                        allocator::allocate_network(&tx.networks_now(), &spec, &pools)
                    })
                    .map_err(|e| ControlError::Invalid(format!("network {}: {e}", spec.name)))?;
                let network = Network {
                    id: new_id(),
                    meta: None,
                    spec: Some(spec),
                    allocation: Some(allocation),
                };
                tx.create(Object::Network(network.clone()))?;
                Ok(network.id)
            })
            .await?;
        self.store
            .view(|r| r.network(&network).cloned())
            .ok_or(ControlError::NetworkNotFound(network))
    }

    /// The network, and the names of the services attached to it.
    pub fn get_network(&self, key: &str) -> Result<(Network, Vec<String>), ControlError> {
        self.store.view(|r| {
            let network = find_network(r, key)?.clone();
            let services = users(r, &network.id);
            Ok((network, services))
        })
    }

    pub fn list_networks(&self) -> Vec<Network> {
        self.store.view(|r| r.networks().cloned().collect())
    }

    /// Remove a network no service uses and no task is attached to any more.
    pub async fn remove_network(&self, key: &str) -> Result<(), ControlError> {
        self.store
            .update(|tx| {
                let r = tx.read();
                let network = find_network(r, key)?.clone();
                let services = users(r, &network.id);
                if !services.is_empty() {
                    let them = if services.len() == 1 { "it" } else { "them" };
                    let how = if network.is_ingress() {
                        format!("unpublish {them} with `shoal service update --publish-rm PORT`")
                    } else {
                        format!(
                            "detach {them} with `shoal service update --network-rm {}`",
                            network.name()
                        )
                    };
                    return Err(ControlError::Refused(format!(
                        "network {} is in use by service{} {}: remove {them} or {how} first",
                        network.name(),
                        if services.len() == 1 { "" } else { "s" },
                        services.join(", "),
                    )));
                }
                let attached = attached_tasks(r, &network.id);
                if attached > 0 {
                    return Err(ControlError::Refused(format!(
                        "network {} still has {attached} task{} attached: retry once they have stopped",
                        network.name(),
                        if attached == 1 { "" } else { "s" }
                    )));
                }
                tx.remove(Object::Network(network));
                Ok(())
            })
            .await
    }
}

/// How many tasks still hold an address on `network_id` (it cannot go before they stop).
pub(super) fn attached_tasks(r: &ReadTx<'_>, network_id: &str) -> usize {
    r.tasks()
        .filter(|t| t.holds_addresses())
        .filter(|t| t.networks.iter().any(|a| a.network_id == network_id))
        .count()
}

/// Names of the services whose tasks join `network_id` (the ingress network: those that
/// publish a port through the routing mesh).
fn users(r: &ReadTx<'_>, network_id: &str) -> Vec<String> {
    let ingress = r.network(network_id).is_some_and(|n| n.is_ingress());
    r.services()
        .filter(|s| {
            s.networks().any(|n| n.target == network_id)
                || (ingress && s.ports().iter().any(|p| p.is_ingress()))
        })
        .map(|s| s.name().to_string())
        .collect()
}

pub(super) fn find_network<'a>(r: &ReadTx<'a>, key: &str) -> Result<&'a Network, ControlError> {
    match r.find_network(key) {
        Lookup::Found(n) => Ok(n),
        Lookup::Missing => Err(ControlError::NetworkNotFound(key.to_string())),
        Lookup::Ambiguous(count) => Err(ControlError::Ambiguous {
            kind: "network",
            key: key.to_string(),
            count,
        }),
    }
}

/// A service's `--network` targets (names, ids or id prefixes) as network ids, each once.
/// A network that does not exist, or the ingress network, is refused.
pub(super) fn resolve(networks: &[Network], spec: &mut ServiceSpec) -> Result<(), ControlError> {
    let Some(task) = spec.task.as_mut() else {
        return Ok(());
    };
    let mut resolved: Vec<shoal_proto::NetworkAttachmentConfig> = Vec::new();
    for mut config in std::mem::take(&mut task.networks) {
        let exact = networks.iter().find(|n| n.id == config.target);
        let found = lookup(&config.target, exact, networks.iter(), Network::name, |n| {
            n.id.as_str()
        });
        let network = match found {
            Lookup::Found(n) => n,
            Lookup::Missing => {
                return Err(ControlError::Invalid(format!(
                    "network {0} not found: create it with `shoal network create -d overlay {0}`",
                    config.target
                )))
            }
            Lookup::Ambiguous(count) => {
                return Err(ControlError::Ambiguous {
                    kind: "network",
                    key: config.target,
                    count,
                })
            }
        };
        if network.is_ingress() {
            return Err(ControlError::Invalid(format!(
                "network {} is the routing mesh's ingress network: a service joins it by publishing a port (--publish), not with --network",
                network.name()
            )));
        }
        if resolved.iter().any(|c| c.target == network.id) {
            return Err(ControlError::Invalid(format!(
                "network {} is given twice: join each network once (aliases go in one --network name=N,alias=A)",
                network.name()
            )));
        }
        config.target = network.id.clone();
        resolved.push(config);
    }
    task.networks = resolved;
    Ok(())
}

pub(super) fn validate(mut spec: NetworkSpec) -> Result<NetworkSpec, ControlError> {
    let name = spec.name.trim().to_string();
    let valid_name = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !valid_name {
        return Err(ControlError::Invalid(format!(
            "invalid network name {name:?}: use letters, digits, '_', '.' and '-', starting with a letter or digit"
        )));
    }
    spec.name = name;
    match spec.driver.as_str() {
        "" => spec.driver = "overlay".into(),
        "overlay" => {}
        other => {
            return Err(ControlError::Invalid(format!(
                "network driver {other:?} is not supported: swarm networks use the overlay driver (-d overlay)"
            )))
        }
    }
    if let Some(mtu) = spec.driver_opts.get(MTU_OPT) {
        match mtu.parse::<u32>() {
            Ok(m) if (576..=65_535).contains(&m) => {}
            _ => {
                return Err(ControlError::Invalid(format!(
                    "invalid --opt {MTU_OPT}={mtu}: give an MTU from 576 to 65535"
                )))
            }
        }
    }
    if let Some(v) = spec.driver_opts.get(ENCRYPTED_OPT) {
        if !matches!(v.as_str(), "" | "true" | "1") {
            return Err(ControlError::Invalid(format!(
                "invalid --opt {ENCRYPTED_OPT}={v}: give --opt encrypted (or encrypted=true)"
            )));
        }
        if spec.ingress {
            return Err(ControlError::Invalid(
                "the ingress network cannot be encrypted: the routing mesh's traffic enters from clients outside the swarm; encrypt the networks between services instead".into(),
            ));
        }
    }
    if spec.ingress && spec.internal {
        return Err(ControlError::Invalid(
            "the ingress network cannot be internal: published ports must reach it".into(),
        ));
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use shoal_proto::{NetworkAttachmentConfig, ServiceSpec, TaskSpec};

    use crate::testutil::network_spec as spec;

    fn on(networks: &[&str]) -> ServiceSpec {
        ServiceSpec {
            name: "web".into(),
            task: Some(TaskSpec {
                networks: networks
                    .iter()
                    .map(|n| NetworkAttachmentConfig {
                        target: n.to_string(),
                        aliases: vec![],
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn networks_are_created_listed_resolved_and_refused_with_reasons() {
        let api = ControlApi::new(Store::in_memory());
        let front = api.create_network(spec("front", "")).await.expect("front");
        assert_eq!(
            front.allocation.as_ref().map(|a| a.subnet.as_str()),
            Some("10.0.0.0/24")
        );
        let err = |r: Result<Network, ControlError>| r.expect_err("refused").to_string();
        assert_eq!(
            err(api.create_network(spec("front", "")).await),
            format!(
                "network front already exists (id {}): choose another name",
                front.id
            )
        );
        assert_eq!(
            err(api.create_network(spec("back", "10.0.0.128/25")).await),
            "network back: subnet 10.0.0.128/25 overlaps subnet 10.0.0.0/24 of network front"
        );
        assert_eq!(
            err(api.create_network(spec("bad name", "")).await),
            "invalid network name \"bad name\": use letters, digits, '_', '.' and '-', starting with a letter or digit"
        );
        let mut bridge = spec("b", "");
        bridge.driver = "bridge".into();
        assert!(err(api.create_network(bridge).await).contains("not supported"));
        let mut encrypted = spec("e", "");
        encrypted
            .driver_opts
            .insert(ENCRYPTED_OPT.into(), String::new());
        let made = api.create_network(encrypted).await.expect("encrypted");
        assert!(made
            .spec
            .as_ref()
            .is_some_and(|s| s.driver_opts.contains_key(ENCRYPTED_OPT)));
        let mut falsely = spec("f", "");
        falsely
            .driver_opts
            .insert(ENCRYPTED_OPT.into(), "false".into());
        assert!(err(api.create_network(falsely).await).contains("give --opt encrypted"));
        let mut mtu = spec("m", "");
        mtu.driver_opts.insert(MTU_OPT.into(), "9".into());
        assert!(err(api.create_network(mtu).await).contains("MTU from 576"));
        let mut ingress = spec("ingress", "");
        ingress.ingress = true;
        api.create_network(ingress.clone()).await.expect("ingress");
        ingress.name = "ingress2".into();
        assert!(err(api.create_network(ingress).await).contains("an ingress network exists"));
        assert_eq!(api.list_networks().len(), 3, "front, e and ingress");

        // A service's targets become ids; a missing network and the ingress are refused.
        let mut web = on(&["front"]);
        api.store
            .view(|r| resolve(&r.networks().cloned().collect::<Vec<_>>(), &mut web))
            .expect("resolved");
        assert_eq!(
            web.task.as_ref().expect("task").networks[0].target,
            front.id
        );
        let mut missing = on(&["nope"]);
        assert_eq!(
            api.store
                .view(|r| resolve(&r.networks().cloned().collect::<Vec<_>>(), &mut missing))
                .expect_err("missing")
                .to_string(),
            "network nope not found: create it with `shoal network create -d overlay nope`"
        );
        assert!(api
            .store
            .view(|r| resolve(
                &r.networks().cloned().collect::<Vec<_>>(),
                &mut on(&["ingress"])
            ))
            .is_err());
        assert!(api
            .store
            .view(|r| resolve(
                &r.networks().cloned().collect::<Vec<_>>(),
                &mut on(&["front", &front.id])
            ))
            .expect_err("twice")
            .to_string()
            .contains("given twice"));
    }

    #[tokio::test]
    async fn a_network_in_use_is_not_removed_and_says_by_whom() {
        let api = ControlApi::new(Store::in_memory());
        api.create_network(spec("front", "")).await.expect("front");
        let web = api
            .create_service(shoal_proto::CreateServiceRequest {
                spec: Some(ServiceSpec {
                    replicas: 1,
                    task: Some(TaskSpec {
                        container: Some(shoal_proto::ContainerSpec {
                            image: "img".into(),
                            ..Default::default()
                        }),
                        ..on(&["front"]).task.expect("task")
                    }),
                    ..on(&[])
                }),
            })
            .await
            .expect("web");
        assert_eq!(
            api.remove_network("front").await.expect_err("in use").to_string(),
            "network front is in use by service web: remove it or detach it with `shoal service update --network-rm front` first"
        );
        api.remove_service(shoal_proto::RemoveServiceRequest {
            service: web.id.clone(),
        })
        .await
        .expect("rm web");
        api.remove_network("front").await.expect("removed");
        assert!(api.list_networks().is_empty());
        assert_eq!(
            api.remove_network("front")
                .await
                .expect_err("gone")
                .to_string(),
            "network front not found"
        );

        // The ingress network is in use by the services publishing through the mesh.
        let mut ingress = spec("ingress", "");
        ingress.ingress = true;
        api.create_network(ingress).await.expect("ingress");
        let mut published = on(&[]);
        published.name = "edge".into();
        published.endpoint = Some(shoal_proto::EndpointSpec {
            mode: 0,
            ports: vec![shoal_proto::PortConfig {
                published_port: 8080,
                target_port: 80,
                ..Default::default()
            }],
        });
        published.task = Some(TaskSpec {
            container: Some(shoal_proto::ContainerSpec {
                image: "img".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        api.create_service(shoal_proto::CreateServiceRequest {
            spec: Some(published),
        })
        .await
        .expect("edge");
        assert_eq!(
            api.remove_network("ingress").await.expect_err("in use").to_string(),
            "network ingress is in use by service edge: remove it or unpublish it with `shoal service update --publish-rm PORT` first"
        );
    }
}
