//! Flows: the fused, per-worker pipelines that tasks poll.
//!
//! A [`Flow`] is a source (or an exchange's receiving side, or a union of flows) followed by a
//! fused chain of operators. A task polls its flow with a record budget and a downstream
//! [`Emit`]; the flow pulls records from its inputs and pushes each one through the chain in a
//! single pass. Polling is the only dynamically dispatched step (once per batch, in the task);
//! everything per record is static.

use std::sync::Arc;
use std::time::Instant;

use crate::checkpoint::epoch::{BarrierReport, EpochControl};
use crate::dataflow::operator::{Emit, Operator};
use crate::error::JobError;
use crate::failure::{Failure, PanickedOnRecord};
use crate::runtime::message::{Epoch, EventTime};
use crate::runtime::metrics::NodeCounters;
use crate::runtime::watermark::InputWatermarks;
use crate::state::StateSnapshot;

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
    /// The flow has passed `Barrier(epoch)`: everything before the barrier has been emitted,
    /// the chain's operators have captured their state (collect it with
    /// [`Flow::take_barrier_report`]), and nothing after it has been read yet.
    Barrier(Epoch),
}

impl Progress {
    /// Idle with no deadline.
    pub const IDLE: Progress = Progress::Idle { deadline: None };

    /// Combines the progress of two inputs polled in the same round.
    pub fn and(self, other: Progress) -> Progress {
        match (self, other) {
            // Flows that align barriers handle them before combining; a barrier here only
            // means that work was done.
            (Progress::Barrier(_), _) | (_, Progress::Barrier(_)) => Progress::Busy,
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

    /// After a poll returned [`Progress::Barrier`]: hands over the state each node of the
    /// flow captured at the barrier.
    fn take_barrier_report(&mut self, report: &mut BarrierReport) {
        let _ = report;
    }
}

/// A flow followed by one more operator.
pub struct Then<F, O> {
    flow: F,
    op: O,
    node: usize,
    captured: Option<Box<dyn StateSnapshot>>,
    name: Arc<str>,
    counters: NodeCounters,
    received: u64,
    emitted: u64,
    done: bool,
    isolate_panics: bool,
    /// The job's epochs (with checkpoints or in micro-batch mode): tells the final barrier.
    epochs: Option<Arc<EpochControl>>,
    /// `on_end` has run (at the final barrier).
    ended: bool,
    /// Micro-batch mode: time moves at batch boundaries, not on the clock.
    micro_batch: bool,
}

impl<F: std::fmt::Debug, O: std::fmt::Debug> std::fmt::Debug for Then<F, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Then")
            .field("flow", &self.flow)
            .field("op", &self.op)
            .field("name", &self.name)
            .finish()
    }
}

impl<F, O> Then<F, O> {
    pub(crate) fn new(flow: F, op: O, node: usize, name: Arc<str>, counters: NodeCounters) -> Self {
        Self {
            flow,
            op,
            node,
            captured: None,
            name,
            counters,
            received: 0,
            emitted: 0,
            done: false,
            isolate_panics: false,
            epochs: None,
            ended: false,
            micro_batch: false,
        }
    }

    /// Marks the chain as running in micro-batch mode, where operators see time move at
    /// barriers only (see [`Operator::on_poll`]).
    pub(crate) fn in_micro_batch(mut self, micro_batch: bool) -> Self {
        self.micro_batch = micro_batch;
        self
    }

    /// Lets the operator end at the job's final barrier rather than after it; see
    /// [`Operator::on_end`].
    pub(crate) fn with_epochs(mut self, epochs: Option<Arc<EpochControl>>) -> Self {
        self.epochs = epochs;
        self
    }

    /// Makes a panic of the operator on a record that record's failure (a dead letter), not
    /// the end of the job: for jobs with a dead-letter sink.
    pub(crate) fn isolating_panics(mut self, isolate: bool) -> Self {
        self.isolate_panics = isolate;
        self
    }
}

/// The operator's output side: counts and tags failures with the operator's name.
struct Downstream<'a, E> {
    out: &'a mut E,
    name: &'a Arc<str>,
    emitted: &'a mut u64,
    /// Watermarks and idleness passed on.
    signals: &'a mut u64,
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
    #[inline]
    fn watermark(&mut self, watermark: EventTime) {
        *self.signals += 1;
        self.out.watermark(watermark);
    }
    #[inline]
    fn idle(&mut self) {
        *self.signals += 1;
        self.out.idle();
    }
}

