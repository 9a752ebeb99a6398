//! `decode`: turn raw records into typed ones; failures keep the raw record.

use rill_engine::{BoxError, Emit, Failure, FlowBuilder, Operator, RawRecord, Stream, ThenBuilder};

/// The `decode` operator: emits `f(&raw)`'s `Ok` values. On `Err`, the failure carries the raw
/// record's origin and original bytes, so a job with a dead-letter sink
/// ([`Job::dead_letter`](rill_engine::Job::dead_letter)) keeps the bad record intact and goes
/// on; without one, the job fails naming the operator.
#[derive(Debug, Clone)]
pub struct Decode<F> {
    f: F,
}

impl<F> Decode<F> {
    /// An operator decoding with `f`.
    pub fn new(f: F) -> Self {
        Self { f }
    }
}

impl<I, U, Er, F> Operator<I> for Decode<F>
where
    I: RawRecord,
    F: Fn(&I) -> Result<U, Er>,
    Er: Into<BoxError>,
{
    type Out = U;

    #[inline]
    fn on_record<E: Emit<U>>(&mut self, item: I, out: &mut E) {
        match (self.f)(&item) {
            Ok(value) => out.emit(value),
            Err(error) => out.fail(Failure::new(error).with_record(&item)),
        }
    }
}

/// Adds [`decode`](DecodeExt::decode) to streams of raw records.
pub trait DecodeExt<B: FlowBuilder> {
    /// Decodes every raw record with `f`, which sees the record by reference so that a failure
    /// can keep it whole (origin, key and value bytes) for the dead-letter sink.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use rill_connectors::{CollectSink, MemorySource};
    /// use rill_engine::{Config, DeadLetter, Job, Origin, RawRecord};
    /// use rill_operators::DecodeExt;
    ///
    /// /// A line of a file: its number is its offset.
    /// #[derive(Clone)]
    /// struct Line(i64, Vec<u8>);
    /// impl RawRecord for Line {
    ///     fn origin(&self) -> Option<Origin> {
    ///         Some(Origin { stream: Arc::from("numbers.txt"), partition: 0, offset: self.0 })
    ///     }
    ///     fn raw_key(&self) -> Option<&[u8]> { None }
    ///     fn raw_value(&self) -> Option<&[u8]> { Some(&self.1) }
    /// }
    ///
    /// let job = Job::new("parse");
    /// let good = CollectSink::default();
    /// let bad = CollectSink::<DeadLetter>::default();
    /// job.dead_letter(bad.clone());
    /// job.source(MemorySource::new(vec![Line(0, b"7".to_vec()), Line(1, b"x".to_vec())]))
    ///     .decode(|l: &Line| -> Result<u32, rill_engine::BoxError> { Ok(std::str::from_utf8(&l.1)?.parse()?) })
    ///     .sink(good.clone());
    /// job.run(Config::default().with_workers(1))?.await_termination()?;
    /// assert_eq!(good.take(), [7]);
    /// let letters = bad.take();
    /// assert_eq!(letters[0].value.as_deref(), Some(&b"x"[..]));
    /// assert_eq!(letters[0].origin.as_ref().map(|o| o.offset), Some(1));
    /// assert_eq!(&*letters[0].stage, "decode");
    /// # Ok::<(), rill_engine::JobError>(())
    /// ```
    fn decode<U, Er, F>(self, f: F) -> Stream<ThenBuilder<B, Decode<F>>>
    where
        B::Out: RawRecord,
        F: Fn(&B::Out) -> Result<U, Er> + Clone + Send + Sync + 'static,
        Er: Into<BoxError>;
}

impl<B: FlowBuilder> DecodeExt<B> for Stream<B> {
    fn decode<U, Er, F>(self, f: F) -> Stream<ThenBuilder<B, Decode<F>>>
    where
        B::Out: RawRecord,
        F: Fn(&B::Out) -> Result<U, Er> + Clone + Send + Sync + 'static,
        Er: Into<BoxError>,
    {
        self.then("decode", Decode::new(f))
    }
}
