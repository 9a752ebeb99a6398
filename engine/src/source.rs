//! Sources: where records enter a job.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::epoch::{BarrierReport, CoordinatorEvent, EpochControl};
use crate::error::{BoxError, JobError};
use crate::flow::{Counted, Flow, Progress};
use crate::message::Epoch;
use crate::metrics::NodeCounters;
use crate::operator::Emit;
use crate::signal::WorkerSignal;
use crate::state::{RestoredState, StateSnapshot, WorkerBlob};

/// What a source or sink learns about the worker it runs on when it is created.
#[derive(Debug, Clone)]
pub struct WorkerContext {
    pub(crate) worker: usize,
    pub(crate) workers: usize,
    pub(crate) signal: Arc<WorkerSignal>,
    pub(crate) started: Instant,
    pub(crate) checkpointing: bool,
}

impl WorkerContext {
    /// This worker's index, `0..workers()`.
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// How many workers run the job. A source reads its share of the input: for instance
    /// every `workers()`-th item starting at `worker()`, or the partitions assigned to it.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// When the job was started, shared by all workers (a common time base for generators).
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Whether the job takes checkpoints. A source that can be told where to read (Kafka)
    /// then assigns its input to workers itself, so that a checkpoint's positions are
    /// consistent: group rebalances would move partitions between barriers.
    pub fn checkpointing(&self) -> bool {
        self.checkpointing
    }

    /// A handle that wakes this worker when it parks for lack of work. A source fed by a
    /// thread of its own (stdin, a network client) calls [`Waker::wake`] after handing over
    /// data, or the worker may sleep on it.
    pub fn waker(&self) -> Waker {
        Waker {
            signal: self.signal.clone(),
        }
    }
}

/// Wakes one worker; cheap when the worker is running (a fence and a load).
#[derive(Debug, Clone)]
pub struct Waker {
    signal: Arc<WorkerSignal>,
}

impl Waker {
    /// Wakes the worker if it is parked or about to park. Call after publishing the data.
    pub fn wake(&self) {
        self.signal.notify();
    }
}

/// The per-worker instance of a source.
///
/// `poll` must never block: it emits what is available now (up to about `budget` records,
/// stopping early when `out.should_yield()`), and otherwise says when to look again.
pub trait Source {
    /// The type of the records it emits.
    type Out;

    /// Emits available records. Returns [`Progress::Done`] once the input is exhausted (bounded
    /// sources) and never again emits after that.
    fn poll<E: Emit<Self::Out>>(
        &mut self,
        out: &mut E,
        budget: usize,
    ) -> Result<Progress, BoxError>;

    /// The position reached so far (after the last record emitted), encoded, for a
    /// checkpoint; `None` if the source cannot resume (it then starts afresh on recovery).
    /// Called on the worker at a barrier: keep it small (offsets, counters), not the data.
    fn position(&mut self) -> Result<Option<Vec<u8>>, BoxError> {
        Ok(None)
    }

    /// Resumes from the positions of a checkpoint, before the first poll.
    /// [`RestoredState::worker_blobs`] holds what every worker of the old run returned from
    /// [`position`](Self::position), so a source can redistribute (for example Kafka
    /// partitions) when the number of workers changed.
    fn restore(&mut self, state: &RestoredState<'_>) -> Result<(), BoxError> {
        let _ = state;
        Err("this source cannot resume from a checkpoint".into())
    }

    /// Called once a checkpoint holding this source's position is complete (and its output
    /// committed): the place to acknowledge input upstream, for example committing Kafka
    /// offsets to the consumer group for lag monitoring.
    fn checkpoint_complete(&mut self, epoch: Epoch) -> Result<(), BoxError> {
        let _ = epoch;
        Ok(())
    }

    /// Micro-batch mode, as a batch starts: fixes where this instance's input ends for the
    /// batch (what is available now: Kafka's end offsets, the generator's records due by now)
    /// and returns that end, encoded. With a checkpoint location the job logs it durably
    /// before the batch reads anything (Spark's offset log), so a restart replays an
    /// interrupted batch with the same ends. Until the next plan, [`poll`](Self::poll) emits
    /// nothing beyond the end, and input arriving meanwhile waits for the next batch.
    ///
    /// `None` (the default): the source cannot fix an end; its batch is what it emits until
    /// it is idle, and a replayed batch may be larger or smaller.
    fn plan_batch(&mut self) -> Result<Option<Vec<u8>>, BoxError> {
        Ok(None)
    }

