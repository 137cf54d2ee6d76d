//! `/services`: list (with `status=true` and filters), create, inspect, update with
//! `?version=` (checked against the spec's own version, so a rolling update's progress
//! writes never make a client's update fail), rollback, remove.

use base64::Engine as _;
use hyper::StatusCode;
use serde_json::json;
use shoal_proto as pb;

use super::done;
use crate::backend::{call, Backend};
use crate::convert::{from_docker, to_docker};
use crate::error::{ApiError, ApiResult};
use crate::filters::Filters;
use crate::http::{Reply, Request};
use crate::model;

const FILTERS: &[&str] = &["id", "label", "mode", "name"];
/// Writes refused because another write came between our read and ours are tried again
/// this many times (the client's version is checked again each time).
const ATTEMPTS: usize = 5;

pub async fn list(backend: &Backend, request: &Request) -> ApiResult<Reply> {
    let filters = Filters::parse(request.param("filters"), FILTERS)?;
    for mode in filters.values("mode") {
        if !matches!(
            mode.as_str(),
            "replicated" | "global" | "replicated-job" | "global-job"
        ) {
            return Err(ApiError::bad_request(format!(
                "invalid filter 'mode={mode}': use replicated, global, replicated-job or global-job"
            )));
        }
    }
    let status = request.flag("status");
    let listed = backend.services().await?;
    let services = listed
        .services
        .iter()
        .filter(|s| {
            let spec = s.spec.clone().unwrap_or_default();
            let mode = match spec.mode() {
                pb::ServiceMode::Replicated => "replicated",
                pb::ServiceMode::Global => "global",
                pb::ServiceMode::ReplicatedJob => "replicated-job",
                pb::ServiceMode::GlobalJob => "global-job",
            };
            filters.any("id", |v| s.id.starts_with(v))
                && filters.any("name", |v| spec.name.starts_with(v))
                && filters.any("mode", |v| v == mode)
                && filters.labels_match("label", |k| {
                    s.spec.as_ref()?.labels.get(k).map(String::as_str)
                })
        })
        .cloned()
        .collect::<Vec<_>>();
    let mut shown = Vec::with_capacity(services.len());
    for s in &services {
        let counts = if status {
            Some(counts(backend, s, listed.replicas.get(&s.id).cloned()).await?)
        } else {
            None
        };
        shown.push(to_docker::service(s, counts));
    }
    Ok(Reply::ok(&shown))
}

/// `ServiceStatus` as dockerd counts it. A job's count from the manager is its
/// completions (Shoal's `service ls` shows them so): they are Docker's CompletedTasks, and
/// its tasks running now are counted here.
async fn counts(
    backend: &Backend,
    service: &pb::Service,
    count: Option<pb::ReplicaCount>,
) -> ApiResult<to_docker::Counts> {
    let count = count.unwrap_or_default();
    let job = matches!(
        service.spec.as_ref().map(|s| s.mode()),
        Some(pb::ServiceMode::ReplicatedJob | pb::ServiceMode::GlobalJob)
    );
    if !job {
        return Ok(to_docker::Counts {
            running: count.running,
            desired: count.desired,
            completed: 0,
        });
    }
    let running = backend
        .tasks(&service.id, "")
        .await?
        .iter()
        .filter(|t| t.state() == pb::TaskState::Running)
        .count() as u64;
    Ok(to_docker::Counts {
        running,
        desired: count.desired,
        completed: count.running,
    })
}

pub async fn get(backend: &Backend, id: &str) -> ApiResult<pb::Service> {
    let service = backend
        .answer(
            backend
                .control
                .clone()
                .get_service(call(pb::GetServiceRequest { service: id.into() }))
                .await,
        )
        .await?
        .service;
    service.ok_or_else(|| ApiError::not_found(format!("service {id} not found")))
}

pub async fn inspect(backend: &Backend, id: &str) -> ApiResult<Reply> {
    Ok(Reply::ok(&to_docker::service(
        &get(backend, id).await?,
        None,
    )))
}

