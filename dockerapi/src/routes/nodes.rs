//! `/nodes`: list (with Docker's filters), inspect, update with `?version=`, remove.

use shoal_proto as pb;

use super::done;
use crate::backend::{call, Backend};
use crate::convert::{enums, from_docker, to_docker};
use crate::error::{ApiError, ApiResult};
use crate::filters::Filters;
use crate::http::{Reply, Request};
use crate::model;

const FILTERS: &[&str] = &["id", "label", "membership", "name", "node.label", "role"];

pub async fn list(backend: &Backend, request: &Request) -> ApiResult<Reply> {
    let filters = Filters::parse(request.param("filters"), FILTERS)?;
    for role in filters.values("role") {
        enums::parse_role(role)?;
    }
    let nodes = backend
        .answer(
            backend
                .control
                .clone()
                .list_nodes(call(pb::ListNodesRequest {}))
                .await,
        )
        .await?
        .nodes;
    let shown: Vec<model::Node> = nodes
        .iter()
        .map(to_docker::node)
        .filter(|n| {
            filters.any("id", |v| n.id.starts_with(v))
                && filters.any("name", |v| n.description.hostname.starts_with(v))
                && filters.any("role", |v| n.spec.role == v)
                && filters.any("membership", |v| v == "accepted")
                && filters.labels_match("node.label", |k| n.spec.labels.get(k).map(String::as_str))
                && filters.labels_match("label", |k| {
                    n.description.engine.labels.get(k).map(String::as_str)
                })
        })
        .collect();
    Ok(Reply::ok(&shown))
}

async fn get(backend: &Backend, id: &str) -> ApiResult<pb::Node> {
    let node = backend
        .answer(
            backend
                .control
                .clone()
                .get_node(call(pb::GetNodeRequest { node: id.into() }))
                .await,
        )
        .await?
        .node;
    node.ok_or_else(|| ApiError::not_found(format!("node {id} not found")))
}

pub async fn inspect(backend: &Backend, id: &str) -> ApiResult<Reply> {
    Ok(Reply::ok(&to_docker::node(&get(backend, id).await?)))
}

pub async fn update(backend: &Backend, id: &str, request: &Request) -> ApiResult<Reply> {
    let version = request.version()?;
    let spec = from_docker::node_spec(request.json::<model::NodeSpec>("node spec")?)?;
    let node = get(backend, id).await?;
    let meta = node.meta.unwrap_or_default();
    if version < meta.spec_index || version > meta.version {
        return Err(super::services::out_of_sequence(
            "node",
            id,
            version,
            meta.version,
        ));
    }
    backend
        .answer(
            backend
                .control
                .clone()
                .update_node(call(pb::UpdateNodeRequest {
                    node: node.id.clone(),
                    version: meta.version,
                    spec: Some(spec),
                }))
                .await,
        )
        .await?;
    Ok(done())
}

pub async fn remove(backend: &Backend, id: &str, request: &Request) -> ApiResult<Reply> {
    let force = request.flag("force");
    backend
        .answer(
            backend
                .control
                .clone()
                .remove_node(call(pb::RemoveNodeRequest {
                    node: id.into(),
                    force,
                }))
                .await,
        )
        .await?;
    Ok(done())
}
