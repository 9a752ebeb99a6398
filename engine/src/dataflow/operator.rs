//! The per-record traits that fused operator chains are made of.
//!
//! Operators between exchanges are fused: a record goes source -> map -> filter -> ... as a
//! chain of direct, monomorphized calls. [`Operator::on_record`] is generic over its
//! downstream [`Emit`], so the compiler sees (and inlines) the whole chain; there is no boxing,
//! no queue and no virtual call per record.

use std::time::Instant;

use crate::failure::Failure;
use crate::runtime::message::{Epoch, EventTime};
use crate::state::{RestoredState, StateError, StateSnapshot};

/// Where an operator sends its output: the next operator of the chain, a sink, or an exchange.
pub trait Emit<T> {
    /// Passes one record downstream. Never blocks: a full ring parks the record in the
    /// exchange's overflow slot and [`should_yield`](Self::should_yield) turns true.
    fn emit(&mut self, item: T);

    /// Reports that a user function failed on the current record. The job fails with
    /// [`JobError::UserFunction`](crate::JobError::UserFunction) naming the operator.
    fn fail(&mut self, failure: Failure);

    /// True when the producer of records should stop pulling more input for now: downstream is
    /// back-pressured or a failure was reported. Sources and ring readers check it between
    /// records; an operator that emits many records for one input need not.
    fn should_yield(&self) -> bool;

    /// Passes a watermark downstream: no record with an event time at or below `watermark`
    /// follows from this input. Watermarks only rise; the engine drops one that does not.
    /// Sinks and collectors ignore them (the default).
    #[inline]
    fn watermark(&mut self, watermark: EventTime) {
        let _ = watermark;
    }

    /// Tells downstream that this input has had no data for a while, so that it stops holding
    /// back the minimum watermark where inputs meet; the next record or watermark ends it.
    #[inline]
    fn idle(&mut self) {}
}

/// A step of a fused chain: consumes records of type `I`, emits `Self::Out` records.
///
/// One instance runs per worker, cloned from the prototype given when the job was built, so an
/// operator's fields are worker-local state (for keyed operators: the keys that worker owns).
///
/// ```
/// use rill_engine::{Emit, Failure, Operator};
///
/// /// Emits the running sum of the integers seen on this worker.
/// #[derive(Clone, Default)]
/// struct RunningSum(i64);
///
/// impl Operator<i64> for RunningSum {
///     type Out = i64;
///     fn on_record<E: Emit<i64>>(&mut self, item: i64, out: &mut E) {
///         self.0 += item;
///         out.emit(self.0);
///     }
/// }
///
/// // Drive it by hand with a Vec as the downstream.
/// struct Collect(Vec<i64>);
/// impl Emit<i64> for Collect {
///     fn emit(&mut self, item: i64) { self.0.push(item) }
///     fn fail(&mut self, _: Failure) {}
///     fn should_yield(&self) -> bool { false }
/// }
/// let mut op = RunningSum::default();
/// let mut out = Collect(Vec::new());
/// for x in [1, 2, 3] { op.on_record(x, &mut out); }
/// assert_eq!(out.0, vec![1, 3, 6]);
/// ```
pub trait Operator<I> {
    /// The type of the records this operator emits.
    type Out;

    /// True for operators that act on the clock: the chain then calls
    /// [`on_poll`](Self::on_poll) after each poll of its input. A constant, so the check
    /// costs nothing in chains without such operators.
    const USES_CLOCK: bool = false;

    /// Whether this instance needs [`on_poll`](Self::on_poll) at all: by default
    /// [`USES_CLOCK`](Self::USES_CLOCK). An operator whose need depends on how it was built
    /// says so here (a keyed aggregate needs the clock only under a processing-time TTL), and
    /// the chain then reads no clock for it: on a spinning worker a clock read per poll is a
    /// measurable part of every record's wait.
    #[inline]
    fn uses_clock(&self) -> bool {
        Self::USES_CLOCK
    }

    /// Called once on each worker when the chain is built, before
    /// [`restore`](Self::restore) and the first record: tells the operator whether the job
    /// runs in micro-batch mode, where time moves at batch boundaries and an operator may
    /// hold a batch's records to process them together (Spark's `mapGroupsWithState` calls
    /// its function once per key per batch).
    fn on_open(&mut self, micro_batch: bool) {
        let _ = micro_batch;
    }

    /// Processes one record, emitting zero or more records.
    fn on_record<E: Emit<Self::Out>>(&mut self, item: I, out: &mut E);

    /// Called once when every input of the chain has ended, before the end is passed on:
    /// the place to emit what was held back (final values, open windows).
    ///
    /// In a job with checkpoints (or in micro-batch mode) the input ends with a final
    /// barrier, and `on_end` runs at that barrier, right after [`snapshot`](Self::snapshot):
    /// its output belongs to the final epoch, so a transactional sink commits it with the
    /// final checkpoint, and the checkpoint holds the state from before `on_end`.
    fn on_end<E: Emit<Self::Out>>(&mut self, out: &mut E) {
        let _ = out;
    }

    /// Called when the watermark of the operator's input rises to `watermark` (the minimum
    /// over every input that reaches it): the place to fire event-time timers and close
    /// windows. Whatever it emits comes before the watermark, which it must pass on
    /// (the default does only that) unless it holds the watermark back on purpose.
    #[inline]
    fn on_watermark<E: Emit<Self::Out>>(&mut self, watermark: EventTime, out: &mut E) {
        out.watermark(watermark);
    }

    /// Only for [`USES_CLOCK`](Self::USES_CLOCK) operators, in continuous mode: called after
    /// each poll of the chain's input (once per batch of records, not per record), and when
    /// the deadline it returned last has passed, even if no input arrived. The place to emit
    /// watermarks on a cadence, notice idle inputs and fire processing-time timers. Returns
    /// when it wants to be called next at the latest. In micro-batch mode time moves at batch
    /// boundaries instead: see [`on_barrier`](Self::on_barrier).
    fn on_poll<E: Emit<Self::Out>>(&mut self, now: Instant, out: &mut E) -> Option<Instant> {
        let _ = (now, out);
        None
    }

    /// Called when `Barrier(epoch)` passes, before [`snapshot`](Self::snapshot): the end of an
    /// epoch (in micro-batch mode, of a batch). Records emitted here belong to that epoch.
    fn on_barrier<E: Emit<Self::Out>>(&mut self, epoch: Epoch, out: &mut E) {
        let _ = (epoch, out);
    }

    /// Captures the operator's state at a barrier, or `None` if it has none. Runs on the
    /// worker between two records, so it must be cheap: hand over a frozen, shared view (see
    /// [`KeyedState::snapshot`](crate::state::KeyedState::snapshot)) and let
    /// [`StateSnapshot::encode`] do the work on the coordinator thread.
    fn snapshot(&mut self) -> Option<Box<dyn StateSnapshot>> {
        None
    }

    /// Loads the state this worker's instance owns from a checkpoint, before the first
    /// record. Called only for operators whose node stored state.
    fn restore(&mut self, state: &RestoredState<'_>) -> Result<(), StateError> {
        Err(StateError::Incompatible {
            node: state.node().to_string(),
            message: "the checkpoint holds state for it, but this operator keeps none".into(),
        })
    }
}
