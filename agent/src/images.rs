//! Images shared between nodes: a node that lacks a task's image and cannot pull it (no
//! registry, or an image built or loaded on one node only) fetches it from a node that
//! holds it.
//!
//! Both halves are here. [`ImagesApi`] serves `Images.Fetch` on every node's port, behind
//! the swarm's mutual TLS: the image as the engine's `docker save` writes it, streamed.
//! [`PeerImages`] asks a manager which nodes may hold the image (the dispatcher's
//! `ImageHolders`), then asks each in turn and streams what the first holder sends straight
//! into the engine's `docker load`: no temporary copy. `docker load` checks every layer
//! against the image's config, whose digest is the image id; the id loaded must equal the
//! one the holder announced, or the image is refused.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bollard::errors::Error as DockerError;
use bollard::query_parameters::ImportImageOptions;
use bollard::Docker;
use futures::{Stream, StreamExt};
use shoal_proto::{
    DispatcherClient, FetchImageRequest, ImageChunk, ImageHolder, ImageHoldersRequest, ImagesClient,
};
use tonic::{Request, Response, Status};

use crate::executor::{Fetched, ImageSource};
use crate::tls::NodeTls;

/// The largest piece of an image in one message (gRPC's default limit is 4 MiB).
const CHUNK: usize = 1 << 20;

/// How often the progress message is refreshed while bytes flow.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// A transfer that moves no byte for this long is given up on. The engine's `docker load`
/// reads as fast as the bytes come (it unpacks layers as they arrive), so a pause this long
/// is the holder's.
const STALLED: Duration = Duration::from_secs(120);

/// The `Images` service: this node's engine's images, to the swarm's other nodes.
pub struct ImagesApi {
    docker: Docker,
}

impl ImagesApi {
    pub fn new(docker: Docker) -> Self {
        Self { docker }
    }
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<ImageChunk, Status>> + Send>>;

#[tonic::async_trait]
impl shoal_proto::Images for ImagesApi {
    type FetchStream = ChunkStream;

    async fn fetch(
        &self,
        request: Request<FetchImageRequest>,
    ) -> Result<Response<Self::FetchStream>, Status> {
        let image = request.into_inner().image;
        if image.is_empty() {
            return Err(Status::invalid_argument("no image named"));
        }
        let inspected = match self.docker.inspect_image(&image).await {
            Ok(inspected) => inspected,
            Err(DockerError::DockerResponseServerError {
                status_code: 404, ..
            }) => return Err(Status::not_found(format!("no image {image} on this node"))),
            Err(e) => return Err(Status::unavailable(format!("inspecting {image}: {e}"))),
        };
        let image_id = inspected.id.unwrap_or_default();
        tracing::info!(%image, id = %image_id, "sharing an image with another node");
        let first = ImageChunk {
            image_id,
            size: inspected.size.unwrap_or(0),
            data: Vec::new(),
        };
        let body = self.docker.export_image(&image).flat_map(|piece| {
            let chunks: Vec<Result<ImageChunk, Status>> = match piece {
                Ok(bytes) => bytes
                    .chunks(CHUNK)
                    .map(|c| {
                        Ok(ImageChunk {
                            data: c.to_vec(),
                            ..Default::default()
                        })
                    })
                    .collect(),
                Err(e) => vec![Err(Status::unavailable(format!(
                    "the engine stopped saving the image: {e}"
                )))],
            };
            futures::stream::iter(chunks)
        });
        Ok(Response::new(Box::pin(
            futures::stream::once(async move { Ok(first) }).chain(body),
        )))
    }
}

/// Fetches images from the swarm's other nodes into this node's engine.
pub struct PeerImages {
    docker: Docker,
    tls: NodeTls,
    /// The managers to ask who may hold an image, in order.
    managers: Vec<String>,
}

impl PeerImages {
    pub fn new(docker: Docker, tls: NodeTls, managers: Vec<String>) -> Self {
        Self {
            docker,
            tls,
            managers,
        }
    }

    /// The nodes that may hold `image`, from the first manager that answers.
    async fn holders(&self, image: &str) -> Result<Vec<ImageHolder>, String> {
        let mut why = Vec::new();
        for addr in &self.managers {
            let channel = match shoal_pki::channel_lazy(addr, &self.tls.client()) {
                Ok(c) => c,
                Err(e) => {
                    why.push(format!("{addr}: {e}"));
                    continue;
                }
            };
            let asked = DispatcherClient::new(channel)
                .image_holders(ImageHoldersRequest {
                    image: image.to_string(),
                })
                .await;
            match asked {
                Ok(reply) => return Ok(reply.into_inner().holders),
                Err(status) => why.push(format!("manager {addr}: {}", status.message())),
            }
        }
        Err(format!(
            "no manager said which nodes hold it ({})",
            why.join("; ")
        ))
    }

