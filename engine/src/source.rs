//! Sources: where records enter a job.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::error::{BoxError, JobError};
use crate::flow::{Counted, Flow, Progress};
use crate::metrics::NodeCounters;
use crate::operator::Emit;
use crate::signal::WorkerSignal;

/// What a source or sink learns about the worker it runs on when it is created.
#[derive(Debug, Clone)]
pub struct WorkerContext {
    pub(crate) worker: usize,
    pub(crate) workers: usize,
    pub(crate) signal: Arc<WorkerSignal>,
    pub(crate) started: Instant,
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

/// A source as a flow: honours graceful stop, counts, names its errors.
#[derive(Debug)]
pub struct SourceFlow<S> {
    source: S,
    name: Arc<str>,
    worker: usize,
    stop: Arc<AtomicBool>,
    counters: NodeCounters,
    emitted: u64,
    done: bool,
}

impl<S> SourceFlow<S> {
    pub(crate) fn new(
        source: S,
        name: Arc<str>,
        worker: usize,
        stop: Arc<AtomicBool>,
        counters: NodeCounters,
    ) -> Self {
        Self {
            source,
            name,
            worker,
            stop,
            counters,
            emitted: 0,
            done: false,
        }
    }
}

impl<S: Source> Flow for SourceFlow<S> {
    type Out = S::Out;

    #[inline]
    fn poll<E: Emit<S::Out>>(&mut self, out: &mut E, budget: usize) -> Result<Progress, JobError> {
        if self.done {
            return Ok(Progress::Done);
        }
        // Graceful stop: the source ends here, and the end flows through the graph so every
        // downstream operator and sink finishes what it holds.
        if self.stop.load(Ordering::Relaxed) {
            self.done = true;
            return Ok(Progress::Done);
        }
        let mut counted = Counted {
            out,
            count: &mut self.emitted,
        };
        let progress =
            self.source
                .poll(&mut counted, budget)
                .map_err(|source| JobError::Source {
                    source_name: self.name.clone(),
                    worker: self.worker,
                    source,
                })?;
        self.counters.publish(0, self.emitted);
        self.done = progress == Progress::Done;
        Ok(progress)
    }
}
