//! `aggregate`: a running accumulator per key.

use std::time::Instant;

use rill_engine::state::{
    KeyedState, RestoredState, StateError, StateKey, StateSnapshot, StateTtl, StateValue,
    TimeDomain,
};
use rill_engine::{
    Emit, Epoch, EventTime, FlowBuilder, KeyedStream, Operator, Stream, ThenBuilder,
};

/// The keyed `aggregate` operator: keeps an accumulator per key, created by `init()` for a
/// new key and updated by `update(&mut acc, value)`; emits `(key, acc)` for every record.
#[derive(Debug, Clone)]
pub struct Aggregate<K, A, I, F> {
    init: I,
    update: F,
    state: KeyedState<K, A>,
}

impl<K, A, I, F> Aggregate<K, A, I, F> {
    /// An aggregation with accumulator constructor `init` and update function `update`.
    pub fn new(init: I, update: F) -> Self {
        Self {
            init,
            update,
            state: KeyedState::default(),
        }
    }

    /// Its keys expire after `ttl` untouched (see [`StateTtl`]).
    pub fn with_ttl(mut self, ttl: Option<StateTtl>) -> Self {
        self.state = KeyedState::default().with_ttl(ttl);
        self
    }
}

impl<K, V, A, I, F> Operator<(K, V)> for Aggregate<K, A, I, F>
where
    K: StateKey,
    A: StateValue,
    I: Fn() -> A,
    F: Fn(&mut A, V),
{
    type Out = (K, A);

    // The TTL's clocks: the wall clock per poll (and per batch), the watermark as it rises.
    const USES_CLOCK: bool = true;

    fn uses_clock(&self) -> bool {
        self.state.follows_wall_clock()
    }

    fn on_poll<E: Emit<Self::Out>>(&mut self, _now: Instant, _out: &mut E) -> Option<Instant> {
        self.state.tick()
    }

    fn on_watermark<E: Emit<Self::Out>>(&mut self, watermark: EventTime, out: &mut E) {
        self.state.advance_clock(TimeDomain::EventTime, watermark);
        out.watermark(watermark);
    }

    fn on_barrier<E: Emit<Self::Out>>(&mut self, _epoch: Epoch, _out: &mut E) {
        self.state.tick();
    }

    #[inline]
    fn on_record<E: Emit<(K, A)>>(&mut self, (key, value): (K, V), out: &mut E) {
        let acc = match self.state.get_mut(&key) {
            Some(acc) => acc,
            None => self.state.get_or_insert_with(key.clone(), &self.init),
        };
        (self.update)(acc, value);
        let snapshot = acc.clone();
        out.emit((key, snapshot));
    }

    fn snapshot(&mut self) -> Option<Box<dyn StateSnapshot>> {
        self.state.boxed_snapshot()
    }

    fn restore(&mut self, state: &RestoredState<'_>) -> Result<(), StateError> {
        self.state.restore(state)
    }
}

/// Adds [`aggregate`](AggregateExt::aggregate) to keyed streams.
pub trait AggregateExt<B: FlowBuilder> {
    /// Folds the values of each key into an accumulator, emitting it after every record.
    ///
    /// ```
    /// use rill_connectors::{CollectSink, MemorySource};
    /// use rill_engine::{Config, Job};
    /// use rill_operators::AggregateExt;
    ///
    /// // Running (count, sum) per sensor.
    /// let job = Job::new("stats");
    /// let out = CollectSink::default();
    /// job.source(MemorySource::new(vec![("s1", 2.0), ("s1", 4.0)]))
    ///     .key_by(|(s, _): &(&str, f64)| s.to_string())
    ///     .aggregate(|| (0u32, 0.0f64), |acc: &mut (u32, f64), (_, v): (&str, f64)| { acc.0 += 1; acc.1 += v; })
    ///     .sink(out.clone());
    /// job.run(Config::default().with_workers(1))?.await_termination()?;
    /// assert_eq!(out.take(), [("s1".to_string(), (1, 2.0)), ("s1".to_string(), (2, 6.0))]);
    /// # Ok::<(), rill_engine::JobError>(())
    /// ```
    fn aggregate<K, V, A, I, F>(
        self,
        init: I,
        update: F,
    ) -> Stream<ThenBuilder<B, Aggregate<K, A, I, F>>>
    where
        B: FlowBuilder<Out = (K, V)>,
        K: StateKey,
        A: StateValue,
        I: Fn() -> A + Clone + Send + Sync + 'static,
        F: Fn(&mut A, V) + Clone + Send + Sync + 'static;
}

impl<B: FlowBuilder> AggregateExt<B> for KeyedStream<B> {
    fn aggregate<K, V, A, I, F>(
        self,
        init: I,
        update: F,
    ) -> Stream<ThenBuilder<B, Aggregate<K, A, I, F>>>
    where
        B: FlowBuilder<Out = (K, V)>,
        K: StateKey,
        A: StateValue,
        I: Fn() -> A + Clone + Send + Sync + 'static,
        F: Fn(&mut A, V) + Clone + Send + Sync + 'static,
    {
        let ttl = self.ttl();
        self.then("aggregate", Aggregate::new(init, update).with_ttl(ttl))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    type Sum = Aggregate<u64, u64, fn() -> u64, fn(&mut u64, u64)>;

    fn sum() -> Sum {
        Aggregate::new(|| 0, |acc: &mut u64, v: u64| *acc += v)
    }

    #[test]
    fn only_a_processing_time_ttl_makes_the_chain_read_the_clock() {
        let uses = |op: &Sum| Operator::<(u64, u64)>::uses_clock(op);
        assert!(!uses(&sum()), "no TTL: nothing to do per poll");
        let event_time = sum().with_ttl(Some(StateTtl::event_time(Duration::from_secs(1))));
        assert!(!uses(&event_time), "event-time expiry follows watermarks");
        let processing = sum().with_ttl(Some(StateTtl::processing_time(Duration::from_secs(1))));
        assert!(uses(&processing));
    }
}
