//! `reduce`: a running reduction per key.

use std::time::Instant;

use rill_engine::state::{
    KeyedState, RestoredState, StateError, StateKey, StateSnapshot, StateTtl, StateValue,
    TimeDomain,
};
use rill_engine::{
    Emit, Epoch, EventTime, FlowBuilder, KeyedStream, Operator, Stream, ThenBuilder,
};

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

    /// Its keys expire after `ttl` untouched (see [`StateTtl`]).
    pub fn with_ttl(mut self, ttl: Option<StateTtl>) -> Self {
        self.state = KeyedState::default().with_ttl(ttl);
        self
    }
}

impl<K, V, F> Operator<(K, V)> for Reduce<K, V, F>
where
    K: StateKey,
    V: StateValue,
    F: Fn(&V, V) -> V,
{
    type Out = (K, V);

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
        let ttl = self.ttl();
        self.then("reduce", Reduce::new(f).with_ttl(ttl))
    }
}
