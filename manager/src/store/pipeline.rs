//! The write pipeline: the leader's speculative state, the queue to the proposer, and
//! group commit.
//!
//! A transaction runs on the speculative state (committed plus every batch queued and not
//! yet answered), under the one writer lock; its batch gets the next sequence number, is
//! checked and applied to the speculative state, and queued; the lock is released before
//! the commit is awaited. One committer task takes everything queued so far as one log
//! entry (one append, one fsync, one round of replication) and answers each batch.
//!
//! Nothing is applied on a view that did not commit: a batch applies only right after the
//! batch it was built on (it names it, [`super::apply::check_batch`]). When a
//! batch fails, every batch queued after it was built on it: they fail too, with the same
//! error (a lost leadership) or as stale (a refusal), and no new transaction starts until
//! all of them are answered; the speculative state is then rebuilt from the committed one.

use std::sync::{Arc, OnceLock};

use prost::Message;
use shoal_proto::{StoreActionBatch, StoreEntry};
use tokio::sync::{mpsc, oneshot, watch, Mutex, MutexGuard};

use super::apply::{check_batch, write_batch};
use super::{Proposer, StoreError, StoreState, Tables, MAX_BATCH_BYTES, STORE_FORMAT};

/// At most this many batches share one log entry, and together no more than
/// [`MAX_BATCH_BYTES`] (each batch is at most that, [`Pipeline::queue`]).
const MAX_BATCHES_PER_ENTRY: usize = 1024;

/// The pipeline's shared half: cheap to clone.
#[derive(Clone)]
pub(super) struct Pipeline {
    shared: Arc<Shared>,
    proposer: Arc<dyn Proposer>,
    /// The committer's queue, made on the first write (it needs a runtime to run on).
    queue: Arc<OnceLock<mpsc::UnboundedSender<Queued>>>,
}

/// What the committer task shares with the writers. It holds no queue sender, so the
/// committer ends when the last [`super::Store`] handle is dropped.
struct Shared {
    /// The speculative state; its lock is the writer lock.
    spec: Mutex<Tables>,
    flight: watch::Sender<Flight>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Flight {
    /// Batches queued and not yet answered.
    pending: usize,
    /// A pending batch failed: the speculative state holds writes that will not commit.
    poisoned: bool,
}

struct Queued {
    batch: StoreActionBatch,
    /// `batch`'s encoded size.
    bytes: usize,
    reply: oneshot::Sender<Result<(), StoreError>>,
}

impl Pipeline {
    pub(super) fn new(proposer: Arc<dyn Proposer>) -> Self {
        Self {
            shared: Arc::new(Shared {
                spec: Mutex::new(Tables::default()),
                flight: watch::channel(Flight::default()).0,
            }),
            proposer,
            queue: Arc::new(OnceLock::new()),
        }
    }

    /// Takes the writer lock and returns the speculative state to build on. With nothing
    /// pending it is the committed state (itself when every batch built on it committed,
    /// else a fresh copy of it); after a failure, waits until every batch built on the
    /// failed one is answered.
    pub(super) async fn begin(&self, committed: &StoreState) -> MutexGuard<'_, Tables> {
        loop {
            let mut spec = self.shared.spec.lock().await;
            let flight = *self.shared.flight.borrow();
            if flight.pending == 0 {
                self.proposer.settle().await;
                // Every batch built here committed, and nothing else did: the speculative
                // state is the committed one already, and kept (a fresh copy would share
                // its paths with the committed tables, and each write would copy them).
                let current = {
                    let committed = committed.read();
                    spec.last_batch != 0
                        && spec.last_batch == committed.last_batch
                        && spec.seq == committed.seq
                };
                if flight.poisoned || !current {
                    *spec = committed.tables();
                }
                if flight.poisoned {
                    self.shared.flight.send_modify(|f| f.poisoned = false);
                }
                return spec;
            }
            if !flight.poisoned {
                return spec;
            }
            drop(spec);
            let mut drained = self.shared.flight.subscribe();
            // The sender lives in `self.shared`: this cannot fail while `self` exists.
            let _ = drained.wait_for(|f| f.pending == 0).await;
        }
    }

    /// Batches queued and not yet answered.
    #[cfg(test)]
    pub(super) fn pending(&self) -> usize {
        self.shared.flight.borrow().pending
    }

