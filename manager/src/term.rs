//! A leader's term: the leader-only loops (orchestrator, allocator, scheduler, reaper,
//! liveness, roles) run while this manager leads, one set at a time.
//!
//! Leadership can be lost and regained within moments, or regained in a later term before
//! this manager ever saw it lost (the watch keeps only the latest value). Each term's loops
//! are cancelled and awaited before the next term starts its own, so two orchestrators or
//! two schedulers never run at once on one manager, and no loop carries in-memory state
//! from a term it no longer leads.

use std::time::Duration;

use shoal_raft::Leadership;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How often a term whose loops are slow to stop says so.
const STOPPING_REPORT: Duration = Duration::from_secs(5);

/// Run `start`'s loops for each term this manager leads, until `cancel`; every loop of a
/// term has returned before the next term's `start` is called, and before this returns.
pub async fn run_terms<F>(
    mut leadership: watch::Receiver<Leadership>,
    cancel: CancellationToken,
    mut start: F,
) where
    F: FnMut(CancellationToken) -> JoinSet<()>,
{
    let mut current: Option<Term> = None;
    loop {
        let (leads, term) = {
            let l = leadership.borrow_and_update();
            (l.is_leader, l.term)
        };
        if let Some(old) = current.take_if(|t| !leads || t.term != term) {
            tracing::info!(term = old.term, "lost leadership: stopping leader loops");
            old.stop().await;
        }
        if leads && current.is_none() {
            tracing::info!(
                term,
                "became leader: starting orchestrator, scheduler, reaper"
            );
            let token = cancel.child_token();
            current = Some(Term {
                term,
                loops: start(token.clone()),
                token,
            });
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            changed = leadership.changed() => if changed.is_err() { break },
        }
    }
    if let Some(term) = current {
        term.stop().await;
    }
}

/// The loops one term started.
struct Term {
    term: u64,
    token: CancellationToken,
    loops: JoinSet<()>,
}

impl Term {
    /// Cancel every loop and wait until each has returned.
    async fn stop(mut self) {
        self.token.cancel();
        loop {
            match tokio::time::timeout(STOPPING_REPORT, self.loops.join_next()).await {
                Ok(None) => break,
                Ok(Some(Err(e))) if e.is_panic() => {
                    tracing::error!(term = self.term, "a leader loop panicked: {e}");
                }
                Ok(Some(_)) => {}
                Err(_) => tracing::warn!(
                    term = self.term,
                    still = self.loops.len(),
                    "leader loops are slow to stop; the next term waits for them"
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    /// Counts loops running at once (and the most ever), and terms started.
    #[derive(Default)]
    struct Census {
        running: AtomicUsize,
        most: AtomicUsize,
        started: AtomicUsize,
    }

    /// One "orchestrator" per term that, once cancelled, still takes 50 ms to finish the
    /// pass it is in (a store write in flight).
    fn start(census: &Arc<Census>) -> impl FnMut(CancellationToken) -> JoinSet<()> {
        let census = census.clone();
        move |token| {
            let census = census.clone();
            census.started.fetch_add(1, Ordering::SeqCst);
            let mut loops = JoinSet::new();
            loops.spawn(async move {
                let now = census.running.fetch_add(1, Ordering::SeqCst) + 1;
                census.most.fetch_max(now, Ordering::SeqCst);
                token.cancelled().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                census.running.fetch_sub(1, Ordering::SeqCst);
            });
            loops
        }
    }

    fn leads(term: u64) -> Leadership {
        Leadership {
            is_leader: true,
            term,
            ..Default::default()
        }
    }

    async fn settle(census: &Census, started: usize) {
        while census.started.load(Ordering::SeqCst) < started {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_quick_loss_and_regain_never_runs_two_orchestrators() {
        let census = Arc::new(Census::default());
        let (tx, rx) = watch::channel(leads(1));
        let cancel = CancellationToken::new();
        let run = tokio::spawn(run_terms(rx, cancel.clone(), start(&census)));
        settle(&census, 1).await;
        tx.send(Leadership::default()).expect("sent");
        tokio::task::yield_now().await;
        tx.send(leads(2)).expect("sent");
        settle(&census, 2).await;
        assert_eq!(
            census.most.load(Ordering::SeqCst),
            1,
            "two terms overlapped"
        );
        assert_eq!(census.running.load(Ordering::SeqCst), 1);

        // A later term seen without the loss in between restarts the loops too.
        tx.send(leads(5)).expect("sent");
        settle(&census, 3).await;
        assert_eq!(
            census.most.load(Ordering::SeqCst),
            1,
            "two terms overlapped"
        );

        cancel.cancel();
        run.await.expect("ran");
        assert_eq!(
            census.running.load(Ordering::SeqCst),
            0,
            "stopped and awaited"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_follower_runs_no_loops() {
        let census = Arc::new(Census::default());
        let (tx, rx) = watch::channel(Leadership::default());
        let cancel = CancellationToken::new();
        let run = tokio::spawn(run_terms(rx, cancel.clone(), start(&census)));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(census.started.load(Ordering::SeqCst), 0);
        tx.send(leads(3)).expect("sent");
        settle(&census, 1).await;
        tx.send(Leadership::default()).expect("sent");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            census.running.load(Ordering::SeqCst),
            0,
            "stopped on step-down"
        );
        cancel.cancel();
        run.await.expect("ran");
    }
}
