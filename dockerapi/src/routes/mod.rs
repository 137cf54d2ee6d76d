//! Which route answers a request. Unknown paths get dockerd's 404 "page not found".

mod distribution;
mod events;
mod files;
mod logs;
mod networks;
mod nodes;
mod services;
mod system;
mod tasks;

use hyper::{Method, StatusCode};

use crate::backend::Backend;
use crate::error::{ApiError, ApiResult};
use crate::http::{Reply, Request};

pub use system::swarm_header;

/// The answer to `request`.
pub async fn handle(backend: &Backend, request: Request) -> ApiResult<Reply> {
    let path: Vec<&str> = request.path.iter().map(String::as_str).collect();
    let get = request.method == Method::GET;
    let post = request.method == Method::POST;
    let delete = request.method == Method::DELETE;
    let head = request.method == Method::HEAD;
    match path.as_slice() {
        ["_ping"] if get || head => Ok(system::ping(head)),
        ["version"] if get => Ok(system::version()),
        ["info"] if get => system::info(backend).await,
        ["swarm"] if get => system::swarm(backend).await,

        ["nodes"] if get => nodes::list(backend, &request).await,
        ["nodes", id] if get => nodes::inspect(backend, id).await,
        ["nodes", id, "update"] if post => nodes::update(backend, id, &request).await,
        ["nodes", id] if delete => nodes::remove(backend, id, &request).await,

        ["services"] if get => services::list(backend, &request).await,
        ["services", "create"] if post => services::create(backend, &request).await,
        ["services", id] if get => services::inspect(backend, id).await,
        ["services", id, "update"] if post => services::update(backend, id, &request).await,
        ["services", id] if delete => services::remove(backend, id).await,
        ["services" | "tasks", id, "logs"] if get => logs::stream(backend, id, &request).await,

        ["tasks"] if get => tasks::list(backend, &request).await,
        ["tasks", id] if get => tasks::inspect(backend, id).await,

        ["networks"] if get => networks::list(backend, &request).await,
        ["networks", "create"] if post => networks::create(backend, &request).await,
        ["networks", id] if get => networks::inspect(backend, id).await,
        ["networks", id] if delete => networks::remove(backend, id).await,

        [kind @ ("secrets" | "configs")] if get => {
            files::list(backend, files::Kind::of(kind), &request).await
        }
        [kind @ ("secrets" | "configs"), "create"] if post => {
            files::create(backend, files::Kind::of(kind), &request).await
        }
        [kind @ ("secrets" | "configs"), id] if get => {
            files::inspect(backend, files::Kind::of(kind), id).await
        }
        [kind @ ("secrets" | "configs"), id, "update"] if post => {
            files::update(backend, files::Kind::of(kind), id, &request).await
        }
        [kind @ ("secrets" | "configs"), id] if delete => {
            files::remove(backend, files::Kind::of(kind), id).await
        }

        ["events"] if get => events::stream(backend, &request).await,
        ["distribution", image @ .., "json"] if get => {
            distribution::inspect(backend, &image.join("/"), &request).await
        }

        _ => Err(ApiError::not_found("page not found")),
    }
}

/// 200 with no body, as dockerd answers a removal of a service or node.
fn done() -> Reply {
    Reply::Empty(StatusCode::OK)
}