    /// Checks `batch` (its actions `action_bytes` long, encoded) against the speculative
    /// state, applies it there with the next sequence number and queues it. The returned
    /// future resolves when it is applied (or refused); the caller drops the writer lock
    /// before awaiting it.
    pub(super) fn queue(
        &self,
        spec: &mut Tables,
        mut batch: StoreActionBatch,
        action_bytes: usize,
    ) -> Result<Commit, StoreError> {
        batch.format = STORE_FORMAT;
        batch.seq = spec.seq + 1;
        batch.parent = spec.last_batch;
        batch.id = rand::random::<u64>().max(1);
        let bytes = action_bytes + header_len(&batch);
        debug_assert_eq!(bytes, batch.encoded_len());
        if bytes > MAX_BATCH_BYTES {
            return Err(StoreError::TooLarge {
                bytes,
                limit: MAX_BATCH_BYTES,
            });
        }
        let version = check_batch(spec, 0, &batch)?;
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(commit(rx, self.shared.clone(), self.proposer.clone()));
            tx
        });
        let (reply, answer) = oneshot::channel();
        self.shared.flight.send_modify(|f| f.pending += 1);
        if let Err(mpsc::error::SendError(lost)) = queue.send(Queued {
            batch: batch.clone(),
            bytes,
            reply,
        }) {
            self.shared.flight.send_modify(|f| f.pending -= 1);
            drop(lost);
            return Err(StoreError::Unavailable(
                "the store's committer has stopped (the manager is shutting down)".into(),
            ));
        }
        write_batch(spec, version, batch, None);
        Ok(Commit(Some(answer)))
    }
}

/// The encoded size of `batch` without its actions.
fn header_len(batch: &StoreActionBatch) -> usize {
    StoreActionBatch {
        actions: Vec::new(),
        ..*batch
    }
    .encoded_len()
}

/// A queued batch's commit: resolves once it is applied here, or with why it was not.
/// Dropping it does not withdraw the batch.
#[must_use = "a queued batch may still be refused: await its commit"]
pub struct Commit(Option<oneshot::Receiver<Result<(), StoreError>>>);

impl Commit {
    /// The commit of a transaction that wrote nothing.
    pub(super) fn nothing() -> Self {
        Self(None)
    }
}

impl std::future::Future for Commit {
    type Output = Result<(), StoreError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let Some(answer) = self.0.as_mut() else {
            return std::task::Poll::Ready(Ok(()));
        };
        std::pin::Pin::new(answer).poll(cx).map(|answer| {
            answer.unwrap_or_else(|_| {
                Err(StoreError::Unavailable(
                    "the store's committer stopped before this change was answered".into(),
                ))
            })
        })
    }
}

/// The committer: one log entry at a time, each holding every batch queued meanwhile.
async fn commit(
    mut queue: mpsc::UnboundedReceiver<Queued>,
    shared: Arc<Shared>,
    proposer: Arc<dyn Proposer>,
) {
    // A batch that did not fit the entry before: it starts the next one.
    let mut carried: Option<Queued> = None;
    loop {
        let first = match carried.take() {
            Some(first) => first,
            None => match queue.recv().await {
                Some(first) => first,
                None => return,
            },
        };
        let mut bytes = first.bytes;
        let mut group = vec![first];
        while group.len() < MAX_BATCHES_PER_ENTRY {
            match queue.try_recv() {
                Ok(next) if bytes + next.bytes > MAX_BATCH_BYTES => {
                    carried = Some(next);
                    break;
                }
                Ok(next) => {
                    bytes += next.bytes;
                    group.push(next);
                }
                Err(_) => break,
            }
        }
        let (batches, replies): (Vec<_>, Vec<_>) =
            group.into_iter().map(|q| (q.batch, q.reply)).unzip();
        let count = batches.len();
        let seqs: Vec<u64> = batches.iter().map(|b| b.seq).collect();
        let results = match proposer
            .propose(StoreEntry {
                format: STORE_FORMAT,
                batches,
            })
            .await
        {
            Ok(mut results) => {
                results.resize_with(count, || {
                    Err(StoreError::Propose(
                        "the store answered fewer batches than the entry held".into(),
                    ))
                });
                results
            }
            Err(e) => vec![Err(e); count],
        };
        let failed = results
            .iter()
            .zip(&seqs)
            .find_map(|(r, &seq)| r.as_ref().err().map(|e| (e.clone(), seq)));
        let mut answered = count;
        if let Some((failure, failed_seq)) = failed {
            // Whatever is queued now was built on the batch that failed. Poison under the
            // writer lock, so no transaction is between reading the state and queueing.
            let _writer = shared.spec.lock().await;
            shared.flight.send_modify(|f| f.poisoned = true);
            let carried = carried.take();
            for later in carried
                .into_iter()
                .chain(std::iter::from_fn(|| queue.try_recv().ok()))
            {
                let error = built_on_failed(&failure, later.batch.seq, failed_seq);
                let _ = later.reply.send(Err(error));
                answered += 1;
            }
        }
        for (reply, result) in replies.into_iter().zip(results) {
            // A caller that gave up is fine: its batch was answered all the same.
            let _ = reply.send(result);
        }
        shared.flight.send_modify(|f| f.pending -= answered);
    }
}

/// The error for batch `seq`, queued after batch `failed_seq` failed with `failure`: the
/// same when the entry as a whole could not commit (not the leader, no quorum), stale when
/// the earlier batch was refused.
fn built_on_failed(failure: &StoreError, seq: u64, failed_seq: u64) -> StoreError {
    match failure {
        StoreError::NotLeader { .. } | StoreError::Unavailable(_) => failure.clone(),
        _ => StoreError::Stale {
            seq,
            applied: failed_seq.saturating_sub(1),
        },
    }
}