/// The operator's input side, as seen by the upstream flow.
struct Chain<'a, O, D> {
    op: &'a mut O,
    down: &'a mut D,
    received: &'a mut u64,
    /// Catch a panic of the operator (or of one downstream of it that did not catch it)
    /// and report it as this record's failure: set when the job has a dead-letter sink.
    isolate_panics: bool,
}

impl<'a, I, O, E> Emit<I> for Chain<'_, O, Downstream<'a, E>>
where
    O: Operator<I>,
    E: Emit<O::Out>,
{
    #[inline]
    fn emit(&mut self, item: I) {
        *self.received += 1;
        if !self.isolate_panics {
            self.op.on_record(item, self.down);
            return;
        }
        let (op, down) = (&mut *self.op, &mut *self.down);
        // The operator's state is whatever the panic left: like an error, the record is a
        // dead letter and the job goes on (a poison record must not crash-loop the job).
        let caught =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| op.on_record(item, down)));
        if let Err(payload) = caught {
            let mut failure = Failure::new(PanickedOnRecord::from_payload(payload.as_ref()));
            failure.tag(self.down.name);
            self.down.out.fail(failure);
        }
    }
    fn fail(&mut self, failure: Failure) {
        // An upstream failure passes through untouched: it belongs to whoever tagged it.
        self.down.out.fail(failure);
    }
    #[inline]
    fn should_yield(&self) -> bool {
        self.down.should_yield()
    }
    fn watermark(&mut self, watermark: EventTime) {
        self.op.on_watermark(watermark, self.down);
    }
    fn idle(&mut self) {
        // Idleness says nothing about event time: it passes the operator by.
        self.down.out.idle();
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
        let mut signals = 0;
        let mut down = Downstream {
            out,
            name: &self.name,
            emitted: &mut self.emitted,
            signals: &mut signals,
        };
        let progress = {
            let mut chain = Chain {
                op: &mut self.op,
                down: &mut down,
                received: &mut self.received,
                isolate_panics: self.isolate_panics,
            };
            self.flow.poll(&mut chain, budget)
        };
        let progress = match progress {
            Ok(Progress::Idle { deadline })
                if O::USES_CLOCK && !self.micro_batch && self.op.uses_clock() =>
            {
                let before = *down.emitted;
                let next = self.op.on_poll(Instant::now(), &mut down);
                if *down.emitted != before || *down.signals > 0 {
                    // What it sent must be seen to before the worker may park.
                    Ok(Progress::Busy)
                } else {
                    Ok(Progress::Idle {
                        deadline: match (deadline, next) {
                            (Some(a), Some(b)) => Some(a.min(b)),
                            (a, b) => a.or(b),
                        },
                    })
                }
            }
            Ok(p @ (Progress::Busy | Progress::Barrier(_)))
                if O::USES_CLOCK && !self.micro_batch && self.op.uses_clock() =>
            {
                // Busy: the chain is polled again soon, so the deadline can be dropped.
                self.op.on_poll(Instant::now(), &mut down);
                Ok(p)
            }
            p => p,
        };
        match progress {
            Ok(Progress::Done) => {
                if !self.ended {
                    self.op.on_end(&mut down);
                }
                self.done = true;
            }
            Ok(Progress::Barrier(epoch)) => {
                self.op.on_barrier(epoch, &mut down);
                if self.epochs.as_ref().is_none_or(|e| e.keeps_state()) {
                    self.captured = self.op.snapshot();
                }
                if !self.ended && self.epochs.as_ref().is_some_and(|e| e.ends_after(epoch)) {
                    // The final barrier: no record follows it, so end-of-input output (say
                    // `latest_per_key`'s) goes out now, ahead of the barrier, into the epoch
                    // whose checkpoint commits it; after the barrier a transactional sink
                    // would have no transaction left to put it in. The snapshot comes first:
                    // it is the state a later run resumes from.
                    self.op.on_end(&mut down);
                    self.ended = true;
                }
            }
            _ => {}
        }
        self.counters.publish(self.received, self.emitted);
        progress
    }

    fn take_barrier_report(&mut self, report: &mut BarrierReport) {
        self.flow.take_barrier_report(report);
        if let Some(s) = self.captured.take() {
            report.push(self.node, s);
        }
    }
}

