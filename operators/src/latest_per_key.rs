//! `latest_per_key`: each key's final value, when a bounded input ends.

use rill_engine::state::{
    KeyedState, RestoredState, StateError, StateKey, StateSnapshot, StateValue,
};
use rill_engine::{Emit, FlowBuilder, Operator, Stream, ThenBuilder};

/// Keeps the latest value of every key and emits each `(key, value)` once, when the input
/// ends: how a bounded run turns a stream of updates into its final table (Spark's "complete"
/// output, which is only defined where the input is bounded). Nothing is emitted before the
/// end, so on an unbounded stream it emits only when the job is stopped.
///
/// It keeps state per worker: use it after a keyed operator (whose output for a key is all on
/// one worker), or each worker emits its own latest value of the key.
#[derive(Debug, Clone)]
pub struct LatestPerKey<K, V> {
    latest: KeyedState<K, V>,
}

impl<K, V> Default for LatestPerKey<K, V> {
    fn default() -> Self {
        Self {
            latest: KeyedState::default(),
        }
    }
}

impl<K: StateKey, V: StateValue> Operator<(K, V)> for LatestPerKey<K, V> {
    type Out = (K, V);

    #[inline]
    fn on_record<E: Emit<(K, V)>>(&mut self, (key, value): (K, V), _out: &mut E) {
        self.latest.insert(key, value);
    }

    fn on_end<E: Emit<(K, V)>>(&mut self, out: &mut E) {
        let latest = std::mem::take(&mut self.latest);
        for (k, v) in latest.iter() {
            out.emit((k.clone(), v.clone()));
        }
    }

    fn snapshot(&mut self) -> Option<Box<dyn StateSnapshot>> {
        self.latest.boxed_snapshot()
    }

    fn restore(&mut self, state: &RestoredState<'_>) -> Result<(), StateError> {
        self.latest.restore(state)
    }
}

/// Adds [`latest_per_key`](LatestPerKeyExt::latest_per_key) to streams of pairs.
pub trait LatestPerKeyExt<B: FlowBuilder> {
    /// Emits each key's last value once, when the input ends.
    ///
    /// ```
    /// use rill_connectors::{CollectSink, MemorySource};
    /// use rill_engine::{Config, Job};
    /// use rill_operators::{CountExt, LatestPerKeyExt};
    ///
    /// let job = Job::new("final-counts");
    /// let out = CollectSink::default();
    /// job.source(MemorySource::new(vec!["a", "b", "a"]))
    ///     .key_by(|w: &&str| w.to_string())
    ///     .count()
    ///     .latest_per_key()
    ///     .sink(out.clone());
    /// job.run(Config::default().with_workers(2))?.await_termination()?;
    /// let mut counts = out.take();
    /// counts.sort();
    /// assert_eq!(counts, [("a".to_string(), 2), ("b".to_string(), 1)]);
    /// # Ok::<(), rill_engine::JobError>(())
    /// ```
    fn latest_per_key<K, V>(self) -> Stream<ThenBuilder<B, LatestPerKey<K, V>>>
    where
        B: FlowBuilder<Out = (K, V)>,
        K: StateKey,
        V: StateValue;
}

impl<B: FlowBuilder> LatestPerKeyExt<B> for Stream<B> {
    fn latest_per_key<K, V>(self) -> Stream<ThenBuilder<B, LatestPerKey<K, V>>>
    where
        B: FlowBuilder<Out = (K, V)>,
        K: StateKey,
        V: StateValue,
    {
        self.then("latest_per_key", LatestPerKey::default())
    }
}
