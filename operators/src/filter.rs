//! `filter`: keep the records a predicate accepts.

use rill_engine::{Emit, FlowBuilder, Operator, Stream, ThenBuilder};

/// The `filter` operator: passes on the records for which the predicate is true.
#[derive(Debug, Clone)]
pub struct Filter<F> {
    pred: F,
}

impl<F> Filter<F> {
    /// An operator keeping records accepted by `pred`.
    pub fn new(pred: F) -> Self {
        Self { pred }
    }
}

impl<T, F> Operator<T> for Filter<F>
where
    F: Fn(&T) -> bool,
{
    type Out = T;

    #[inline]
    fn on_record<E: Emit<T>>(&mut self, item: T, out: &mut E) {
        if (self.pred)(&item) {
            out.emit(item);
        }
    }
}

/// Adds [`filter`](FilterExt::filter) to streams.
pub trait FilterExt<B: FlowBuilder> {
    /// Keeps the records for which `pred` returns true.
    ///
    /// ```
    /// use rill_connectors::{CollectSink, MemorySource};
    /// use rill_engine::{Config, Job};
    /// use rill_operators::FilterExt;
    ///
    /// let job = Job::new("filter");
    /// let out = CollectSink::default();
    /// job.source(MemorySource::new((1..=6).collect())).filter(|x: &i32| x % 2 == 0).sink(out.clone());
    /// job.run(Config::default().with_workers(1))?.await_termination()?;
    /// assert_eq!(out.take(), vec![2, 4, 6]);
    /// # Ok::<(), rill_engine::JobError>(())
    /// ```
    fn filter<F>(self, pred: F) -> Stream<ThenBuilder<B, Filter<F>>>
    where
        F: Fn(&B::Out) -> bool + Clone + Send + Sync + 'static;
}

impl<B: FlowBuilder> FilterExt<B> for Stream<B> {
    fn filter<F>(self, pred: F) -> Stream<ThenBuilder<B, Filter<F>>>
    where
        F: Fn(&B::Out) -> bool + Clone + Send + Sync + 'static,
    {
        self.then("filter", Filter::new(pred))
    }
}
