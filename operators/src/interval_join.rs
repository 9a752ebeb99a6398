//! `interval_join`: two keyed streams joined on equal keys and nearby event times.

use std::marker::PhantomData;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use rill_engine::state::{
    KeyedState, RestoredState, StateError, StateKey, StateSnapshot, StateValue, TimeDomain,
    TimerQueue,
};
use rill_engine::{
    Branch, BranchBuilder, Emit, EventTime, FlowBuilder, KeyedStream, Operator, Stream,
};

use crate::map::MapExt;

/// A record of either input of a join.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JoinSide<L, R> {
    /// From the left (first) input.
    Left(L),
    /// From the right (second) input.
    Right(R),
}

/// Which right records join a left record at `ts`: those with an event time in
/// `[ts + lower, ts + upper]` (milliseconds; `lower` may be negative).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    lower: i64,
    upper: i64,
}

impl Interval {
    /// Right records from `lower` to `upper` ms after the left record's time (inclusive).
    ///
    /// # Panics
    ///
    /// If `lower > upper`.
    pub fn millis(lower: i64, upper: i64) -> Self {
        assert!(lower <= upper, "an empty join interval");
        Self { lower, upper }
    }

    /// Right records at the left record's time up to `within` after it: the seed's
    /// `ts_click >= ts_impr AND ts_click <= ts_impr + interval 5 minutes`.
    pub fn within(within: Duration) -> Self {
        Self::millis(0, i64::try_from(within.as_millis()).unwrap_or(i64::MAX))
    }
}

/// One joined pair: the key, the left record, and the right record (for a left outer join,
/// `None` when no right record matched the left one within the interval).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Joined<K, L, R> {
    /// The join key.
    pub key: K,
    /// The left record.
    pub left: L,
    /// The right record.
    pub right: R,
}

/// Inner or left outer: what a pair's right side is, and what an unmatched left record gives.
pub trait JoinKind<R>: Clone + Send + Sync + 'static {
    /// The right side of an output pair.
    type Right;
    /// A matched right record.
    fn matched(right: R) -> Self::Right;
    /// What an unmatched left record gives once no right record can match it any more.
    fn unmatched() -> Option<Self::Right>;
}

/// Only matched pairs.
#[derive(Debug, Clone, Copy)]
pub struct Inner;

impl<R> JoinKind<R> for Inner {
    type Right = R;
    fn matched(right: R) -> R {
        right
    }
    fn unmatched() -> Option<R> {
        None
    }
}

/// Matched pairs, and every left record that matched nothing with `None`, emitted once the
/// watermark passes the end of its interval (Spark's outer-join semantics).
#[derive(Debug, Clone, Copy)]
pub struct LeftOuter;

impl<R> JoinKind<R> for LeftOuter {
    type Right = Option<R>;
    fn matched(right: R) -> Option<R> {
        Some(right)
    }
    fn unmatched() -> Option<Option<R>> {
        Some(None)
    }
}

/// One key's buffered records: left ones with whether they matched, and right ones, each
/// with its event time; and the key's one live cleanup timer: the earliest time at which a
/// buffered record can go.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Buffers<L, R> {
    left: Vec<(EventTime, L, bool)>,
    right: Vec<(EventTime, R)>,
    next_cleanup: Option<EventTime>,
}

impl<L, R> Default for Buffers<L, R> {
    fn default() -> Self {
        Self {
            left: Vec::new(),
            right: Vec::new(),
            next_cleanup: None,
        }
    }
}

impl<L, R> Buffers<L, R> {
    /// The earliest time at which a buffered record can go, given the interval.
    fn earliest_cleanup(&self, Interval { lower, upper }: Interval) -> Option<EventTime> {
        let left = self.left.iter().map(|(t, _, _)| t.saturating_add(upper));
        let right = self.right.iter().map(|(t, _)| t.saturating_sub(lower));
        left.chain(right).min()
    }
}

/// What the join operator emits: pairs, and records too late to be joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinOutput<K, L, R, J> {
    /// A joined pair.
    Pair(Joined<K, L, J>),
    /// A record at or below the watermark: what it could match may be gone.
    Late(K, JoinSide<L, R>),
}

