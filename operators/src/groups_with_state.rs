//! `flat_map_groups_with_state` and `map_groups_with_state`: a user function per key, with
//! state of any serde type and processing-time or event-time timeouts.

use std::collections::HashMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use rill_engine::state::{
    BuildKeyHasher, KeyedState, RestoredState, StateError, StateKey, StateSnapshot, StateValue,
    TimeDomain, TimerQueue,
};
use rill_engine::{
    Emit, Epoch, EventTime, FlowBuilder, KeyedStream, Operator, Stream, ThenBuilder,
};

use crate::group_state::{GroupState, GroupTimeout, Values};

/// Processing-time timeouts fired per poll at most; the rest wait for the next poll (soon:
/// the operator asks for it), so a wave of timeouts does not hold the worker for long.
const TIMEOUTS_PER_POLL: usize = 1024;

/// One key's state, its timeout, and the timeout the worker's timer queue holds for it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Group<S> {
    state: Option<S>,
    timeout: Option<GroupTimeout>,
    /// The one queue entry that counts for this key (older ones are skipped when they come
    /// up): moving a timeout later leaves the queue alone, and the entry, when due, queues
    /// the key again at its new time; so a timeout set on every record costs no queue work.
    queued: Option<GroupTimeout>,
}

impl<S> Default for Group<S> {
    fn default() -> Self {
        Self {
            state: None,
            timeout: None,
            queued: None,
        }
    }
}

fn domain_of(t: GroupTimeout) -> TimeDomain {
    match t {
        GroupTimeout::ProcessingTime(_) => TimeDomain::ProcessingTime,
        GroupTimeout::EventTime(_) => TimeDomain::EventTime,
    }
}

/// Queues `group`'s timeout if the queue's entry for it would come too late (or is none).
fn settle<K: Clone + PartialEq, S>(group: &mut Group<S>, key: &K, timers: &mut TimerQueue<K>) {
    let Some(t) = group.timeout else {
        return;
    };
    let earlier = match group.queued {
        None => true,
        Some(q) => domain_of(q) != domain_of(t) || t.at() < q.at(),
    };
    if earlier {
        timers.schedule(domain_of(t), t.at(), key.clone());
        group.queued = Some(t);
    }
}

/// The state-function operator (built by
/// [`flat_map_groups_with_state`](GroupsWithStateExt::flat_map_groups_with_state)): per key,
/// `f(key, values, state)` and the outputs it returns.
///
/// In continuous mode `f` runs for every record as it arrives, with that one value; in
/// micro-batch mode once per key per batch, with all of the batch's values for the key in
/// arrival order, at the batch's end (Spark's contract); the watermark is held back until
/// the batch's outputs are out. Timeouts fire with no values: event-time ones when the
/// watermark reaches them (in micro-batch mode: at the batch's end, after its data),
/// processing-time ones when the job's clock does (per poll, or at the batch's end).
///
/// State, timeouts and the watermark are checkpointed per key group and restore at another
/// worker count; a checkpoint of another state type is refused.
#[derive(Debug)]
pub struct GroupsWithState<K, V, S, F> {
    f: F,
    groups: KeyedState<K, Group<S>>,
    timers: TimerQueue<K>,
    watermark: EventTime,
    now: i64,
    micro_batch: bool,
    /// Micro-batch mode: the batch's values per key, keys in order of first arrival.
    batch: Vec<(K, Vec<V>)>,
    batch_index: HashMap<K, usize, BuildKeyHasher>,
    /// Micro-batch mode: the watermark that arrived during the batch, passed on at its end.
    held_watermark: Option<EventTime>,
}

impl<K: Clone, V, S: Clone, F: Clone> Clone for GroupsWithState<K, V, S, F> {
    fn clone(&self) -> Self {
        // Clones are made from the prototype, before any record: the batch is empty.
        Self {
            f: self.f.clone(),
            groups: self.groups.clone(),
            timers: self.timers.clone(),
            watermark: self.watermark,
            now: self.now,
            micro_batch: self.micro_batch,
            batch: Vec::new(),
            batch_index: HashMap::default(),
            held_watermark: self.held_watermark,
        }
    }
}

