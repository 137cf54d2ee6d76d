//! Shoal's node data plane: overlay networks spanning nodes (VXLAN devices, bridges, veths
//! into task namespaces, static FDB entries, service load balancing).
//!
//! In this first slice the crate holds only the boundary the agent will call; tasks run on
//! the engine's default bridge network until the overlay lands. It must not know about the
//! store, Raft or the scheduler: it is told which endpoints exist and wires them.

/// Errors from wiring the data plane.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    /// The requested network driver is not available on this node.
    #[error("network driver {0} is not available on this node")]
    UnsupportedDriver(String),
}
