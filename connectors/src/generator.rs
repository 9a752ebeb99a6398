//! An open-loop load generator: records at a fixed rate, stamped with their scheduled time.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rill_engine::state::{decode, encode, RestoredState};
use rill_engine::time::{instant_at, nanos_at, now_nanos};
use rill_engine::{BoxError, Emit, Progress, Source, SourceReader, WorkerContext};

/// A generated record: its global sequence number, the time it was *scheduled* to be emitted
/// (nanoseconds on [`rill_engine::time`]'s clock), and the payload.
///
/// Latency is measured from `scheduled_nanos`, never from when the generator got round to
/// emitting it: a generator that falls behind makes the latency it causes visible instead of
/// hiding it (no coordinated omission).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generated<T> {
    /// Position in the whole job's sequence, `0, 1, 2, ...` across all workers.
    pub seq: u64,
    /// When the record was due: `start + seq / rate`.
    pub scheduled_nanos: u64,
    /// The payload made by the generator's function.
    pub value: T,
}

/// Emits records at `rate` per second in total (an open loop: it never waits for the pipeline),
/// record `i` due at `start + i / rate`. Worker w of P emits records `w, w + P, ...`.
///
/// How the generator waits for each record's due time is its [`Pacing`]:
///
/// - [`Pacing::Spin`] (the default): the generator is polled by its worker; while a record is
///   not yet due it reports the due time, and the worker's
///   [`IdleStrategy`](rill_engine::IdleStrategy) decides how to wait: `Spin` polls until the
///   due time (lowest latency), a parking strategy sleeps until it.
/// - [`Pacing::Sleep`]: a thread of the generator's own sleeps until each due time and then
///   releases the record to the worker, like the sleeping source threads the Flink and Spark
///   latency studies used. The sleep's overshoot (timer slack, scheduling) counts as latency,
///   and records that fell due while it slept are released together.
///
/// ```
/// use std::time::Duration;
/// use rill_connectors::{CollectSink, Generator};
/// use rill_engine::{Config, Job};
///
/// let job = Job::new("gen");
/// let out = CollectSink::default();
/// job.source(Generator::new(100_000.0, |i| i * 2).with_count(1000)).sink(out.clone());
/// job.run(Config::default().with_workers(2))?.await_termination()?;
/// let mut got = out.take();
/// got.sort_by_key(|g| g.seq);
/// assert_eq!(got.len(), 1000);
/// assert_eq!(got[999].value, 1998);
/// // Due times are exactly 1/rate apart.
/// assert_eq!(got[1].scheduled_nanos - got[0].scheduled_nanos, 10_000);
/// # Ok::<(), rill_engine::JobError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Generator<F> {
    rate: f64,
    make: F,
    count: Option<u64>,
    duration: Option<Duration>,
    start_delay: Duration,
    pacing: Pacing,
}

/// How a [`Generator`] waits until a record is due.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Pacing {
    /// The worker polls the generator and waits as its idle strategy says (with
    /// `IdleStrategy::Spin`, a busy wait: records are released at their due time).
    #[default]
    Spin,
    /// A pacing thread sleeps until each record is due, then releases it and wakes the worker.
    Sleep,
}

impl std::fmt::Display for Pacing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Pacing::Spin => "spin",
            Pacing::Sleep => "sleep",
        })
    }
}

impl<F> Generator<F> {
    /// `rate` records per second in total over all workers, payload `make(seq)`; unbounded
    /// until [`with_count`](Self::with_count) or [`with_duration`](Self::with_duration).
    ///
    /// # Panics
    ///
    /// If `rate` is not a positive, finite number.
    pub fn new<T>(rate: f64, make: F) -> Self
    where
        F: Fn(u64) -> T,
    {
        assert!(
            rate.is_finite() && rate > 0.0,
            "generator rate must be positive and finite, got {rate}"
        );
        Self {
            rate,
            make,
            count: None,
            duration: None,
            start_delay: Duration::ZERO,
            pacing: Pacing::Spin,
        }
    }

