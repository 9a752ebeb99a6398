//! A sink that drops every record: for benchmarks, where the sink must cost nothing.

use std::marker::PhantomData;

use rill_engine::{BoxError, Sink, SinkWriter, WorkerContext};

/// Accepts and drops every record (Flink's `DiscardingSink`). The job's metrics still count
/// what reached it. The record is passed through [`std::hint::black_box`] so the compiler
/// cannot delete the work that produced it.
///
/// ```
/// use rill_connectors::{DiscardSink, MemorySource};
/// use rill_engine::{Config, Job};
///
/// let job = Job::new("discard");
/// job.source(MemorySource::new(vec![1, 2, 3])).sink(DiscardSink::new());
/// let metrics = job.run(Config::default().with_workers(1))?.await_termination()?;
/// assert_eq!(metrics.get("discard").unwrap().records_in, 3);
/// # Ok::<(), rill_engine::JobError>(())
/// ```
#[derive(Debug)]
pub struct DiscardSink<T> {
    _records: PhantomData<fn(T)>,
}

impl<T> Default for DiscardSink<T> {
    fn default() -> Self {
        Self {
            _records: PhantomData,
        }
    }
}

impl<T> Clone for DiscardSink<T> {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl<T> DiscardSink<T> {
    /// A sink that drops everything.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<T: 'static> Sink<T> for DiscardSink<T> {
    type Writer = DiscardWriter;

    fn create(&self, _ctx: &WorkerContext) -> Result<DiscardWriter, BoxError> {
        Ok(DiscardWriter)
    }

    fn name(&self) -> &str {
        "discard"
    }
}

/// One worker's [`DiscardSink`].
#[derive(Debug)]
pub struct DiscardWriter;

impl<T> SinkWriter<T> for DiscardWriter {
    #[inline]
    fn write(&mut self, item: T) -> Result<(), BoxError> {
        std::hint::black_box(item);
        Ok(())
    }
}
