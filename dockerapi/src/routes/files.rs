//! `/secrets` and `/configs`: the same routes over two kinds of object. A secret's data
//! is never answered; a config's is.

use base64::Engine as _;
use hyper::StatusCode;
use serde_json::json;
use shoal_proto as pb;

use crate::backend::{call, Backend};
use crate::convert::to_docker;
use crate::error::{ApiError, ApiResult};
use crate::filters::Filters;
use crate::http::{Reply, Request};
use crate::model;

const FILTERS: &[&str] = &["id", "label", "name", "names"];
/// The largest secret or config, as Swarm's (500 KiB).
const MAX_DATA: usize = 500 * 1024;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Secret,
    Config,
}

impl Kind {
    pub fn of(path: &str) -> Kind {
        if path == "secrets" {
            Kind::Secret
        } else {
            Kind::Config
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Secret => "secret",
            Kind::Config => "config",
        }
    }
}

async fn all(backend: &Backend, kind: Kind) -> ApiResult<Vec<model::FileObject>> {
    let mut control = backend.control.clone();
    Ok(match kind {
        Kind::Secret => backend
            .answer(control.list_secrets(call(pb::ListSecretsRequest {})).await)
            .await?
            .secrets
            .iter()
            .map(to_docker::secret)
            .collect(),
        Kind::Config => backend
            .answer(control.list_configs(call(pb::ListConfigsRequest {})).await)
            .await?
            .configs
            .iter()
            .map(to_docker::config)
            .collect(),
    })
}

pub async fn list(backend: &Backend, kind: Kind, request: &Request) -> ApiResult<Reply> {
    let filters = Filters::parse(request.param("filters"), FILTERS)?;
    let shown: Vec<model::FileObject> = all(backend, kind)
        .await?
        .into_iter()
        .filter(|o| {
            filters.any("id", |v| o.id.starts_with(v))
                && filters.any("name", |v| o.spec.name.starts_with(v))
                && filters.any("names", |v| o.spec.name == v)
                && filters.labels_match("label", |k| o.spec.labels.get(k).map(String::as_str))
        })
        .collect();
    Ok(Reply::ok(&shown))
}

async fn get(backend: &Backend, kind: Kind, id: &str) -> ApiResult<model::FileObject> {
    let mut control = backend.control.clone();
    let found = match kind {
        Kind::Secret => backend
            .answer(
                control
                    .get_secret(call(pb::GetSecretRequest { secret: id.into() }))
                    .await,
            )
            .await?
            .secret
            .as_ref()
            .map(to_docker::secret),
        Kind::Config => backend
            .answer(
                control
                    .get_config(call(pb::GetConfigRequest { config: id.into() }))
                    .await,
            )
            .await?
            .config
            .as_ref()
            .map(to_docker::config),
    };
    found.ok_or_else(|| ApiError::not_found(format!("{} {id} not found", kind.name())))
}

pub async fn inspect(backend: &Backend, kind: Kind, id: &str) -> ApiResult<Reply> {
    Ok(Reply::ok(&get(backend, kind, id).await?))
}

pub async fn create(backend: &Backend, kind: Kind, request: &Request) -> ApiResult<Reply> {
    let spec: model::FileSpec = request.json(&format!("{} spec", kind.name()))?;
    if spec.name.trim().is_empty() {
        return Err(ApiError::bad_request(format!(
            "the {} has no Name: give it one",
            kind.name()
        )));
    }
    if spec.driver.as_ref().is_some_and(|d| !d.is_null()) {
        return Err(ApiError::bad_request(format!(
            "{} drivers are not supported: send the data itself (Data, base64)",
            kind.name()
        )));
    }
    if spec.templating.as_ref().is_some_and(|t| !t.is_null()) {
        return Err(ApiError::bad_request(format!(
            "{} templating is not supported: send the data as it should be read",
            kind.name()
        )));
    }
    let data = base64::engine::general_purpose::STANDARD
        .decode(spec.data.as_deref().unwrap_or("").trim())
        .map_err(|e| ApiError::bad_request(format!("invalid Data: {e}: send it base64-encoded")))?;
    if data.len() > MAX_DATA {
        return Err(ApiError::bad_request(format!(
            "{} data is {} bytes: the limit is {MAX_DATA} (500 KiB)",
            kind.name(),
            data.len()
        )));
    }
    let labels = spec.labels.into_iter().collect();
    let mut control = backend.control.clone();
    let id = match kind {
        Kind::Secret => backend
            .answer(
                control
                    .create_secret(call(pb::CreateSecretRequest {
                        spec: Some(pb::SecretSpec {
                            name: spec.name,
                            labels,
                            data,
                        }),
                    }))
                    .await,
            )
            .await?
            .secret
            .map(|s| s.id),
        Kind::Config => backend
            .answer(
                control
                    .create_config(call(pb::CreateConfigRequest {
                        spec: Some(pb::ConfigSpec {
                            name: spec.name,
                            labels,
                            data,
                        }),
                    }))
                    .await,
            )
            .await?
            .config
            .map(|c| c.id),
    };
    Ok(Reply::json(
        StatusCode::CREATED,
        &json!({ "ID": id.unwrap_or_default() }),
    ))
}

/// Only the labels change, as Docker allows; new data is refused (a new secret or config
/// carries new content).
pub async fn update(
    backend: &Backend,
    kind: Kind,
    id: &str,
    request: &Request,
) -> ApiResult<Reply> {
    let version = request.version()?;
    let spec: model::FileSpec = request.json(&format!("{} spec", kind.name()))?;
    let current = get(backend, kind, id).await?;
    if !spec.name.is_empty() && spec.name != current.spec.name {
        return Err(ApiError::bad_request(format!(
            "only the labels of a {} can change: its name stays {}",
            kind.name(),
            current.spec.name
        )));
    }
    let new_data = match (kind, spec.data.as_deref()) {
        (_, None) => false,
        (Kind::Secret, Some(data)) => !data.is_empty(),
        (Kind::Config, Some(data)) => Some(data) != current.spec.data.as_deref(),
    };
    if new_data {
        return Err(ApiError::bad_request(format!(
            "only the labels of a {0} can change: create a new {0} for new content",
            kind.name()
        )));
    }
    let request = pb::UpdateFileLabelsRequest {
        key: current.id.clone(),
        version,
        labels: spec.labels.into_iter().collect(),
    };
    let mut control = backend.control.clone();
    match kind {
        Kind::Secret => {
            backend
                .answer(control.update_secret(call(request)).await)
                .await?;
        }
        Kind::Config => {
            backend
                .answer(control.update_config(call(request)).await)
                .await?;
        }
    }
    Ok(super::done())
}

pub async fn remove(backend: &Backend, kind: Kind, id: &str) -> ApiResult<Reply> {
    let mut control = backend.control.clone();
    match kind {
        Kind::Secret => {
            backend
                .answer(
                    control
                        .remove_secret(call(pb::RemoveSecretRequest { secret: id.into() }))
                        .await,
                )
                .await?;
        }
        Kind::Config => {
            backend
                .answer(
                    control
                        .remove_config(call(pb::RemoveConfigRequest { config: id.into() }))
                        .await,
                )
                .await?;
        }
    }
    Ok(Reply::Empty(StatusCode::NO_CONTENT))
}
