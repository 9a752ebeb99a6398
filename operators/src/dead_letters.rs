//! `dead_letters`: send every record of a stream to the job's dead-letter sink.

use std::marker::PhantomData;

use rill_engine::{Emit, Failure, FlowBuilder, Operator, RawRecord, Stream, ThenBuilder};

/// Why a record was sent to the dead-letter sink by [`dead_letters`](DeadLettersExt::dead_letters).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}")]
pub struct RoutedAway {
    reason: &'static str,
}

/// The `dead_letters` operator: every record becomes a dead letter (its origin and original
/// bytes, the stage named after this operator, the reason as its error); nothing is emitted.
/// In a job without a dead-letter sink the first record fails the job, naming the operator:
/// such records are never dropped silently.
#[derive(Debug)]
pub struct DeadLetters<F, R> {
    raw: F,
    reason: &'static str,
    _raw: PhantomData<fn() -> R>,
}

impl<F: Clone, R> Clone for DeadLetters<F, R> {
    fn clone(&self) -> Self {
        Self {
            raw: self.raw.clone(),
            reason: self.reason,
            _raw: PhantomData,
        }
    }
}

impl<T, R, F> Operator<T> for DeadLetters<F, R>
where
    F: Fn(T) -> R,
    R: RawRecord,
{
    type Out = ();

    #[inline]
    fn on_record<E: Emit<()>>(&mut self, item: T, out: &mut E) {
        let raw = (self.raw)(item);
        out.fail(
            Failure::new(RoutedAway {
                reason: self.reason,
            })
            .with_record(&raw),
        );
    }
}

/// Adds [`dead_letters`](DeadLettersExt::dead_letters) to streams.
pub trait DeadLettersExt<B: FlowBuilder> {
    /// Sends every record to the job's dead-letter sink with stage `stage` and error
    /// `reason`: for example a window's late records, as the raw records they came from
    /// (`raw` picks it out of the stream's item). The stream emits nothing; end it in a
    /// `DiscardSink`.
    ///
    /// ```
    /// use rill_connectors::{CollectSink, DiscardSink, FileLine, MemorySource};
    /// use rill_engine::{Config, DeadLetter, Job};
    /// use rill_operators::{DeadLettersExt, FilterExt};
    ///
    /// let job = Job::new("rejects");
    /// let letters = CollectSink::<DeadLetter>::default();
    /// job.dead_letter(letters.clone());
    /// let line = |line: i64, text: &str| FileLine { path: "in.txt".into(), line, bytes: text.into() };
    /// job.source(MemorySource::new(vec![line(1, "ok"), line(2, "spam")]))
    ///     .filter(|l: &FileLine| l.bytes == b"spam")
    ///     .dead_letters("spam", "the line is spam", |l: FileLine| l)
    ///     .sink(DiscardSink::new());
    /// job.run(Config::default().with_workers(1))?.await_termination()?;
    /// let letters = letters.take();
    /// assert_eq!(letters.len(), 1);
    /// assert_eq!((&*letters[0].stage, letters[0].error.as_str()), ("spam", "the line is spam"));
    /// assert_eq!(letters[0].value.as_deref(), Some(&b"spam"[..]));
    /// assert_eq!(letters[0].origin.as_ref().map(|o| o.offset), Some(2));
    /// # Ok::<(), rill_engine::JobError>(())
    /// ```
    fn dead_letters<R, F>(
        self,
        stage: &str,
        reason: &'static str,
        raw: F,
    ) -> Stream<ThenBuilder<B, DeadLetters<F, R>>>
    where
        F: Fn(B::Out) -> R + Clone + Send + Sync + 'static,
        R: RawRecord + 'static;
}

impl<B: FlowBuilder> DeadLettersExt<B> for Stream<B> {
    fn dead_letters<R, F>(
        self,
        stage: &str,
        reason: &'static str,
        raw: F,
    ) -> Stream<ThenBuilder<B, DeadLetters<F, R>>>
    where
        F: Fn(B::Out) -> R + Clone + Send + Sync + 'static,
        R: RawRecord + 'static,
    {
        self.then(
            stage,
            DeadLetters {
                raw,
                reason,
                _raw: PhantomData,
            },
        )
    }
}
