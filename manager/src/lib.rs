//! Shoal's manager: the replicated store and every component that runs on it.
//!
//! It owns the in-memory object store ([`store`]) whose writes commit through Raft, the
//! Control API ([`controlapi`]), the orchestrators ([`orchestrator`]), the overlay address
//! allocator ([`allocator`]), the scheduler ([`scheduler`]), the dispatcher that agents hold sessions with ([`dispatcher`]), the log
//! broker that relays `service logs` from agents ([`logbroker`]), secrets sealed in the
//! store (with [`seal`], from shoal_pki), and the leadership switch that runs the leader-only loops
//! one term at a time ([`term`], [`manager`]).
//!
//! It must not know about Docker, containers or the CLI: it hands tasks to agents and
//! reads back their status, nothing more. Components talk through the store only.

pub mod allocator;
pub mod ca;
pub mod caller;
pub mod clock;
pub mod controlapi;
pub mod dispatcher;
pub mod events;
pub mod ids;
pub mod logbroker;
mod manager;
pub mod membership;
pub mod metrics;
pub mod orchestrator;
mod raft_proposer;
pub mod roles;
pub mod runloop;
pub mod scheduler;
pub use shoal_pki::seal;
pub mod store;
pub mod term;

/// Fixtures for the unit tests and for the benchmarks in `examples/`; not an API.
#[doc(hidden)]
pub mod testutil;

pub use manager::{Manager, ManagerConfig, ManagerError};
