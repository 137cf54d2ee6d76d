//! The shape every leader-only component shares: wait for relevant store events (or a
//! timer), take whatever else has already arrived, then act once on all of it.
//!
//! There is no debounce: a pass starts as soon as the first relevant event arrives, so a
//! lone change costs no added delay, and the events that arrive while a pass runs are the
//! next pass's batch. A store entry's events are sent together when it applies, so one
//! entry is never split across passes.

use tokio::sync::broadcast::{
    self,
    error::{RecvError, TryRecvError},
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::store::{Event, Store};

/// Why a run loop woke up.
#[derive(Debug, PartialEq, Eq)]
pub enum Wake {
    /// Relevant changes arrived (or the stream lagged: re-read everything).
    Changed,
    /// The deadline the loop asked for passed.
    Timer,
    Shutdown,
}

/// Wait for the next relevant event, a deadline, or cancellation; then take whatever else
/// has already arrived.
pub async fn next(
    events: &mut broadcast::Receiver<Event>,
    relevant: impl Fn(&Event) -> bool,
    deadline: Option<Instant>,
    cancel: &CancellationToken,
) -> Wake {
    next_noting(events, |e| relevant(e), deadline, cancel).await
}

/// As [`next`], handing every event taken (those already queued behind it too) to `note`, which says
/// whether it is relevant. A lag (events lost to a slow consumer) is noted as
/// [`Event::Resync`]: re-read everything.
pub async fn next_noting(
    events: &mut broadcast::Receiver<Event>,
    mut note: impl FnMut(&Event) -> bool,
    deadline: Option<Instant>,
    cancel: &CancellationToken,
) -> Wake {
    let timer = async {
        match deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(timer);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Wake::Shutdown,
            _ = &mut timer => return Wake::Timer,
            event = events.recv() => match event {
                Ok(e) if note(&e) || e == Event::Resync => break,
                Ok(_) => continue,
                Err(RecvError::Lagged(_)) => {
                    note(&Event::Resync);
                    break;
                }
                Err(RecvError::Closed) => return Wake::Shutdown,
            },
        }
    }
    loop {
        match events.try_recv() {
            Ok(e) => {
                note(&e);
            }
            Err(TryRecvError::Lagged(_)) => {
                note(&Event::Resync);
            }
            Err(TryRecvError::Empty) => return Wake::Changed,
            Err(TryRecvError::Closed) => return Wake::Shutdown,
        }
    }
}

/// The whole life of a component that acts on the entire state: one pass now, then one
/// after each batch of relevant events, until `cancel`. A failed pass is logged (naming
/// `what`) and retried on the next change.
pub async fn run_passes<T, E, F, Fut>(
    store: &Store,
    what: &str,
    relevant: impl Fn(&Event) -> bool,
    cancel: &CancellationToken,
    mut pass: F,
) where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut events = store.watch();
    loop {
        if let Err(e) = pass().await {
            tracing::warn!(error = %e, "{what} pass failed; retrying on the next change");
        }
        if next(&mut events, &relevant, None, cancel).await == Wake::Shutdown {
            return;
        }
    }
}
