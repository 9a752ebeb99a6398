//! `count`: the running number of records per key.

use std::time::Instant;

use rill_engine::state::{
    KeyedState, RestoredState, StateError, StateKey, StateSnapshot, StateTtl, TimeDomain,
};
use rill_engine::{
    Emit, Epoch, EventTime, FlowBuilder, KeyedStream, Operator, Stream, ThenBuilder,
};

/// The keyed `count` operator: for every `(key, value)` record, emits `(key, n)` where `n` is
/// the number of records of that key seen so far (Spark's "update" output mode).
///
/// The counts are checkpointed per key group, so a job restores them at any parallelism.
#[derive(Debug, Clone)]
pub struct Count<K> {
    counts: KeyedState<K, u64>,
}

impl<K> Default for Count<K> {
    fn default() -> Self {
        Self {
            counts: KeyedState::default(),
        }
    }
}

impl<K> Count<K> {
    /// A count whose keys expire after `ttl` untouched (see [`StateTtl`]).
    pub fn with_ttl(ttl: Option<StateTtl>) -> Self {
        Self {
            counts: KeyedState::default().with_ttl(ttl),
        }
    }
}

impl<K: StateKey, V> Operator<(K, V)> for Count<K> {
    type Out = (K, u64);

    // The TTL's clocks: the wall clock per poll (and per batch), the watermark as it rises.
    const USES_CLOCK: bool = true;

    fn uses_clock(&self) -> bool {
        self.counts.follows_wall_clock()
    }

    fn on_poll<E: Emit<Self::Out>>(&mut self, _now: Instant, _out: &mut E) -> Option<Instant> {
        self.counts.tick()
    }

    fn on_watermark<E: Emit<Self::Out>>(&mut self, watermark: EventTime, out: &mut E) {
        self.counts.advance_clock(TimeDomain::EventTime, watermark);
        out.watermark(watermark);
    }

    fn on_barrier<E: Emit<Self::Out>>(&mut self, _epoch: Epoch, _out: &mut E) {
        self.counts.tick();
    }

    #[inline]
    fn on_record<E: Emit<(K, u64)>>(&mut self, (key, _): (K, V), out: &mut E) {
        // Look up before inserting so the key is cloned only the first time it is seen.
        let n = match self.counts.get_mut(&key) {
            Some(n) => {
                *n += 1;
                *n
            }
            None => {
                self.counts.insert(key.clone(), 1);
                1
            }
        };
        out.emit((key, n));
    }

    fn snapshot(&mut self) -> Option<Box<dyn StateSnapshot>> {
        self.counts.boxed_snapshot()
    }

    fn restore(&mut self, state: &RestoredState<'_>) -> Result<(), StateError> {
        self.counts.restore(state)
    }
}

/// Adds [`count`](CountExt::count) to keyed streams.
pub trait CountExt<B: FlowBuilder> {
    /// Counts records per key, emitting the updated count for every record.
    ///
    /// ```
    /// use rill_connectors::{CollectSink, MemorySource};
    /// use rill_engine::{Config, Job};
    /// use rill_operators::CountExt;
    ///
    /// let job = Job::new("count");
    /// let out = CollectSink::default();
    /// job.source(MemorySource::new(vec!["a", "b", "a"]))
    ///     .key_by(|w: &&str| w.to_string())
    ///     .count()
    ///     .sink(out.clone());
    /// job.run(Config::default().with_workers(1))?.await_termination()?;
    /// assert_eq!(out.take(), [("a".to_string(), 1), ("b".to_string(), 1), ("a".to_string(), 2)]);
    /// # Ok::<(), rill_engine::JobError>(())
    /// ```
    fn count<K>(self) -> Stream<ThenBuilder<B, Count<K>>>
    where
        Count<K>: Operator<B::Out> + Clone + Send + Sync + 'static;
}

impl<B: FlowBuilder> CountExt<B> for KeyedStream<B> {
    fn count<K>(self) -> Stream<ThenBuilder<B, Count<K>>>
    where
        Count<K>: Operator<B::Out> + Clone + Send + Sync + 'static,
    {
        let ttl = self.ttl();
        self.then("count", Count::with_ttl(ttl))
    }
}
