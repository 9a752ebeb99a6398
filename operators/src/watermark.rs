//! `with_watermark`: event time and watermarks for a stream.

use std::time::{Duration, Instant};

use rill_engine::state::{decode, encode, RestoredState, StateError, StateSnapshot, WorkerBlob};
use rill_engine::{Emit, Epoch, EventTime, FlowBuilder, Operator, Stream, ThenBuilder};

/// How a stream's watermark follows the event times it has seen: bounded out-of-orderness
/// (Spark's `withWatermark("ts", "10 seconds")`, Flink's `forBoundedOutOfOrderness`).
///
/// The watermark of one split (a Kafka partition) is its highest event time minus the delay,
/// minus 1 ms: records up to `delay` older than the newest one seen are still on time. A
/// worker's watermark is the minimum over its splits that are not idle. A split with no record
/// for `idle_after` stops holding the watermark back, and rejoins with its next record.
///
/// ```
/// use std::time::Duration;
/// use rill_operators::WatermarkStrategy;
/// let strategy = WatermarkStrategy::bounded_out_of_orderness(Duration::from_secs(10))
///     .idle_after(Duration::from_secs(30))
///     .interval(Duration::from_millis(50));
/// assert_eq!(strategy.delay(), Duration::from_secs(10));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatermarkStrategy {
    delay: Duration,
    idle_after: Option<Duration>,
    interval: Duration,
}

impl WatermarkStrategy {
    /// Records may arrive up to `delay` behind the newest event time of their split. Splits go
    /// idle after 5 s without records; the watermark moves at most every 100 ms.
    pub fn bounded_out_of_orderness(delay: Duration) -> Self {
        Self {
            delay,
            idle_after: Some(Duration::from_secs(5)),
            interval: Duration::from_millis(100),
        }
    }

    /// A split (and a worker with no split at all) with no record for `after` stops holding
    /// the watermark back.
    pub fn idle_after(mut self, after: Duration) -> Self {
        self.idle_after = Some(after);
        self
    }

    /// Splits never go idle: a quiet split holds the watermark back until it has records.
    pub fn never_idle(mut self) -> Self {
        self.idle_after = None;
        self
    }

    /// How often the watermark is computed and passed on in continuous mode: the bound on
    /// what append-mode output waits beyond the watermark delay. Watermarks are not sent per
    /// record. In micro-batch mode it moves at batch ends instead.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// The out-of-orderness bound.
    pub fn delay(&self) -> Duration {
        self.delay
    }
}

/// One split's progress.
#[derive(Debug, Clone)]
struct Split {
    id: u64,
    max: EventTime,
    records: u64,
    /// `records` when the split was last looked at, and when it last had new records.
    checked: u64,
    active_at: Instant,
    idle: bool,
}

/// The `with_watermark` operator: passes records on unchanged, tracks the highest event time
/// per split, and emits the watermark on a cadence. Its state (each split's highest event
/// time) is checkpointed, so a restored job does not start from no watermark at all.
#[derive(Debug, Clone)]
pub struct WithWatermark<T, S> {
    event_time: T,
    split_of: S,
    strategy: WatermarkStrategy,
    delay_ms: i64,
    splits: Vec<Split>,
    last: usize,
    emitted: EventTime,
    idle_sent: bool,
    started: Option<Instant>,
    next_check: Option<Instant>,
}

impl<T, S> WithWatermark<T, S> {
    /// An operator reading event times with `event_time` and splits with `split_of`.
    pub fn new(event_time: T, split_of: S, strategy: WatermarkStrategy) -> Self {
        Self {
            event_time,
            split_of,
            strategy,
            delay_ms: i64::try_from(strategy.delay.as_millis()).unwrap_or(i64::MAX),
            splits: Vec::new(),
            last: 0,
            emitted: EventTime::MIN,
            idle_sent: false,
            started: None,
            next_check: None,
        }
    }

