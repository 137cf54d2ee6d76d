//! Linearizability: a recorder of client operations (call and return times, what was asked
//! and what was answered) and a checker in the Wing-Gong style with Lowe's memoization, as
//! Porcupine does. A history is linearizable when every operation can be placed at one
//! instant between its call and its return so that the sequence, run against a sequential
//! [`Model`], gives every answer the clients saw. Linearizability is local, so each key is
//! checked on its own.
//!
//! An operation whose outcome the client never learned (a timeout, a dropped connection, a
//! "not confirmed") is kept with no return: it may take effect at any point after its call,
//! or never (placed last, where nothing observes it). An operation that was definitely
//! refused is not recorded at all: it changed nothing.
//!
//! Knows nothing of Shoal: the register the reliability suite keeps in service labels is
//! one [`Register`] model among any a test may define.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A sequential specification.
pub trait Model {
    type State: Clone + Eq + Hash + Debug;
    type Input: Clone + Debug;
    type Output: Clone + Debug;

    /// The state of a key before any operation.
    fn init(&self) -> Self::State;

    /// Whether `input` may answer `output` in `state` (`None`: the answer was never seen),
    /// and the state it leaves; `None` when it may not.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State>;
}

/// One client operation on one key.
#[derive(Clone, Debug)]
pub struct Op<I, O> {
    pub client: usize,
    pub key: String,
    /// When it was called and when it returned, in ns since the recording began; `ret` is
    /// `None` when its outcome is unknown.
    pub call: u64,
    pub ret: Option<u64>,
    pub input: I,
    pub output: Option<O>,
}

/// Collects operations from many concurrent clients against one clock.
pub struct Recorder<I, O> {
    start: Instant,
    ops: Mutex<Vec<Op<I, O>>>,
}

impl<I: Clone, O: Clone> Default for Recorder<I, O> {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            ops: Mutex::new(Vec::new()),
        }
    }
}

impl<I: Clone, O: Clone> Recorder<I, O> {
    /// The time to pass as `call`: take it just before the request leaves.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// An operation that returned `output` (take the call time with [`Self::now`] first).
    pub fn done(&self, client: usize, key: &str, call: u64, input: I, output: O) {
        let ret = self.now();
        self.push(Op {
            client,
            key: key.to_string(),
            call,
            ret: Some(ret),
            input,
            output: Some(output),
        });
    }

    /// An operation whose outcome is unknown: it may have taken effect, at any time after
    /// `call`.
    pub fn unknown(&self, client: usize, key: &str, call: u64, input: I) {
        self.push(Op {
            client,
            key: key.to_string(),
            call,
            ret: None,
            input,
            output: None,
        });
    }

    fn push(&self, op: Op<I, O>) {
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).push(op);
    }

    /// Everything recorded so far.
    pub fn history(&self) -> Vec<Op<I, O>> {
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// An operation as `M` reads it.
pub type ModelOp<M> = Op<<M as Model>::Input, <M as Model>::Output>;

/// What the checker found.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No order fits; says which key, how far the best order got and what could not follow.
    Not(String),
    /// The search ran out of time (a history too concurrent for the budget).
    Unknown(String),
}

