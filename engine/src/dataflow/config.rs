//! How a job runs: workers, rings, idling, checkpoints, mode.

use crate::checkpoint::config::CheckpointConfig;
use crate::dataflow::mode::Mode;
use crate::runtime::idle::IdleStrategy;

/// How a job runs: plain data with defaults; every latency-relevant knob is here.
///
/// ```
/// use rill_engine::{Config, IdleStrategy};
/// let config = Config::default().with_workers(2).with_idle(IdleStrategy::Spin);
/// assert_eq!(config.workers, 2);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Number of worker threads, each running the whole pipeline on its share of the input.
    /// Default: the number of available cores.
    pub workers: usize,
    /// Pin worker i to core i (mod the number of cores). Default: off.
    pub pin_workers: bool,
    /// Capacity, in messages, of each SPSC ring of an exchange. Default: 1024.
    pub ring_capacity: usize,
    /// What an idle worker does. Default: [`IdleStrategy::Auto`] (park when every source wakes
    /// its workers itself, as Kafka's does; otherwise spin 50 us, yield 500 us, then park).
    pub idle: IdleStrategy,
    /// Records a task processes per poll before the worker moves to its next task: bounds how
    /// long one task can keep the others (and the rings they drain) waiting. Default: 256.
    pub poll_budget: usize,
    /// Asynchronous barrier checkpoints, and recovery from them at start. Default: off.
    pub checkpoint: Option<CheckpointConfig>,
    /// Continuous (default) or micro-batch scheduling.
    pub mode: Mode,
    /// Micro-batch mode without a checkpoint location: a batch not complete after this long
    /// fails the job (with a location, [`CheckpointConfig::timeout`] applies). Default 60 s.
    pub batch_timeout: std::time::Duration,
    /// Micro-batch mode: the most output records a sink task holds back until its batch
    /// ends; beyond it they are written at once (a transactional sink still commits them at
    /// the batch's end), so a large batch's output does not have to fit in memory.
    /// Default 65,536.
    pub batch_output_limit: usize,
    /// The clock processing time follows (timeouts, processing-time timers, state TTL):
    /// the system clock by default, a [`ManualClock`](crate::time::ManualClock) in tests.
    pub clock: crate::time::ProcessingClock,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            workers: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            pin_workers: false,
            ring_capacity: 1024,
            idle: IdleStrategy::default(),
            poll_budget: 256,
            checkpoint: None,
            mode: Mode::Continuous,
            batch_timeout: std::time::Duration::from_secs(60),
            batch_output_limit: 65_536,
            clock: crate::time::ProcessingClock::System,
        }
    }
}

impl Config {
    /// Sets the number of workers.
    pub fn with_workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }
    /// Sets whether workers are pinned to cores.
    pub fn with_pinning(mut self, pin: bool) -> Self {
        self.pin_workers = pin;
        self
    }
    /// Sets the capacity of each exchange ring.
    pub fn with_ring_capacity(mut self, capacity: usize) -> Self {
        self.ring_capacity = capacity;
        self
    }
    /// Sets the idle strategy.
    pub fn with_idle(mut self, idle: IdleStrategy) -> Self {
        self.idle = idle;
        self
    }
    /// Sets the per-poll record budget.
    pub fn with_poll_budget(mut self, poll_budget: usize) -> Self {
        self.poll_budget = poll_budget;
        self
    }
    /// Micro-batch mode without a checkpoint location: how long a batch may take.
    pub fn with_batch_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.batch_timeout = timeout;
        self
    }
    /// Micro-batch mode: how many output records a sink task holds until the batch ends.
    pub fn with_batch_output_limit(mut self, records: usize) -> Self {
        self.batch_output_limit = records.max(1);
        self
    }
    /// Sets the execution mode (continuous or micro-batch).
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }
    /// Sets the processing-time clock.
    ///
    /// ```
    /// use rill_engine::Config;
    /// use rill_engine::time::{ManualClock, ProcessingClock};
    /// let clock = ManualClock::starting_at(0);
    /// let config = Config::default().with_clock(ProcessingClock::Manual(clock.clone()));
    /// assert!(matches!(config.clock, ProcessingClock::Manual(_)));
    /// ```
    pub fn with_clock(mut self, clock: crate::time::ProcessingClock) -> Self {
        self.clock = clock;
        self
    }
    /// Turns on checkpoints (and recovery from the checkpoint directory at start).
    pub fn with_checkpoints(mut self, checkpoint: CheckpointConfig) -> Self {
        self.checkpoint = Some(checkpoint);
        self
    }
}