    /// Micro-batch mode, before the first poll after a restart: the ends the interrupted
    /// batch had ([`RestoredState::worker_blobs`]: every old worker's
    /// [`plan_batch`](Self::plan_batch) result, to redistribute as for
    /// [`restore`](Self::restore)). The next `plan_batch` must return these ends, for this
    /// worker, instead of what is available then.
    fn replay_batch(&mut self, plan: &RestoredState<'_>) -> Result<(), BoxError> {
        let _ = plan;
        Ok(())
    }

    /// Micro-batch mode: whether everything up to the planned end has been emitted; asked
    /// when `poll` reports idle. The default, `true`, ends the batch whenever the source is
    /// idle (right for sources that do not plan).
    fn batch_complete(&mut self) -> bool {
        true
    }
}

/// Creates one [`Source`] per worker. Shared by the worker threads while they start.
pub trait SourceFactory: Send + Sync + 'static {
    /// The per-worker source.
    type Source: Source;

    /// Creates the instance for the worker described by `ctx`; called on that worker's thread.
    fn create(&self, ctx: &WorkerContext) -> Result<Self::Source, BoxError>;

    /// A short name for metrics and errors.
    fn name(&self) -> &str;
}

/// A source as a flow: injects barriers, honours graceful stop, counts, names its errors.
pub struct SourceFlow<S> {
    source: S,
    node: usize,
    name: Arc<str>,
    worker: usize,
    stop: Arc<AtomicBool>,
    counters: NodeCounters,
    emitted: u64,
    done: bool,
    epochs: Option<Arc<EpochControl>>,
    epoch: Epoch,
    completed: Epoch,
    exhausted: bool,
    captured: Option<Vec<u8>>,
    micro_batch: bool,
    /// Micro-batch mode: the newest batch this instance has planned.
    planned: Epoch,
}

impl<S> std::fmt::Debug for SourceFlow<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceFlow")
            .field("name", &self.name)
            .field("worker", &self.worker)
            .field("epoch", &self.epoch)
            .field("done", &self.done)
            .finish()
    }
}

impl<S> SourceFlow<S> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        source: S,
        node: usize,
        name: Arc<str>,
        worker: usize,
        stop: Arc<AtomicBool>,
        counters: NodeCounters,
        epochs: Option<Arc<EpochControl>>,
        micro_batch: bool,
    ) -> Self {
        let epoch = epochs.as_ref().map_or(0, |e| e.initial());
        Self {
            source,
            node,
            name,
            worker,
            stop,
            counters,
            emitted: 0,
            done: false,
            epochs,
            epoch,
            completed: epoch,
            exhausted: false,
            captured: None,
            micro_batch,
            planned: epoch,
        }
    }

    fn error(&self, source: BoxError) -> JobError {
        JobError::Source {
            source_name: self.name.clone(),
            worker: self.worker,
            source,
        }
    }
}

impl<S: Source> SourceFlow<S> {
    /// Polls the source once, counting what it emits and naming its errors.
    #[inline]
    fn read<E: Emit<S::Out>>(&mut self, out: &mut E, budget: usize) -> Result<Progress, JobError> {
        let mut counted = Counted {
            out,
            count: &mut self.emitted,
        };
        let progress = self
            .source
            .poll(&mut counted, budget)
            .map_err(|e| self.error(e))?;
        self.counters.publish(0, self.emitted);
        Ok(progress)
    }

    /// The input has ended: tell the coordinator, which starts the final epoch once every
    /// source instance has.
    fn mark_exhausted(&mut self) {
        self.exhausted = true;
        if let Some(epochs) = &self.epochs {
            epochs.send(CoordinatorEvent::SourceExhausted);
        }
    }

