//! Who campaigns, and when. Shoal runs Raft elections itself, with a pre-vote as etcd's
//! raft does; openraft's own election timer is off (`enable_elect: false`), while the
//! election itself (terms, votes, the log rule) stays openraft's.
//!
//! A voter that has heard no leader, and granted no vote, for its election timeout (the
//! leader lease plus a random share of the election spread) first asks the other voters
//! whether they would vote for it. Each says yes only if it leads nothing, has itself
//! heard no leader for the lease (so the real vote will not be refused under it), and
//! holds no longer log (terms are not compared: a voter behind in term but ahead in log
//! would otherwise never pass). With a majority of yeses it campaigns. The voter with the
//! longest log thus goes first after a leader dies: openraft's timer let a shorter log
//! campaign first, be refused, and cost whole election rounds (2.4-3.8 s to a new leader
//! in the lab's 100 kills, against 1.1-1.4 s when the right voter went first). And a
//! member cut off and back never disrupts a live leader with a higher term: nobody
//! pre-votes for it.
//!
//! Knows openraft's metrics and the peers' Raft service; nothing of what the log holds.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use openraft::ServerState;
use serde::{Deserialize, Serialize};
use shoal_proto::RaftPayload;

use crate::contacts::Contacts;
use crate::network::{peer_client, Channels};
use crate::types::{decode, encode, LogId, TypeConfig};
use crate::{NodeId, PeerConnector};

/// How often a voter looks whether its leader went silent.
const TICK: Duration = Duration::from_millis(50);

/// What a candidate asks before it campaigns.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct PreVoteRequest {
    pub candidate: NodeId,
    /// The candidate's term now (it would campaign in the next; for logs).
    pub term: u64,
    /// Its last log id: Raft's rule compares the last entry's term first, then its index.
    pub last_log: Option<LogId>,
}

/// Reads this member's last log id.
pub(crate) type LastLog = Arc<dyn Fn() -> Option<LogId> + Send + Sync>;

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct PreVoteResponse {
    pub granted: bool,
    /// Why not, in words (for logs).
    pub why: String,
}

/// The election's timing, from the Raft config.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timing {
    /// openraft's leader lease (its election maximum): a follower refuses a real vote while
    /// it heard its leader more recently than this.
    pub lease: Duration,
    /// The random share added to the lease per attempt (election max - min).
    pub spread: Duration,
    /// How long a pre-vote waits for answers.
    pub ask: Duration,
}

/// When this member last heard a leader (an AppendEntries or a snapshot arrived) or
/// granted a candidate its vote; and the ballot lock that orders a vote this member grants
/// against its own decision to campaign.
#[derive(Clone)]
pub(crate) struct LeaderContact {
    last: Arc<Mutex<Instant>>,
    ballot: Arc<tokio::sync::Mutex<()>>,
}

