//! When this member snapshots: at points of the log spaced by its rank among the voters.
//!
//! The members of a cluster apply the same entries, so with one policy ("every N entries")
//! they all build and write their snapshot at the same moment, and on one machine (or one
//! disk) each big write stalls the others' log syncs: the slowest calls under load were
//! those moments. Staggering the interval by a hash of the node id let them drift apart,
//! but two of three still met by chance. Here member of rank r of n snapshots at the log
//! indexes `r * every / n + m * every`: no two voters at the same point, a third of the
//! interval apart with three. openraft's own policy is off (`SnapshotPolicy::Never`);
//! this task triggers the build, and openraft purges the log after it as before.
//!
//! Knows openraft's metrics and its trigger; nothing of what a snapshot holds.

use std::time::Duration;

use openraft::Raft;
use tokio::sync::watch;

use crate::types::TypeConfig;
use crate::NodeId;

/// The first snapshot point of member `rank` of `members` that is at least half an
/// interval past `base` (the last snapshot's index): a member never snapshots twice in
/// quick succession, whatever its rank or the last snapshot's place.
pub(crate) fn next_point(base: u64, every: u64, rank: usize, members: usize) -> u64 {
    let every = every.max(1);
    let offset = every * rank as u64 / members.max(1) as u64;
    let earliest = base + every.div_ceil(2);
    if earliest <= offset {
        return offset;
    }
    offset + (earliest - offset).div_ceil(every) * every
}

/// How often the applied index is looked at: not on every apply (a wake-up per commit on
/// every member); at 10,000 commits/s a point is passed by 1,000 entries at most, a fifth
/// of the default interval.
const LOOK: Duration = Duration::from_millis(100);

/// Trigger a snapshot each time the applied log reaches this member's next point, until
/// `stop` or Raft stops.
pub(crate) async fn run(
    raft: Raft<TypeConfig>,
    id: NodeId,
    every: u64,
    mut stop: watch::Receiver<bool>,
) {
    let metrics = raft.metrics();
    let mut look = tokio::time::interval(LOOK);
    look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The point a build was last asked for: asked once (one may already be building).
    let mut asked = None;
    loop {
        tokio::select! {
            _ = look.tick() => {}
            _ = stop.changed() => return,
        }
        let due = {
            let m = metrics.borrow();
            if m.running_state.is_err() {
                return;
            }
            let membership = m.membership_config.membership();
            let members = membership.voter_ids().count();
            // A learner (not counted among the voters) takes rank 0 among them.
            let rank = membership.voter_ids().position(|v| v == id).unwrap_or(0);
            let base = m.snapshot.map_or(0, |s| s.index);
            let point = next_point(base, every, rank, members);
            let applied = m.last_applied.map_or(0, |l| l.index);
            (applied >= point && asked != Some(point)).then_some(point)
        };
        if let Some(point) = due {
            asked = Some(point);
            if raft.trigger().snapshot().await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::next_point;

    #[test]
    fn three_voters_snapshot_a_third_of_the_interval_apart() {
        let every = 5000;
        for base in [0, 1, 2499, 2500, 4999, 5000, 6666, 12_345, 1_000_000] {
            let points: Vec<u64> = (0..3).map(|r| next_point(base, every, r, 3)).collect();
            for (rank, &p) in points.iter().enumerate() {
                assert!(
                    p >= base + every / 2,
                    "rank {rank} from {base}: {p} too soon"
                );
                assert!(
                    p <= base + every * 3 / 2,
                    "rank {rank} from {base}: {p} too late"
                );
                assert_eq!(
                    p % every,
                    every * rank as u64 / 3,
                    "rank {rank}: off its place"
                );
            }
            let mut places: Vec<u64> = points.iter().map(|p| p % every).collect();
            places.sort_unstable();
            assert!(places.windows(2).all(|w| w[1] - w[0] >= every / 3 - 1));
        }
    }

    #[test]
    fn a_lone_member_snapshots_every_interval() {
        assert_eq!(next_point(0, 10, 0, 1), 10);
        assert_eq!(next_point(10, 10, 0, 1), 20);
        assert_eq!(next_point(13, 10, 0, 1), 20);
        assert_eq!(next_point(16, 10, 0, 1), 30);
        // No voters known yet (a fresh learner): as a lone member.
        assert_eq!(next_point(0, 10, 0, 0), 10);
    }
}
