//! Shoal's objects as Docker's JSON ([`to_docker`]), and Docker's specs as Shoal's
//! ([`from_docker`]). A spec read back and sent again (what every client does on update)
//! comes back unchanged: the tests below go both ways.

pub mod from_docker;
pub mod to_docker;

/// An enum value's Docker name and Shoal's, both ways. `$default` is what an empty or
/// missing Docker value means.
macro_rules! names {
    ($to:ident, $from:ident, $ty:ty, $what:literal, $default:path, [$($variant:path => $name:literal),+ $(,)?]) => {
        pub fn $to(value: $ty) -> &'static str {
            match value {
                $($variant => $name,)+
            }
        }

        pub fn $from(name: &str) -> Result<$ty, crate::error::ApiError> {
            match name {
                "" => Ok($default),
                $($name => Ok($variant),)+
                other => Err(crate::error::ApiError::bad_request(format!(
                    concat!("invalid ", $what, " {:?}: use one of {}"),
                    other,
                    [$($name),+].join(", ")
                ))),
            }
        }
    };
}
pub(crate) use names;

pub mod enums {
    use shoal_proto as pb;

    super::names!(role, parse_role, pb::NodeRole, "role", pb::NodeRole::Worker, [
        pb::NodeRole::Worker => "worker",
        pb::NodeRole::Manager => "manager",
    ]);
    super::names!(availability, parse_availability, pb::Availability, "availability",
        pb::Availability::Active, [
        pb::Availability::Active => "active",
        pb::Availability::Pause => "pause",
        pb::Availability::Drain => "drain",
    ]);
    super::names!(node_state, parse_node_state, pb::NodeState, "node state",
        pb::NodeState::Unknown, [
        pb::NodeState::Unknown => "unknown",
        pb::NodeState::Down => "down",
        pb::NodeState::Ready => "ready",
        pb::NodeState::Disconnected => "disconnected",
    ]);
    super::names!(restart_condition, parse_restart_condition, pb::RestartCondition,
        "restart condition", pb::RestartCondition::Any, [
        pb::RestartCondition::Any => "any",
        pb::RestartCondition::OnFailure => "on-failure",
        pb::RestartCondition::None => "none",
    ]);
    super::names!(failure_action, parse_failure_action, pb::FailureAction, "failure action",
        pb::FailureAction::Pause, [
        pb::FailureAction::Pause => "pause",
        pb::FailureAction::Continue => "continue",
        pb::FailureAction::Rollback => "rollback",
    ]);
    super::names!(order, parse_order, pb::UpdateOrder, "update order",
        pb::UpdateOrder::StopFirst, [
        pb::UpdateOrder::StopFirst => "stop-first",
        pb::UpdateOrder::StartFirst => "start-first",
    ]);
    super::names!(endpoint_mode, parse_endpoint_mode, pb::EndpointMode, "endpoint mode",
        pb::EndpointMode::Vip, [
        pb::EndpointMode::Vip => "vip",
        pb::EndpointMode::Dnsrr => "dnsrr",
    ]);
    super::names!(protocol, parse_protocol, pb::PortProtocol, "port protocol",
        pb::PortProtocol::Tcp, [
        pb::PortProtocol::Tcp => "tcp",
        pb::PortProtocol::Udp => "udp",
    ]);
    super::names!(publish_mode, parse_publish_mode, pb::PublishMode, "publish mode",
        pb::PublishMode::Ingress, [
        pb::PublishMode::Ingress => "ingress",
        pb::PublishMode::Host => "host",
    ]);
    super::names!(mount_type, parse_mount_type, pb::MountType, "mount type",
        pb::MountType::Volume, [
        pb::MountType::Volume => "volume",
        pb::MountType::Bind => "bind",
        pb::MountType::Tmpfs => "tmpfs",
    ]);
    /// A rolling update's state as Docker names it; `None` when no update ever ran.
    pub fn update_state(state: pb::UpdateState) -> Option<&'static str> {
        Some(match state {
            pb::UpdateState::Unknown => return None,
            pb::UpdateState::Updating => "updating",
            pb::UpdateState::Paused => "paused",
            pb::UpdateState::Completed => "completed",
            pb::UpdateState::RollbackStarted => "rollback_started",
            pb::UpdateState::RollbackPaused => "rollback_paused",
            pb::UpdateState::RollbackCompleted => "rollback_completed",
        })
    }

    /// A task state from its Docker name ("running").
    pub fn parse_task_state(name: &str) -> Option<pb::TaskState> {
        (0..=900)
            .filter_map(|n| pb::TaskState::try_from(n).ok())
            .find(|s| s.docker_name() == name)
    }
}

#[cfg(test)]
mod tests;
