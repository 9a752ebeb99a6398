//! Sinks: where records leave a job.

use crate::error::BoxError;
use crate::source::WorkerContext;

/// The per-worker instance of a sink.
pub trait Sink<T> {
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
    fn take_dead_letters(&mut self) -> Vec<crate::DeadLetter> {
        Vec::new()
    }
}

/// Creates one [`Sink`] per worker.
pub trait SinkFactory<T>: Send + Sync + 'static {
    /// The per-worker sink.
    type Sink: Sink<T>;

    /// Creates the instance for the worker described by `ctx`; called on that worker's thread.
    fn create(&self, ctx: &WorkerContext) -> Result<Self::Sink, BoxError>;

    /// A short name for metrics and errors.
    fn name(&self) -> &str;
}
