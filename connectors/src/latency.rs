//! A sink that measures each record's latency from its scheduled time.

use rill_engine::sync::Lock;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;

use rill_engine::time::{nanos_at, now_nanos};
use rill_engine::{BoxError, Sink, SinkWriter, WorkerContext};

/// Highest latency the histograms track: a minute, in nanoseconds (larger values are clamped).
const MAX_TRACKABLE_NANOS: u64 = 60_000_000_000;

fn new_histogram() -> Histogram<u64> {
    // 3 significant digits: 0.1 % resolution at every magnitude.
    Histogram::new_with_bounds(1, MAX_TRACKABLE_NANOS, 3)
        .unwrap_or_else(|_| unreachable!("constant, valid histogram bounds"))
}

/// Records `now - scheduled` in nanoseconds for every record it receives, into an
/// HdrHistogram per worker, merged when the job ends.
///
/// `scheduled` is read from each record by a function, so the sink fits any record that
/// carries its scheduled time (for example a [`Generated`](crate::Generated) record, or a
/// count that kept the time of the record that last updated it). Records scheduled within the
/// [`warm_up`](Self::warm_up) period after the job's start are not recorded.
///
/// ```
/// use rill_connectors::{Generator, LatencySink};
/// use rill_engine::{Config, Job};
///
/// let job = Job::new("latency");
/// let sink = LatencySink::new(|g: &rill_connectors::Generated<u64>| g.scheduled_nanos);
/// job.source(Generator::new(50_000.0, |i| i).with_count(500)).sink(sink.clone());
/// job.run(Config::default().with_workers(1))?.await_termination()?;
/// let h = sink.histogram();
/// assert_eq!(h.len(), 500);
/// assert!(h.max() >= h.value_at_quantile(0.5));
/// # Ok::<(), rill_engine::JobError>(())
/// ```
pub struct LatencySink<F, T> {
    scheduled: F,
    warm_up: Duration,
    scheduled_from: u64,
    merged: Arc<Mutex<Histogram<u64>>>,
    _records: PhantomData<fn(T)>,
}

impl<F: Clone, T> Clone for LatencySink<F, T> {
    fn clone(&self) -> Self {
        Self {
            scheduled: self.scheduled.clone(),
            warm_up: self.warm_up,
            scheduled_from: self.scheduled_from,
            merged: self.merged.clone(),
            _records: PhantomData,
        }
    }
}

impl<F, T> std::fmt::Debug for LatencySink<F, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencySink")
            .field("warm_up", &self.warm_up)
            .finish()
    }
}

impl<F, T> LatencySink<F, T>
where
    F: Fn(&T) -> u64,
{
    /// A sink reading each record's scheduled time (on [`rill_engine::time`]'s clock) with
    /// `scheduled`.
    pub fn new(scheduled: F) -> Self {
        Self {
            scheduled,
            warm_up: Duration::ZERO,
            scheduled_from: 0,
            merged: Arc::new(Mutex::new(new_histogram())),
            _records: PhantomData,
        }
    }

    /// Ignores records scheduled before `nanos` on [`rill_engine::time`]'s clock: for a sink
    /// whose records come from another job (through Kafka, say) started at another time.
    pub fn scheduled_from(mut self, nanos: u64) -> Self {
        self.scheduled_from = nanos;
        self
    }

    /// Ignores records scheduled less than `warm_up` after the job started (the same instant
    /// a [`Generator`](crate::Generator) counts its schedule from).
    pub fn warm_up(mut self, warm_up: Duration) -> Self {
        self.warm_up = warm_up;
        self
    }
}

impl<F, T> LatencySink<F, T> {
    /// The merged histogram of every worker that has closed (all of them once the job ended).
    pub fn histogram(&self) -> Histogram<u64> {
        self.merged.locked().clone()
    }
}

impl<F, T> Sink<T> for LatencySink<F, T>
where
    F: Fn(&T) -> u64 + Clone + Send + Sync + 'static,
    T: 'static,
{
    type Writer = LatencyWriter<F>;

    fn create(&self, ctx: &WorkerContext) -> Result<Self::Writer, BoxError> {
        Ok(LatencyWriter {
            scheduled: self.scheduled.clone(),
            measure_from: nanos_at(ctx.started() + self.warm_up).max(self.scheduled_from),
            histogram: new_histogram(),
            merged: self.merged.clone(),
        })
    }

    fn name(&self) -> &str {
        "latency"
    }
}

/// One worker's [`LatencySink`].
#[derive(Debug)]
pub struct LatencyWriter<F> {
    scheduled: F,
    measure_from: u64,
    histogram: Histogram<u64>,
    merged: Arc<Mutex<Histogram<u64>>>,
}

impl<F, T> SinkWriter<T> for LatencyWriter<F>
where
    F: Fn(&T) -> u64,
{
    #[inline]
    fn write(&mut self, item: T) -> Result<(), BoxError> {
        let scheduled = (self.scheduled)(&item);
        if scheduled >= self.measure_from {
            let latency = now_nanos().saturating_sub(scheduled);
            self.histogram.saturating_record(latency.max(1));
        }
        Ok(())
    }

    fn close(&mut self) -> Result<(), BoxError> {
        let mut merged = self.merged.locked();
        merged.add(&self.histogram)?;
        Ok(())
    }
}