/// The interval join operator (built by [`IntervalJoinExt::interval_join`]).
///
/// Per key it buffers both inputs' records. A left record at `t` joins the right records
/// with event times in `[t + lower, t + upper]`, whichever arrives first; it is dropped from
/// the buffer once the watermark reaches `t + upper` (no right record that could still come
/// matches it), a right record at `u` once it reaches `u - lower`. So state stays bounded by
/// the watermark. A record at or below the watermark is late and goes to the late output.
/// The buffers and the watermark are checkpointed per key group.
#[derive(Debug, Clone)]
pub struct IntervalJoinOperator<K, L, R, TL, TR, J> {
    interval: Interval,
    left_time: TL,
    right_time: TR,
    state: KeyedState<K, Buffers<L, R>>,
    timers: TimerQueue<K>,
    watermark: EventTime,
    floor: EventTime,
    _kind: PhantomData<J>,
}

impl<K, L, R, TL, TR, J> IntervalJoinOperator<K, L, R, TL, TR, J> {
    fn new(interval: Interval, left_time: TL, right_time: TR) -> Self {
        Self {
            interval,
            left_time,
            right_time,
            state: KeyedState::default(),
            timers: TimerQueue::default(),
            watermark: EventTime::MIN,
            floor: EventTime::MIN,
            _kind: PhantomData,
        }
    }
}

impl<K, L, R, TL, TR, J> Operator<(K, JoinSide<L, R>)> for IntervalJoinOperator<K, L, R, TL, TR, J>
where
    K: StateKey,
    L: StateValue,
    R: StateValue,
    TL: Fn(&L) -> EventTime,
    TR: Fn(&R) -> EventTime,
    J: JoinKind<R>,
{
    type Out = JoinOutput<K, L, R, J::Right>;

    fn on_record<E: Emit<Self::Out>>(&mut self, (key, side): (K, JoinSide<L, R>), out: &mut E) {
        let ts = match &side {
            JoinSide::Left(l) => (self.left_time)(l),
            JoinSide::Right(r) => (self.right_time)(r),
        };
        if ts <= self.watermark.max(self.floor) {
            out.emit(JoinOutput::Late(key, side));
            return;
        }
        let Interval { lower, upper } = self.interval;
        // One lookup per record: the key is cloned only when it is new.
        let buffers = self.state.get_or_insert_cloned(&key, Buffers::default);
        let cleanup = match side {
            JoinSide::Left(l) => {
                let (from, to) = (ts.saturating_add(lower), ts.saturating_add(upper));
                let mut matched = false;
                for (rt, r) in &buffers.right {
                    if *rt >= from && *rt <= to {
                        matched = true;
                        out.emit(JoinOutput::Pair(Joined {
                            key: key.clone(),
                            left: l.clone(),
                            right: J::matched(r.clone()),
                        }));
                    }
                }
                buffers.left.push((ts, l, matched));
                to
            }
            JoinSide::Right(r) => {
                let (from, to) = (ts.saturating_sub(upper), ts.saturating_sub(lower));
                for (lt, l, matched) in &mut buffers.left {
                    if *lt >= from && *lt <= to {
                        *matched = true;
                        out.emit(JoinOutput::Pair(Joined {
                            key: key.clone(),
                            left: l.clone(),
                            right: J::matched(r.clone()),
                        }));
                    }
                }
                buffers.right.push((ts, r));
                to
            }
        };
        // One live timer per key, at its earliest cleanup: in-order input schedules one per
        // key and cleanup round, not one per record. A superseded timer fires and is ignored.
        if buffers.next_cleanup.is_none_or(|next| cleanup < next) {
            buffers.next_cleanup = Some(cleanup);
            self.timers.schedule(TimeDomain::EventTime, cleanup, key);
        }
    }

    fn on_watermark<E: Emit<Self::Out>>(&mut self, watermark: EventTime, out: &mut E) {
        self.watermark = watermark;
        let Interval { lower, upper } = self.interval;
        while let Some((at, key)) = self.timers.pop_due(TimeDomain::EventTime, watermark) {
            let Some(buffers) = self.state.get_mut(&key) else {
                continue;
            };
            if buffers.next_cleanup != Some(at) {
                continue; // superseded by an earlier one, which has fired
            }
            buffers.left.retain(|(lt, l, matched)| {
                if lt.saturating_add(upper) > watermark {
                    return true;
                }
                if !*matched {
                    if let Some(right) = J::unmatched() {
                        out.emit(JoinOutput::Pair(Joined {
                            key: key.clone(),
                            left: l.clone(),
                            right,
                        }));
                    }
                }
                false
            });
            buffers
                .right
                .retain(|(rt, _)| rt.saturating_sub(lower) > watermark);
            buffers.next_cleanup = buffers.earliest_cleanup(self.interval);
            match buffers.next_cleanup {
                Some(next) => self.timers.schedule(TimeDomain::EventTime, next, key),
                None => {
                    self.state.remove(&key);
                }
            }
        }
        out.watermark(watermark);
    }

    fn snapshot(&mut self) -> Option<Box<dyn StateSnapshot>> {
        self.state
            .boxed_snapshot_with_watermark(self.watermark.max(self.floor))
    }

    fn restore(&mut self, state: &RestoredState<'_>) -> Result<(), StateError> {
        let timers = &mut self.timers;
        let floor = self.state.restore_with_watermark(state, |key, buffers| {
            if let Some(next) = buffers.next_cleanup {
                timers.schedule(TimeDomain::EventTime, next, key.clone());
            }
        })?;
        self.floor = self.floor.max(floor);
        Ok(())
    }
}

