//! shoal-agent: `shoald`, the node daemon, as a library its binary and the tests share.
//!
//! This crate owns everything that runs on a node: the executor boundary and the Docker
//! engine executor (`executor`), the local task database (`taskdb`), and the worker that
//! turns the manager's assignments into running containers (`worker`); the session with the
//! managers' dispatcher (`session`); the log publisher that answers `service logs` within a
//! session (`logs`); images shared between nodes (`images`); the Prometheus endpoint (`metrics_http`); tasks' secrets and configs, in memory and on a tmpfs only (`files`);
//! and the daemon's life: local socket, swarm init, leave, and running the manager on
//! manager nodes (`daemon`).
//!
//! Architecture invariant: the worker and executors know nothing of gRPC or sessions; they
//! take the assignment set in and hand task statuses out on a channel.

pub mod daemon;
pub mod executor;
pub mod files;
pub mod images;
pub mod logs;
pub mod metrics_http;
pub mod network;
pub mod session;
pub mod taskdb;
pub mod tls;
pub mod worker;
