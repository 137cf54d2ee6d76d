//! shoal-web: the live web view a manager serves on `--web-addr`. Nodes as columns and
//! tasks as boxes coloured by state (as Swarm's visualizer), services with their replicas
//! and update progress, a service's or a node's recent logs. Live: the page listens to
//! server-sent events made from the swarm's event stream and redraws on each.
//!
//! It owns the page (one HTML file built in: no build step, nothing fetched from a
//! network), the JSON it draws from ([`view`]), the log excerpts ([`logs`]), and who may
//! look ([`auth`]: a token, given by `shoal web`). It reaches the swarm only through
//! shoald's local socket, with the Control, Logs and Events clients of dockerapi's
//! `Backend`; it must not know the store, Raft or the agents.

pub mod auth;
pub mod logs;
mod server;
pub mod view;

pub use auth::{Token, TokenError};
pub use server::serve;