    /// How the generator waits for each record's due time (default [`Pacing::Spin`]).
    pub fn with_pacing(mut self, pacing: Pacing) -> Self {
        self.pacing = pacing;
        self
    }

    /// Ends after `count` records in total.
    pub fn with_count(mut self, count: u64) -> Self {
        self.count = Some(count);
        self
    }

    /// Ends after the records due within `duration` of the start.
    pub fn with_duration(mut self, duration: Duration) -> Self {
        self.duration = Some(duration);
        self
    }

    /// Schedules the first record `delay` after the job starts (time for threads to start).
    pub fn with_start_delay(mut self, delay: Duration) -> Self {
        self.start_delay = delay;
        self
    }

    /// The total rate, records per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }
}

impl<F, T> Source for Generator<F>
where
    F: Fn(u64) -> T + Clone + Send + Sync + 'static,
{
    type Reader = GeneratorReader<F>;

    fn create(&self, ctx: &WorkerContext) -> Result<Self::Reader, BoxError> {
        let interval = 1e9 / self.rate;
        let by_duration = self
            .duration
            .map(|d| (d.as_secs_f64() * self.rate).ceil() as u64);
        let end = match (self.count, by_duration) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or(u64::MAX),
        };
        Ok(GeneratorReader {
            make: self.make.clone(),
            start: nanos_at(ctx.started() + self.start_delay),
            interval,
            next: ctx.worker() as u64,
            step: ctx.workers() as u64,
            offset: 0,
            end,
            pacer: match self.pacing {
                Pacing::Spin => None,
                Pacing::Sleep => Some(Pacer {
                    released: Arc::new(AtomicU64::new(0)),
                    first: 0,
                    stop: Arc::new(AtomicBool::new(false)),
                    waker: ctx.waker(),
                    thread: None,
                }),
            },
            batch_end: u64::MAX,
            replay_end: None,
            available_now: ctx.trigger() == Some(rill_engine::Trigger::AvailableNow),
        })
    }

    fn name(&self) -> &str {
        "generator"
    }
}

/// One worker's [`Generator`].
#[derive(Debug)]
pub struct GeneratorReader<F> {
    make: F,
    start: u64,
    interval: f64,
    next: u64,
    step: u64,
    /// The sequence number due at `start` (non-zero after a restore).
    offset: u64,
    end: u64,
    /// With [`Pacing::Sleep`]: the thread that releases records.
    pacer: Option<Pacer>,
    /// Micro-batch mode: this worker's sequence numbers below this belong to the current
    /// batch (`u64::MAX`: no batch planned, continuous mode).
    batch_end: u64,
    /// Micro-batch mode with `Trigger::AvailableNow`, until the first plan bounds the run.
    available_now: bool,
    /// After a restart: the end of the interrupted batch, which the next plan replays.
    replay_end: Option<u64>,
}

/// The sleeping side of [`Pacing::Sleep`]: a thread that sleeps until the next record of its
/// worker is due, then publishes how many of the worker's records are released.
#[derive(Debug)]
struct Pacer {
    /// Records of this worker released so far (its `k`-th record is released when
    /// `released > k`). Monotonic, written only by the pacing thread.
    released: Arc<AtomicU64>,
    /// This worker's next sequence number when the thread started.
    first: u64,
    stop: Arc<AtomicBool>,
    waker: rill_engine::Waker,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The due time of sequence number `seq` on a schedule starting at `start` with record
/// `offset`.
#[inline]
fn due_at(start: u64, interval: f64, offset: u64, seq: u64) -> u64 {
    start + ((seq - offset) as f64 * interval) as u64
}

impl<F> GeneratorReader<F> {
    #[inline]
    fn due(&self, seq: u64) -> u64 {
        due_at(self.start, self.interval, self.offset, seq)
    }

