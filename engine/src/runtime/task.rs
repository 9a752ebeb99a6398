//! Tasks: what a worker runs. A task is a flow plus its end: a sink or an exchange.

use std::sync::Arc;
use std::time::Instant;

use crate::checkpoint::epoch::{BarrierReport, TaskEpochs};
use crate::dataflow::operator::Emit;
use crate::dataflow::sink::SinkWriter;
use crate::error::{BoxError, JobError};
use crate::failure::Failure;
use crate::runtime::build::BuildCtx;
use crate::runtime::dead_letter::FailureHandler;
use crate::runtime::flow::{Flow, Progress};
use crate::runtime::message::Epoch;
use crate::runtime::metrics::NodeCounters;

/// What one run of a task achieved; drives the worker's idle strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskPoll {
    /// Work was done.
    Busy,
    /// Nothing to do until notified or until `deadline`.
    Idle { deadline: Option<Instant> },
    /// Output is waiting for room in a full ring. The receiver will make room without telling
    /// us, so the worker must not park.
    Backpressured,
    /// Finished: never run again.
    Done,
}

/// A unit of work scheduled round-robin on a worker. One virtual call per run, not per record.
pub(crate) trait Task {
    fn name(&self) -> &Arc<str>;
    fn run(&mut self, budget: usize) -> Result<TaskPoll, JobError>;
}

/// The [`Emit`] that writes into a sink.
struct SinkOut<'a, S, T> {
    sink: &'a mut S,
    /// Micro-batch mode: the batch's output, written when the batch ends, and how much of it
    /// may be held.
    batch: Option<&'a mut Vec<T>>,
    batch_limit: usize,
    written: u64,
    failures: &'a mut FailureHandler,
    error: Option<BoxError>,
}

impl<T, S: SinkWriter<T>> Emit<T> for SinkOut<'_, S, T> {
    #[inline]
    fn emit(&mut self, item: T) {
        if self.error.is_some() {
            return;
        }
        if let Some(batch) = self.batch.as_mut() {
            if batch.len() < self.batch_limit {
                batch.push(item);
                return;
            }
            // Held output is bounded: past the limit, records go to the sink now, behind
            // the held ones (a transactional sink still commits them with the batch).
            for held in batch.drain(..) {
                match self.sink.write(held) {
                    Ok(()) => self.written += 1,
                    Err(e) => {
                        self.error = Some(e);
                        return;
                    }
                }
            }
        }
        match self.sink.write(item) {
            Ok(()) => self.written += 1,
            Err(e) => self.error = Some(e),
        }
    }
    fn fail(&mut self, failure: Failure) {
        self.failures.handle(failure);
    }
    #[inline]
    fn should_yield(&self) -> bool {
        self.failures.stops() || self.error.is_some() || self.sink.is_full()
    }
}

/// A flow ending in a sink.
pub(crate) struct SinkTask<F, S, T> {
    name: Arc<str>,
    worker: usize,
    flow: F,
    sink: S,
    counters: NodeCounters,
    written: u64,
    failures: FailureHandler,
    epochs: Option<TaskEpochs>,
    completed: Epoch,
    /// Micro-batch mode: output held until the end of the batch, at most `batch_limit`.
    batch: Option<Vec<T>>,
    batch_limit: usize,
}

impl<F, S, T> SinkTask<F, S, T> {
    /// The sink task of sink node `node` on the worker `ctx` describes.
    pub(crate) fn new(ctx: &BuildCtx, node: usize, flow: F, sink: S) -> Self {
        let epochs = ctx.task_epochs();
        let completed = epochs.as_ref().map_or(0, |e| e.control.initial());
        let micro_batch = ctx.micro_batch;
        Self {
            name: ctx.node_name(node),
            worker: ctx.worker.worker,
            flow,
            sink,
            counters: ctx.counters(node),
            written: 0,
            failures: FailureHandler::new(ctx.dead_letters()),
            epochs,
            completed,
            batch: micro_batch.then(Vec::new),
            batch_limit: ctx.batch_output_limit,
        }
    }

