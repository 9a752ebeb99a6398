//! What a worker does when a round of polling found no work.

use std::time::{Duration, Instant};

use crate::runtime::signal::WorkerSignal;

/// How an idle worker waits for work.
///
/// Busy-spinning gives the lowest latency (a record pushed into a ring is picked up within
/// nanoseconds) but burns a core; parking frees the core but a wake-up costs tens of
/// microseconds (the kernel's timer slack alone is 50 us by default). An embedded library must
/// not spin every core by default, so the default ([`Auto`](Self::Auto)) backs off: spin
/// briefly, yield, then park; or, in a job whose sources all wake parked workers themselves
/// (Kafka), parks at once.
///
/// ```
/// use std::time::Duration;
/// use rill_engine::IdleStrategy;
///
/// let latency_critical = IdleStrategy::Spin;
/// let polite = IdleStrategy::Backoff { spin: Duration::from_micros(50), yield_for: Duration::from_micros(200) };
/// assert_ne!(latency_critical, polite);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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
    /// The default: [`Park`](Self::Park) when every source of the job wakes a parked worker
    /// itself as its input arrives ([`Source::wakes_workers`](crate::Source::wakes_workers):
    /// Kafka's does, from librdkafka's queue callback), otherwise `Backoff { spin: 50 us,
    /// yield_for: 500 us }`.
    ///
    /// Why not back off everywhere: a Kafka job's input arrives on librdkafka's threads and
    /// the broker's, which need the cores a spinning or yielding worker holds. On a 2-core
    /// machine with the broker on it (noida-db), the Kafka path's p99 was 6 ms at 1,000
    /// records/s and 118 ms at 5,000 with the backoff, against 3.6 ms and 21 ms parked (p50
    /// 1.0 and 1.6 ms against 0.29 and 1.08 ms). In memory the yield phase pays: with a
    /// sleeping generator at 50,000 records/s the p99 was 1.2 ms with it, 3.3 ms without.
    #[default]
    Auto,
}

/// [`IdleStrategy::Auto`]'s backoff: how long to spin, then to yield.
const AUTO_SPIN: Duration = Duration::from_micros(50);
const AUTO_YIELD: Duration = Duration::from_micros(500);

impl IdleStrategy {
    /// The strategy a job's workers use: [`Auto`](Self::Auto) decided by whether every source
    /// of the job wakes its workers itself; any other strategy as it is.
    ///
    /// ```
    /// use rill_engine::IdleStrategy;
    /// assert_eq!(IdleStrategy::Auto.resolve(true), IdleStrategy::Park);
    /// assert!(matches!(IdleStrategy::Auto.resolve(false), IdleStrategy::Backoff { .. }));
    /// assert_eq!(IdleStrategy::Spin.resolve(true), IdleStrategy::Spin);
    /// ```
    pub fn resolve(self, sources_wake_workers: bool) -> Self {
        match self {
            IdleStrategy::Auto if sources_wake_workers => IdleStrategy::Park,
            IdleStrategy::Auto => IdleStrategy::Backoff {
                spin: AUTO_SPIN,
                yield_for: AUTO_YIELD,
            },
            other => other,
        }
    }
}

impl std::fmt::Display for IdleStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IdleStrategy::Spin => f.write_str("spin"),
            IdleStrategy::Yield => f.write_str("yield"),
            IdleStrategy::Park => f.write_str("park"),
            IdleStrategy::Auto => f.write_str("auto"),
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

    /// Backoff: spins, then yields, then returns `true` (may park). Only backing off reads the
    /// clock: the other strategies must stay syscall-free.
    fn back_off(&mut self, spin: Duration, yield_for: Duration) -> bool {
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
            IdleStrategy::Backoff { spin, yield_for } => self.back_off(spin, yield_for),
            // Not resolved by a job (a thread polling on its own): the backoff.
            IdleStrategy::Auto => self.back_off(AUTO_SPIN, AUTO_YIELD),
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