    /// Looks at every split at `now`, and passes on a higher watermark or idleness.
    fn advance<O, E: Emit<O>>(&mut self, now: Instant, out: &mut E) {
        let started = *self.started.get_or_insert(now);
        let idle_after = self.strategy.idle_after;
        let quiet_for = |since: Instant| idle_after.is_some_and(|d| now.duration_since(since) >= d);
        let mut min: Option<EventTime> = None;
        for s in &mut self.splits {
            if s.records != s.checked {
                s.checked = s.records;
                s.active_at = now;
                s.idle = false;
            } else if !s.idle && quiet_for(s.active_at) {
                s.idle = true;
            }
            if !s.idle {
                min = Some(min.map_or(s.max, |m| m.min(s.max)));
            }
        }
        match min {
            Some(max) => {
                // A split is active again: the next quiet spell is reported again.
                self.idle_sent = false;
                let watermark = max.saturating_sub(self.delay_ms).saturating_sub(1);
                if watermark > self.emitted {
                    self.emitted = watermark;
                    out.watermark(watermark);
                }
            }
            None => {
                // No active split: idle once every split went quiet, or once a worker that
                // never had one (more workers than partitions) has waited as long. First the
                // highest split's watermark: each still holds for its own split, and no
                // active split is left to be overtaken (Flink does the same).
                let quiet = !self.splits.is_empty() || quiet_for(started);
                if quiet && idle_after.is_some() && !self.idle_sent {
                    let highest = self.splits.iter().map(|s| s.max).max();
                    if let Some(max) = highest {
                        let watermark = max.saturating_sub(self.delay_ms).saturating_sub(1);
                        if watermark > self.emitted {
                            self.emitted = watermark;
                            out.watermark(watermark);
                        }
                    }
                    self.idle_sent = true;
                    out.idle();
                }
            }
        }
    }

    #[inline]
    fn split(&mut self, id: u64) -> &mut Split {
        if self.splits.get(self.last).is_none_or(|s| s.id != id) {
            self.last = match self.splits.iter().position(|s| s.id == id) {
                Some(i) => i,
                None => {
                    self.splits.push(Split {
                        id,
                        max: EventTime::MIN,
                        records: 0,
                        checked: 0,
                        active_at: Instant::now(),
                        idle: false,
                    });
                    self.splits.len() - 1
                }
            };
        }
        &mut self.splits[self.last]
    }
}

impl<I, T, S> Operator<I> for WithWatermark<T, S>
where
    T: Fn(&I) -> EventTime,
    S: Fn(&I) -> u64,
{
    type Out = I;
    const USES_CLOCK: bool = true;

    #[inline]
    fn on_record<E: Emit<I>>(&mut self, item: I, out: &mut E) {
        let (ts, id) = ((self.event_time)(&item), (self.split_of)(&item));
        let split = self.split(id);
        if ts > split.max {
            split.max = ts;
        }
        split.records += 1;
        out.emit(item);
    }

    fn on_watermark<E: Emit<I>>(&mut self, watermark: EventTime, out: &mut E) {
        // From upstream: the end of a bounded input (the end-of-time watermark), or a stream
        // that had one already. Never pass on a lower one after it.
        if watermark > self.emitted {
            self.emitted = watermark;
            out.watermark(watermark);
        }
    }

    fn on_poll<E: Emit<I>>(&mut self, now: Instant, out: &mut E) -> Option<Instant> {
        if self.next_check.is_none_or(|t| now >= t) {
            self.advance(now, out);
            self.next_check = Some(now + self.strategy.interval);
        }
        self.next_check
    }

    fn on_barrier<E: Emit<I>>(&mut self, _epoch: Epoch, out: &mut E) {
        // Micro-batch mode: the watermark moves at batch ends (Spark's rule). In continuous
        // mode this is one more look on top of the cadence.
        self.advance(Instant::now(), out);
    }

    fn snapshot(&mut self) -> Option<Box<dyn StateSnapshot>> {
        let maxima: Vec<(u64, EventTime)> = self.splits.iter().map(|s| (s.id, s.max)).collect();
        encode(&maxima)
            .ok()
            .map(|b| Box::new(WorkerBlob(b)) as Box<dyn StateSnapshot>)
    }

    fn restore(&mut self, state: &RestoredState<'_>) -> Result<(), StateError> {
        state.expect_type(std::any::type_name::<WorkerBlob>())?;
        // Splits may have moved between workers: every worker takes every split's highest
        // event time, and a restored split counts only once it has records again.
        for blob in state.worker_blobs().iter().flatten() {
            let maxima: Vec<(u64, EventTime)> = decode(blob, state.node())?;
            for (id, max) in maxima {
                let split = self.split(id);
                split.max = split.max.max(max);
                split.idle = true;
            }
        }
        Ok(())
    }
}