    fn sink_error(&self, source: BoxError) -> JobError {
        JobError::Sink {
            sink: self.name.clone(),
            worker: self.worker,
            source,
        }
    }
}

impl<F, S: SinkWriter<T>, T> SinkTask<F, S, T> {
    /// Micro-batch mode: writes the batch's output and flushes it.
    fn write_batch(&mut self) -> Result<(), JobError> {
        let Some(batch) = self.batch.as_mut() else {
            return Ok(());
        };
        if batch.is_empty() {
            return Ok(());
        }
        let n = batch.len() as u64;
        for item in batch.drain(..) {
            self.sink.write(item).map_err(|e| JobError::Sink {
                sink: self.name.clone(),
                worker: self.worker,
                source: e,
            })?;
        }
        self.written += n;
        self.counters.publish_in(self.written);
        self.sink.flush().map_err(|e| self.sink_error(e))
    }

    /// Tells the sink about checkpoints completed since it last looked.
    fn catch_up(&mut self) -> Result<(), JobError> {
        if let Some(epochs) = &self.epochs {
            let completed = epochs.control.completed();
            if completed > self.completed {
                self.completed = completed;
                self.sink
                    .checkpoint_complete(completed)
                    .map_err(|e| self.sink_error(e))?;
            }
        }
        Ok(())
    }
}

impl<F, S, T> Task for SinkTask<F, S, T>
where
    F: Flow<Out = T>,
    S: SinkWriter<T>,
{
    fn name(&self) -> &Arc<str> {
        &self.name
    }

    fn run(&mut self, budget: usize) -> Result<TaskPoll, JobError> {
        self.catch_up()?;
        let mut out = SinkOut {
            sink: &mut self.sink,
            batch: self.batch.as_mut(),
            batch_limit: self.batch_limit,
            written: 0,
            failures: &mut self.failures,
            error: None,
        };
        let progress = self.flow.poll(&mut out, budget)?;
        let (written, error) = (out.written, out.error);
        self.failures.finish(self.worker)?;
        if let Some(e) = error {
            return Err(self.sink_error(e));
        }
        if written > 0 {
            self.written += written;
            self.counters.publish_in(self.written);
            self.sink.flush().map_err(|e| self.sink_error(e))?;
        }
        if matches!(progress, Progress::Done | Progress::Barrier(_)) {
            self.write_batch()?;
        }
        match progress {
            Progress::Done => self.sink.close().map_err(|e| self.sink_error(e))?,
            Progress::Barrier(epoch) => {
                // The barrier came through the rings after the coordinator completed the
                // previous epoch, so this load sees that completion: the sink learns of it
                // before it pre-commits the next.
                self.catch_up()?;
                self.sink
                    .on_barrier(epoch)
                    .map_err(|e| self.sink_error(e))?;
                // Records the sink handed back, and every dead letter of the epoch, are
                // durable in the dead-letter sink before the barrier is acknowledged.
                for letter in self.sink.take_dead_letters() {
                    self.failures.handle_undelivered(letter);
                }
                self.failures.on_barrier(epoch, self.worker)?;
                let mut report = BarrierReport::default();
                self.flow.take_barrier_report(&mut report);
                if let Some(epochs) = &self.epochs {
                    epochs.ack(epoch, report.snapshots, report.alignment);
                }
            }
            _ => {}
        }
        for letter in self.sink.take_dead_letters() {
            self.failures.handle_undelivered(letter);
        }
        self.failures.finish(self.worker)?;
        Ok(match progress {
            Progress::Busy | Progress::Barrier(_) => TaskPoll::Busy,
            Progress::Idle { deadline } => TaskPoll::Idle { deadline },
            Progress::Done => TaskPoll::Done,
        })
    }
}