    /// Stream `image` from `holder` into the engine; the id loaded.
    async fn fetch_from(
        &self,
        holder: &ImageHolder,
        image: &str,
        progress: &(dyn Fn(String) + Send + Sync),
    ) -> Result<String, String> {
        let channel =
            shoal_pki::node_channel_lazy(&holder.addr, &holder.node_id, &self.tls.client())
                .map_err(|e| e.to_string())?;
        let mut stream = ImagesClient::new(channel)
            .fetch(FetchImageRequest {
                image: image.to_string(),
            })
            .await
            .map_err(|s| s.message().to_string())?
            .into_inner();
        let first = stream
            .message()
            .await
            .map_err(|s| s.message().to_string())?
            .ok_or("it sent nothing")?;
        if first.image_id.is_empty() {
            return Err("it named no image id".into());
        }
        let name = &holder.name;
        let total = megabytes(first.size);
        let told = |done: u64| {
            progress(format!(
                "fetching image from {name}: {} of {total}",
                megabytes(done as i64)
            ))
        };
        told(0);
        let received = Arc::new(AtomicU64::new(0));
        let counter = received.clone();
        let body = stream.map(move |chunk| match chunk {
            Ok(chunk) => {
                counter.fetch_add(chunk.data.len() as u64, Ordering::Relaxed);
                Ok(hyper::body::Bytes::from(chunk.data))
            }
            Err(status) => Err(std::io::Error::other(status.message().to_string())),
        });
        let mut load = self.docker.import_image_stream(
            ImportImageOptions {
                quiet: true,
                ..Default::default()
            },
            body,
            None,
        );
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        tick.tick().await;
        // A holder that stays connected but stops sending is given up on (a dead one is
        // caught by the channel's keepalive): the next holder is asked.
        let (mut seen, mut moved) = (0, tokio::time::Instant::now());
        loop {
            tokio::select! {
                item = load.next() => match item {
                    None => break,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(format!("loading it into this node's engine: {e}")),
                },
                _ = tick.tick() => {
                    let now = received.load(Ordering::Relaxed);
                    if now != seen {
                        (seen, moved) = (now, tokio::time::Instant::now());
                    } else if moved.elapsed() >= STALLED {
                        return Err(format!("it sent nothing for {} s: given up", STALLED.as_secs()));
                    }
                    told(now);
                }
            }
        }
        let loaded = self
            .docker
            .inspect_image(if image.contains('@') {
                &first.image_id
            } else {
                image
            })
            .await
            .map_err(|e| format!("the loaded image is not in this node's engine: {e}"))?;
        let loaded_id = loaded.id.unwrap_or_default();
        if loaded_id != first.image_id {
            return Err(format!(
                "it announced image {} but {loaded_id} was loaded: refused",
                first.image_id
            ));
        }
        Ok(loaded_id)
    }
}

#[async_trait]
impl ImageSource for PeerImages {
    async fn fetch(
        &self,
        image: &str,
        progress: &(dyn Fn(String) + Send + Sync),
    ) -> Result<Fetched, String> {
        let holders = self.holders(image).await?;
        if holders.is_empty() {
            return Err("no other node is ready".into());
        }
        let mut asked = Vec::new();
        for holder in &holders {
            progress(format!("fetching image from {}", holder.name));
            match self.fetch_from(holder, image, progress).await {
                Ok(image_id) => {
                    return Ok(Fetched {
                        from: holder.name.clone(),
                        image_id,
                    })
                }
                Err(why) => {
                    tracing::debug!(node = %holder.name, %image, "not fetched: {why}");
                    asked.push(format!("{}: {why}", holder.name));
                }
            }
        }
        Err(asked.join("; "))
    }
}

/// `bytes` for a person: "12.3 MB".
fn megabytes(bytes: i64) -> String {
    format!("{:.1} MB", bytes.max(0) as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_docker_writes_them() {
        assert_eq!(megabytes(0), "0.0 MB");
        assert_eq!(megabytes(12_345_678), "12.3 MB");
        assert_eq!(megabytes(-1), "0.0 MB");
    }
}
