//! `window`: per-key aggregates over tumbling, sliding and session windows of event time.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use rill_engine::state::{
    KeyedState, RestoredState, StateError, StateKey, StateSnapshot, StateValue, TimeDomain,
    TimerQueue,
};
use rill_engine::{
    Branch, BranchBuilder, Emit, Epoch, EventTime, FlowBuilder, KeyedStream, Operator, Stream,
};

/// A window of event time: `[start, end)` in milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Window {
    /// First millisecond in the window.
    pub start: EventTime,
    /// First millisecond after it.
    pub end: EventTime,
}

impl Window {
    /// The last event time in the window.
    pub fn max_time(&self) -> EventTime {
        self.end - 1
    }
}

/// Which windows a record belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Windows {
    /// Fixed, non-overlapping windows of `size`, aligned to the Unix epoch.
    Tumbling {
        /// Window length in milliseconds.
        size: i64,
    },
    /// Windows of `size` starting every `slide` (hopping windows): a record is in
    /// `size / slide` of them.
    Sliding {
        /// Window length in milliseconds.
        size: i64,
        /// Distance between window starts in milliseconds.
        slide: i64,
    },
    /// Per key, records closer than `gap` to each other form one session `[first, last +
    /// gap)`; sessions merge when a record bridges them.
    Session {
        /// The idle gap that closes a session, in milliseconds.
        gap: i64,
    },
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
}

impl Windows {
    /// Tumbling windows of `size`.
    pub fn tumbling(size: Duration) -> Self {
        Windows::Tumbling { size: millis(size) }
    }

    /// Sliding windows of `size` every `slide`.
    ///
    /// # Panics
    ///
    /// If `slide` is longer than `size` (records between windows would belong to none).
    pub fn sliding(size: Duration, slide: Duration) -> Self {
        assert!(
            slide <= size,
            "a slide longer than the window skips records"
        );
        Windows::Sliding {
            size: millis(size),
            slide: millis(slide),
        }
    }

    /// Session windows closed by `gap` without records.
    pub fn session(gap: Duration) -> Self {
        Windows::Session { gap: millis(gap) }
    }

    /// Calls `f` for each window a record at `ts` belongs to, latest start first (for a
    /// session: the record's own session before merging).
    #[inline]
    fn assign(&self, ts: EventTime, mut f: impl FnMut(Window)) {
        match *self {
            Windows::Tumbling { size } => {
                let start = ts - ts.rem_euclid(size);
                f(Window {
                    start,
                    end: start.saturating_add(size),
                });
            }
            Windows::Sliding { size, slide } => {
                let mut start = ts - ts.rem_euclid(slide);
                while start > ts.saturating_sub(size) {
                    f(Window {
                        start,
                        end: start.saturating_add(size),
                    });
                    start -= slide;
                }
            }
            Windows::Session { gap } => f(Window {
                start: ts,
                end: ts.saturating_add(gap),
            }),
        }
    }
}

/// When window results are emitted (Spark's output modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    /// Each window's final result once, when the watermark passes its end plus the allowed
    /// lateness; its state is freed then. The latency of a result is the window's end plus
    /// the watermark delay, by design.
    Append,
    /// The window's updated result for every record that changes it, as soon as the record
    /// arrives; the state is freed when the watermark passes the window's end plus the
    /// allowed lateness.
    Update,
    /// Every window's current result at every checkpoint epoch (every batch in micro-batch
    /// mode). Nothing is freed and nothing is late: only for aggregations that stay small.
    Complete,
}

/// A window's result for one key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WindowResult<K, R> {
    /// The key.
    pub key: K,
    /// The window.
    pub window: Window,
    /// The aggregate (a count, a reduction, an accumulator).
    pub value: R,
}

/// What the window operator emits: results, and records that came too late for their
/// windows. [`WindowedStream`]'s methods split them into two streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowOutput<K, R, V> {
    /// A window's result.
    Result(WindowResult<K, R>),
    /// A record behind the watermark by more than the allowed lateness: its windows are gone.
    Late(K, V),
}

/// How records fold into a window's accumulator, and how two accumulators merge (sessions).
#[derive(Debug, Clone)]
pub struct Aggregation<A, Fi, Fm> {
    init: A,
    fold: Fi,
    merge: Fm,
}

