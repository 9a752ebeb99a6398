//! Model check of barrier alignment in an exchange's receiving side ([`rill_engine::ExchangeIn`],
//! the real code) with two inputs filled by two sender threads, under every interleaving loom
//! can find.
//!
//! Run with: `RUSTFLAGS="--cfg loom" cargo test -p rill-engine --test loom_barrier --release`
//! The property: the receiver reports `Barrier(1)` exactly once, after every record sent
//! before the barrier on either input and before any record sent after it.

#![cfg(loom)]

use std::collections::VecDeque;

use loom::sync::{Arc, Mutex};
use loom::thread;

use rill_engine::test_support::{Inbound, Message, NodeCounters};
use rill_engine::{Emit, ExchangeIn, Failure, Flow, Progress};

/// One ring, as a loom-visible queue.
#[derive(Clone, Default)]
struct Queue(Arc<Mutex<VecDeque<Message<u32>>>>);

impl Queue {
    fn push(&self, m: Message<u32>) {
        self.0.lock().unwrap().push_back(m);
    }
}

impl Inbound<u32> for Queue {
    fn pop(&mut self) -> Option<Message<u32>> {
        self.0.lock().unwrap().pop_front()
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Record(u32),
    Barrier(u64),
}

struct Collect(Vec<Seen>);

impl Emit<u32> for Collect {
    fn emit(&mut self, item: u32) {
        self.0.push(Seen::Record(item));
    }
    fn fail(&mut self, _: Failure) {}
    fn should_yield(&self) -> bool {
        false
    }
}

/// Drives the receiver until both inputs have ended.
fn receive(queues: Vec<Queue>) -> Vec<Seen> {
    let mut flow = ExchangeIn::new(queues, NodeCounters::detached());
    let mut out = Collect(Vec::new());
    loop {
        // A budget of 1 gives loom the most chances to interleave pops and pushes.
        match flow.poll(&mut out, 1).expect("no errors") {
            Progress::Done => return out.0,
            Progress::Barrier(e) => out.0.push(Seen::Barrier(e)),
            Progress::Busy => {}
            Progress::Idle { .. } => thread::yield_now(),
        }
    }
}

/// Explores every interleaving with up to three preemptions: the unbounded search takes ten
/// minutes on two inputs, and alignment bugs need at most two (push a barrier, then the other
/// input's record overtakes it).
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(f);
}

fn records(seen: &[Seen]) -> Vec<u32> {
    let mut r: Vec<u32> = seen
        .iter()
        .filter_map(|s| match s {
            Seen::Record(x) => Some(*x),
            Seen::Barrier(_) => None,
        })
        .collect();
    r.sort_unstable();
    r
}

#[test]
fn barrier_separates_the_epochs_of_both_inputs() {
    model(|| {
        let (a, b) = (Queue::default(), Queue::default());
        let senders: Vec<_> = [(a.clone(), 1), (b.clone(), 11)]
            .into_iter()
            .map(|(q, base)| {
                thread::spawn(move || {
                    q.push(Message::Record(base));
                    q.push(Message::Barrier(1));
                    q.push(Message::Record(base + 1));
                    q.push(Message::End);
                })
            })
            .collect();
        let seen = receive(vec![a, b]);
        for s in senders {
            s.join().unwrap();
        }
        let at = seen
            .iter()
            .position(|s| *s == Seen::Barrier(1))
            .expect("the barrier is reported");
        assert_eq!(records(&seen[..at]), vec![1, 11], "{seen:?}");
        assert_eq!(records(&seen[at + 1..]), vec![2, 12], "{seen:?}");
    });
}

#[test]
fn an_ended_input_counts_as_aligned_only_once_its_end_is_read() {
    model(|| {
        let (a, b) = (Queue::default(), Queue::default());
        let (qa, qb) = (a.clone(), b.clone());
        let ta = thread::spawn(move || {
            qa.push(Message::Record(1));
            qa.push(Message::Barrier(1));
            qa.push(Message::Record(2));
            qa.push(Message::End);
        });
        // This sender's input ends before the epoch starts: it sends no barrier.
        let tb = thread::spawn(move || {
            qb.push(Message::Record(11));
            qb.push(Message::End);
        });
        let seen = receive(vec![a, b]);
        ta.join().unwrap();
        tb.join().unwrap();
        let at = seen
            .iter()
            .position(|s| *s == Seen::Barrier(1))
            .expect("the barrier is reported");
        assert_eq!(records(&seen[..at]), vec![1, 11], "{seen:?}");
        assert_eq!(records(&seen[at + 1..]), vec![2], "{seen:?}");
    });
}