    /// Starts the pacing thread at the first poll, once a restore has fixed the schedule.
    /// Returns the sequence number below which records are released (`None`: no pacer).
    fn released_until(&mut self) -> Result<Option<u64>, BoxError> {
        let Some(pacer) = self.pacer.as_mut() else {
            return Ok(None);
        };
        if pacer.thread.is_none() {
            let (start, interval, offset, step, end) =
                (self.start, self.interval, self.offset, self.step, self.end);
            let first = self.next;
            pacer.first = first;
            let released = pacer.released.clone();
            let stop = pacer.stop.clone();
            let waker = pacer.waker.clone();
            let thread = std::thread::Builder::new()
                .name("rill-pacer".into())
                .spawn(move || {
                    // The sleep's overshoot is measured as latency: without this, Linux's
                    // default timer slack alone made it 50 us or more.
                    rill_engine::time::precise_timed_waits();
                    let mut seq = first;
                    let mut count = 0u64;
                    while seq < end && !stop.load(Ordering::Relaxed) {
                        let due = due_at(start, interval, offset, seq);
                        let now = now_nanos();
                        if due > now {
                            // Parking, not `sleep`: the same timed kernel wait, but `Drop`
                            // can cut it short. Early wake-ups only loop once more.
                            std::thread::park_timeout(Duration::from_nanos(due - now));
                            if now_nanos() < due {
                                continue;
                            }
                        }
                        // Everything due by now goes out at once: the overshoot of the sleep
                        // delays those records, it does not drop or reschedule them.
                        let now = now_nanos();
                        while seq < end && due_at(start, interval, offset, seq) <= now {
                            seq += step;
                            count += 1;
                        }
                        released.store(count, Ordering::Release);
                        waker.wake();
                    }
                })
                .map_err(|e| format!("starting the generator's pacing thread: {e}"))?;
            pacer.thread = Some(thread);
        }
        let count = pacer.released.load(Ordering::Acquire);
        Ok(Some(pacer.first + count * self.step))
    }
}

impl Drop for Pacer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl<F, T> SourceReader for GeneratorReader<F>
where
    F: Fn(u64) -> T,
{
    type Out = Generated<T>;

    #[inline]
    fn poll<E: Emit<Generated<T>>>(
        &mut self,
        out: &mut E,
        budget: usize,
    ) -> Result<Progress, BoxError> {
        let released = self.released_until()?;
        let now = now_nanos();
        let mut emitted = 0;
        while emitted < budget {
            if self.next >= self.end {
                return Ok(Progress::Done);
            }
            if self.next >= self.batch_end {
                // The rest of the schedule belongs to later batches.
                return Ok(if emitted > 0 {
                    Progress::Busy
                } else {
                    Progress::IDLE
                });
            }
            if let Some(until) = released {
                if self.next >= until {
                    // The pacing thread wakes this worker when it releases more.
                    return Ok(if emitted > 0 {
                        Progress::Busy
                    } else {
                        Progress::IDLE
                    });
                }
            }
            let due = self.due(self.next);
            if due > now && released.is_none() {
                return Ok(if emitted > 0 {
                    Progress::Busy
                } else {
                    Progress::Idle {
                        deadline: Some(instant_at(due)),
                    }
                });
            }
            if out.should_yield() {
                break;
            }
            let seq = self.next;
            out.emit(Generated {
                seq,
                scheduled_nanos: due,
                value: (self.make)(seq),
            });
            self.next += self.step;
            emitted += 1;
        }
        Ok(Progress::Busy)
    }

    /// The batch is this worker's records due by now (with sleep pacing: released by now).
    fn plan_batch(&mut self) -> Result<Option<Vec<u8>>, BoxError> {
        let end = match self.replay_end.take() {
            Some(end) => end,
            None => {
                let released = self.released_until()?;
                let now = now_nanos();
                let mut end = self.next;
                // Not a loop over the whole backlog: the first sequence number not yet due,
                // from the schedule's inverse, then corrected for rounding.
                if self.interval > 0.0 && now >= self.start {
                    let due_index =
                        ((now - self.start) as f64 / self.interval) as u64 + self.offset;
                    // This worker's numbers are worker + k * step: the first one above.
                    let first = self.next % self.step.max(1);
                    let k = due_index.saturating_sub(first) / self.step.max(1);
                    end = end.max(first + k * self.step);
                }
                while end < self.end && self.due(end) <= now {
                    end += self.step;
                }
                while end > self.next && self.due(end - self.step) > now {
                    end -= self.step;
                }
                match released {
                    Some(until) => end.min(until),
                    None => end,
                }
            }
        };
        self.batch_end = end;
        if self.available_now {
            // Everything due at the first batch, and then the end.
            self.end = self.end.min(end);
            self.available_now = false;
        }
        Ok(Some(encode(&end)?))
    }

    fn replay_batch(&mut self, plan: &RestoredState<'_>) -> Result<(), BoxError> {
        let (worker, workers) = plan.worker();
        let blobs = plan.worker_blobs();
        if blobs.len() != workers {
            return Err(format!(
                "a generator's batch plan was logged with {} workers, replayed with {workers}",
                blobs.len()
            )
            .into());
        }
        if let Some(Some(blob)) = blobs.get(worker) {
            self.replay_end = Some(decode(blob, plan.node())?);
        }
        Ok(())
    }

    fn batch_complete(&mut self) -> bool {
        self.next >= self.batch_end.min(self.end)
    }

    /// The next sequence number of this worker.
    fn position(&mut self) -> Result<Option<Vec<u8>>, BoxError> {
        Ok(Some(encode(&self.next)?))
    }

    /// Continues the sequence where the checkpoint left it; the schedule restarts now, from
    /// the lowest sequence number any worker had not yet emitted. Worker `i` emits the
    /// sequence numbers `i, i + P, ...`, so the number of workers must not change.
    fn restore(&mut self, state: &RestoredState<'_>) -> Result<(), BoxError> {
        let (worker, workers) = state.worker();
        let blobs = state.worker_blobs();
        if blobs.len() != workers {
            return Err(format!(
                "a generator interleaves sequence numbers by worker: checkpointed with {} \
                 workers, restored with {workers}",
                blobs.len()
            )
            .into());
        }
        let mut lowest = u64::MAX;
        for (w, blob) in blobs.iter().enumerate() {
            let next: u64 = match blob {
                Some(b) => decode(b, state.node())?,
                None => w as u64,
            };
            if w == worker {
                self.next = next;
            }
            lowest = lowest.min(next);
        }
        self.offset = lowest;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CollectSink;
    use rill_engine::{Config, IdleStrategy, Job};

    /// Sleep pacing releases the same records, with the same scheduled times, as spin pacing,
    /// whether the workers park (woken by the pacing thread) or spin.
    #[test]
    fn sleep_pacing_releases_every_record_once() {
        for idle in [IdleStrategy::Park, IdleStrategy::Spin] {
            let job = Job::new("paced");
            let out = CollectSink::default();
            job.source(
                Generator::new(20_000.0, |i| i)
                    .with_count(2_000)
                    .with_pacing(Pacing::Sleep),
            )
            .sink(out.clone());
            let started = now_nanos();
            job.run(Config::default().with_workers(2).with_idle(idle))
                .and_then(|h| h.await_termination())
                .expect("job");
            // 2,000 records at 20,000/s: the run cannot end before the last is due.
            assert!(now_nanos() - started >= 99_000_000);
            let mut got = out.take();
            got.sort_by_key(|g| g.seq);
            assert_eq!(got.len(), 2_000);
            for (i, g) in got.iter().enumerate() {
                assert_eq!(g.seq, i as u64);
                assert_eq!(g.value, i as u64);
                assert_eq!(
                    g.scheduled_nanos - got[0].scheduled_nanos,
                    i as u64 * 50_000
                );
            }
        }
    }
}
