//! Pacing of background work (a reload, freeing an old version): short slices of work with
//! pauses between them, so that on a machine whose every core runs a worker the reload takes
//! a worker's core for a slice at a time, not for the whole reload.

use std::time::{Duration, Instant};

/// How a reload shares the machine with the workers (see
/// [`TableBuilder::reload_pacing`](crate::TableBuilder::reload_pacing)).
///
/// ```
/// use std::time::Duration;
/// use rill_tables::Pacing;
/// let gentle = Pacing::slices(Duration::from_micros(50), Duration::from_micros(450));
/// assert_eq!(gentle, Pacing::default());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pacing {
    /// As fast as it can: for machines with a core to spare for background work.
    Unpaced,
    /// At most `work` at a time, then a pause of `pause`.
    Slices {
        /// Longest stretch of work.
        work: Duration,
        /// The pause after it.
        pause: Duration,
    },
}

impl Pacing {
    /// Slices of `work`, each followed by `pause`.
    pub fn slices(work: Duration, pause: Duration) -> Self {
        Pacing::Slices { work, pause }
    }
}

impl Default for Pacing {
    /// 50 µs of work, 450 µs of pause: a reload takes about ten times as long (a
    /// 1,000,000-row JSON-lines table: 2 to 4 s instead of 0.2 to 0.4 s), and a worker that
    /// shares its core with it waits about 50 µs at a time. Measured with latency-lab
    /// (`--operator table-join`, 2 spinning workers on 2 cores, 100k records/s): p99 80 µs
    /// while reloading against 25 µs without, where an unpaced reload gave 6.8 ms.
    fn default() -> Self {
        Pacing::slices(Duration::from_micros(50), Duration::from_micros(450))
    }
}

/// Applies a [`Pacing`] to a loop: call [`step`](Self::step) once per item.
#[derive(Debug)]
pub(crate) struct Pacer {
    pacing: Pacing,
    since: Instant,
    steps: u32,
}

/// Items between two looks at the clock.
const STEPS_PER_CHECK: u32 = 64;

impl Pacer {
    pub(crate) fn new(pacing: Pacing) -> Self {
        Self {
            pacing,
            since: Instant::now(),
            steps: 0,
        }
    }

    /// One item done: pauses if this slice of work is used up.
    #[inline]
    pub(crate) fn step(&mut self) {
        let Pacing::Slices { work, pause } = self.pacing else {
            return;
        };
        self.steps += 1;
        if self.steps < STEPS_PER_CHECK {
            return;
        }
        self.steps = 0;
        if self.since.elapsed() >= work {
            std::thread::sleep(pause);
            self.since = Instant::now();
        }
    }
}