/// One key's open windows with their accumulators (the state, per key). The usual one (a
/// tumbling window) is inline in the state's table: no second cache miss per record, and a
/// small entry (two inline windows measured slower: the table outgrows the cache).
type KeyWindows<A> = SmallVec<[(Window, A); 1]>;

/// The window operator (built by [`WindowedStream`]): per key, an accumulator per open window.
///
/// Windows are event-time: a record belongs to windows by the time `event_time` reads from it,
/// and a window closes when the watermark (see `with_watermark`) passes its end plus the
/// allowed lateness. A record whose event time is at or below the watermark minus the allowed
/// lateness is late: it goes to the late output, never silently away. State (windows, and
/// the watermark at the checkpoint) is checkpointed per key group; closed windows are freed.
#[derive(Debug, Clone)]
pub struct WindowOperator<K, A, T, Fi, Fm> {
    windows: Windows,
    mode: OutputMode,
    lateness: i64,
    event_time: T,
    agg: Aggregation<A, Fi, Fm>,
    state: KeyedState<K, KeyWindows<A>>,
    timers: TimerQueue<K>,
    watermark: EventTime,
    /// After a restore: the watermark the checkpoint was taken at. Records at or below it
    /// minus the lateness are late even before the live watermark has caught up, so that
    /// a window already emitted and freed is never opened again.
    floor: EventTime,
    /// Complete mode: a record arrived since the table was last emitted.
    changed: bool,
}

impl<K, A, T, Fi, Fm> WindowOperator<K, A, T, Fi, Fm> {
    fn new(
        windows: Windows,
        mode: OutputMode,
        lateness: i64,
        event_time: T,
        agg: Aggregation<A, Fi, Fm>,
    ) -> Self {
        Self {
            windows,
            mode,
            lateness,
            event_time,
            agg,
            state: KeyedState::default(),
            timers: TimerQueue::default(),
            watermark: EventTime::MIN,
            floor: EventTime::MIN,
            changed: false,
        }
    }
}

/// Merges the session at `at` with every other session of `windows` it overlaps, moving
/// their cleanup timers (`lateness` after their ends); returns the merged session's index.
fn merge_sessions<K: Clone + PartialEq, A>(
    windows: &mut KeyWindows<A>,
    mut at: usize,
    timers: &mut TimerQueue<K>,
    key: &K,
    lateness: i64,
    merge: impl Fn(&mut A, A),
) -> usize {
    let cleanup = |w: &Window| w.max_time().saturating_add(lateness);
    loop {
        let w = windows[at].0;
        let Some(other) = (0..windows.len())
            .find(|&i| i != at && windows[i].0.start < w.end && w.start < windows[i].0.end)
        else {
            return at;
        };
        let (ow, oacc) = windows.remove(other);
        if other < at {
            at -= 1;
        }
        timers.cancel(TimeDomain::EventTime, cleanup(&ow), key);
        timers.cancel(TimeDomain::EventTime, cleanup(&w), key);
        let merged = Window {
            start: w.start.min(ow.start),
            end: w.end.max(ow.end),
        };
        merge(&mut windows[at].1, oacc);
        windows[at].0 = merged;
        timers.schedule(TimeDomain::EventTime, cleanup(&merged), key.clone());
    }
}

