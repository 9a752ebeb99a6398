//! `inspect`: look at records as they pass.

use rill_engine::{Emit, FlowBuilder, Operator, Stream, ThenBuilder};

/// The `inspect` operator: calls `f(&x)` and passes `x` on unchanged.
#[derive(Debug, Clone)]
pub struct Inspect<F> {
    f: F,
}

impl<F> Inspect<F> {
    /// An operator calling `f` on every record.
    pub fn new(f: F) -> Self {
        Self { f }
    }
}

impl<T, F> Operator<T> for Inspect<F>
where
    F: Fn(&T),
{
    type Out = T;

    #[inline]
    fn on_record<E: Emit<T>>(&mut self, item: T, out: &mut E) {
        (self.f)(&item);
        out.emit(item);
    }
}

/// Adds [`inspect`](InspectExt::inspect) to streams.
pub trait InspectExt<B: FlowBuilder> {
    /// Calls `f` on every record (logging, debugging, custom metrics) without changing it.
    ///
    /// ```
    /// use std::sync::{Arc, atomic::{AtomicU64, Ordering}};
    /// use rill_connectors::{CollectSink, MemorySource};
    /// use rill_engine::{Config, Job};
    /// use rill_operators::InspectExt;
    ///
    /// let seen = Arc::new(AtomicU64::new(0));
    /// let counter = seen.clone();
    /// let job = Job::new("inspect");
    /// job.source(MemorySource::new(vec![1u64, 2, 3]))
    ///     .inspect(move |x: &u64| { counter.fetch_add(*x, Ordering::Relaxed); })
    ///     .sink(CollectSink::default());
    /// job.run(Config::default().with_workers(2))?.await_termination()?;
    /// assert_eq!(seen.load(Ordering::Relaxed), 6);
    /// # Ok::<(), rill_engine::JobError>(())
    /// ```
    fn inspect<F>(self, f: F) -> Stream<ThenBuilder<B, Inspect<F>>>
    where
        F: Fn(&B::Out) + Clone + Send + Sync + 'static;
}

impl<B: FlowBuilder> InspectExt<B> for Stream<B> {
    fn inspect<F>(self, f: F) -> Stream<ThenBuilder<B, Inspect<F>>>
    where
        F: Fn(&B::Out) + Clone + Send + Sync + 'static,
    {
        self.then("inspect", Inspect::new(f))
    }
}
