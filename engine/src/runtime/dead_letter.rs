//! Dead letters: records a user function could not process, kept with their origin and
//! original bytes in a dead-letter sink instead of failing the job.
//!
//! Without a dead-letter sink, a [`Failure`](crate::Failure) ends the job (the safe default:
//! nothing is dropped unnoticed). With one ([`Job::dead_letter`](crate::Job::dead_letter)),
//! every failure becomes a [`DeadLetter`] written to it and the job goes on.

use std::sync::{Arc, Mutex};

use crate::dataflow::sink::{Sink, SinkWriter};
use crate::error::{BoxError, JobError};
use crate::failure::{DeadLetter, Failure};
use crate::runtime::context::WorkerContext;
use crate::runtime::message::Epoch;
use crate::runtime::metrics::NodeCounters;
use crate::sync::Lock;

/// Creates a worker's dead-letter sink, whatever the sink type.
pub(crate) trait DeadLetterFactory: Send + Sync {
    fn create(
        &self,
        ctx: &WorkerContext,
    ) -> Result<Box<dyn SinkWriter<DeadLetter> + Send>, BoxError>;
}

impl<S> DeadLetterFactory for S
where
    S: Sink<DeadLetter>,
    S::Writer: Send + 'static,
{
    fn create(
        &self,
        ctx: &WorkerContext,
    ) -> Result<Box<dyn SinkWriter<DeadLetter> + Send>, BoxError> {
        Ok(Box::new(Sink::create(self, ctx)?))
    }
}

/// One worker's dead-letter sink, shared by its tasks (failures are rare: a lock is fine).
pub(crate) struct DeadLetters {
    pub(crate) name: Arc<str>,
    sink: Box<dyn SinkWriter<DeadLetter> + Send>,
    counters: NodeCounters,
    written: u64,
}

/// A handle on a worker's dead-letter sink.
pub(crate) type DeadLetterRoute = Arc<Mutex<DeadLetters>>;

impl DeadLetters {
    pub(crate) fn route(
        name: Arc<str>,
        sink: Box<dyn SinkWriter<DeadLetter> + Send>,
        counters: NodeCounters,
    ) -> DeadLetterRoute {
        Arc::new(Mutex::new(Self {
            name,
            sink,
            counters,
            written: 0,
        }))
    }

    pub(crate) fn write(&mut self, letter: DeadLetter) -> Result<(), BoxError> {
        self.sink.write(letter)?;
        self.written += 1;
        self.counters.publish_in(self.written);
        Ok(())
    }

    pub(crate) fn flush(&mut self) -> Result<(), BoxError> {
        self.sink.flush()?;
        self.check_delivered()
    }

    /// Pre-commits like any sink at `Barrier(epoch)`: every letter written before it is durable
    /// (a Kafka dead-letter topic has acknowledged it) before the task acknowledges the
    /// barrier, so no checkpoint completes past a record whose letter could still be lost.
    pub(crate) fn on_barrier(&mut self, epoch: Epoch) -> Result<(), BoxError> {
        self.sink.on_barrier(epoch)?;
        self.check_delivered()
    }

    pub(crate) fn close(&mut self) -> Result<(), BoxError> {
        self.sink.close()?;
        self.check_delivered()
    }

    /// A letter the dead-letter sink hands back as undeliverable has nowhere else to go: the
    /// job fails rather than lose it.
    fn check_delivered(&mut self) -> Result<(), BoxError> {
        let lost = self.sink.take_dead_letters();
        match lost.first() {
            None => Ok(()),
            Some(first) => Err(format!(
                "{} dead letter(s) could not be delivered, the first: {}",
                lost.len(),
                first.error
            )
            .into()),
        }
    }
}

/// What a task does with the failures its chain reports: route them to the dead-letter sink,
/// or keep the first one to fail the job with.
pub(crate) struct FailureHandler {
    route: Option<DeadLetterRoute>,
    failure: Option<Failure>,
    /// A record a sink could not deliver, with no dead-letter sink to take it: (sink, error).
    undelivered: Option<(Arc<str>, String)>,
    dead_letter_error: Option<BoxError>,
    routed: bool,
}

impl FailureHandler {
    pub(crate) fn new(route: Option<DeadLetterRoute>) -> Self {
        Self {
            route,
            failure: None,
            undelivered: None,
            dead_letter_error: None,
            routed: false,
        }
    }

    pub(crate) fn handle(&mut self, failure: Failure) {
        match &self.route {
            Some(_) => self.route_letter(DeadLetter::from_failure(failure)),
            None => {
                if self.failure.is_none() {
                    self.failure = Some(failure);
                }
            }
        }
    }

    /// A record a sink could not deliver: a dead letter, or (without a dead-letter sink) the
    /// job's failure.
    pub(crate) fn handle_undelivered(&mut self, letter: DeadLetter) {
        if self.route.is_some() {
            self.route_letter(letter);
        } else if self.undelivered.is_none() {
            self.undelivered = Some((letter.stage, letter.error));
        }
    }

    fn route_letter(&mut self, letter: DeadLetter) {
        if let (Some(route), None) = (&self.route, &self.dead_letter_error) {
            let mut dl = route.locked();
            match dl.write(letter) {
                Ok(()) => self.routed = true,
                Err(e) => self.dead_letter_error = Some(e),
            }
        }
    }

    /// At `Barrier(epoch)`, before the task acknowledges it: makes the dead letters routed so
    /// far durable (see [`DeadLetters::on_barrier`]).
    pub(crate) fn on_barrier(&mut self, epoch: Epoch, worker: usize) -> Result<(), JobError> {
        self.finish(worker)?;
        if let Some(route) = &self.route {
            let mut letters = route.locked();
            letters.on_barrier(epoch).map_err(|source| JobError::Sink {
                sink: letters.name.clone(),
                worker,
                source,
            })?;
        }
        Ok(())
    }

    /// Whether the chain must stop pulling input: a failure that will end the job.
    pub(crate) fn stops(&self) -> bool {
        self.failure.is_some() || self.undelivered.is_some() || self.dead_letter_error.is_some()
    }

    /// After a poll: the job's error if there is one; flushes routed dead letters.
    pub(crate) fn finish(&mut self, worker: usize) -> Result<(), JobError> {
        if let Some(f) = self.failure.take() {
            return Err(f.into_job_error(worker));
        }
        if let Some((sink, error)) = self.undelivered.take() {
            return Err(JobError::Sink {
                sink,
                worker,
                source: error.into(),
            });
        }
        let route_error = |route: &DeadLetterRoute, source: BoxError| JobError::Sink {
            sink: route.locked().name.clone(),
            worker,
            source,
        };
        if let (Some(route), Some(e)) = (&self.route, self.dead_letter_error.take()) {
            return Err(route_error(route, e));
        }
        if std::mem::take(&mut self.routed) {
            if let Some(route) = &self.route {
                let flushed = route.locked().flush();
                flushed.map_err(|e| route_error(route, e))?;
            }
        }
        Ok(())
    }
}
