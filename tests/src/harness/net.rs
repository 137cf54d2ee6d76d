//! The harness's network. Every member dials every other through [`Net::dialer`], so the
//! test decides, per direction between two named members, whether bytes arrive: a cut
//! direction holds them (as a partition does: TCP keeps retrying, nothing is lost, nothing
//! arrives until it heals), a slow one delays every write, and a severed one resets the
//! connections open across it. Cuts may be one way. Raft messages between two members can
//! also be sent twice (through Raft's test-only fault hook: a byte stream cannot repeat a
//! message).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use shoal_pki::{Dialer, Link};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// How often held bytes look again whether their direction healed.
const RECHECK: Duration = Duration::from_millis(20);

#[derive(Default)]
struct State {
    /// Listening address -> member name.
    names: HashMap<String, String>,
    /// (from, to): bytes from `from` to `to` are held.
    cut: HashSet<(String, String)>,
    /// (from, to): every write from `from` to `to` waits this long first.
    delay: HashMap<(String, String), Duration>,
    /// (from, to): Raft messages from `from` to `to` are sent twice.
    duplicate: HashSet<(String, String)>,
    /// How many Raft messages were sent twice.
    duplicated: u64,
    /// (a, b) in either order: connections between them made before this generation are
    /// reset.
    severed: HashMap<(String, String), u64>,
    generation: u64,
}

/// Links between named members; cheap to clone.
#[derive(Clone, Default)]
pub struct Net {
    state: Arc<Mutex<State>>,
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_string(), b.to_string())
}

fn unordered(a: &str, b: &str) -> (String, String) {
    if a <= b {
        pair(a, b)
    } else {
        pair(b, a)
    }
}

impl Net {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `member` listens on `addr`.
    pub fn name(&self, addr: &str, member: &str) {
        self.state()
            .names
            .insert(addr.to_string(), member.to_string());
    }

    /// Hold what `from` sends `to` (one way).
    pub fn cut(&self, from: &str, to: &str) {
        self.state().cut.insert(pair(from, to));
    }

    /// Hold everything between `member` and every other member, both ways.
    pub fn isolate(&self, member: &str) {
        let mut state = self.state();
        let others: Vec<String> = state
            .names
            .values()
            .filter(|n| *n != member)
            .cloned()
            .collect();
        for other in others {
            state.cut.insert(pair(member, &other));
            state.cut.insert(pair(&other, member));
        }
    }

    /// Every write from `from` to `to` waits `by` first.
    pub fn slow(&self, from: &str, to: &str, by: Duration) {
        self.state().delay.insert(pair(from, to), by);
    }

    /// Send every Raft message from `from` to `to` twice.
    pub fn duplicate(&self, from: &str, to: &str) {
        self.state().duplicate.insert(pair(from, to));
    }

    /// Whether this Raft message from `from` to `to` is sent twice (counted if so).
    pub fn duplicates(&self, from: &str, to: &str) -> bool {
        let mut state = self.state();
        let twice = state.duplicate.contains(&pair(from, to));
        state.duplicated += u64::from(twice);
        twice
    }

    /// How many Raft messages have been sent twice so far.
    pub fn duplicated(&self) -> u64 {
        self.state().duplicated
    }

    /// Reset every connection open between `a` and `b` now (new ones may be made).
    pub fn sever(&self, a: &str, b: &str) {
        let mut state = self.state();
        state.generation += 1;
        let generation = state.generation;
        state.severed.insert(unordered(a, b), generation);
    }

    /// Every cut and delay lifted.
    pub fn heal(&self) {
        let mut state = self.state();
        state.cut.clear();
        state.delay.clear();
        state.duplicate.clear();
    }

    fn is_cut(&self, from: &str, to: &str) -> bool {
        self.state().cut.contains(&pair(from, to))
    }

    fn delay(&self, from: &str, to: &str) -> Option<Duration> {
        self.state().delay.get(&pair(from, to)).copied()
    }

    fn severed_since(&self, a: &str, b: &str, born: u64) -> bool {
        self.state()
            .severed
            .get(&unordered(a, b))
            .is_some_and(|&g| g > born)
    }

    /// How member `me` dials: a TCP connection whose two directions obey this net.
    pub fn dialer(&self, me: &str) -> Dialer {
        let net = self.clone();
        let me = me.to_string();
        Arc::new(move |addr: String| {
            let (net, me) = (net.clone(), me.clone());
            Box::pin(async move {
                let peer = net.state().names.get(&addr).cloned().unwrap_or_default();
                // A cut direction holds the connection attempt too; the caller's own
                // timeouts decide when it gives up.
                while net.is_cut(&me, &peer) || net.is_cut(&peer, &me) {
                    tokio::time::sleep(RECHECK).await;
                }
                let tcp = TcpStream::connect(&addr).await?;
                let _ = tcp.set_nodelay(true);
                let born = net.state().generation;
                Ok(Link::new(Faulty {
                    tcp,
                    net,
                    me,
                    peer,
                    born,
                    delay: None,
                }))
            }) as Pin<Box<dyn Future<Output = io::Result<Link>> + Send>>
        })
    }
}

/// One connection from `me` to `peer`, as the net lets it through.
struct Faulty {
    tcp: TcpStream,
    net: Net,
    me: String,
    peer: String,
    born: u64,
    /// The wait before the write being made, when the direction is slow.
    delay: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// Ask to be polled again shortly (held bytes look again whether they may pass).
fn later<T>(cx: &mut Context<'_>) -> Poll<T> {
    let waker = cx.waker().clone();
    tokio::spawn(async move {
        tokio::time::sleep(RECHECK).await;
        waker.wake();
    });
    Poll::Pending
}

impl Faulty {
    fn reset(&self) -> Option<io::Error> {
        self.net
            .severed_since(&self.me, &self.peer, self.born)
            .then(|| io::Error::new(io::ErrorKind::ConnectionReset, "severed by the harness"))
    }
}

impl AsyncRead for Faulty {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(e) = self.reset() {
            return Poll::Ready(Err(e));
        }
        if self.net.is_cut(&self.peer, &self.me) {
            return later(cx);
        }
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Faulty {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.reset() {
            return Poll::Ready(Err(e));
        }
        if self.net.is_cut(&self.me, &self.peer) {
            return later(cx);
        }
        if let Some(by) = self.net.delay(&self.me, &self.peer) {
            let sleep = self
                .delay
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(by)));
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.delay = None;
        }
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}