/// The credentials in `X-Registry-Auth` (base64url JSON, as `docker login` saved them).
pub fn registry_auth(request: &Request) -> ApiResult<Option<pb::RegistryAuth>> {
    let Some(header) = request.headers.get("X-Registry-Auth") else {
        return Ok(None);
    };
    let text = header.to_str().unwrap_or("").trim();
    if text.is_empty() {
        return Ok(None);
    }
    let bad = |why: String| ApiError::bad_request(format!("invalid X-Registry-Auth header: {why}"));
    let bytes = base64::engine::general_purpose::URL_SAFE
        .decode(text)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text))
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(text))
        .map_err(|e| bad(e.to_string()))?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
    let field = |name: &str| {
        value
            .as_object()
            .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
            .and_then(|(_, v)| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    let auth = pb::RegistryAuth {
        username: field("username"),
        password: field("password"),
        server_address: field("serveraddress"),
    };
    Ok((!auth.username.is_empty() || !auth.password.is_empty()).then_some(auth))
}

/// The spec in the body, with the request's registry credentials.
fn spec_of(request: &Request) -> ApiResult<pb::ServiceSpec> {
    let mut spec = from_docker::service_spec(request.json::<model::ServiceSpec>("service spec")?)?;
    if let Some(auth) = registry_auth(request)? {
        if let Some(container) = spec.task.as_mut().and_then(|t| t.container.as_mut()) {
            container.registry_auth = Some(auth);
        }
    }
    Ok(spec)
}

pub async fn create(backend: &Backend, request: &Request) -> ApiResult<Reply> {
    let spec = spec_of(request)?;
    let created = backend
        .answer(
            backend
                .control
                .clone()
                .create_service(call(pb::CreateServiceRequest { spec: Some(spec) }))
                .await,
        )
        .await?;
    let id = created.service.map(|s| s.id).unwrap_or_default();
    Ok(Reply::json(StatusCode::CREATED, &json!({ "ID": id })))
}

/// dockerd's refusal of a write built on an old read.
pub fn out_of_sequence(kind: &str, id: &str, asked: u64, now: u64) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        format!(
            "update out of sequence: {kind} {id} changed since version {asked} was read (it is at {now} now): inspect it again and retry"
        ),
    )
}

pub async fn update(backend: &Backend, id: &str, request: &Request) -> ApiResult<Reply> {
    let version = request.version()?;
    let rollback = match request.param("rollback").unwrap_or("") {
        "" => false,
        "previous" => true,
        other => {
            return Err(ApiError::bad_request(format!(
                "invalid rollback {other:?}: the only value is \"previous\""
            )))
        }
    };
    match request.param("registryAuthFrom").unwrap_or("") {
        "" | "spec" | "previous-spec" => {}
        other => {
            return Err(ApiError::bad_request(format!(
                "invalid registryAuthFrom {other:?}: use \"spec\" or \"previous-spec\""
            )))
        }
    }
    let spec = if rollback {
        None
    } else {
        Some(spec_of(request)?)
    };
    for _ in 0..ATTEMPTS {
        let service = get(backend, id).await?;
        let meta = service.meta.unwrap_or_default();
        if version < meta.spec_index || version > meta.version {
            return Err(out_of_sequence("service", id, version, meta.version));
        }
        let mut control = backend.control.clone();
        let result = match &spec {
            None => control
                .rollback_service(call(pb::RollbackServiceRequest {
                    service: service.id.clone(),
                }))
                .await
                .map(|_| ()),
            Some(spec) => control
                .update_service(call(pb::UpdateServiceRequest {
                    service: service.id.clone(),
                    version: meta.version,
                    spec: Some(spec.clone()),
                }))
                .await
                .map(|_| ()),
        };
        match result {
            Ok(()) => return Ok(Reply::ok(&json!({ "Warnings": null }))),
            Err(status) if status.code() == tonic::Code::Aborted => continue,
            Err(status) => return Err(backend.refusal(status).await),
        }
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        format!("service {id} kept changing while it was being updated: try again"),
    ))
}

pub async fn remove(backend: &Backend, id: &str) -> ApiResult<Reply> {
    backend
        .answer(
            backend
                .control
                .clone()
                .remove_service(call(pb::RemoveServiceRequest { service: id.into() }))
                .await,
        )
        .await?;
    Ok(done())
}
