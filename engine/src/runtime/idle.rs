//! What a worker does when a round of polling found no work.

use std::time::{Duration, Instant};

use crate::runtime::signal::WorkerSignal;

/// How an idle worker waits for work.
///
/// Busy-spinning gives the lowest latency (a record pushed into a ring is picked up within
/// nanoseconds) but burns a core; parking frees the core but a wake-up costs tens of
/// microseconds (the kernel's timer slack alone is 50 us by default). An embedded library must
/// not spin every core by default, so the default backs off: spin briefly, yield, then park.
///
/// ```
/// use std::time::Duration;
/// use rill_engine::IdleStrategy;
///
/// let latency_critical = IdleStrategy::Spin;
/// let polite = IdleStrategy::Backoff { spin: Duration::from_micros(50), yield_for: Duration::from_micros(200) };
/// assert_ne!(latency_critical, polite);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleStrategy {
    /// Never give up the core: poll again at once (with a CPU spin hint).
    Spin,
    /// Yield the core to the OS scheduler between rounds, never park.
    Yield,
    /// Park as soon as a round finds nothing (after one confirming round).
    Park,
    /// Spin for `spin`, then yield for `yield_for`, then park.
    Backoff {
        /// How long to spin after the last work before yielding.
        spin: Duration,
        /// How long to yield after spinning before parking.
        yield_for: Duration,
    },
}

impl Default for IdleStrategy {
    fn default() -> Self {
        IdleStrategy::Backoff {
            spin: Duration::from_micros(50),
            yield_for: Duration::from_micros(500),
        }
    }
}

impl std::fmt::Display for IdleStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IdleStrategy::Spin => f.write_str("spin"),
            IdleStrategy::Yield => f.write_str("yield"),
            IdleStrategy::Park => f.write_str("park"),
            IdleStrategy::Backoff { spin, yield_for } => {
                write!(f, "backoff(spin {spin:?}, yield {yield_for:?})")
            }
        }
    }
}

/// Why a round found no work, which bounds how the worker may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Work can come from another thread (which notifies) or at `deadline` (a timer-driven
    /// source), so parking is allowed.
    Parkable {
        /// When a timer-driven input has work even without a notification.
        deadline: Option<Instant>,
    },
    /// An output ring is full: the receiver is running and will make room, but it does not
    /// notify senders, so this worker must not park (it spins or yields instead).
    Backpressured,
}

/// The per-worker state machine of an [`IdleStrategy`]: what the worker loop calls after each
/// round of polling. Public so that the loom tests drive the real code, and so a thread that
/// polls on its own (an embedding service) can idle the same way.
///
/// The loop it expects: poll everything; if anything was done call [`reset`](Self::reset),
/// otherwise call [`idle`](Self::idle); repeat. Parking needs two idle rounds in a row: the
/// first arms the [`WorkerSignal`], the second parks if the round in between found nothing.
#[derive(Debug)]
pub struct Idler {
    strategy: IdleStrategy,
    idle_since: Option<Instant>,
}

impl Idler {
    /// A fresh state machine for `strategy`.
    pub fn new(strategy: IdleStrategy) -> Self {
        Self {
            strategy,
            idle_since: None,
        }
    }

    /// The last round made progress.
    pub fn reset(&mut self, signal: &WorkerSignal) {
        self.idle_since = None;
        if signal.is_armed() {
            signal.disarm();
        }
    }

    /// The last round made no progress: wait a little, according to the strategy.
    ///
    /// Parking takes two calls: the first arms the signal and returns (so the caller polls
    /// once more with the signal armed), the second parks if that round was idle too.
    pub fn idle(&mut self, signal: &WorkerSignal, wait: Wait) {
        let may_park = match self.strategy {
            IdleStrategy::Spin => {
                std::hint::spin_loop();
                false
            }
            IdleStrategy::Yield => {
                std::thread::yield_now();
                false
            }
            IdleStrategy::Park => true,
            IdleStrategy::Backoff { spin, yield_for } => {
                // Only this strategy reads the clock: the others must stay syscall-free.
                let idle_for = self.idle_since.get_or_insert_with(Instant::now).elapsed();
                if idle_for < spin {
                    std::hint::spin_loop();
                    false
                } else if idle_for < spin + yield_for {
                    std::thread::yield_now();
                    false
                } else {
                    true
                }
            }
        };
        if !may_park {
            return;
        }
        match wait {
            Wait::Backpressured => std::thread::yield_now(),
            Wait::Parkable { deadline } => {
                if signal.is_armed() {
                    signal.park(deadline);
                } else {
                    signal.arm();
                }
            }
        }
    }
}