/// Check every key's sub-history; the first key that fails decides, else the first that
/// ran out of `budget` (shared by all keys).
pub fn check<M: Model>(
    model: &M,
    history: &[Op<M::Input, M::Output>],
    budget: Duration,
) -> Verdict {
    let deadline = Instant::now() + budget;
    let mut by_key: BTreeMap<&str, Vec<&ModelOp<M>>> = BTreeMap::new();
    for op in history {
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    let mut unknown = None;
    for (key, ops) in by_key {
        match check_key(model, key, &ops, deadline) {
            Verdict::Linearizable => {}
            Verdict::Unknown(why) => unknown = unknown.or(Some(why)),
            not => return not,
        }
    }
    unknown.map_or(Verdict::Linearizable, Verdict::Unknown)
}

const NONE: usize = usize::MAX;

/// The history as a doubly linked list of call and return events in time order (node `2n`
/// is the head), so that placing an operation is unlinking its two events and undoing it
/// is linking them back.
struct Events {
    next: Vec<usize>,
    prev: Vec<usize>,
    /// For each node: the operation, and whether it is the call.
    op: Vec<(usize, bool)>,
    /// For each operation: its return node.
    ret_node: Vec<usize>,
}

impl Events {
    fn new<I, O>(ops: &[&Op<I, O>]) -> Self {
        let n = ops.len();
        let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
        for (i, op) in ops.iter().enumerate() {
            // At equal times a call sorts before a return: the two then overlap, which is
            // what the clock cannot rule out.
            order.push((op.call, false, i));
            order.push((op.ret.unwrap_or(u64::MAX), true, i));
        }
        order.sort();
        let head = 2 * n;
        let mut events = Events {
            next: vec![NONE; 2 * n + 1],
            prev: vec![NONE; 2 * n + 1],
            op: vec![(0, false); 2 * n],
            ret_node: vec![NONE; n],
        };
        let mut last = head;
        for (node, &(_, is_ret, i)) in order.iter().enumerate() {
            events.op[node] = (i, !is_ret);
            if is_ret {
                events.ret_node[i] = node;
            }
            events.next[last] = node;
            events.prev[node] = last;
            last = node;
        }
        events
    }

    fn head(&self) -> usize {
        self.next.len() - 1
    }

    fn unlink(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = n;
        if n != NONE {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = node;
        if n != NONE {
            self.prev[n] = node;
        }
    }

    fn lift(&mut self, call: usize) {
        let ret = self.ret_node[self.op[call].0];
        self.unlink(call);
        self.unlink(ret);
    }

    fn unlift(&mut self, call: usize) {
        let ret = self.ret_node[self.op[call].0];
        self.relink(ret);
        self.relink(call);
    }
}

fn check_key<M: Model>(
    model: &M,
    key: &str,
    ops: &[&Op<M::Input, M::Output>],
    deadline: Instant,
) -> Verdict {
    let n = ops.len();
    let mut events = Events::new(ops);
    let words = n.div_ceil(64).max(1);
    let mut placed = vec![0u64; words];
    let mut seen: HashSet<(Vec<u64>, M::State)> = HashSet::new();
    // The calls placed so far, with the state before each.
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut state = model.init();
    let mut best: (Vec<usize>, M::State) = (Vec::new(), state.clone());
    let mut node = events.next[events.head()];
    let mut steps = 0u64;
    while events.next[events.head()] != NONE {
        steps += 1;
        if steps.is_multiple_of(4096) && Instant::now() > deadline {
            return Verdict::Unknown(format!(
                "key {key}: {n} operations not decided within the time budget ({} placed)",
                best.0.len()
            ));
        }
        let (i, is_call) = events.op[node];
        if is_call {
            if let Some(after) = model.step(&state, &ops[i].input, ops[i].output.as_ref()) {
                let mut with = placed.clone();
                with[i / 64] |= 1 << (i % 64);
                if seen.insert((with.clone(), after.clone())) {
                    stack.push((node, std::mem::replace(&mut state, after)));
                    placed = with;
                    events.lift(node);
                    if stack.len() > best.0.len() {
                        best = (
                            stack.iter().map(|&(c, _)| events.op[c].0).collect(),
                            state.clone(),
                        );
                    }
                    node = events.next[events.head()];
                    continue;
                }
            }
            node = events.next[node];
        } else {
            // A return whose call could not be placed: undo the last placement.
            let Some((call, before)) = stack.pop() else {
                return Verdict::Not(explain(key, ops, &best));
            };
            let i = events.op[call].0;
            placed[i / 64] &= !(1 << (i % 64));
            state = before;
            events.unlift(call);
            node = events.next[call];
        }
    }
    Verdict::Linearizable
}

/// Why no order fits: the longest order found, the state it reached, and the operations
/// that could not come next.
fn explain<I: Debug, O: Debug, S: Debug>(
    key: &str,
    ops: &[&Op<I, O>],
    (order, state): &(Vec<usize>, S),
) -> String {
    let placed: HashSet<usize> = order.iter().copied().collect();
    let describe = |op: &Op<I, O>| {
        format!(
            "client {} {:?} -> {} (called {:.3} s, returned {})",
            op.client,
            op.input,
            op.output
                .as_ref()
                .map_or("unknown".to_string(), |o| format!("{o:?}")),
            op.call as f64 / 1e9,
            op.ret
                .map_or("never".into(), |r| format!("{:.3} s", r as f64 / 1e9))
        )
    };
    let last: Vec<String> = order
        .iter()
        .rev()
        .take(3)
        .rev()
        .map(|&i| describe(ops[i]))
        .collect();
    let first_open = ops
        .iter()
        .enumerate()
        .filter(|(i, _)| !placed.contains(i))
        .min_by_key(|(_, op)| op.ret.unwrap_or(u64::MAX));
    format!(
        "key {key}: not linearizable. The longest order found places {} of {} operations, \
         ending with [{}] in state {state:?}; the operation that must come next cannot: {}",
        order.len(),
        ops.len(),
        last.join("; "),
        first_open.map_or("none".into(), |(_, op)| describe(op)),
    )
}

/// A register with compare-and-set: what a service label is under `service update` at a
/// version. State: the value.
pub struct Register {
    pub initial: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegisterOp {
    Read,
    /// Set the value, if it is `expect` (when given) at that instant.
    Write {
        expect: Option<String>,
        value: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegisterOut {
    Read(String),
    Written,
}

impl Model for Register {
    type State = String;
    type Input = RegisterOp;
    type Output = RegisterOut;

    fn init(&self) -> String {
        self.initial.clone()
    }

    fn step(
        &self,
        state: &String,
        input: &RegisterOp,
        output: Option<&RegisterOut>,
    ) -> Option<String> {
        match (input, output) {
            (RegisterOp::Read, Some(RegisterOut::Read(seen))) => {
                (seen == state).then(|| state.clone())
            }
            (RegisterOp::Read, None) => Some(state.clone()),
            (RegisterOp::Write { expect, value }, Some(RegisterOut::Written)) => expect
                .as_ref()
                .is_none_or(|e| e == state)
                .then(|| value.clone()),
            // Unknown: it took effect here if it could; "never" is it placed last.
            (RegisterOp::Write { expect, value }, None) => {
                Some(if expect.as_ref().is_none_or(|e| e == state) {
                    value.clone()
                } else {
                    state.clone()
                })
            }
            (RegisterOp::Read, Some(RegisterOut::Written))
            | (RegisterOp::Write { .. }, Some(RegisterOut::Read(_))) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz::Rng;

    const BUDGET: Duration = Duration::from_secs(10);

    fn reg() -> Register {
        Register {
            initial: "0".into(),
        }
    }

    fn op(
        client: usize,
        call: u64,
        ret: Option<u64>,
        input: RegisterOp,
        output: Option<RegisterOut>,
    ) -> Op<RegisterOp, RegisterOut> {
        Op {
            client,
            key: "k".into(),
            call,
            ret,
            input,
            output,
        }
    }

    fn read(client: usize, call: u64, ret: u64, seen: &str) -> Op<RegisterOp, RegisterOut> {
        op(
            client,
            call,
            Some(ret),
            RegisterOp::Read,
            Some(RegisterOut::Read(seen.into())),
        )
    }

    fn write(client: usize, call: u64, ret: u64, value: &str) -> Op<RegisterOp, RegisterOut> {
        op(
            client,
            call,
            Some(ret),
            RegisterOp::Write {
                expect: None,
                value: value.into(),
            },
            Some(RegisterOut::Written),
        )
    }

    fn is_not(v: Verdict) -> String {
        match v {
            Verdict::Not(why) => why,
            other => panic!("expected not linearizable, got {other:?}"),
        }
    }

    #[test]
    fn a_read_of_a_value_overwritten_before_it_began_is_stale() {
        let h = vec![
            write(0, 0, 10, "1"),
            write(0, 20, 30, "2"),
            read(1, 40, 50, "1"),
        ];
        let why = is_not(check(&reg(), &h, BUDGET));
        assert!(
            why.contains("key k") && why.contains("Read(\"1\")"),
            "{why}"
        );
        // Overlapping the second write, the same read is fine.
        let h = vec![
            write(0, 0, 10, "1"),
            write(0, 20, 45, "2"),
            read(1, 40, 50, "1"),
        ];
        assert_eq!(check(&reg(), &h, BUDGET), Verdict::Linearizable);
    }

    #[test]
    fn an_acknowledged_write_that_disappears_is_caught() {
        // Written and acknowledged, then a later read sees the value before it.
        let h = vec![
            read(1, 0, 5, "0"),
            write(0, 10, 20, "1"),
            read(1, 30, 40, "0"),
        ];
        is_not(check(&reg(), &h, BUDGET));
    }

    #[test]
    fn a_write_of_unknown_outcome_may_land_late_or_never() {
        let unknown = op(
            0,
            10,
            None,
            RegisterOp::Write {
                expect: None,
                value: "1".into(),
            },
            None,
        );
        // Seen long after the client gave up on it: fine.
        let h = vec![
            unknown.clone(),
            read(1, 1000, 1010, "0"),
            read(1, 2000, 2010, "1"),
        ];
        assert_eq!(check(&reg(), &h, BUDGET), Verdict::Linearizable);
        // Never seen: fine.
        let h = vec![unknown.clone(), read(1, 1000, 1010, "0")];
        assert_eq!(check(&reg(), &h, BUDGET), Verdict::Linearizable);
        // Seen, then gone again: not.
        let h = vec![
            unknown.clone(),
            read(1, 1000, 1010, "1"),
            read(1, 2000, 2010, "0"),
        ];
        is_not(check(&reg(), &h, BUDGET));
        // Seen before it was called: not.
        let h = vec![read(1, 0, 5, "1"), unknown];
        is_not(check(&reg(), &h, BUDGET));
    }

    #[test]
    fn a_compare_and_set_must_find_its_expected_value() {
        let cas = |client, call, ret, expect: &str, value: &str| {
            op(
                client,
                call,
                Some(ret),
                RegisterOp::Write {
                    expect: Some(expect.into()),
                    value: value.into(),
                },
                Some(RegisterOut::Written),
            )
        };
        // Two concurrent CAS from the same value cannot both succeed.
        let h = vec![cas(0, 0, 10, "0", "a"), cas(1, 0, 10, "0", "b")];
        is_not(check(&reg(), &h, BUDGET));
        // Chained, they can, in either order the clock allows.
        let h = vec![
            cas(0, 0, 10, "0", "a"),
            cas(1, 0, 10, "a", "b"),
            read(2, 20, 30, "b"),
        ];
        assert_eq!(check(&reg(), &h, BUDGET), Verdict::Linearizable);
    }

    #[test]
    fn keys_are_checked_apart() {
        let mut other = write(0, 0, 10, "9");
        other.key = "j".into();
        let h = vec![other, read(1, 20, 30, "0")];
        assert_eq!(check(&reg(), &h, BUDGET), Verdict::Linearizable);
    }

    /// A history made from a real sequential run, each operation's interval stretched
    /// around the instant it took effect: linearizable by construction. Changing one read's
    /// answer to a value never written makes it not.
    #[test]
    fn random_concurrent_histories_of_a_real_register_check_and_a_corrupted_one_fails() {
        let mut rng = Rng(0x5eed_1234_abcd);
        for round in 0..200 {
            let mut value = "0".to_string();
            let mut h = Vec::new();
            let ops = 5 + rng.below(60);
            for n in 0..ops {
                let at = (n as u64 + 1) * 100;
                let call = at - rng.below(250).min(at as usize) as u64;
                let ret = at + rng.below(250) as u64;
                let client = rng.below(5);
                match rng.below(3) {
                    0 => h.push(read(client, call, ret, &value)),
                    1 => {
                        let v = format!("{round}-{n}");
                        let expect = rng.below(2).eq(&0).then(|| value.clone());
                        h.push(op(
                            client,
                            call,
                            Some(ret),
                            RegisterOp::Write {
                                expect,
                                value: v.clone(),
                            },
                            Some(RegisterOut::Written),
                        ));
                        value = v;
                    }
                    _ => {
                        // Unknown outcome: sometimes it happened, sometimes not.
                        let v = format!("{round}-{n}");
                        if rng.below(2) == 0 {
                            value = v.clone();
                        }
                        h.push(op(
                            client,
                            call,
                            None,
                            RegisterOp::Write {
                                expect: None,
                                value: v,
                            },
                            None,
                        ));
                    }
                }
            }
            assert_eq!(
                check(&reg(), &h, BUDGET),
                Verdict::Linearizable,
                "round {round}: {h:#?}"
            );
            if let Some(i) = h.iter().position(|o| o.input == RegisterOp::Read) {
                h[i].output = Some(RegisterOut::Read("never-written".into()));
                is_not(check(&reg(), &h, BUDGET));
            }
        }
    }

    #[test]
    fn the_recorder_keeps_unknown_outcomes_open() {
        let rec: Recorder<RegisterOp, RegisterOut> = Recorder::default();
        let t = rec.now();
        rec.done(0, "k", t, RegisterOp::Read, RegisterOut::Read("0".into()));
        rec.unknown(
            1,
            "k",
            rec.now(),
            RegisterOp::Write {
                expect: None,
                value: "1".into(),
            },
        );
        let h = rec.history();
        assert!(h[0].ret.is_some_and(|r| r >= h[0].call));
        assert_eq!((h[1].ret, h[1].output.clone()), (None, None));
        assert_eq!(check(&reg(), &h, BUDGET), Verdict::Linearizable);
    }
}