impl LeaderContact {
    pub(crate) fn new() -> Self {
        Self {
            last: Arc::new(Mutex::new(Instant::now())),
            ballot: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    pub(crate) fn heard(&self) {
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }

    fn silence(&self) -> Duration {
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .elapsed()
    }

    /// Held while a peer's vote request is answered (and [`Self::heard`] when granted),
    /// and while the elector decides to campaign and starts it: either the vote comes
    /// first and the elector sees it, or the campaign does and the vote request is judged
    /// against it. Without it, a member voted for another candidate between its own
    /// check and its campaign, then campaigned one term higher and deposed the leader it
    /// had just elected.
    pub(crate) async fn ballot(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.ballot.lock().await
    }
}

/// A member's answer to a peer's pre-vote: yes if it leads nothing, has heard no leader
/// for the lease, and holds no longer log.
pub(crate) fn answer(
    raft: &openraft::Raft<TypeConfig>,
    contact: &LeaderContact,
    timing: Timing,
    last_log: &LastLog,
    request: &PreVoteRequest,
) -> PreVoteResponse {
    let state = raft.metrics().borrow().state;
    let last = last_log();
    let refused = |why: String| PreVoteResponse {
        granted: false,
        why,
    };
    if state == ServerState::Leader {
        return refused("I lead".into());
    }
    let silence = contact.silence();
    if silence < timing.lease {
        return refused(format!("I heard a leader {silence:?} ago"));
    }
    // No term test: a voter whose term fell behind (it did not campaign, or lost) but
    // holds the longest log must still get through. Its first campaign may lose to a vote
    // already cast in that term; its term has then caught up and the next one wins.
    if request.last_log < last {
        return refused(format!(
            "my log reaches {last:?}, beyond {:?}",
            request.last_log
        ));
    }
    PreVoteResponse {
        granted: true,
        why: String::new(),
    }
}

/// What the elector works with.
pub(crate) struct Member {
    pub raft: openraft::Raft<TypeConfig>,
    pub id: NodeId,
    /// When a leader was last heard.
    pub contact: LeaderContact,
    pub timing: Timing,
    /// The peers' channels (shared with Raft's network) and how to make one.
    pub channels: Channels,
    pub connector: Option<PeerConnector>,
    /// Where pre-vote answers are recorded for the quorum judge.
    pub contacts: Contacts,
    pub last_log: LastLog,
}

/// Campaign when the leader goes silent and a majority pre-votes, until `stop` or Raft
/// stops.
pub(crate) async fn run(member: Member, mut stop: tokio::sync::watch::Receiver<bool>) {
    let Member {
        raft,
        id,
        contact,
        timing,
        channels,
        connector,
        contacts,
        last_log,
    } = member;
    let mut rng = id ^ 0x9e37_79b9_7f4a_7c15;
    let mut timeout = timing.lease + TICK + jitter(&mut rng, timing.spread);
    let mut next_try = Instant::now();
    loop {
        tokio::select! {
            () = tokio::time::sleep(TICK) => {}
            _ = stop.changed() => return,
        }
        let (state, term, running, voters) = {
            let m = raft.metrics();
            let m = m.borrow();
            let membership = m.membership_config.membership();
            let voters: Vec<(NodeId, String)> = membership
                .voter_ids()
                .map(|v| {
                    let addr = membership.get_node(&v).map(|n| n.addr.clone());
                    (v, addr.unwrap_or_default())
                })
                .collect();
            (m.state, m.current_term, m.running_state.is_ok(), voters)
        };
        // Raft stopped (a storage error): so does the elector.
        if !running {
            return;
        }
        if state == ServerState::Leader || !voters.iter().any(|(v, _)| *v == id) {
            continue;
        }
        if contact.silence() < timeout || Instant::now() < next_try {
            continue;
        }
        let others: Vec<&(NodeId, String)> = voters.iter().filter(|(v, _)| *v != id).collect();
        let request = PreVoteRequest {
            candidate: id,
            term,
            last_log: last_log(),
        };
        let asks = others.iter().map(|(peer, addr)| {
            let to = Peer {
                channels: &channels,
                connector: connector.as_ref(),
                contacts: &contacts,
                id: *peer,
                addr,
            };
            ask(to, &request, timing.ask)
        });
        let granted = futures::future::join_all(asks)
            .await
            .into_iter()
            .filter(|yes| *yes)
            .count();
        // While the pre-vote was out, another voter may have won (this member voted for it:
        // its term moved) or a leader spoken: campaigning now would only depose it.
        let ballot = contact.ballot().await;
        let unchanged = {
            let m = raft.metrics();
            let m = m.borrow();
            m.current_term == term && m.state != ServerState::Leader
        };
        if (1 + granted) * 2 > voters.len() && unchanged && contact.silence() >= timeout {
            tracing::info!(
                term,
                "the leader is silent and a majority pre-voted: campaigning"
            );
            if raft.trigger().elect().await.is_err() {
                return;
            }
        }
        drop(ballot);
        // Whatever came of it, the next attempt waits a random share of the spread, so
        // two voters that collided do not collide again.
        next_try = Instant::now() + TICK + jitter(&mut rng, timing.spread);
        timeout = timing.lease + TICK + jitter(&mut rng, timing.spread);
    }
}

/// A peer to ask, and where its answers (or silence) are recorded for the quorum judge: a
/// member that stops campaigning on a failed pre-vote still learns who it cannot reach.
struct Peer<'a> {
    channels: &'a Channels,
    connector: Option<&'a PeerConnector>,
    contacts: &'a Contacts,
    id: NodeId,
    addr: &'a str,
}

/// One peer's pre-vote; no answer in time is a no.
async fn ask(peer: Peer<'_>, request: &PreVoteRequest, within: Duration) -> bool {
    let client = peer_client(peer.channels, peer.connector, peer.id, peer.addr);
    let (Ok(mut client), Ok(data)) = (client, encode(request)) else {
        return false;
    };
    let call = client.pre_vote(tonic::Request::new(RaftPayload { data }));
    let reply = match tokio::time::timeout(within, call).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(status)) => {
            peer.contacts.failed(peer.id, status.message().to_string());
            return false;
        }
        Err(_) => {
            let waited = within.as_millis();
            peer.contacts
                .failed(peer.id, format!("no answer within {waited}ms"));
            return false;
        }
    };
    peer.contacts.heard(peer.id);
    match decode::<PreVoteResponse>(&reply.into_inner().data) {
        Ok(r) if r.granted => true,
        Ok(r) => {
            tracing::debug!(peer = peer.id, why = %r.why, "pre-vote refused");
            false
        }
        Err(_) => false,
    }
}

/// A random share of `spread` (xorshift: no need for a better one).
fn jitter(rng: &mut u64, spread: Duration) -> Duration {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    Duration::from_millis(*rng % (spread.as_millis().max(1) as u64))
}