    /// Micro-batch mode: between batches the source is not read, so input collects in it (in
    /// Kafka, in the generator's schedule). Once batch `requested` has started, it emits what
    /// is available now, across as many polls as that takes, and then ends the batch with
    /// its barrier.
    fn poll_batch<E: Emit<S::Out>>(
        &mut self,
        requested: Epoch,
        out: &mut E,
        budget: usize,
    ) -> Result<Progress, JobError> {
        if requested > self.epoch {
            if self.planned < requested {
                // The batch starts: fix its end before reading anything.
                let end = self.source.plan_batch().map_err(|e| self.error(e))?;
                self.planned = requested;
                if let Some(epochs) = self.epochs.as_ref().filter(|e| e.logs_plans()) {
                    epochs.send(CoordinatorEvent::BatchPlan {
                        epoch: requested,
                        node: self.node,
                        worker: self.worker,
                        end,
                    });
                }
            }
            // With a checkpoint location the plan must be durable first; the coordinator
            // wakes this worker once it is.
            if !self
                .epochs
                .as_ref()
                .is_none_or(|e| e.plan_logged(requested))
            {
                return Ok(Progress::IDLE);
            }
            if !self.exhausted {
                match self.read(out, budget)? {
                    Progress::Busy | Progress::Barrier(_) => return Ok(Progress::Busy),
                    Progress::Done => self.mark_exhausted(),
                    // Idle before the planned end: what is left is on its way (Kafka records
                    // below the end offset not fetched yet).
                    idle @ Progress::Idle { .. } if !self.source.batch_complete() => {
                        return Ok(idle)
                    }
                    Progress::Idle { .. } => {}
                }
            }
            self.epoch = requested;
            self.captured = self.source.position().map_err(|e| self.error(e))?;
            return Ok(Progress::Barrier(requested));
        }
        if self
            .epochs
            .as_ref()
            .is_some_and(|e| e.ends_after(self.epoch))
        {
            self.done = true;
            return Ok(Progress::Done);
        }
        // Until the next trigger, which wakes the worker.
        Ok(Progress::IDLE)
    }
}

impl<S: Source> Flow for SourceFlow<S> {
    type Out = S::Out;

    #[inline]
    fn poll<E: Emit<S::Out>>(&mut self, out: &mut E, budget: usize) -> Result<Progress, JobError> {
        if self.done {
            return Ok(Progress::Done);
        }
        if let Some(epochs) = &self.epochs {
            let completed = epochs.completed();
            if completed > self.completed {
                self.completed = completed;
                self.source
                    .checkpoint_complete(completed)
                    .map_err(|e| self.error(e))?;
            }
            let requested = epochs.requested();
            if self.micro_batch {
                return self.poll_batch(requested, out, budget);
            }
            if requested > self.epoch {
                // The barrier goes in between two records: the position covers exactly what
                // was emitted before it.
                self.epoch = requested;
                self.captured = self.source.position().map_err(|e| self.error(e))?;
                return Ok(Progress::Barrier(requested));
            }
            // With checkpoints, a stop (or the end of a bounded input) is a final epoch: the
            // source ends right after its barrier, so the final checkpoint holds everything.
            if epochs.ends_after(self.epoch) {
                self.done = true;
                return Ok(Progress::Done);
            }
            if self.exhausted {
                return Ok(Progress::IDLE);
            }
        } else if self.stop.load(Ordering::Relaxed) {
            // Graceful stop: the source ends here, and the end flows through the graph so
            // every downstream operator and sink finishes what it holds.
            self.done = true;
            return Ok(Progress::Done);
        }
        let progress = self.read(out, budget)?;
        if progress == Progress::Done {
            if self.epochs.is_some() {
                // Wait for the final epoch, still answering barriers with the end position.
                self.mark_exhausted();
                return Ok(Progress::Busy);
            }
            self.done = true;
        }
        Ok(progress)
    }

    fn take_barrier_report(&mut self, report: &mut BarrierReport) {
        if let Some(position) = self.captured.take() {
            report.push(
                self.node,
                Box::new(WorkerBlob(position)) as Box<dyn StateSnapshot>,
            );
        }
    }
}
