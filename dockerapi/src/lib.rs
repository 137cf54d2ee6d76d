//! Docker's Engine API for swarm objects, served by shoald (`--docker-api`), so that the
//! `docker` CLI, `docker stack deploy` and tools written for Swarm work against Shoal.
//!
//! It owns the HTTP routes, Docker's JSON and its errors, and their translation to and from
//! Shoal's objects. It reaches the swarm only through the Control, Logs and NodeAdmin
//! services on shoald's local socket, as the `shoal` CLI does, so every call gets the same
//! checks, forwarding to the leader and errors. It must not know the store, Raft or the
//! agent.

pub mod backend;
pub mod clock;
pub mod convert;
pub mod error;
pub mod filters;
pub mod gokeys;
pub mod http;
pub mod model;
mod routes;
pub mod server;

pub use backend::Backend;
pub use server::{
    accept_until, http1_connection, listen_addr, mutual_tls, serve, serve_tls, Listen,
};
