//! Flows: the fused, per-worker pipelines that tasks poll.
//!
//! A [`Flow`] is a source (or an exchange's receiving side, or a union of flows) followed by a
//! fused chain of operators. A task polls its flow with a record budget and a downstream
//! [`Emit`]; the flow pulls records from its inputs and pushes each one through the chain in a
//! single pass. Polling is the only dynamically dispatched step (once per batch, in the task);
//! everything per record is static.

use std::sync::Arc;
use std::time::Instant;

use crate::error::{Failure, JobError};
use crate::metrics::NodeCounters;
use crate::operator::{Emit, Operator};

/// What one poll achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Records were processed; poll again soon.
    Busy,
    /// Nothing to do now. New input arrives with a notification of the worker, or at
    /// `deadline` (a timer-driven source such as the paced generator).
    Idle {
        /// When polling again can find work even without a notification.
        deadline: Option<Instant>,
    },
    /// Every input has ended and the chain's end hooks have run; never poll again.
    Done,
}

impl Progress {
    /// Idle with no deadline.
    pub const IDLE: Progress = Progress::Idle { deadline: None };

    /// Combines the progress of two inputs polled in the same round.
    pub fn and(self, other: Progress) -> Progress {
        match (self, other) {
            (Progress::Busy, _) | (_, Progress::Busy) => Progress::Busy,
            (Progress::Done, Progress::Done) => Progress::Done,
            (Progress::Done, idle @ Progress::Idle { .. })
            | (idle @ Progress::Idle { .. }, Progress::Done) => idle,
            (Progress::Idle { deadline: a }, Progress::Idle { deadline: b }) => Progress::Idle {
                deadline: match (a, b) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                },
            },
        }
    }
}

/// A per-worker pipeline that produces `Self::Out` records when polled.
pub trait Flow {
    /// The type of the records this flow emits.
    type Out;

    /// Pulls up to about `budget` input records and pushes them through the chain into `out`,
    /// stopping early when `out.should_yield()`. Must not block.
    fn poll<E: Emit<Self::Out>>(
        &mut self,
        out: &mut E,
        budget: usize,
    ) -> Result<Progress, JobError>;
}

/// A flow followed by one more operator.
#[derive(Debug)]
pub struct Then<F, O> {
    flow: F,
    op: O,
    name: Arc<str>,
    counters: NodeCounters,
    received: u64,
    emitted: u64,
    done: bool,
}

impl<F, O> Then<F, O> {
    pub(crate) fn new(flow: F, op: O, name: Arc<str>, counters: NodeCounters) -> Self {
        Self {
            flow,
            op,
            name,
            counters,
            received: 0,
            emitted: 0,
            done: false,
        }
    }
}

/// The operator's output side: counts and tags failures with the operator's name.
struct Downstream<'a, E> {
    out: &'a mut E,
    name: &'a Arc<str>,
    emitted: &'a mut u64,
}

impl<T, E: Emit<T>> Emit<T> for Downstream<'_, E> {
    #[inline]
    fn emit(&mut self, item: T) {
        *self.emitted += 1;
        self.out.emit(item);
    }
    fn fail(&mut self, mut failure: Failure) {
        failure.tag(self.name);
        self.out.fail(failure);
    }
    #[inline]
    fn should_yield(&self) -> bool {
        self.out.should_yield()
    }
}

/// The operator's input side, as seen by the upstream flow.
struct Chain<'a, O, D> {
    op: &'a mut O,
    down: &'a mut D,
    received: &'a mut u64,
}

impl<'a, I, O, E> Emit<I> for Chain<'_, O, Downstream<'a, E>>
where
    O: Operator<I>,
    E: Emit<O::Out>,
{
    #[inline]
    fn emit(&mut self, item: I) {
        *self.received += 1;
        self.op.on_record(item, self.down);
    }
    fn fail(&mut self, failure: Failure) {
        // An upstream failure passes through untouched: it belongs to whoever tagged it.
        self.down.out.fail(failure);
    }
    #[inline]
    fn should_yield(&self) -> bool {
        self.down.should_yield()
    }
}

impl<F, O> Flow for Then<F, O>
where
    F: Flow,
    O: Operator<F::Out>,
{
    type Out = O::Out;

    #[inline]
    fn poll<E: Emit<O::Out>>(&mut self, out: &mut E, budget: usize) -> Result<Progress, JobError> {
        if self.done {
            return Ok(Progress::Done);
        }
        let mut down = Downstream {
            out,
            name: &self.name,
            emitted: &mut self.emitted,
        };
        let progress = {
            let mut chain = Chain {
                op: &mut self.op,
                down: &mut down,
                received: &mut self.received,
            };
            self.flow.poll(&mut chain, budget)
        };
        if let Ok(Progress::Done) = progress {
            self.op.on_end(&mut down);
            self.done = true;
        }
        self.counters.publish(self.received, self.emitted);
        progress
    }
}

/// Two flows of the same record type merged into one (in no particular order between them).
#[derive(Debug)]
pub struct Union<A, B> {
    a: A,
    b: B,
    a_done: bool,
    b_done: bool,
}

impl<A, B> Union<A, B> {
    pub(crate) fn new(a: A, b: B) -> Self {
        Self {
            a,
            b,
            a_done: false,
            b_done: false,
        }
    }
}

impl<A, B> Flow for Union<A, B>
where
    A: Flow,
    B: Flow<Out = A::Out>,
{
    type Out = A::Out;

    #[inline]
    fn poll<E: Emit<A::Out>>(&mut self, out: &mut E, budget: usize) -> Result<Progress, JobError> {
        let pa = if self.a_done {
            Progress::Done
        } else {
            self.a.poll(out, budget)?
        };
        self.a_done = pa == Progress::Done;
        let pb = if self.b_done || out.should_yield() {
            if self.b_done {
                Progress::Done
            } else {
                Progress::Busy
            }
        } else {
            self.b.poll(out, budget)?
        };
        self.b_done = pb == Progress::Done;
        Ok(pa.and(pb))
    }
}

/// Counts the records a source emits.
pub(crate) struct Counted<'a, E> {
    pub(crate) out: &'a mut E,
    pub(crate) count: &'a mut u64,
}

impl<T, E: Emit<T>> Emit<T> for Counted<'_, E> {
    #[inline]
    fn emit(&mut self, item: T) {
        *self.count += 1;
        self.out.emit(item);
    }
    fn fail(&mut self, failure: Failure) {
        self.out.fail(failure);
    }
    #[inline]
    fn should_yield(&self) -> bool {
        self.out.should_yield()
    }
}