/// Two flows of the same record type merged into one (in no particular order between them).
///
/// Barriers are aligned: once one input has passed `Barrier(n)` it is not polled again until
/// the other has passed it too (or has ended), so the union's output never mixes records of
/// epoch n + 1 from one input with records of epoch n from the other.
///
/// The union's watermark is the minimum of its two inputs' (see the exchange's), so a side
/// without watermarks holds the other's back until it ends or is marked idle.
#[derive(Debug)]
pub struct Union<A, B> {
    a: A,
    b: B,
    watermarks: InputWatermarks,
    a_done: bool,
    b_done: bool,
    a_barrier: Option<Epoch>,
    b_barrier: Option<Epoch>,
    held_since: Option<Instant>,
    alignment: std::time::Duration,
}

impl<A, B> Union<A, B> {
    pub(crate) fn new(a: A, b: B) -> Self {
        Self {
            a,
            b,
            watermarks: InputWatermarks::new(2),
            a_done: false,
            b_done: false,
            a_barrier: None,
            b_barrier: None,
            held_since: None,
            alignment: std::time::Duration::ZERO,
        }
    }
}

/// One side of a union as its flow sees the output: watermarks and idleness go through the
/// union's combination, records straight on.
struct Side<'a, E> {
    out: &'a mut E,
    side: usize,
    watermarks: &'a mut InputWatermarks,
}

impl<T, E: Emit<T>> Emit<T> for Side<'_, E> {
    #[inline]
    fn emit(&mut self, item: T) {
        self.watermarks.on_record(self.side);
        self.out.emit(item);
    }
    fn fail(&mut self, failure: Failure) {
        self.out.fail(failure);
    }
    #[inline]
    fn should_yield(&self) -> bool {
        self.out.should_yield()
    }
    fn watermark(&mut self, watermark: EventTime) {
        self.watermarks
            .on_watermark(self.side, watermark)
            .pass_on(self.out);
    }
    fn idle(&mut self) {
        self.watermarks.on_idle(self.side).pass_on(self.out);
    }
}

/// Polls one side of a union unless it is done or held at a barrier.
fn poll_side<F: Flow, E: Emit<F::Out>>(
    flow: &mut F,
    side: usize,
    done: &mut bool,
    barrier: &mut Option<Epoch>,
    watermarks: &mut InputWatermarks,
    out: &mut E,
    budget: usize,
) -> Result<Progress, JobError> {
    if *done {
        return Ok(Progress::Done);
    }
    if barrier.is_some() || out.should_yield() {
        return Ok(Progress::IDLE);
    }
    let p = flow.poll(
        &mut Side {
            out,
            side,
            watermarks,
        },
        budget,
    )?;
    match p {
        Progress::Done => {
            *done = true;
            watermarks.on_end(side).pass_on(out);
        }
        Progress::Barrier(e) => *barrier = Some(e),
        _ => {}
    }
    Ok(p)
}

impl<A, B> Flow for Union<A, B>
where
    A: Flow,
    B: Flow<Out = A::Out>,
{
    type Out = A::Out;

    #[inline]
    fn poll<E: Emit<A::Out>>(&mut self, out: &mut E, budget: usize) -> Result<Progress, JobError> {
        let pa = poll_side(
            &mut self.a,
            0,
            &mut self.a_done,
            &mut self.a_barrier,
            &mut self.watermarks,
            out,
            budget,
        )?;
        let pb = poll_side(
            &mut self.b,
            1,
            &mut self.b_done,
            &mut self.b_barrier,
            &mut self.watermarks,
            out,
            budget,
        )?;
        let held = self.a_barrier.or(self.b_barrier);
        if let Some(epoch) = held {
            let a_ready = self.a_done || self.a_barrier.is_some();
            let b_ready = self.b_done || self.b_barrier.is_some();
            if a_ready && b_ready {
                self.a_barrier = None;
                self.b_barrier = None;
                if let Some(t) = self.held_since.take() {
                    self.alignment = t.elapsed();
                }
                return Ok(Progress::Barrier(epoch));
            }
            self.held_since.get_or_insert_with(Instant::now);
        }
        let norm = |p: Progress| match p {
            Progress::Barrier(_) => Progress::Busy,
            p => p,
        };
        Ok(norm(pa).and(norm(pb)))
    }

    fn take_barrier_report(&mut self, report: &mut BarrierReport) {
        self.a.take_barrier_report(report);
        self.b.take_barrier_report(report);
        report.add_alignment(std::mem::take(&mut self.alignment));
    }
}

/// A source's output side: counts records, and tags the failures the source reports (a
/// record it cannot turn into its output type) with the source's name.
pub(crate) struct Counted<'a, E> {
    pub(crate) out: &'a mut E,
    pub(crate) count: &'a mut u64,
    pub(crate) name: &'a Arc<str>,
}

