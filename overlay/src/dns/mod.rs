//! Service discovery for tasks: a resolver on each network's gateway address that answers
//! the swarm's names from the managers' endpoint sets and relays the rest.

pub mod names;
pub mod server;
pub mod wire;

pub use names::{resolve, Names, NetworkNames, Resolution, ServiceNames};
pub use server::{serve, upstream_resolvers, SharedNames};
