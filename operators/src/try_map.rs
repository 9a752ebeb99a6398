//! `try_map`: a fallible map whose errors fail the job with a typed error.

use rill_engine::{BoxError, Emit, Failure, FlowBuilder, Operator, Stream, ThenBuilder};

/// The `try_map` operator: emits `Ok` values of `f(x)`; an `Err` is reported as a
/// [`Failure`] and the job ends with
/// [`JobError::UserFunction`](rill_engine::JobError::UserFunction).
#[derive(Debug, Clone)]
pub struct TryMap<F> {
    f: F,
}

impl<F> TryMap<F> {
    /// An operator applying the fallible `f`.
    pub fn new(f: F) -> Self {
        Self { f }
    }
}

impl<I, U, Er, F> Operator<I> for TryMap<F>
where
    F: Fn(I) -> Result<U, Er>,
    Er: Into<BoxError>,
{
    type Out = U;

    #[inline]
    fn on_record<E: Emit<U>>(&mut self, item: I, out: &mut E) {
        match (self.f)(item) {
            Ok(value) => out.emit(value),
            Err(error) => out.fail(Failure::new(error)),
        }
    }
}

/// Adds [`try_map`](TryMapExt::try_map) to streams.
pub trait TryMapExt<B: FlowBuilder> {
    /// Transforms every record with a function that may fail. The first error ends the job:
    /// `await_termination` returns it, naming the operator and worker.
    ///
    /// ```
    /// use rill_connectors::{CollectSink, MemorySource};
    /// use rill_engine::{Config, Job, JobError};
    /// use rill_operators::TryMapExt;
    ///
    /// let job = Job::new("parse");
    /// job.source(MemorySource::new(vec!["1", "2", "x"]))
    ///     .try_map(|s: &str| s.parse::<u32>())
    ///     .sink(CollectSink::default());
    /// let err = job.run(Config::default().with_workers(1))?.await_termination().unwrap_err();
    /// assert!(matches!(err, JobError::UserFunction { ref operator, .. } if &**operator == "try_map"));
    /// # Ok::<(), rill_engine::JobError>(())
    /// ```
    fn try_map<U, Er, F>(self, f: F) -> Stream<ThenBuilder<B, TryMap<F>>>
    where
        F: Fn(B::Out) -> Result<U, Er> + Clone + Send + Sync + 'static,
        Er: Into<BoxError>;
}

impl<B: FlowBuilder> TryMapExt<B> for Stream<B> {
    fn try_map<U, Er, F>(self, f: F) -> Stream<ThenBuilder<B, TryMap<F>>>
    where
        F: Fn(B::Out) -> Result<U, Er> + Clone + Send + Sync + 'static,
        Er: Into<BoxError>,
    {
        self.then("try_map", TryMap::new(f))
    }
}
