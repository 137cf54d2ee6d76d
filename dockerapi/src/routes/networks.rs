//! `/networks`: Shoal's overlay networks (swarm scope) as Docker lists, inspects, creates
//! and removes them.

use std::time::Duration;

use hyper::StatusCode;
use serde_json::json;
use shoal_proto as pb;
use tokio::time::Instant;

use crate::backend::{call, Backend};
use crate::convert::to_docker;
use crate::error::{ApiError, ApiResult};
use crate::filters::{truth, Filters};
use crate::http::{Reply, Request};
use crate::model;

const FILTERS: &[&str] = &["dangling", "driver", "id", "label", "name", "scope", "type"];

pub async fn list(backend: &Backend, request: &Request) -> ApiResult<Reply> {
    let filters = Filters::parse(request.param("filters"), FILTERS)?;
    for kind in filters.values("type") {
        if !matches!(kind.as_str(), "custom" | "builtin") {
            return Err(ApiError::bad_request(format!(
                "invalid filter 'type={kind}': use custom or builtin"
            )));
        }
    }
    let mut dangling = None;
    for value in filters.values("dangling") {
        dangling = Some(truth(value).ok_or_else(|| {
            ApiError::bad_request(format!(
                "invalid filter 'dangling={value}': use true or false"
            ))
        })?);
    }
    let networks = backend.networks().await?;
    let in_use = if dangling.is_some() {
        services_networks(backend).await?
    } else {
        Vec::new()
    };
    let shown: Vec<model::NetworkResource> = networks
        .iter()
        .map(to_docker::network)
        .filter(|n| {
            let builtin = n.ingress;
            filters.any("id", |v| n.id.starts_with(v))
                // Docker matches network names as a pattern: a part of the name matches.
                && filters.any("name", |v| n.name.contains(v))
                && filters.any("driver", |v| n.driver == v)
                && filters.any("scope", |v| v == "swarm")
                && filters.any("type", |v| (v == "builtin") == builtin)
                && dangling.is_none_or(|d| d != in_use.contains(&n.id))
                && filters.labels_match("label", |k| n.labels.get(k).map(String::as_str))
        })
        .collect();
    Ok(Reply::ok(&shown))
}

/// The ids of the networks some service joins.
async fn services_networks(backend: &Backend) -> ApiResult<Vec<String>> {
    let services = backend.services().await?.services;
    Ok(services
        .iter()
        .flat_map(|s| s.networks().map(|n| n.target.clone()).collect::<Vec<_>>())
        .collect())
}

pub async fn inspect(backend: &Backend, id: &str) -> ApiResult<Reply> {
    let network = backend
        .answer(
            backend
                .control
                .clone()
                .get_network(call(pb::GetNetworkRequest { network: id.into() }))
                .await,
        )
        .await?
        .network
        .ok_or_else(|| ApiError::not_found(format!("network {id} not found")))?;
    Ok(Reply::ok(&to_docker::network(&network)))
}

pub async fn create(backend: &Backend, request: &Request) -> ApiResult<Reply> {
    let create: model::NetworkCreate = request.json("network create request")?;
    if create.name.trim().is_empty() {
        return Err(ApiError::bad_request(
            "the network has no Name: give it one",
        ));
    }
    if !matches!(create.driver.as_str(), "" | "overlay") {
        return Err(ApiError::bad_request(format!(
            "network driver {:?} is not available on a Shoal swarm: its networks span the swarm; use -d overlay",
            create.driver
        )));
    }
    if !matches!(create.scope.as_str(), "" | "swarm") {
        return Err(ApiError::bad_request(format!(
            "network scope {:?}: Shoal's networks have swarm scope",
            create.scope
        )));
    }
    if create.enable_ipv6 {
        return Err(ApiError::bad_request(
            "IPv6 overlay networks are not supported yet: create the network without --ipv6",
        ));
    }
    if create.config_only {
        return Err(ApiError::bad_request(
            "config-only networks are not supported: create the network with its options",
        ));
    }
    let ipam = create.ipam.unwrap_or_default();
    if ipam.config.len() > 1 {
        return Err(ApiError::bad_request(
            "a Shoal network takes one subnet: give one --subnet",
        ));
    }
    let config = ipam.config.into_iter().next().unwrap_or_default();
    if !config.ip_range.is_empty() {
        return Err(ApiError::bad_request(
            "--ip-range is not supported: give the subnet the tasks' addresses come from",
        ));
    }
    let spec = pb::NetworkSpec {
        name: create.name,
        labels: create.labels.into_iter().collect(),
        driver: "overlay".into(),
        ipam: Some(pb::IpamConfig {
            subnet: config.subnet,
            gateway: config.gateway,
        }),
        attachable: create.attachable,
        internal: create.internal,
        ingress: create.ingress,
        driver_opts: create.options.into_iter().collect(),
    };
    let network = backend
        .answer(
            backend
                .control
                .clone()
                .create_network(call(pb::CreateNetworkRequest { spec: Some(spec) }))
                .await,
        )
        .await?
        .network
        .unwrap_or_default();
    Ok(Reply::json(
        StatusCode::CREATED,
        &json!({"Id": network.id, "Warning": ""}),
    ))
}

/// How long a removal waits for the tasks still attached to stop.
const DETACH_WAIT: Duration = Duration::from_secs(60);

/// Remove the network. Tasks still attached (a service just removed, its tasks stopping)
/// are waited for, as Swarm lets `stack rm` remove the stack's networks right after its
/// services; a service that still uses it is refused at once.
pub async fn remove(backend: &Backend, id: &str) -> ApiResult<Reply> {
    let deadline = Instant::now() + DETACH_WAIT;
    loop {
        let result = backend
            .control
            .clone()
            .remove_network(call(pb::RemoveNetworkRequest { network: id.into() }))
            .await;
        match result {
            Ok(_) => return Ok(Reply::Empty(StatusCode::NO_CONTENT)),
            Err(status)
                if status.code() == tonic::Code::FailedPrecondition
                    && status.message().contains("attached: retry")
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(status) => return Err(backend.refusal(status).await),
        }
    }
}