/// The split function of a stream with one watermark per worker.
pub type OneSplit<T> = fn(&T) -> u64;

/// Adds [`with_watermark`](WithWatermarkExt::with_watermark) and
/// [`with_split_watermark`](WithWatermarkExt::with_split_watermark) to streams.
pub trait WithWatermarkExt<B: FlowBuilder> {
    /// Gives the stream event time, read from each record by `event_time` (milliseconds since
    /// the Unix epoch), and a watermark that follows it by `strategy`, one per worker.
    ///
    /// ```
    /// use std::time::Duration;
    /// use rill_connectors::{CollectSink, MemorySource};
    /// use rill_engine::{Config, Job};
    /// use rill_operators::{WatermarkStrategy, WithWatermarkExt};
    ///
    /// let job = Job::new("event-time");
    /// let out = CollectSink::default();
    /// job.source(MemorySource::new(vec![1_000i64, 3_000, 2_000]))
    ///     .with_watermark(|ts: &i64| *ts, WatermarkStrategy::bounded_out_of_orderness(Duration::from_secs(1)))
    ///     .sink(out.clone());
    /// job.run(Config::default().with_workers(1))?.await_termination()?;
    /// assert_eq!(out.take(), [1_000, 3_000, 2_000]); // records pass unchanged
    /// # Ok::<(), rill_engine::JobError>(())
    /// ```
    #[allow(clippy::type_complexity)]
    fn with_watermark<T>(
        self,
        event_time: T,
        strategy: WatermarkStrategy,
    ) -> Stream<ThenBuilder<B, WithWatermark<T, OneSplit<B::Out>>>>
    where
        T: Fn(&B::Out) -> EventTime + Clone + Send + Sync + 'static,
        B::Out: 'static;

    /// Like [`with_watermark`](Self::with_watermark), with a watermark per split of the input
    /// (`split_of` names it: a Kafka partition, say), combined as their minimum. Use it when
    /// one worker reads several partitions whose event times drift apart.
    fn with_split_watermark<T, S>(
        self,
        event_time: T,
        split_of: S,
        strategy: WatermarkStrategy,
    ) -> Stream<ThenBuilder<B, WithWatermark<T, S>>>
    where
        T: Fn(&B::Out) -> EventTime + Clone + Send + Sync + 'static,
        S: Fn(&B::Out) -> u64 + Clone + Send + Sync + 'static;
}

impl<B: FlowBuilder> WithWatermarkExt<B> for Stream<B> {
    #[allow(clippy::type_complexity)]
    fn with_watermark<T>(
        self,
        event_time: T,
        strategy: WatermarkStrategy,
    ) -> Stream<ThenBuilder<B, WithWatermark<T, OneSplit<B::Out>>>>
    where
        T: Fn(&B::Out) -> EventTime + Clone + Send + Sync + 'static,
        B::Out: 'static,
    {
        fn one_split<X>(_: &X) -> u64 {
            0
        }
        self.then(
            "with_watermark",
            WithWatermark::new(
                event_time,
                one_split::<B::Out> as OneSplit<B::Out>,
                strategy,
            ),
        )
    }

    fn with_split_watermark<T, S>(
        self,
        event_time: T,
        split_of: S,
        strategy: WatermarkStrategy,
    ) -> Stream<ThenBuilder<B, WithWatermark<T, S>>>
    where
        T: Fn(&B::Out) -> EventTime + Clone + Send + Sync + 'static,
        S: Fn(&B::Out) -> u64 + Clone + Send + Sync + 'static,
    {
        self.then(
            "with_watermark",
            WithWatermark::new(event_time, split_of, strategy),
        )
    }
}
