//! Shoal's protobuf objects and gRPC services, generated from `proto/shoal.proto`, plus
//! small conversions every side needs (state names, terminal states, id prefixes).
//!
//! This crate owns the wire and storage format. It must not know about Raft, the store,
//! Docker or the CLI: everything else depends on it, it depends on nothing of Shoal's.

#[allow(clippy::all, missing_docs)]
mod generated {
    tonic::include_proto!("shoal.v1");
}

pub use generated::*;

pub use generated::ca_client::CaClient;
pub use generated::ca_server::{Ca, CaServer};
pub use generated::control_client::ControlClient;
pub use generated::control_server::{Control, ControlServer};
pub use generated::dispatcher_client::DispatcherClient;
pub use generated::dispatcher_server::{Dispatcher, DispatcherServer};
pub use generated::events_client::EventsClient;
pub use generated::events_server::{Events, EventsServer};
pub use generated::images_client::ImagesClient;
pub use generated::images_server::{Images, ImagesServer};
pub use generated::log_broker_client::LogBrokerClient;
pub use generated::log_broker_server::{LogBroker, LogBrokerServer};
pub use generated::logs_client::LogsClient;
pub use generated::logs_server::{Logs, LogsServer};
pub use generated::node_admin_client::NodeAdminClient;
pub use generated::node_admin_server::{NodeAdmin, NodeAdminServer};
pub use generated::raft_client::RaftClient;
pub use generated::raft_membership_client::RaftMembershipClient;
pub use generated::raft_membership_server::{RaftMembership, RaftMembershipServer};
pub use generated::raft_server::{Raft, RaftServer};

pub mod names;

impl TaskState {
    /// A task in this state has stopped and never runs again.
    pub fn is_terminal(self) -> bool {
        self >= TaskState::Complete
    }

    /// docker's lowercase name: "running", "pending", "failed", ...
    pub fn docker_name(self) -> &'static str {
        match self {
            TaskState::New => "new",
            TaskState::Pending => "pending",
            TaskState::Assigned => "assigned",
            TaskState::Accepted => "accepted",
            TaskState::Preparing => "preparing",
            TaskState::Ready => "ready",
            TaskState::Starting => "starting",
            TaskState::Running => "running",
            TaskState::Complete => "complete",
            TaskState::Shutdown => "shutdown",
            TaskState::Failed => "failed",
            TaskState::Rejected => "rejected",
            TaskState::Remove => "remove",
            TaskState::Orphaned => "orphaned",
        }
    }
}

impl Task {
    /// Observed state, `New` when no status was ever written.
    pub fn state(&self) -> TaskState {
        self.status
            .as_ref()
            .and_then(|s| TaskState::try_from(s.state).ok())
            .unwrap_or(TaskState::New)
    }

    pub fn desired(&self) -> TaskState {
        TaskState::try_from(self.desired_state).unwrap_or(TaskState::New)
    }

    pub fn version(&self) -> u64 {
        self.meta.as_ref().map_or(0, |m| m.version)
    }

    /// The networks its spec joins (network ids).
    pub fn spec_networks(&self) -> impl Iterator<Item = &NetworkAttachmentConfig> {
        self.spec.iter().flat_map(|s| s.networks.iter())
    }

    /// Whether it has an address on every network of its spec, and on the ingress network
    /// when it publishes a port through the routing mesh: only then may it be placed (a
    /// task never starts unwired).
    pub fn is_attached(&self) -> bool {
        let has = |a: &NetworkAttachment| !a.addresses.is_empty();
        self.spec_networks().all(|config| {
            self.networks
                .iter()
                .any(|a| a.network_id == config.target && has(a))
        }) && (!self.publishes_ingress() || self.networks.iter().any(|a| a.ingress && has(a)))
    }

    /// Whether it publishes a port through the routing mesh (and so joins ingress).
    pub fn publishes_ingress(&self) -> bool {
        self.ports.iter().any(PortConfig::is_ingress)
    }

    /// Whether its addresses are still in use: until its container has stopped for good,
    /// or, for a task never placed, until it is no longer wanted.
    pub fn holds_addresses(&self) -> bool {
        let state = self.state();
        !(state.is_terminal()
            || (self.desired() > TaskState::Running && state <= TaskState::Pending))
    }
}

impl TaskSpec {
    /// The spec with every part that is set to its defaults unset, so that two specs that
    /// run the same tasks compare equal whichever way a client wrote them (Docker's
    /// clients send an empty placement and restart policy where Shoal's CLI sends none).
    pub fn normalized(&self) -> TaskSpec {
        let mut spec = self.clone();
        let empty_resources = |r: &Resources| r.nano_cpus == 0 && r.memory_bytes == 0;
        if spec.limits.as_ref().is_some_and(empty_resources) {
            spec.limits = None;
        }
        if spec.reservations.as_ref().is_some_and(empty_resources) {
            spec.reservations = None;
        }
        if spec
            .placement
            .as_ref()
            .is_some_and(|p| *p == Placement::default())
        {
            spec.placement = None;
        }
        if spec
            .restart
            .as_ref()
            .is_some_and(|r| *r == RestartPolicy::default())
        {
            spec.restart = None;
        }
        spec
    }
}

