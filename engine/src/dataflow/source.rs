//! Sources: where records enter a job.

use crate::dataflow::operator::Emit;
use crate::error::BoxError;
use crate::runtime::context::WorkerContext;
use crate::runtime::flow::Progress;
use crate::runtime::message::Epoch;
use crate::state::RestoredState;

/// The per-worker instance of a source.
///
/// `poll` must never block: it emits what is available now (up to about `budget` records,
/// stopping early when `out.should_yield()`), and otherwise says when to look again.
pub trait SourceReader {
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

/// A source as the user configures it: creates one [`SourceReader`] per worker (Flink's split
/// between a source and its per-worker reader). Shared by the worker threads while they start.
///
/// A minimal bounded source, counting to `n` on every worker:
///
/// ```
/// use rill_engine::{BoxError, Config, Emit, Job, Progress, Source, SourceReader, WorkerContext};
/// use rill_connectors::CollectSink;
///
/// struct Count(u64);
/// struct CountReader { next: u64, end: u64 }
///
/// impl Source for Count {
///     type Reader = CountReader;
///     fn create(&self, _ctx: &WorkerContext) -> Result<CountReader, BoxError> {
///         Ok(CountReader { next: 0, end: self.0 })
///     }
///     fn name(&self) -> &str {
///         "count"
///     }
/// }
///
/// impl SourceReader for CountReader {
///     type Out = u64;
///     fn poll<E: Emit<u64>>(&mut self, out: &mut E, budget: usize) -> Result<Progress, BoxError> {
///         for _ in 0..budget {
///             if self.next == self.end {
///                 return Ok(Progress::Done);
///             }
///             out.emit(self.next);
///             self.next += 1;
///         }
///         Ok(Progress::Busy)
///     }
/// }
///
/// let job = Job::new("count");
/// let out = CollectSink::default();
/// job.source(Count(3)).sink(out.clone());
/// job.run(Config::default().with_workers(2))?.await_termination()?;
/// assert_eq!(out.take().len(), 6); // 0, 1, 2 on each worker
/// # Ok::<(), rill_engine::JobError>(())
/// ```
pub trait Source: Send + Sync + 'static {
    /// The per-worker reader.
    type Reader: SourceReader;

    /// Creates the instance for the worker described by `ctx`; called on that worker's thread.
    fn create(&self, ctx: &WorkerContext) -> Result<Self::Reader, BoxError>;

    /// A short name for metrics and errors.
    fn name(&self) -> &str;

    /// Whether this source's readers wake their parked worker themselves as soon as input
    /// arrives (through [`WorkerContext::waker`](crate::WorkerContext::waker), from a client
    /// library's callback), rather than needing it to poll. A job whose sources all do this
    /// parks idle workers at once by default ([`IdleStrategy::Auto`](crate::IdleStrategy::Auto)):
    /// spinning would win nothing and hold a core the client's threads need. Default: `false`.
    fn wakes_workers(&self) -> bool {
        false
    }

    /// For a source that acknowledges input upstream (commits Kafka offsets to its consumer
    /// group): how often, in a job *without* checkpoints, the job should find out what every
    /// sink has acknowledged. The job then runs stateless epochs this often (a barrier
    /// through the pipeline, each sink flushing at it, nothing stored), and the source's
    /// [`checkpoint_complete`](SourceReader::checkpoint_complete) acknowledges the position
    /// it had at the barrier. A failed job thus never acknowledges records its sinks had not
    /// written, and a killed one re-reads at most one interval. `None` (the default): no such
    /// epochs.
    fn acknowledgement_interval(&self) -> Option<std::time::Duration> {
        None
    }
}