impl<K, V, A, T, Fi, Fm> Operator<(K, V)> for WindowOperator<K, A, T, Fi, Fm>
where
    K: StateKey,
    A: StateValue,
    T: Fn(&V) -> EventTime,
    Fi: Fn(&mut A, &V),
    Fm: Fn(&mut A, A),
{
    type Out = WindowOutput<K, A, V>;

    // A processing-time state TTL follows the wall clock, read per poll.
    const USES_CLOCK: bool = true;

    fn on_poll<E: Emit<Self::Out>>(&mut self, _now: Instant, _out: &mut E) -> Option<Instant> {
        self.state.tick()
    }

    fn on_record<E: Emit<Self::Out>>(&mut self, (key, value): (K, V), out: &mut E) {
        let ts = (self.event_time)(&value);
        if self.mode != OutputMode::Complete
            && ts <= self.watermark.max(self.floor).saturating_sub(self.lateness)
        {
            out.emit(WindowOutput::Late(key, value));
            return;
        }
        self.changed = true;
        let Self {
            windows: assigner,
            mode,
            lateness,
            agg,
            state,
            timers,
            ..
        } = self;
        let (mode, lateness) = (*mode, *lateness);
        // One lookup per record: the key is cloned only when it is new.
        let windows = state.get_or_insert_cloned(&key, SmallVec::new);
        if let Windows::Tumbling { .. } = assigner {
            // Most records fall in a window their key already has open (the newest, as a
            // rule): no division to find the window's start.
            if let Some(i) = windows
                .iter()
                .rposition(|(w, _)| w.start <= ts && ts < w.end)
            {
                (agg.fold)(&mut windows[i].1, &value);
                if mode == OutputMode::Update {
                    let (window, acc) = &windows[i];
                    out.emit(WindowOutput::Result(WindowResult {
                        key,
                        window: *window,
                        value: acc.clone(),
                    }));
                }
                return;
            }
        }
        let session = matches!(assigner, Windows::Session { .. });
        let mut last = 0;
        assigner.assign(ts, |w| {
            let i = match windows.iter().position(|(x, _)| *x == w) {
                Some(i) => i,
                None => {
                    windows.push((w, agg.init.clone()));
                    if mode != OutputMode::Complete {
                        let cleanup = w.max_time().saturating_add(lateness);
                        timers.schedule(TimeDomain::EventTime, cleanup, key.clone());
                    }
                    windows.len() - 1
                }
            };
            (agg.fold)(&mut windows[i].1, &value);
            if mode == OutputMode::Update && !session {
                let (window, acc) = &windows[i];
                out.emit(WindowOutput::Result(WindowResult {
                    key: key.clone(),
                    window: *window,
                    value: acc.clone(),
                }));
            }
            last = i;
        });
        if session {
            let at = merge_sessions(windows, last, timers, &key, lateness, &agg.merge);
            if mode == OutputMode::Update {
                let (window, acc) = &windows[at];
                out.emit(WindowOutput::Result(WindowResult {
                    key,
                    window: *window,
                    value: acc.clone(),
                }));
            }
        }
    }

    fn on_watermark<E: Emit<Self::Out>>(&mut self, watermark: EventTime, out: &mut E) {
        self.watermark = watermark;
        self.state.advance_clock(TimeDomain::EventTime, watermark);
        while let Some((at, key)) = self.timers.pop_due(TimeDomain::EventTime, watermark) {
            let Some(mut windows) = self.state.remove(&key) else {
                continue;
            };
            let lateness = self.lateness;
            let mut i = 0;
            while i < windows.len() {
                if windows[i].0.max_time().saturating_add(lateness) == at {
                    let (window, value) = windows.remove(i);
                    if self.mode == OutputMode::Append {
                        out.emit(WindowOutput::Result(WindowResult {
                            key: key.clone(),
                            window,
                            value,
                        }));
                    }
                } else {
                    i += 1;
                }
            }
            if !windows.is_empty() {
                self.state.insert(key, windows);
            }
        }
        out.watermark(watermark);
    }

    fn on_barrier<E: Emit<Self::Out>>(&mut self, _epoch: Epoch, out: &mut E) {
        self.state.tick();
        if self.mode == OutputMode::Complete {
            self.changed = false;
            for (key, windows) in self.state.iter() {
                for (window, value) in windows {
                    out.emit(WindowOutput::Result(WindowResult {
                        key: key.clone(),
                        window: *window,
                        value: value.clone(),
                    }));
                }
            }
        }
    }

    fn on_end<E: Emit<Self::Out>>(&mut self, out: &mut E) {
        // Append and update mode: a bounded input's end comes with the end-of-time watermark,
        // which closed every window; a stopped job keeps its open windows in its checkpoint.
        // Complete mode: the table, unless the final barrier just emitted it.
        if self.mode == OutputMode::Complete && self.changed {
            self.on_barrier(0, out);
        }
    }

    fn snapshot(&mut self) -> Option<Box<dyn StateSnapshot>> {
        self.state
            .boxed_snapshot_with_watermark(self.watermark.max(self.floor))
    }

    fn restore(&mut self, state: &RestoredState<'_>) -> Result<(), StateError> {
        let (timers, mode, lateness) = (&mut self.timers, self.mode, self.lateness);
        let floor = self.state.restore_with_watermark(state, |key, windows| {
            if mode != OutputMode::Complete {
                for (w, _) in windows {
                    let at = w.max_time().saturating_add(lateness);
                    timers.schedule(TimeDomain::EventTime, at, key.clone());
                }
            }
        })?;
        self.floor = self.floor.max(floor);
        Ok(())
    }
}

