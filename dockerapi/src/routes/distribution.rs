//! `/distribution/{image}/json`: an image's digest in its registry, as the node resolves
//! it (with the request's credentials). The docker CLI asks before `service create` and
//! `service update --image`, to pin every node to the same digest; when the registry
//! cannot be reached it warns and goes on, as it does against Swarm.

use serde_json::json;
use shoal_proto as pb;

use crate::backend::{call, Backend};
use crate::error::{ApiError, ApiResult};
use crate::http::{Reply, Request};

pub async fn inspect(backend: &Backend, image: &str, request: &Request) -> ApiResult<Reply> {
    if image.is_empty() {
        return Err(ApiError::bad_request(
            "no image named: /distribution/NAME/json",
        ));
    }
    let auth = super::services::registry_auth(request)?;
    let resolved = backend
        .answer(
            backend
                .admin
                .clone()
                .resolve_image(call(pb::ResolveImageRequest {
                    image: image.into(),
                    auth,
                }))
                .await,
        )
        .await?;
    let digest = resolved
        .reference
        .rsplit_once('@')
        .map(|(_, digest)| digest.to_string())
        .ok_or_else(|| ApiError::not_found(format!("no digest for {image} in its registry")))?;
    Ok(Reply::ok(&json!({
        "Descriptor": {
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "digest": digest,
            "size": 0,
        },
        "Platforms": [{"architecture": super::system::arch(), "os": std::env::consts::OS}],
    })))
}
