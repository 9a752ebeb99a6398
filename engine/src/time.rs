//! Clocks: a process-wide monotonic clock in nanoseconds, for stamping and measuring records;
//! and the wall clock processing time follows (the system clock, or a manual one in tests).
//!
//! `Instant` cannot travel inside a record across a serialization boundary and has no numeric
//! value; latency measurement needs a number every thread agrees on. `now_nanos` counts from
//! one origin shared by the whole process (set on first use).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

static ORIGIN: OnceLock<Instant> = OnceLock::new();

/// The origin of [`now_nanos`].
pub fn origin() -> Instant {
    *ORIGIN.get_or_init(Instant::now)
}

/// Nanoseconds since the process-wide origin (monotonic).
///
/// ```
/// let a = rill_engine::time::now_nanos();
/// let b = rill_engine::time::now_nanos();
/// assert!(b >= a);
/// ```
#[inline]
pub fn now_nanos() -> u64 {
    nanos_at(Instant::now())
}

/// The [`now_nanos`] value of an instant (0 for instants before the origin).
#[inline]
pub fn nanos_at(at: Instant) -> u64 {
    at.saturating_duration_since(origin()).as_nanos() as u64
}

/// The instant of a [`now_nanos`] value.
#[inline]
pub fn instant_at(nanos: u64) -> Instant {
    origin() + Duration::from_nanos(nanos)
}

/// Makes the calling thread's timed waits end on time: a parked worker's deadline, a pacing
/// thread's sleep until a record is due.
///
/// Linux lets every timed wait of a thread end up to its *timer slack* late, 50 us by default,
/// so that the kernel can batch wake-ups. On the VMs rill is measured on, a 40 us park took
/// 81 us at the median with the default slack and 21 us with a slack of 1 ns: for a source
/// that sleeps until each record is due, the slack was most of the median latency. Workers
/// and rill's pacing threads call this when they start. Returns whether it took effect
/// (always `false` on other systems, where there is no such setting to change).
///
/// ```
/// std::thread::spawn(|| {
///     let precise = rill_engine::time::precise_timed_waits();
///     assert_eq!(precise, cfg!(target_os = "linux"));
/// })
/// .join()
/// .unwrap();
/// ```
pub fn precise_timed_waits() -> bool {
    #[cfg(target_os = "linux")]
    {
        nix::sys::prctl::set_timerslack(1).is_ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

/// The wall clock that processing time follows: timeouts, timers and state TTL in processing
/// time read it as milliseconds since the Unix epoch through [`wall_millis`].
///
/// The system clock by default; a [`ManualClock`] makes processing time deterministic in
/// tests (set it with [`Config::with_clock`](crate::Config::with_clock)): a timeout of 30 s
/// fires when the test advances the clock by 30 s, not after a sleep.
#[derive(Debug, Clone, Default)]
pub enum ProcessingClock {
    /// `SystemTime::now()`.
    #[default]
    System,
    /// Whatever the test sets.
    Manual(ManualClock),
}

impl ProcessingClock {
    /// Milliseconds since the Unix epoch on this clock.
    pub fn millis(&self) -> i64 {
        match self {
            ProcessingClock::System => system_millis(),
            ProcessingClock::Manual(clock) => clock.millis(),
        }
    }
}

/// A clock that moves only when told to, shared by every clone (and every worker).
///
/// ```
/// use std::time::Duration;
/// use rill_engine::time::ManualClock;
/// let clock = ManualClock::starting_at(1_000);
/// clock.advance(Duration::from_secs(2));
/// assert_eq!(clock.millis(), 3_000);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock(std::sync::Arc<std::sync::atomic::AtomicI64>);

impl ManualClock {
    /// A clock reading `millis` since the Unix epoch.
    pub fn starting_at(millis: i64) -> Self {
        Self(std::sync::Arc::new(std::sync::atomic::AtomicI64::new(
            millis,
        )))
    }

    /// The current reading, in milliseconds since the Unix epoch.
    pub fn millis(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.0.fetch_add(by, std::sync::atomic::Ordering::AcqRel);
    }

    /// Sets the reading (a clock may be set back, but processing-time operators never see
    /// their own time fall: they keep the highest reading).
    pub fn set(&self, millis: i64) {
        self.0.store(millis, std::sync::atomic::Ordering::Release);
    }
}

fn system_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

thread_local! {
    static WORKER_CLOCK: std::cell::RefCell<ProcessingClock> =
        const { std::cell::RefCell::new(ProcessingClock::System) };
}

/// Makes `clock` the processing-time clock of the calling thread (a worker, at its start).
pub(crate) fn install(clock: ProcessingClock) {
    WORKER_CLOCK.with(|c| *c.borrow_mut() = clock);
}

/// Processing time now, in milliseconds since the Unix epoch: the job's
/// [`ProcessingClock`] on a worker thread, the system clock elsewhere. Operators read it per
/// poll or per barrier, not per record.
///
/// ```
/// let now = rill_engine::time::wall_millis();
/// assert!(now > 1_600_000_000_000);
/// ```
pub fn wall_millis() -> i64 {
    WORKER_CLOCK.with(|c| c.borrow().millis())
}

/// When a processing-time deadline `at` (milliseconds since the Unix epoch) is due, as an
/// instant a parked worker can wait for. With a manual clock, time does not pass while the
/// worker sleeps, so the answer is a short recheck interval instead.
pub fn deadline_at(at: i64) -> Instant {
    let manual = WORKER_CLOCK.with(|c| matches!(*c.borrow(), ProcessingClock::Manual(_)));
    let now = Instant::now();
    if manual {
        return now + Duration::from_millis(5);
    }
    let wait = at.saturating_sub(wall_millis()).max(0);
    now + Duration::from_millis(u64::try_from(wait).unwrap_or(0))
}