impl<T, E: Emit<T>> Emit<T> for Counted<'_, E> {
    #[inline]
    fn emit(&mut self, item: T) {
        *self.count += 1;
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
    fn watermark(&mut self, watermark: EventTime) {
        self.out.watermark(watermark);
    }
    fn idle(&mut self) {
        self.out.idle();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// A scripted input: records, barriers and its end, in order.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Step {
        Record(u32),
        Barrier(Epoch),
        End,
    }

    struct Script(VecDeque<Step>);

    impl Flow for Script {
        type Out = u32;
        fn poll<E: Emit<u32>>(&mut self, out: &mut E, budget: usize) -> Result<Progress, JobError> {
            for _ in 0..budget {
                match self.0.pop_front() {
                    Some(Step::Record(r)) => out.emit(r),
                    Some(Step::Barrier(e)) => return Ok(Progress::Barrier(e)),
                    Some(Step::End) => return Ok(Progress::Done),
                    None => return Ok(Progress::IDLE),
                }
            }
            Ok(Progress::Busy)
        }
    }

    #[derive(Default)]
    struct Collect(Vec<Step>);

    impl Emit<u32> for Collect {
        fn emit(&mut self, item: u32) {
            self.0.push(Step::Record(item));
        }
        fn fail(&mut self, failure: Failure) {
            panic!("no failure expected: {failure:?}");
        }
        fn should_yield(&self) -> bool {
            false
        }
    }

    /// Polls a union of two scripts (one record per poll, so the inputs interleave) until it
    /// is done; its output with the barriers it passed.
    fn run(a: &[Step], b: &[Step]) -> Vec<Step> {
        let mut union = Union::new(
            Script(a.iter().copied().collect()),
            Script(b.iter().copied().collect()),
        );
        let mut out = Collect::default();
        for _ in 0..100 {
            match union.poll(&mut out, 1).expect("no error") {
                Progress::Barrier(e) => out.0.push(Step::Barrier(e)),
                Progress::Done => {
                    out.0.push(Step::End);
                    return out.0;
                }
                _ => {}
            }
        }
        panic!("the union never ended: {:?}", out.0);
    }

    /// The records before and after the (single) barrier in `out`, sorted.
    fn split_at_barrier(out: &[Step], epoch: Epoch) -> (Vec<u32>, Vec<u32>) {
        let barriers: Vec<usize> = (0..out.len())
            .filter(|i| out[*i] == Step::Barrier(epoch))
            .collect();
        assert_eq!(barriers.len(), 1, "one Barrier({epoch}) in {out:?}");
        let records = |steps: &[Step]| {
            let mut r: Vec<u32> = steps
                .iter()
                .filter_map(|s| match s {
                    Step::Record(r) => Some(*r),
                    _ => None,
                })
                .collect();
            r.sort_unstable();
            r
        };
        (records(&out[..barriers[0]]), records(&out[barriers[0]..]))
    }

    use Step::{Barrier, End, Record};

    #[test]
    fn a_union_holds_the_input_that_reached_a_barrier_until_the_other_has() {
        // Input a reaches the barrier at once; b has two records of the epoch still to come.
        let out = run(
            &[Record(1), Barrier(1), Record(2), Record(3), End],
            &[
                Record(10),
                Record(11),
                Record(12),
                Barrier(1),
                Record(13),
                End,
            ],
        );
        let (before, after) = split_at_barrier(&out, 1);
        assert_eq!(before, [1, 10, 11, 12]);
        assert_eq!(after, [2, 3, 13]);
        assert_eq!(out.last(), Some(&End));
    }

    #[test]
    fn an_ended_input_does_not_hold_back_the_other_inputs_barrier() {
        let out = run(
            &[Record(1), End],
            &[Record(10), Barrier(1), Record(11), End],
        );
        let (before, after) = split_at_barrier(&out, 1);
        assert_eq!(before, [1, 10]);
        assert_eq!(after, [11]);
    }

    #[test]
    fn consecutive_epochs_stay_apart() {
        let out = run(
            &[Record(1), Barrier(1), Record(2), Barrier(2), Record(3), End],
            &[Barrier(1), Record(20), Record(21), Barrier(2), End],
        );
        let (_, after_1) = split_at_barrier(&out, 1);
        let (before_2, after_2) = split_at_barrier(&out, 2);
        assert_eq!(before_2, [1, 2, 20, 21]);
        assert_eq!(after_2, [3]);
        assert_eq!(after_1, [2, 3, 20, 21]);
    }
}