/// A pending interval join: see [`IntervalJoinExt::interval_join`].
#[derive(Debug)]
#[must_use = "a join does nothing until its kind is chosen"]
pub struct IntervalJoin<B, B2, TL, TR> {
    left: KeyedStream<B>,
    right: KeyedStream<B2>,
    interval: Interval,
    left_time: TL,
    right_time: TR,
}

impl<K, L, R, B, B2, TL, TR> IntervalJoin<B, B2, TL, TR>
where
    B: FlowBuilder<Out = (K, L)>,
    B2: FlowBuilder<Out = (K, R)>,
    K: StateKey,
    L: StateValue,
    R: StateValue,
    TL: Fn(&L) -> EventTime + Clone + Send + Sync + 'static,
    TR: Fn(&R) -> EventTime + Clone + Send + Sync + 'static,
{
    #[allow(clippy::type_complexity)]
    fn build<J: JoinKind<R>>(
        self,
    ) -> (
        Stream<impl FlowBuilder<Out = Joined<K, L, J::Right>>>,
        Stream<BranchBuilder<(K, JoinSide<L, R>)>>,
    )
    where
        J::Right: Send + 'static,
    {
        // Both inputs are partitioned by the same key, so a key's records from either side
        // are on the same worker: the union needs no further exchange.
        let left = self
            .left
            .into_stream()
            .map(|(k, l): (K, L)| (k, JoinSide::<L, R>::Left(l)));
        let right = self
            .right
            .into_stream()
            .map(|(k, r): (K, R)| (k, JoinSide::<L, R>::Right(r)));
        let op = IntervalJoinOperator::<K, L, R, TL, TR, J>::new(
            self.interval,
            self.left_time,
            self.right_time,
        );
        left.union(right).then("interval_join", op).split(
            "interval_join",
            |o: JoinOutput<K, L, R, J::Right>| match o {
                JoinOutput::Pair(p) => Branch::First(p),
                JoinOutput::Late(k, side) => Branch::Second((k, side)),
            },
        )
    }

    /// Emits every matching (left, right) pair.
    ///
    /// Returns two streams: the pairs, which go on in the same fused chain, and the records
    /// of either input that came too late to be joined, a side output that must go to a sink
    /// (as a window's late stream).
    #[allow(clippy::type_complexity)]
    pub fn inner(
        self,
    ) -> (
        Stream<impl FlowBuilder<Out = Joined<K, L, R>>>,
        Stream<BranchBuilder<(K, JoinSide<L, R>)>>,
    ) {
        self.build::<Inner>()
    }

    /// Emits every matching pair, and each left record that matched nothing with `None`
    /// once the watermark passes its interval.
    #[allow(clippy::type_complexity)]
    pub fn left_outer(
        self,
    ) -> (
        Stream<impl FlowBuilder<Out = Joined<K, L, Option<R>>>>,
        Stream<BranchBuilder<(K, JoinSide<L, R>)>>,
    ) {
        self.build::<LeftOuter>()
    }
}