impl<K, V, S, F> GroupsWithState<K, V, S, F> {
    /// A state function `f` whose keys' state expires after `ttl` untouched.
    pub fn new(f: F, ttl: Option<rill_engine::state::StateTtl>) -> Self {
        Self {
            f,
            groups: KeyedState::default().with_ttl(ttl),
            timers: TimerQueue::default(),
            watermark: EventTime::MIN,
            now: i64::MIN,
            micro_batch: false,
            batch: Vec::new(),
            batch_index: HashMap::default(),
            held_watermark: None,
        }
    }

    /// Keys with state or a timeout on this worker (for tests and metrics).
    pub fn keys(&self) -> usize
    where
        K: StateKey,
        S: Clone,
    {
        self.groups.len()
    }
}

impl<K, V, S, F, I> GroupsWithState<K, V, S, F>
where
    K: StateKey,
    S: StateValue,
    F: Fn(&K, Values<'_, V>, &mut GroupState<'_, S>) -> I,
    I: IntoIterator,
{
    /// Calls `f` for `key` with `values` (or, with `timed_out`, none), emits its outputs,
    /// and queues or forgets the key as its new timeout and state say.
    fn call<E: Emit<I::Item>>(
        &mut self,
        key: K,
        values: Values<'_, V>,
        timed_out: bool,
        out: &mut E,
    ) {
        let Self {
            f,
            groups,
            timers,
            watermark,
            now,
            ..
        } = self;
        let group = groups.get_or_insert_cloned(&key, Group::default);
        group.timeout = None;
        let mut handle = GroupState::new(
            &mut group.state,
            &mut group.timeout,
            timed_out,
            *watermark,
            *now,
        );
        for o in f(&key, values, &mut handle) {
            out.emit(o);
        }
        if group.state.is_none() && group.timeout.is_none() {
            groups.remove(&key);
        } else {
            settle(group, &key, timers);
        }
    }

    /// Fires `domain`'s timeouts due at `now`, at most `most` of them, and none that a call
    /// of this round set (a function that always sets a due timeout fires once per watermark
    /// or poll, not for ever); true if more are due.
    fn fire<E: Emit<I::Item>>(
        &mut self,
        domain: TimeDomain,
        now: i64,
        most: usize,
        out: &mut E,
    ) -> bool {
        for _ in 0..most.min(self.timers.len()) {
            let Some((at, key)) = self.timers.pop_due(domain, now) else {
                return false;
            };
            let Some(group) = self.groups.get_mut(&key) else {
                continue;
            };
            let popped = match domain {
                TimeDomain::EventTime => GroupTimeout::EventTime(at),
                TimeDomain::ProcessingTime => GroupTimeout::ProcessingTime(at),
            };
            if group.queued != Some(popped) {
                continue; // superseded by an earlier entry
            }
            group.queued = None;
            match group.timeout {
                Some(t) if domain_of(t) == domain && t.at() <= now => {
                    self.call(key, Values::none(), true, out);
                }
                Some(_) => settle(group, &key, &mut self.timers),
                None => {}
            }
        }
        self.timers.next(domain).is_some_and(|t| t <= now)
    }

    /// Micro-batch mode: the batch's calls (one per key), then its timeouts.
    fn end_batch<E: Emit<I::Item>>(&mut self, out: &mut E) {
        let mut batch = std::mem::take(&mut self.batch);
        self.batch_index.clear();
        for (key, mut values) in batch.drain(..) {
            self.call(key, Values::drain(&mut values), false, out);
        }
        self.batch = batch;
        self.now = self.now.max(rill_engine::time::wall_millis());
        self.groups.tick_at(self.now);
        self.fire(TimeDomain::ProcessingTime, self.now, usize::MAX, out);
        if let Some(watermark) = self.held_watermark.take() {
            self.advance_watermark(watermark, out);
        }
    }

    fn advance_watermark<E: Emit<I::Item>>(&mut self, watermark: EventTime, out: &mut E) {
        self.watermark = self.watermark.max(watermark);
        self.groups.advance_clock(TimeDomain::EventTime, watermark);
        self.fire(TimeDomain::EventTime, watermark, usize::MAX, out);
        out.watermark(watermark);
    }
}