impl Network {
    pub fn name(&self) -> &str {
        self.spec.as_ref().map_or("", |s| s.name.as_str())
    }

    pub fn version(&self) -> u64 {
        self.meta.as_ref().map_or(0, |m| m.version)
    }

    pub fn is_ingress(&self) -> bool {
        self.spec.as_ref().is_some_and(|s| s.ingress)
    }

    /// The stack it belongs to, if any.
    pub fn stack(&self) -> Option<&str> {
        self.spec
            .as_ref()
            .and_then(|s| s.labels.get(STACK_NAMESPACE_LABEL))
            .map(String::as_str)
    }
}

/// The label that ties a service or network to its stack, as Docker's.
pub const STACK_NAMESPACE_LABEL: &str = "com.docker.stack.namespace";

impl Stack {
    /// The revision deployed now.
    pub fn current(&self) -> Option<&StackRevision> {
        self.revisions.last()
    }

    pub fn name(&self) -> &str {
        self.current()
            .and_then(|r| r.spec.as_ref())
            .map_or("", |s| s.name.as_str())
    }

    pub fn revision(&self) -> u64 {
        self.current().map_or(0, |r| r.revision)
    }

    pub fn version(&self) -> u64 {
        self.meta.as_ref().map_or(0, |m| m.version)
    }
}

impl Service {
    /// The stack it belongs to, if any.
    pub fn stack(&self) -> Option<&str> {
        self.spec
            .as_ref()
            .and_then(|s| s.labels.get(STACK_NAMESPACE_LABEL))
            .map(String::as_str)
    }

    pub fn name(&self) -> &str {
        self.spec.as_ref().map_or("", |s| s.name.as_str())
    }

    pub fn version(&self) -> u64 {
        self.meta.as_ref().map_or(0, |m| m.version)
    }

    /// The networks its tasks join (network ids).
    pub fn networks(&self) -> impl Iterator<Item = &NetworkAttachmentConfig> {
        self.spec
            .iter()
            .flat_map(|s| s.task.iter())
            .flat_map(|t| t.networks.iter())
    }

    pub fn endpoint_mode(&self) -> EndpointMode {
        self.spec
            .as_ref()
            .and_then(|s| s.endpoint.as_ref())
            .and_then(|e| EndpointMode::try_from(e.mode).ok())
            .unwrap_or(EndpointMode::Vip)
    }

    pub fn mode(&self) -> ServiceMode {
        self.spec
            .as_ref()
            .and_then(|s| ServiceMode::try_from(s.mode).ok())
            .unwrap_or(ServiceMode::Replicated)
    }

    /// The ports its spec publishes.
    pub fn ports(&self) -> &[PortConfig] {
        self.spec
            .as_ref()
            .and_then(|s| s.endpoint.as_ref())
            .map_or(&[], |e| e.ports.as_slice())
    }
}

impl PortConfig {
    /// Published through the routing mesh (every node answers), not on the task's node.
    pub fn is_ingress(&self) -> bool {
        self.publish_mode == PublishMode::Ingress as i32
    }

    /// "tcp" or "udp".
    pub fn protocol_name(&self) -> &'static str {
        protocol_name(self.protocol)
    }
}

/// "tcp" or "udp", for a [`PortProtocol`] as stored.
pub fn protocol_name(protocol: i32) -> &'static str {
    if protocol == PortProtocol::Udp as i32 {
        "udp"
    } else {
        "tcp"
    }
}

impl Node {
    /// Its router address on the ingress network, when the leader has allocated one.
    pub fn ingress_addr(&self) -> Option<&str> {
        self.attachments
            .iter()
            .find(|a| a.ingress)
            .and_then(|a| a.addresses.first())
            .map(String::as_str)
    }
}

impl Node {
    pub fn hostname(&self) -> &str {
        self.description
            .as_ref()
            .map_or("", |d| d.hostname.as_str())
    }

    pub fn role(&self) -> NodeRole {
        self.spec
            .as_ref()
            .and_then(|s| NodeRole::try_from(s.role).ok())
            .unwrap_or(NodeRole::Worker)
    }

    pub fn availability(&self) -> Availability {
        self.spec
            .as_ref()
            .and_then(|s| Availability::try_from(s.availability).ok())
            .unwrap_or(Availability::Active)
    }

    pub fn state(&self) -> NodeState {
        self.status
            .as_ref()
            .and_then(|s| NodeState::try_from(s.state).ok())
            .unwrap_or(NodeState::Unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_address_gives_its_host() {
        assert_eq!(names::host_of("10.78.0.12:4242"), "10.78.0.12");
        assert_eq!(names::host_of("10.78.0.12"), "10.78.0.12");
        assert_eq!(names::host_of("n1:"), "n1:");
    }

    #[test]
    fn terminal_states_are_the_tail_of_the_order() {
        assert!(!TaskState::Running.is_terminal());
        assert!(TaskState::Complete.is_terminal());
        assert!(TaskState::Rejected.is_terminal());
        assert!(TaskState::Assigned < TaskState::Running);
    }
}
