//! The shape every leader-only component shares: wait for relevant store events (or a
//! timer), swallow the burst that follows, then act on the whole state once.

use std::time::Duration;

use tokio::sync::broadcast::{self, error::RecvError};
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

/// Bursts of events closer together than this are handled in one pass.
pub const DEBOUNCE: Duration = Duration::from_millis(5);

/// Wait for the next relevant event, a deadline, or cancellation; then drain whatever else
/// arrives within [`DEBOUNCE`].
pub async fn next(
    events: &mut broadcast::Receiver<Event>,
    relevant: impl Fn(&Event) -> bool,
    deadline: Option<Instant>,
    cancel: &CancellationToken,
) -> Wake {
    next_noting(events, |e| relevant(e), deadline, cancel).await
}

/// As [`next`], handing every event that arrives (the burst's too) to `note`, which says
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
    let settle = tokio::time::sleep(DEBOUNCE);
    tokio::pin!(settle);
    loop {
        tokio::select! {
            _ = &mut settle => return Wake::Changed,
            event = events.recv() => match event {
                Ok(e) => {
                    note(&e);
                }
                Err(RecvError::Lagged(_)) => {
                    note(&Event::Resync);
                }
                Err(RecvError::Closed) => return Wake::Shutdown,
            },
        }
    }
}

/// The whole life of a component that acts on the entire state: one pass now, then one
/// after each burst of relevant events, until `cancel`. A failed pass is logged (naming
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