impl<K, V, S, F, I> Operator<(K, V)> for GroupsWithState<K, V, S, F>
where
    K: StateKey,
    S: StateValue,
    F: Fn(&K, Values<'_, V>, &mut GroupState<'_, S>) -> I,
    I: IntoIterator,
{
    type Out = I::Item;

    const USES_CLOCK: bool = true;

    fn on_open(&mut self, micro_batch: bool) {
        self.micro_batch = micro_batch;
        self.now = rill_engine::time::wall_millis();
    }

    #[inline]
    fn on_record<E: Emit<Self::Out>>(&mut self, (key, value): (K, V), out: &mut E) {
        if !self.micro_batch {
            self.call(key, Values::one(value), false, out);
            return;
        }
        match self.batch_index.get(&key) {
            Some(&i) => self.batch[i].1.push(value),
            None => {
                self.batch_index.insert(key.clone(), self.batch.len());
                self.batch.push((key, vec![value]));
            }
        }
    }

    fn on_poll<E: Emit<Self::Out>>(&mut self, _now: Instant, out: &mut E) -> Option<Instant> {
        self.now = self.now.max(rill_engine::time::wall_millis());
        let ttl = self.groups.tick_at(self.now);
        let more = self.fire(TimeDomain::ProcessingTime, self.now, TIMEOUTS_PER_POLL, out);
        let next = if more {
            Some(Instant::now())
        } else {
            self.timers
                .next(TimeDomain::ProcessingTime)
                .map(rill_engine::time::deadline_at)
        };
        match (next, ttl) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn on_watermark<E: Emit<Self::Out>>(&mut self, watermark: EventTime, out: &mut E) {
        if self.micro_batch {
            self.held_watermark = Some(self.held_watermark.map_or(watermark, |w| w.max(watermark)));
        } else {
            self.advance_watermark(watermark, out);
        }
    }

    fn on_barrier<E: Emit<Self::Out>>(&mut self, _epoch: Epoch, out: &mut E) {
        if self.micro_batch {
            self.end_batch(out);
        } else {
            self.groups.tick();
        }
    }

    fn on_end<E: Emit<Self::Out>>(&mut self, out: &mut E) {
        if self.micro_batch {
            self.end_batch(out);
        }
    }

    fn snapshot(&mut self) -> Option<Box<dyn StateSnapshot>> {
        self.groups.boxed_snapshot_with_watermark(self.watermark)
    }

    fn restore(&mut self, state: &RestoredState<'_>) -> Result<(), StateError> {
        let timers = &mut self.timers;
        let watermark = self.groups.restore_with_watermark(state, |key, group| {
            if let Some(q) = group.queued {
                timers.schedule(domain_of(q), q.at(), key.clone());
            }
        })?;
        self.watermark = self.watermark.max(watermark);
        Ok(())
    }
}

/// Adds the state functions to keyed streams.
pub trait GroupsWithStateExt<B: FlowBuilder> {
    /// Calls `f(key, values, state)` per key and emits every output it returns (Spark's
    /// `flatMapGroupsWithState`, Flink's `KeyedProcessFunction`): see [`GroupsWithState`]
    /// for when it is called, [`GroupState`] for the state handle and timeouts. A TTL set with
    /// [`KeyedStream::state_ttl`] removes keys untouched for that long.
    ///
    /// ```
    /// use rill_connectors::{CollectSink, MemorySource};
    /// use rill_engine::{Config, Job};
    /// use rill_operators::{GroupState, GroupsWithStateExt, Values};
    ///
    /// // Per user, a running total; a total reaching 10 is emitted and starts again.
    /// let job = Job::new("tens");
    /// let out = CollectSink::default();
    /// job.source(MemorySource::new(vec![("a", 4u32), ("b", 9), ("a", 7), ("b", 1)]))
    ///     .key_by(|(user, _): &(&str, u32)| user.to_string())
    ///     .flat_map_groups_with_state(
    ///         |user: &String, values: Values<'_, (&str, u32)>, total: &mut GroupState<'_, u32>| {
    ///             let mut done = Vec::new();
    ///             for (_, n) in values {
    ///                 let sum = total.get().copied().unwrap_or(0) + n;
    ///                 if sum >= 10 {
    ///                     done.push((user.clone(), sum));
    ///                     total.remove();
    ///                 } else {
    ///                     total.update(sum);
    ///                 }
    ///             }
    ///             done
    ///         },
    ///     )
    ///     .sink(out.clone());
    /// job.run(Config::default().with_workers(1))?.await_termination()?;
    /// let mut got = out.take();
    /// got.sort();
    /// assert_eq!(got, [("a".to_string(), 11), ("b".to_string(), 10)]);
    /// # Ok::<(), rill_engine::JobError>(())
    /// ```
    fn flat_map_groups_with_state<K, V, S, F, I>(
        self,
        f: F,
    ) -> Stream<ThenBuilder<B, GroupsWithState<K, V, S, F>>>
    where
        B: FlowBuilder<Out = (K, V)>,
        K: StateKey,
        V: Send + Sync + 'static,
        S: StateValue,
        F: Fn(&K, Values<'_, V>, &mut GroupState<'_, S>) -> I + Clone + Send + Sync + 'static,
        I: IntoIterator,
        I::Item: Send + 'static;

    /// Like [`flat_map_groups_with_state`](Self::flat_map_groups_with_state) with exactly
    /// one output per call (Spark's `mapGroupsWithState`).
    ///
    /// ```
    /// use rill_connectors::{CollectSink, MemorySource};
    /// use rill_engine::{Config, Job};
    /// use rill_operators::{GroupState, GroupsWithStateExt, Values};
    ///
    /// let job = Job::new("seen");
    /// let out = CollectSink::default();
    /// job.source(MemorySource::new(vec!["x", "y", "x"]))
    ///     .key_by(|w: &&str| w.to_string())
    ///     .map_groups_with_state(|w: &String, values: Values<'_, &str>, seen: &mut GroupState<'_, u64>| {
    ///         let n = seen.get().copied().unwrap_or(0) + values.len() as u64;
    ///         seen.update(n);
    ///         format!("{w}:{n}")
    ///     })
    ///     .sink(out.clone());
    /// job.run(Config::default().with_workers(1))?.await_termination()?;
    /// assert_eq!(out.take(), ["x:1", "y:1", "x:2"]);
    /// # Ok::<(), rill_engine::JobError>(())
    /// ```
    fn map_groups_with_state<K, V, S, F, O>(self, f: F) -> Stream<impl FlowBuilder<Out = O>>
    where
        B: FlowBuilder<Out = (K, V)>,
        K: StateKey,
        V: Send + Sync + 'static,
        S: StateValue,
        F: Fn(&K, Values<'_, V>, &mut GroupState<'_, S>) -> O + Clone + Send + Sync + 'static,
        O: Send + 'static;
}

impl<B: FlowBuilder> GroupsWithStateExt<B> for KeyedStream<B> {
    fn flat_map_groups_with_state<K, V, S, F, I>(
        self,
        f: F,
    ) -> Stream<ThenBuilder<B, GroupsWithState<K, V, S, F>>>
    where
        B: FlowBuilder<Out = (K, V)>,
        K: StateKey,
        V: Send + Sync + 'static,
        S: StateValue,
        F: Fn(&K, Values<'_, V>, &mut GroupState<'_, S>) -> I + Clone + Send + Sync + 'static,
        I: IntoIterator,
        I::Item: Send + 'static,
    {
        let ttl = self.ttl();
        self.then("flat_map_groups_with_state", GroupsWithState::new(f, ttl))
    }

    fn map_groups_with_state<K, V, S, F, O>(self, f: F) -> Stream<impl FlowBuilder<Out = O>>
    where
        B: FlowBuilder<Out = (K, V)>,
        K: StateKey,
        V: Send + Sync + 'static,
        S: StateValue,
        F: Fn(&K, Values<'_, V>, &mut GroupState<'_, S>) -> O + Clone + Send + Sync + 'static,
        O: Send + 'static,
    {
        let ttl = self.ttl();
        let once =
            move |k: &K, v: Values<'_, V>, s: &mut GroupState<'_, S>| std::iter::once(f(k, v, s));
        self.then("map_groups_with_state", GroupsWithState::new(once, ttl))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_engine::test_support::Collected;

    /// Sessions of a 500 ms gap: counts events, emits `(key, count)` on the timeout.
    #[allow(clippy::type_complexity)]
    fn sessions(
        micro_batch: bool,
    ) -> GroupsWithState<
        u32,
        i64,
        u32,
        impl Fn(&u32, Values<'_, i64>, &mut GroupState<'_, u32>) -> Option<(u32, u32)> + Clone,
    > {
        let f = |key: &u32, values: Values<'_, i64>, n: &mut GroupState<'_, u32>| {
            if n.has_timed_out() {
                return n.remove().map(|n| (*key, n));
            }
            let mut last = i64::MIN;
            for ts in values {
                n.update(n.get().copied().unwrap_or(0) + 1);
                last = last.max(ts);
            }
            n.set_timeout_timestamp(last + 500);
            None
        };
        let mut op = GroupsWithState::new(f, None);
        op.on_open(micro_batch);
        op
    }

    #[test]
    fn an_event_time_timeout_fires_exactly_when_the_watermark_reaches_it() {
        for micro_batch in [false, true] {
            let mut op = sessions(micro_batch);
            let mut out = Collected::default();
            op.on_record((1, 1_000), &mut out);
            op.on_record((1, 1_200), &mut out); // the session now times out at 1,700
            op.on_record((2, 1_100), &mut out);
            op.on_watermark(1_599, &mut out);
            if micro_batch {
                assert!(out.0.is_empty(), "held until the batch ends");
                op.on_barrier(1, &mut out);
            }
            assert_eq!(out.0, [Err(1_599)], "micro-batch: {micro_batch}");
            out.0.clear();
            op.on_watermark(1_600, &mut out);
            op.on_barrier(2, &mut out);
            assert_eq!(
                out.0,
                [Ok((2, 1)), Err(1_600)],
                "micro-batch: {micro_batch}"
            );
            out.0.clear();
            op.on_watermark(1_699, &mut out);
            op.on_barrier(3, &mut out);
            assert_eq!(out.take_records(), []);
            op.on_watermark(1_700, &mut out);
            op.on_barrier(4, &mut out);
            assert_eq!(out.take_records(), [(1, 2)], "micro-batch: {micro_batch}");
            assert_eq!(op.keys(), 0, "timed-out sessions leave nothing behind");
            assert!(op.timers.is_empty());
        }
    }

    #[test]
    fn a_timeout_moved_later_on_every_record_costs_no_queue_entries() {
        let mut op = sessions(false);
        let mut out = Collected::default();
        for ts in 0..10_000 {
            op.on_record((1, ts), &mut out);
        }
        assert_eq!(op.timers.len(), 1, "one entry, re-queued when it comes up");
        op.on_watermark(5_000, &mut out);
        assert_eq!(op.timers.len(), 1);
        assert_eq!(out.take_records(), []);
        op.on_watermark(10_499, &mut out);
        assert_eq!(out.take_records(), [(1, 10_000)]);
    }

    #[test]
    fn a_function_that_always_sets_a_due_timeout_fires_once_per_watermark() {
        let f = |_: &u8, _: Values<'_, ()>, s: &mut GroupState<'_, u8>| {
            s.update(0);
            s.set_timeout_timestamp(s.current_watermark());
            1u8
        };
        let mut op = GroupsWithState::new(
            move |k: &u8, v: Values<'_, ()>, s: &mut GroupState<'_, u8>| {
                std::iter::once(f(k, v, s))
            },
            None,
        );
        op.on_open(false);
        let mut out = Collected::default();
        op.on_record((1, ()), &mut out);
        op.on_watermark(10, &mut out);
        op.on_watermark(20, &mut out);
        assert_eq!(out.take_records().len(), 3);
    }
}
