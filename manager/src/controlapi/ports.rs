//! Published ports against the store: a port the routing mesh publishes is bound on every
//! node, so no other service may publish it (in either mode); a mesh port given without a
//! number gets one from Swarm's dynamic range.

use std::borrow::Borrow;
use std::collections::BTreeSet;
use std::ops::RangeInclusive;

use shoal_proto::{Network, PortConfig, Service, ServiceSpec};

use super::ControlError;

/// Where mesh ports given without a number come from (Swarm's range).
pub const DYNAMIC: RangeInclusive<u32> = 30_000..=32_767;

/// Check `spec`'s ports against every other service's, and number its mesh ports given
/// without one: the number it had before when `service_id`'s stored spec published the
/// same target, else the first free one of [`DYNAMIC`].
/// `services`: every service that publishes ports, and `networks` every network, as the
/// calling transaction sees them (a service publishing nothing has nothing to clash with).
pub fn claim(
    services: &[impl Borrow<Service>],
    networks: &[Network],
    spec: &mut ServiceSpec,
    service_id: Option<&str>,
) -> Result<(), ControlError> {
    let services = || services.iter().map(Borrow::borrow);
    let others: Vec<(&str, &PortConfig)> = services()
        .filter(|s| Some(s.id.as_str()) != service_id)
        .flat_map(|s| s.ports().iter().map(move |p| (s.name(), p)))
        .collect();
    let before: Vec<PortConfig> = service_id
        .and_then(|id| services().find(|s: &&Service| s.id == id))
        .map(|s| s.ports().to_vec())
        .unwrap_or_default();
    let Some(endpoint) = spec.endpoint.as_mut() else {
        return Ok(());
    };
    if let Some(p) = endpoint.ports.iter().find(|p| p.is_ingress()) {
        if !networks.iter().any(Network::is_ingress) {
            return Err(ControlError::Invalid(format!(
                "port {}/{} goes through the routing mesh, which needs the ingress network, and this swarm has none: create it with `shoal network create --ingress ingress`, or publish with mode=host",
                p.target_port,
                p.protocol_name()
            )));
        }
    }
    let mut taken: BTreeSet<(u32, i32)> = others
        .iter()
        .map(|(_, p)| (p.published_port, p.protocol))
        .chain(
            endpoint
                .ports
                .iter()
                .map(|p| (p.published_port, p.protocol)),
        )
        .collect();
    for port in endpoint.ports.iter_mut() {
        if port.is_ingress() && port.published_port == 0 {
            port.published_port = before
                .iter()
                .find(|b| {
                    b.is_ingress()
                        && b.target_port == port.target_port
                        && b.protocol == port.protocol
                        && !taken.contains(&(b.published_port, b.protocol))
                })
                .map(|b| b.published_port)
                .or_else(|| {
                    DYNAMIC
                        .clone()
                        .find(|n| !taken.contains(&(*n, port.protocol)))
                })
                .ok_or_else(|| {
                    ControlError::Invalid(format!(
                        "no free port left in {}-{} for {}/{}: publish it with published=PORT",
                        DYNAMIC.start(),
                        DYNAMIC.end(),
                        port.target_port,
                        port.protocol_name()
                    ))
                })?;
            taken.insert((port.published_port, port.protocol));
        }
    }
    for port in endpoint.ports.iter().filter(|p| p.published_port != 0) {
        let clash = others.iter().find(|(_, other)| {
            other.published_port == port.published_port
                && other.protocol == port.protocol
                && (port.is_ingress() || other.is_ingress())
        });
        if let Some((holder, other)) = clash {
            let how = if other.is_ingress() {
                "through the routing mesh, on every node"
            } else {
                "in host mode"
            };
            return Err(ControlError::Invalid(format!(
                "port {}/{} is already published by service {holder} ({how}): publish another port, or free it with `shoal service update --publish-rm {} {holder}`",
                port.published_port,
                port.protocol_name(),
                port.published_port
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use shoal_proto::{PortProtocol, PublishMode};

    use super::*;
    use crate::store::{Object, Store};
    use crate::testutil::{ingress_network, port, publish, put, service};

    fn publishing(name: &str, ports: Vec<PortConfig>) -> shoal_proto::Service {
        publish(service(name, 1), ports)
    }

    /// `claim` against a store's committed state.
    fn claim_in(
        r: &crate::store::ReadTx<'_>,
        spec: &mut ServiceSpec,
        id: Option<&str>,
    ) -> Result<(), ControlError> {
        let services: Vec<_> = r.services().cloned().collect();
        let networks: Vec<_> = r.networks().cloned().collect();
        claim(&services, &networks, spec, id)
    }

    fn spec(ports: Vec<PortConfig>) -> ServiceSpec {
        publishing("new", ports).spec.expect("spec")
    }

    fn ingress() -> Object {
        Object::Network(ingress_network("ing"))
    }

    #[tokio::test]
    async fn without_an_ingress_network_the_mesh_is_refused_with_the_way_out() {
        let store = Store::in_memory();
        let mut s = spec(vec![port(8080, 80, PublishMode::Ingress)]);
        let err = store
            .view(|r| claim_in(r, &mut s, None))
            .expect_err("no ingress")
            .to_string();
        assert!(
            err.contains("create it with `shoal network create --ingress ingress`"),
            "{err}"
        );
        let mut s = spec(vec![port(8080, 80, PublishMode::Host)]);
        store
            .view(|r| claim_in(r, &mut s, None))
            .expect("host mode needs none");
    }

    #[tokio::test]
    async fn a_port_held_by_another_service_is_refused_naming_it() {
        let store = Store::in_memory();
        put(
            &store,
            vec![
                ingress(),
                Object::Service(publishing(
                    "web",
                    vec![port(8080, 80, PublishMode::Ingress)],
                )),
                Object::Service(publishing("edge", vec![port(9090, 80, PublishMode::Host)])),
            ],
        )
        .await;
        let claim_for = |mut s: ServiceSpec, id: Option<&str>| {
            store
                .view(|r| claim_in(r, &mut s, id))
                .map(|()| s)
                .map_err(|e| e.to_string())
        };
        let err = claim_for(spec(vec![port(8080, 80, PublishMode::Host)]), None)
            .expect_err("8080 is web's");
        assert!(
            err.contains("already published by service web-name"),
            "{err}"
        );
        assert!(err.contains("routing mesh"), "{err}");
        // The mesh binds every node: a host-mode port elsewhere is in its way.
        let err = claim_for(spec(vec![port(9090, 80, PublishMode::Ingress)]), None)
            .expect_err("9090 is edge's on some nodes");
        assert!(err.contains("edge-name (in host mode)"), "{err}");
        // Host mode beside host mode is the scheduler's business; udp is another port.
        claim_for(spec(vec![port(9090, 80, PublishMode::Host)]), None).expect("host beside host");
        let mut udp = port(8080, 80, PublishMode::Ingress);
        udp.protocol = PortProtocol::Udp as i32;
        claim_for(spec(vec![udp]), None).expect("8080/udp is free");
        // A service keeps its own port through an update.
        let web = store.view(|r| r.services().find(|s| s.name() == "web-name").cloned());
        let web = web.expect("web");
        claim_for(web.spec.clone().expect("spec"), Some(&web.id)).expect("its own port");
    }

    #[tokio::test]
    async fn a_mesh_port_without_a_number_gets_a_free_one_and_keeps_it() {
        let store = Store::in_memory();
        put(
            &store,
            vec![
                ingress(),
                Object::Service(publishing(
                    "web",
                    vec![port(30_000, 80, PublishMode::Ingress)],
                )),
            ],
        )
        .await;
        let mut s = spec(vec![
            port(0, 80, PublishMode::Ingress),
            port(0, 81, PublishMode::Ingress),
        ]);
        store.view(|r| claim_in(r, &mut s, None)).expect("numbered");
        let numbers: Vec<u32> = s
            .endpoint
            .as_ref()
            .expect("endpoint")
            .ports
            .iter()
            .map(|p| p.published_port)
            .collect();
        assert_eq!(numbers, [30_001, 30_002]);
        // An update that leaves the number out again keeps the one it had.
        let web = store.view(|r| r.services().find(|s| s.name() == "web-name").cloned());
        let web = web.expect("web");
        let mut again = web.spec.clone().expect("spec");
        again.endpoint.as_mut().expect("endpoint").ports[0].published_port = 0;
        store
            .view(|r| claim_in(r, &mut again, Some(&web.id)))
            .expect("kept");
        assert_eq!(
            again.endpoint.expect("endpoint").ports[0].published_port,
            30_000
        );
    }
}