/// Adds [`interval_join`](IntervalJoinExt::interval_join) to keyed streams.
pub trait IntervalJoinExt<B: FlowBuilder> {
    /// Joins this keyed stream (left) with `right` on equal keys, pairing a left record at
    /// event time `t` with the right records whose event times are in `interval` around it
    /// (Flink's interval join, Spark's stream-stream join with a time-range condition). Both
    /// inputs need watermarks upstream; the join's is their minimum.
    ///
    /// ```
    /// use std::time::Duration;
    /// use rill_connectors::{CollectSink, MemorySource};
    /// use rill_engine::{Config, Job};
    /// use rill_operators::{Interval, IntervalJoinExt, WatermarkStrategy, WithWatermarkExt};
    ///
    /// let job = Job::new("attribution");
    /// let wm = WatermarkStrategy::bounded_out_of_orderness(Duration::from_secs(10));
    /// // (ad, event time in ms)
    /// let impressions = job
    ///     .source(MemorySource::new(vec![(1u32, 1_000i64), (2, 2_000)]).named("impressions"))
    ///     .with_watermark(|i: &(u32, i64)| i.1, wm)
    ///     .key_by(|i: &(u32, i64)| i.0);
    /// let clicks = job
    ///     .source(MemorySource::new(vec![(1u32, 61_000i64), (2, 999_000)]).named("clicks"))
    ///     .with_watermark(|c: &(u32, i64)| c.1, wm)
    ///     .key_by(|c: &(u32, i64)| c.0);
    /// let within = Interval::within(Duration::from_secs(300));
    /// let (pairs, late) = impressions
    ///     .interval_join(clicks, within, |i: &(u32, i64)| i.1, |c: &(u32, i64)| c.1)
    ///     .inner();
    /// let (out, too_late) = (CollectSink::default(), CollectSink::default());
    /// pairs.sink(out.clone());
    /// late.sink(too_late.clone());
    /// job.run(Config::default().with_workers(2))?.await_termination()?;
    /// let got: Vec<_> = out.take().into_iter().map(|j| (j.key, j.left.1, j.right.1)).collect();
    /// assert_eq!(got, [(1, 1_000, 61_000)]); // ad 2's click came too long after
    /// # Ok::<(), rill_engine::JobError>(())
    /// ```
    fn interval_join<B2, TL, TR>(
        self,
        right: KeyedStream<B2>,
        interval: Interval,
        left_time: TL,
        right_time: TR,
    ) -> IntervalJoin<B, B2, TL, TR>
    where
        B2: FlowBuilder;
}

impl<B: FlowBuilder> IntervalJoinExt<B> for KeyedStream<B> {
    fn interval_join<B2, TL, TR>(
        self,
        right: KeyedStream<B2>,
        interval: Interval,
        left_time: TL,
        right_time: TR,
    ) -> IntervalJoin<B, B2, TL, TR>
    where
        B2: FlowBuilder,
    {
        IntervalJoin {
            left: self,
            right,
            interval,
            left_time,
            right_time,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_engine::test_support::CountEmitted;

    #[test]
    fn state_stays_bounded_on_a_long_run() {
        type Op = IntervalJoinOperator<u32, i64, i64, fn(&i64) -> i64, fn(&i64) -> i64, LeftOuter>;
        let time: fn(&i64) -> i64 = |t| *t;
        let mut op: Op =
            IntervalJoinOperator::new(Interval::within(Duration::from_secs(5)), time, time);
        let mut out = CountEmitted::default();
        let mut most = 0;
        // 200,000 records over 100 keys, 10 ms apart; the watermark trails by 1 s.
        for i in 0..200_000i64 {
            let (key, ts) = ((i % 100) as u32, i * 10);
            let side = if i % 3 == 0 {
                JoinSide::Right(ts)
            } else {
                JoinSide::Left(ts)
            };
            op.on_record((key, side), &mut out);
            if i % 100 == 0 {
                // Just before the watermark moves: the most the state holds.
                let buffered: usize = op
                    .state
                    .iter()
                    .map(|(_, b)| b.left.len() + b.right.len())
                    .sum();
                most = most.max(buffered);
                op.on_watermark(ts - 1_000, &mut out);
            }
        }
        eprintln!(
            "at most {most} records buffered, {} timers at the end",
            op.timers.len()
        );
        // Records stay buffered for the interval plus the watermark delay: 6 s of 100 per s.
        assert!(most <= 650, "{most} records buffered at most");
        assert!(op.timers.len() <= 650, "{} timers", op.timers.len());
        assert!(out.0 > 100_000, "it joined: {} outputs", out.0);
    }
}
