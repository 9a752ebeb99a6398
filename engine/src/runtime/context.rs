//! What a source or sink learns about the worker it runs on, and how it wakes that worker.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::dataflow::mode::Trigger;
use crate::runtime::signal::WorkerSignal;

/// What a source or sink learns about the worker it runs on when it is created.
#[derive(Debug, Clone)]
pub struct WorkerContext {
    pub(crate) worker: usize,
    pub(crate) workers: usize,
    pub(crate) signal: Arc<WorkerSignal>,
    pub(crate) started: Instant,
    pub(crate) checkpointing: bool,
    pub(crate) abort: AbortSignal,
    pub(crate) trigger: Option<Trigger>,
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

    /// The job's micro-batch trigger; `None` in continuous mode. A source that plans batches
    /// reads what is there when an [`Trigger::AvailableNow`] job starts, and then ends (in as
    /// many batches as its per-batch limit needs).
    pub fn trigger(&self) -> Option<Trigger> {
        self.trigger
    }

    /// Tells whether the job is being aborted (a failure elsewhere, or its handle dropped). A
    /// sink or source that waits inside a call (a full producer queue, a slow remote) checks it
    /// and gives up, so an aborting job never waits for it.
    pub fn abort_signal(&self) -> AbortSignal {
        self.abort.clone()
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

/// Whether the job is being aborted; see [`WorkerContext::abort_signal`].
#[derive(Debug, Clone)]
pub struct AbortSignal(pub(crate) Arc<AtomicBool>);

impl AbortSignal {
    /// True once the job is being aborted: stop waiting and return an error.
    #[inline]
    pub fn is_aborted(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}
