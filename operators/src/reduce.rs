//! `reduce`: a running reduction per key.

use rill_engine::state::{
    KeyedState, RestoredState, StateError, StateKey, StateSnapshot, StateValue,
};
use rill_engine::{Emit, FlowBuilder, KeyedStream, Operator, Stream, ThenBuilder};

/// The keyed `reduce` operator: keeps one value per key, combining each new value into it with
/// `f(&current, new)`, and emits `(key, reduced)` for every record. The first value of a key is
/// emitted as it is.
#[derive(Debug, Clone)]
pub struct Reduce<K, V, F> {
    f: F,
    state: KeyedState<K, V>,
}

impl<K, V, F> Reduce<K, V, F> {
    /// A reduction with `f`.
    pub fn new(f: F) -> Self {
        Self {
            f,
            state: KeyedState::default(),
        }
    }
}

impl<K, V, F> Operator<(K, V)> for Reduce<K, V, F>
where
    K: StateKey,
    V: StateValue,
    F: Fn(&V, V) -> V,
{
    type Out = (K, V);

    #[inline]
    fn on_record<E: Emit<(K, V)>>(&mut self, (key, value): (K, V), out: &mut E) {
        let reduced = match self.state.get_mut(&key) {
            Some(current) => {
                *current = (self.f)(current, value);
                current.clone()
            }
            None => {
                self.state.insert(key.clone(), value.clone());
                value
            }
        };
        out.emit((key, reduced));
    }

    fn snapshot(&mut self) -> Option<Box<dyn StateSnapshot>> {
        self.state.boxed_snapshot()
    }

    fn restore(&mut self, state: &RestoredState<'_>) -> Result<(), StateError> {
        self.state.restore(state)
    }
}

/// Adds [`reduce`](ReduceExt::reduce) to keyed streams.
pub trait ReduceExt<B: FlowBuilder> {
    /// Reduces the values of each key with `f`, emitting the running result per record.
    ///
    /// ```
    /// use rill_connectors::{CollectSink, MemorySource};
    /// use rill_engine::{Config, Job};
    /// use rill_operators::{MapExt, ReduceExt};
    ///
    /// let job = Job::new("max");
    /// let out = CollectSink::default();
    /// // Keys and values of keyed state are checkpointed, so they are owned (`String`, not
    /// // `&str`) and serde-encodable.
    /// job.source(MemorySource::new(vec![("x", 3), ("x", 1), ("x", 7)]))
    ///     .map(|(k, v): (&str, i32)| (k.to_string(), v))
    ///     .key_by(|(k, _): &(String, i32)| k.clone())
    ///     .reduce(|a: &(String, i32), b: (String, i32)| if b.1 > a.1 { b } else { a.clone() })
    ///     .sink(out.clone());
    /// job.run(Config::default().with_workers(1))?.await_termination()?;
    /// let maxima: Vec<i32> = out.take().into_iter().map(|(_, (_, v))| v).collect();
    /// assert_eq!(maxima, [3, 3, 7]);
    /// # Ok::<(), rill_engine::JobError>(())
    /// ```
    fn reduce<K, V, F>(self, f: F) -> Stream<ThenBuilder<B, Reduce<K, V, F>>>
    where
        B: FlowBuilder<Out = (K, V)>,
        K: StateKey,
        V: StateValue,
        F: Fn(&V, V) -> V + Clone + Send + Sync + 'static;
}

impl<B: FlowBuilder> ReduceExt<B> for KeyedStream<B> {
    fn reduce<K, V, F>(self, f: F) -> Stream<ThenBuilder<B, Reduce<K, V, F>>>
    where
        B: FlowBuilder<Out = (K, V)>,
        K: StateKey,
        V: StateValue,
        F: Fn(&V, V) -> V + Clone + Send + Sync + 'static,
    {
        self.then("reduce", Reduce::new(f))
    }
}
