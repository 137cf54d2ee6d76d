//! What `--metrics-addr` serves: the node's own metrics, and its manager's when it is one.

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use super::Daemon;

impl Daemon {
    /// Every metric as Prometheus scrapes it (OpenMetrics text).
    pub async fn metrics_text(&self) -> String {
        let mut registry = Registry::default();
        shoal_manager::metrics::register_recorded(&mut registry);
        let member = self.inner.member.lock().await;
        if let Some(member) = member.as_ref() {
            registry.register(
                "swarm_node",
                "This node's ids",
                Info::new(vec![
                    ("node_id", member.record.node_id.clone()),
                    ("swarm_id", member.record.cluster_id.clone()),
                ]),
            );
            let manager = Gauge::<i64>::default();
            manager.set(member.manager.is_some() as i64);
            registry.register(
                "swarm_node_manager",
                "Whether this node is a manager (1) or not (0)",
                manager,
            );
            if let Some(networks) = &member.networks {
                let endpoints = Family::<Vec<(&'static str, String)>, Gauge>::default();
                for (network, count) in networks.endpoint_counts() {
                    endpoints
                        .get_or_create(&vec![("network", network)])
                        .set(count as i64);
                }
                registry.register(
                    "shoal_overlay_endpoints",
                    "Containers' endpoints on this node's overlay networks, by network id",
                    endpoints,
                );
            }
            if let Some(manager) = &member.manager {
                manager.register_metrics(&mut registry);
            }
        }
        drop(member);
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &registry) {
            tracing::warn!("encoding the metrics: {e}");
        }
        text
    }
}
