//! `flat_map`: one record in, any number out.

use rill_engine::{Emit, FlowBuilder, Operator, Stream, ThenBuilder};

/// The `flat_map` operator: emits every item of `f(x)`.
#[derive(Debug, Clone)]
pub struct FlatMap<F> {
    f: F,
}

impl<F> FlatMap<F> {
    /// An operator expanding records with `f`.
    pub fn new(f: F) -> Self {
        Self { f }
    }
}

impl<I, U, F> Operator<I> for FlatMap<F>
where
    F: Fn(I) -> U,
    U: IntoIterator,
{
    type Out = U::Item;

    #[inline]
    fn on_record<E: Emit<U::Item>>(&mut self, item: I, out: &mut E) {
        for x in (self.f)(item) {
            out.emit(x);
        }
    }
}

/// Adds [`flat_map`](FlatMapExt::flat_map) to streams.
pub trait FlatMapExt<B: FlowBuilder> {
    /// Replaces every record with the items of `f(record)`; returning an iterator (rather than
    /// a collection) avoids allocating per record.
    ///
    /// ```
    /// use rill_connectors::{CollectSink, MemorySource};
    /// use rill_engine::{Config, Job};
    /// use rill_operators::FlatMapExt;
    ///
    /// let job = Job::new("split");
    /// let out = CollectSink::default();
    /// job.source(MemorySource::new(vec!["a b", "c"]))
    ///     .flat_map(|line: &str| line.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
    ///     .sink(out.clone());
    /// job.run(Config::default().with_workers(1))?.await_termination()?;
    /// assert_eq!(out.take(), ["a", "b", "c"]);
    /// # Ok::<(), rill_engine::JobError>(())
    /// ```
    fn flat_map<U, F>(self, f: F) -> Stream<ThenBuilder<B, FlatMap<F>>>
    where
        F: Fn(B::Out) -> U + Clone + Send + Sync + 'static,
        U: IntoIterator;
}

impl<B: FlowBuilder> FlatMapExt<B> for Stream<B> {
    fn flat_map<U, F>(self, f: F) -> Stream<ThenBuilder<B, FlatMap<F>>>
    where
        F: Fn(B::Out) -> U + Clone + Send + Sync + 'static,
        U: IntoIterator,
    {
        self.then("flat_map", FlatMap::new(f))
    }
}