/// A keyed stream with windows chosen, waiting for its aggregation: see
/// [`WindowExt::window`].
#[derive(Debug)]
#[must_use = "a window does nothing until it is aggregated"]
pub struct WindowedStream<B, T> {
    stream: KeyedStream<B>,
    windows: Windows,
    event_time: T,
    mode: OutputMode,
    lateness: i64,
}

impl<B, T> WindowedStream<B, T> {
    /// How results are emitted; [`OutputMode::Append`] by default.
    pub fn output_mode(mut self, mode: OutputMode) -> Self {
        self.mode = mode;
        self
    }

    /// How far behind the watermark a record may still update its windows; none by default.
    /// Windows are kept (and, in append mode, emitted) until the watermark passes their end
    /// plus this.
    pub fn allowed_lateness(mut self, lateness: Duration) -> Self {
        self.lateness = i64::try_from(lateness.as_millis()).unwrap_or(i64::MAX);
        self
    }
}

impl<K, V, B, T> WindowedStream<B, T>
where
    B: FlowBuilder<Out = (K, V)>,
    K: StateKey,
    V: Send + 'static,
    T: Fn(&V) -> EventTime + Clone + Send + Sync + 'static,
{
    /// Folds each window's records into an accumulator: `fold` adds a record, `merge` joins
    /// two accumulators (when session windows merge).
    ///
    /// Returns two streams: the windows' results, which go on in the same fused chain, and
    /// the records that came too late for their windows, as `(key, value)`, a side output.
    /// Route the late stream to a sink (a Kafka topic, a dead-letter sink), or explicitly to
    /// a `DiscardSink`, which counts what it drops in the job's metrics: a job whose late
    /// stream goes nowhere refuses to start.
    #[allow(clippy::type_complexity)]
    pub fn aggregate<A, Fi, Fm>(
        self,
        init: A,
        fold: Fi,
        merge: Fm,
    ) -> (
        Stream<impl FlowBuilder<Out = WindowResult<K, A>>>,
        Stream<BranchBuilder<(K, V)>>,
    )
    where
        A: StateValue,
        Fi: Fn(&mut A, &V) + Clone + Send + Sync + 'static,
        Fm: Fn(&mut A, A) + Clone + Send + Sync + 'static,
    {
        let mut op = WindowOperator::new(
            self.windows,
            self.mode,
            self.lateness,
            self.event_time,
            Aggregation { init, fold, merge },
        );
        // The TTL removes a key's windows (all of them) once it had no record for so long:
        // for complete mode, which otherwise keeps every window for ever.
        op.state = KeyedState::default().with_ttl(self.stream.ttl());
        self.stream.then("window", op).side_output(
            "window:late",
            |o: WindowOutput<K, A, V>| match o {
                WindowOutput::Result(r) => Branch::First(r),
                WindowOutput::Late(k, v) => Branch::Second((k, v)),
            },
        )
    }

    /// Counts each window's records.
    ///
    /// ```
    /// use std::time::Duration;
    /// use rill_connectors::{CollectSink, MemorySource};
    /// use rill_engine::{Config, Job};
    /// use rill_operators::{WatermarkStrategy, Window, WindowExt, Windows, WithWatermarkExt};
    ///
    /// let job = Job::new("clicks-per-second");
    /// let (counts, late) = (CollectSink::default(), CollectSink::default());
    /// let clicks = vec![("ad", 100i64), ("ad", 900), ("ad", 1_500), ("ad", 400)];
    /// let (windows, too_late) = job
    ///     .source(MemorySource::new(clicks))
    ///     .with_watermark(|c: &(&str, i64)| c.1, WatermarkStrategy::bounded_out_of_orderness(Duration::from_secs(1)))
    ///     .key_by(|c: &(&str, i64)| c.0.to_string())
    ///     .window(Windows::tumbling(Duration::from_secs(1)), |c: &(&str, i64)| c.1)
    ///     .count();
    /// windows.sink(counts.clone());
    /// too_late.sink(late.clone());
    /// job.run(Config::default().with_workers(1))?.await_termination()?;
    /// let got: Vec<(Window, u64)> = counts.take().into_iter().map(|r| (r.window, r.value)).collect();
    /// assert_eq!(got, [
    ///     (Window { start: 0, end: 1_000 }, 3),
    ///     (Window { start: 1_000, end: 2_000 }, 1),
    /// ]);
    /// assert!(late.take().is_empty());
    /// # Ok::<(), rill_engine::JobError>(())
    /// ```
    #[allow(clippy::type_complexity)]
    pub fn count(
        self,
    ) -> (
        Stream<impl FlowBuilder<Out = WindowResult<K, u64>>>,
        Stream<BranchBuilder<(K, V)>>,
    ) {
        self.aggregate(0u64, |n: &mut u64, _: &V| *n += 1, |n: &mut u64, m| *n += m)
    }

    /// Reduces each window's values with `f`.
    #[allow(clippy::type_complexity)]
    pub fn reduce<F>(
        self,
        f: F,
    ) -> (
        Stream<impl FlowBuilder<Out = WindowResult<K, Option<V>>>>,
        Stream<BranchBuilder<(K, V)>>,
    )
    where
        V: StateValue,
        F: Fn(V, V) -> V + Clone + Send + Sync + 'static,
    {
        let merge_f = f.clone();
        self.aggregate(
            None,
            move |acc: &mut Option<V>, v: &V| {
                *acc = Some(match acc.take() {
                    None => v.clone(),
                    Some(a) => f(a, v.clone()),
                });
            },
            move |acc: &mut Option<V>, other: Option<V>| {
                *acc = match (acc.take(), other) {
                    (Some(a), Some(b)) => Some(merge_f(a, b)),
                    (a, b) => a.or(b),
                };
            },
        )
    }
}

