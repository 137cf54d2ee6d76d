//! Whether this member can take a write now, judged from openraft's metrics and the
//! [`crate::contacts`] it keeps: a leader needs a majority that answered lately; a follower
//! needs a leader it heard from lately, or enough reachable voters to elect one. When it
//! cannot, [`NoQuorum`] says so in one line naming the managers it cannot reach.

use std::fmt;
use std::time::Duration;

use crate::contacts::PeerContact;
use crate::NodeId;

/// What [`judge`] decides from.
#[derive(Clone, Debug)]
pub(crate) struct Inputs {
    pub me: NodeId,
    pub leads: bool,
    pub leader: Option<NodeId>,
    /// For a leader: how long since a majority last acknowledged it.
    pub since_quorum_ack: Option<Duration>,
    /// Every voter but this member, as last heard.
    pub peers: Vec<PeerContact>,
    /// Whether this member votes.
    pub votes: bool,
}

/// How long is too long.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Windows {
    /// A leader not heard from for this long is taken as gone (a few heartbeats, about the
    /// election timeout).
    pub leader_silent: Duration,
    /// A leader without a majority's answer for this long has no quorum; a peer not heard
    /// from for this long is unreachable.
    pub no_quorum: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// This member leads with a quorum, or follows a leader it hears.
    Ok,
    /// No leader is heard, and too little is known to say whether one can be elected (an
    /// election is under way): wait.
    Electing,
    NoQuorum(NoQuorum),
}

/// This member cannot reach a majority of the voters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoQuorum {
    pub leads: bool,
    pub voters: usize,
    pub reached: usize,
    pub unreachable: Vec<PeerContact>,
}

impl NoQuorum {
    pub fn majority(&self) -> usize {
        self.voters / 2 + 1
    }
}

impl fmt::Display for NoQuorum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let role = if self.leads { "leads but " } else { "" };
        write!(
            f,
            "no quorum: this manager {role}reaches {} of {} managers (itself included) and a change needs {}",
            self.reached,
            self.voters,
            self.majority()
        )?;
        let mut sep = "; it cannot reach ";
        for p in &self.unreachable {
            write!(f, "{sep}{}", p.addr)?;
            sep = ", ";
            match (&p.silent_for, &p.failure) {
                (Some(t), Some(why)) => write!(f, " (silent {}s: {why})", t.as_secs())?,
                (Some(t), None) => write!(f, " (silent {}s)", t.as_secs())?,
                (None, Some(why)) => write!(f, " ({why})")?,
                (None, None) => write!(f, " (never heard from)")?,
            }
        }
        write!(
            f,
            ". Restore the links between managers or restart the ones that are down"
        )
    }
}

