//! Sinks: where records leave a job.

use std::sync::Arc;

use crate::checkpoint::commit::Committer;
use crate::error::BoxError;
use crate::failure::DeadLetter;
use crate::runtime::context::WorkerContext;
use crate::runtime::message::Epoch;

/// The per-worker instance of a sink.
pub trait SinkWriter<T> {
    /// Writes one record. An error fails the job with
    /// [`JobError::Sink`](crate::JobError::Sink).
    fn write(&mut self, item: T) -> Result<(), BoxError>;

    /// Called after every poll that wrote records: make them visible now (flush buffers).
    /// Continuous mode calls it often, so it should be cheap when there is nothing to do.
    fn flush(&mut self) -> Result<(), BoxError> {
        Ok(())
    }

    /// Called once when the input has ended, after the last write. The job's
    /// `await_termination` returns only after every sink has closed.
    fn close(&mut self) -> Result<(), BoxError> {
        self.flush()
    }

    /// Records the sink accepted but finally could not deliver, if it was configured to hand
    /// them back rather than fail (for example a Kafka record the broker rejected). The engine
    /// routes them to the job's dead-letter sink, or fails the job if it has none. Called
    /// after every flush and after close.
    fn take_dead_letters(&mut self) -> Vec<DeadLetter> {
        Vec::new()
    }

    /// Called when `Barrier(epoch)` reaches the sink: pre-commit. Everything written before
    /// must be durable or staged so that it can be committed once the checkpoint completes.
    /// The default flushes.
    fn on_barrier(&mut self, epoch: Epoch) -> Result<(), BoxError> {
        let _ = epoch;
        self.flush()
    }

    /// Called once checkpoint `epoch` is complete and the job's committer (if any) has
    /// committed it.
    fn checkpoint_complete(&mut self, epoch: Epoch) -> Result<(), BoxError> {
        let _ = epoch;
        Ok(())
    }

    /// True while the writer holds as much as it may (an exactly-once writer's records held
    /// after a barrier until the checkpoint commits): the task then stops feeding it, and
    /// the back-pressure reaches the sources through the rings, instead of memory growing.
    /// Checked between records; `checkpoint_complete` or a flush is what empties it.
    fn is_full(&self) -> bool {
        false
    }
}

/// A sink as the user configures it: creates one [`SinkWriter`] per worker (Flink's split
/// between a sink and its per-worker writer).
///
/// A minimal sink, summing what every worker writes into one shared total:
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::sync::Arc;
/// use rill_engine::{BoxError, Config, Job, Sink, SinkWriter, WorkerContext};
/// use rill_connectors::MemorySource;
///
/// #[derive(Clone, Default)]
/// struct Total(Arc<AtomicU64>);
/// struct TotalWriter { total: Arc<AtomicU64>, local: u64 }
///
/// impl Sink<u64> for Total {
///     type Writer = TotalWriter;
///     fn create(&self, _ctx: &WorkerContext) -> Result<TotalWriter, BoxError> {
///         Ok(TotalWriter { total: self.0.clone(), local: 0 })
///     }
///     fn name(&self) -> &str {
///         "total"
///     }
/// }
///
/// impl SinkWriter<u64> for TotalWriter {
///     fn write(&mut self, item: u64) -> Result<(), BoxError> {
///         self.local += item;
///         Ok(())
///     }
///     // Publish once per poll, not once per record.
///     fn flush(&mut self) -> Result<(), BoxError> {
///         self.total.fetch_add(std::mem::take(&mut self.local), Ordering::Relaxed);
///         Ok(())
///     }
/// }
///
/// let job = Job::new("sum");
/// let total = Total::default();
/// job.source(MemorySource::new(vec![1u64, 2, 3, 4])).sink(total.clone());
/// job.run(Config::default().with_workers(2))?.await_termination()?;
/// assert_eq!(total.0.load(Ordering::Relaxed), 10);
/// # Ok::<(), rill_engine::JobError>(())
/// ```
pub trait Sink<T>: Send + Sync + 'static {
    /// The per-worker writer.
    type Writer: SinkWriter<T>;

    /// Creates the instance for the worker described by `ctx`; called on that worker's thread.
    fn create(&self, ctx: &WorkerContext) -> Result<Self::Writer, BoxError>;

    /// A short name for metrics and errors.
    fn name(&self) -> &str;

    /// The job-wide committer of a transactional sink. The checkpoint coordinator drives it:
    /// a job with a committer must checkpoint, and may have only one.
    fn committer(&self) -> Option<Arc<dyn Committer>> {
        None
    }
}
