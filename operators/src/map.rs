//! `map`: one record in, one record out.

use rill_engine::{Emit, FlowBuilder, Operator, Stream, ThenBuilder};

/// The `map` operator: emits `f(x)` for every record `x`.
#[derive(Debug, Clone)]
pub struct Map<F> {
    f: F,
}

impl<F> Map<F> {
    /// An operator applying `f`.
    pub fn new(f: F) -> Self {
        Self { f }
    }
}

impl<I, U, F> Operator<I> for Map<F>
where
    F: Fn(I) -> U,
{
    type Out = U;

    #[inline]
    fn on_record<E: Emit<U>>(&mut self, item: I, out: &mut E) {
        out.emit((self.f)(item));
    }
}

/// Adds [`map`](MapExt::map) to streams.
pub trait MapExt<B: FlowBuilder> {
    /// Transforms every record with `f`, fused into the current chain.
    ///
    /// ```
    /// use rill_connectors::{CollectSink, MemorySource};
    /// use rill_engine::{Config, Job};
    /// use rill_operators::MapExt;
    ///
    /// let job = Job::new("map");
    /// let out = CollectSink::default();
    /// job.source(MemorySource::new(vec![1, 2, 3])).map(|x: i32| x * 10).sink(out.clone());
    /// job.run(Config::default().with_workers(1))?.await_termination()?;
    /// assert_eq!(out.take(), vec![10, 20, 30]);
    /// # Ok::<(), rill_engine::JobError>(())
    /// ```
    fn map<U, F>(self, f: F) -> Stream<ThenBuilder<B, Map<F>>>
    where
        F: Fn(B::Out) -> U + Clone + Send + Sync + 'static;
}

impl<B: FlowBuilder> MapExt<B> for Stream<B> {
    fn map<U, F>(self, f: F) -> Stream<ThenBuilder<B, Map<F>>>
    where
        F: Fn(B::Out) -> U + Clone + Send + Sync + 'static,
    {
        self.then("map", Map::new(f))
    }
}
