//! A process-wide monotonic clock in nanoseconds, for stamping and measuring records.
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