/// Adds [`window`](WindowExt::window) to keyed streams.
pub trait WindowExt<B: FlowBuilder> {
    /// Groups each key's records into event-time `windows`, reading event time with
    /// `event_time`. The stream needs a watermark upstream (`with_watermark`) for windows to
    /// close before the input ends.
    fn window<V, T>(self, windows: Windows, event_time: T) -> WindowedStream<B, T>
    where
        T: Fn(&V) -> EventTime + Clone + Send + Sync + 'static;
}

impl<B: FlowBuilder> WindowExt<B> for KeyedStream<B> {
    fn window<V, T>(self, windows: Windows, event_time: T) -> WindowedStream<B, T>
    where
        T: Fn(&V) -> EventTime + Clone + Send + Sync + 'static,
    {
        WindowedStream {
            stream: self,
            windows,
            event_time,
            mode: OutputMode::Append,
            lateness: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_engine::test_support::CountEmitted;

    #[test]
    fn state_stays_bounded_on_a_long_run() {
        for windows in [
            Windows::tumbling(Duration::from_secs(1)),
            Windows::sliding(Duration::from_secs(4), Duration::from_secs(1)),
            Windows::session(Duration::from_millis(500)),
        ] {
            let time: fn(&i64) -> i64 = |t| *t;
            let agg = Aggregation {
                init: 0u64,
                fold: |n: &mut u64, _: &i64| *n += 1,
                merge: |n: &mut u64, m: u64| *n += m,
            };
            let mut op = WindowOperator::new(windows, OutputMode::Append, 0, time, agg);
            let mut out = CountEmitted::default();
            let mut most = 0;
            // 200,000 records over 100 keys; key k is quiet every 7th second, which closes
            // sessions; the watermark trails by 1 s.
            for i in 0..200_000i64 {
                let (key, ts) = ((i % 100) as u32, i * 10);
                if (ts / 1_000 + i64::from(key)) % 7 != 0 {
                    op.on_record((key, ts), &mut out);
                }
                if i % 100 == 0 {
                    let open: usize = op.state.iter().map(|(_, w)| w.len()).sum();
                    most = most.max(open);
                    op.on_watermark(ts - 1_000, &mut out);
                }
            }
            eprintln!(
                "{windows:?}: at most {most} windows open, {} results",
                out.0
            );
            assert!(most <= 100 * 7, "{windows:?}: {most} windows open at most");
            assert!(out.0 > 1_000, "{windows:?}: {} results", out.0);
        }
    }
}