pub(crate) fn judge(inputs: &Inputs, windows: Windows) -> Verdict {
    let heard = |p: &PeerContact, within: Duration| p.silent_for.is_some_and(|t| t < within);
    let voters = inputs.peers.len() + usize::from(inputs.votes);
    let no_quorum = |reached: usize| {
        Verdict::NoQuorum(NoQuorum {
            leads: inputs.leads,
            voters,
            reached,
            unreachable: inputs
                .peers
                .iter()
                .filter(|p| !heard(p, windows.no_quorum))
                .cloned()
                .collect(),
        })
    };
    let reached = usize::from(inputs.votes)
        + inputs
            .peers
            .iter()
            .filter(|p| heard(p, windows.no_quorum))
            .count();
    let majority = voters / 2 + 1;
    if inputs.leads {
        // A leader just elected has no acknowledgement yet: the votes that elected it
        // (answers from a majority, lately) stand in for one.
        let acked = inputs.peers.is_empty()
            || match inputs.since_quorum_ack {
                Some(t) => t < windows.no_quorum,
                None => reached >= majority,
            };
        return if acked {
            Verdict::Ok
        } else {
            no_quorum(reached.min(majority - 1))
        };
    }
    let leader_heard = inputs
        .leader
        .filter(|l| *l != inputs.me)
        .and_then(|l| inputs.peers.iter().find(|p| p.id == l))
        .is_some_and(|p| heard(p, windows.leader_silent));
    if leader_heard {
        return Verdict::Ok;
    }
    // No live leader: can the voters that may answer still make a majority? A peer that
    // was not heard from lately counts as lost only once a call to it failed.
    let unknown = inputs
        .peers
        .iter()
        .filter(|p| !heard(p, windows.no_quorum) && p.failure.is_none())
        .count();
    if reached + unknown < majority {
        no_quorum(reached)
    } else {
        Verdict::Electing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Windows = Windows {
        leader_silent: Duration::from_millis(1200),
        no_quorum: Duration::from_secs(2),
    };

    fn peer(id: NodeId, silent_ms: Option<u64>, failure: Option<&str>) -> PeerContact {
        PeerContact {
            id,
            addr: format!("10.0.0.{id}:4242"),
            silent_for: silent_ms.map(Duration::from_millis),
            failure: failure.map(str::to_string),
        }
    }

    fn inputs(
        leads: bool,
        leader: Option<NodeId>,
        ack_ms: Option<u64>,
        peers: Vec<PeerContact>,
    ) -> Inputs {
        Inputs {
            me: 1,
            leads,
            leader,
            since_quorum_ack: ack_ms.map(Duration::from_millis),
            peers,
            votes: true,
        }
    }

    #[test]
    fn a_leader_needs_a_majority_that_answered_lately() {
        let healthy = inputs(
            true,
            Some(1),
            Some(90),
            vec![peer(2, Some(50), None), peer(3, Some(60), None)],
        );
        assert_eq!(judge(&healthy, W), Verdict::Ok);
        let cut = inputs(
            true,
            Some(1),
            Some(2500),
            vec![
                peer(2, Some(2500), Some("no answer within 1000ms")),
                peer(3, Some(2600), Some("no answer within 1000ms")),
            ],
        );
        let Verdict::NoQuorum(why) = judge(&cut, W) else {
            panic!("{:?}", judge(&cut, W))
        };
        assert_eq!(
            why.to_string(),
            "no quorum: this manager leads but reaches 1 of 3 managers (itself included) and a change needs 2; \
             it cannot reach 10.0.0.2:4242 (silent 2s: no answer within 1000ms), 10.0.0.3:4242 (silent 2s: no answer within 1000ms). \
             Restore the links between managers or restart the ones that are down"
        );
        let elected = inputs(
            true,
            Some(1),
            None,
            vec![peer(2, Some(5), None), peer(3, None, None)],
        );
        assert_eq!(
            judge(&elected, W),
            Verdict::Ok,
            "its votes stand in for an acknowledgement"
        );
        let alone = inputs(true, Some(1), None, vec![]);
        assert_eq!(
            judge(&alone, W),
            Verdict::Ok,
            "a single manager is its own majority"
        );
    }

    #[test]
    fn a_follower_forwards_while_it_hears_its_leader() {
        let follower = inputs(
            false,
            Some(2),
            None,
            vec![peer(2, Some(100), None), peer(3, None, None)],
        );
        assert_eq!(judge(&follower, W), Verdict::Ok);
        // The leader went silent; the other follower was never called: an election decides.
        let silent = inputs(
            false,
            Some(2),
            None,
            vec![peer(2, Some(1500), None), peer(3, None, None)],
        );
        assert_eq!(judge(&silent, W), Verdict::Electing);
        // Its vote requests failed everywhere: no majority can form with it.
        let cut = inputs(
            false,
            None,
            None,
            vec![
                peer(2, Some(3000), Some("connection refused")),
                peer(3, None, Some("connection refused")),
            ],
        );
        let Verdict::NoQuorum(why) = judge(&cut, W) else {
            panic!()
        };
        assert_eq!((why.reached, why.voters, why.unreachable.len()), (1, 3, 2));
        // One peer answers its votes: a majority is possible.
        let half = inputs(
            false,
            None,
            None,
            vec![peer(2, Some(100), None), peer(3, None, Some("refused"))],
        );
        assert_eq!(judge(&half, W), Verdict::Electing);
    }
}
