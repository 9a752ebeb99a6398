//! `count`: the running number of records per key.

use rill_engine::state::{KeyedState, RestoredState, StateError, StateKey, StateSnapshot};
use rill_engine::{Emit, FlowBuilder, KeyedStream, Operator, Stream, ThenBuilder};

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

impl<K: StateKey, V> Operator<(K, V)> for Count<K> {
    type Out = (K, u64);

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
        self.then("count", Count::default())
    }
}
