//! A source as a flow.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::checkpoint::epoch::{BarrierReport, CoordinatorEvent, EpochControl};
use crate::dataflow::operator::Emit;
use crate::dataflow::source::SourceReader;
use crate::error::{BoxError, JobError};
use crate::runtime::flow::{Counted, Flow, Progress};
use crate::runtime::message::{Epoch, EventTime};
use crate::runtime::metrics::NodeCounters;
use crate::state::{StateSnapshot, WorkerBlob};

/// A source as a flow: injects barriers, honours graceful stop, counts, names its errors.
pub struct SourceFlow<S> {
    source: S,
    node: usize,
    name: Arc<str>,
    worker: usize,
    stop: Arc<AtomicBool>,
    counters: NodeCounters,
    emitted: u64,
    done: bool,
    epochs: Option<Arc<EpochControl>>,
    epoch: Epoch,
    completed: Epoch,
    exhausted: bool,
    captured: Option<Vec<u8>>,
    micro_batch: bool,
    /// Micro-batch mode: the newest batch this instance has planned.
    planned: Epoch,
}

impl<S> std::fmt::Debug for SourceFlow<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceFlow")
            .field("name", &self.name)
            .field("worker", &self.worker)
            .field("epoch", &self.epoch)
            .field("done", &self.done)
            .finish()
    }
}

impl<S> SourceFlow<S> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        source: S,
        node: usize,
        name: Arc<str>,
        worker: usize,
        stop: Arc<AtomicBool>,
        counters: NodeCounters,
        epochs: Option<Arc<EpochControl>>,
        micro_batch: bool,
    ) -> Self {
        let epoch = epochs.as_ref().map_or(0, |e| e.initial());
        Self {
            source,
            node,
            name,
            worker,
            stop,
            counters,
            emitted: 0,
            done: false,
            epochs,
            epoch,
            completed: epoch,
            exhausted: false,
            captured: None,
            micro_batch,
            planned: epoch,
        }
    }

    fn error(&self, source: BoxError) -> JobError {
        JobError::Source {
            source_name: self.name.clone(),
            worker: self.worker,
            source,
        }
    }
}

impl<S: SourceReader> SourceFlow<S> {
    /// Polls the source once, counting what it emits and naming its errors.
    #[inline]
    fn read<E: Emit<S::Out>>(&mut self, out: &mut E, budget: usize) -> Result<Progress, JobError> {
        let mut counted = Counted {
            out,
            count: &mut self.emitted,
            name: &self.name,
        };
        let progress = self
            .source
            .poll(&mut counted, budget)
            .map_err(|e| self.error(e))?;
        self.counters.publish(0, self.emitted);
        Ok(progress)
    }

    /// The input has ended: tell the coordinator, which starts the final epoch once every
    /// source instance has.
    /// After the final barrier: the source ends once the final epoch is complete (and it has
    /// been told so, in `poll`), so that it acknowledges upstream what the final epoch's sinks
    /// acknowledged (a Kafka source commits its offsets) while it still can. Completion
    /// wakes the worker.
    fn end_once_complete(&mut self) -> Progress {
        if self.completed >= self.epoch {
            self.done = true;
            Progress::Done
        } else {
            Progress::IDLE
        }
    }

    fn mark_exhausted(&mut self) {
        self.exhausted = true;
        if let Some(epochs) = &self.epochs {
            epochs.send(CoordinatorEvent::SourceExhausted);
        }
    }

    /// Micro-batch mode: between batches the source is not read, so input collects in it (in
    /// Kafka, in the generator's schedule). Once batch `requested` has started, it emits what
    /// is available now, across as many polls as that takes, and then ends the batch with
    /// its barrier.
    fn poll_batch<E: Emit<S::Out>>(
        &mut self,
        requested: Epoch,
        out: &mut E,
        budget: usize,
    ) -> Result<Progress, JobError> {
        if requested > self.epoch {
            if self.planned < requested {
                // The batch starts: fix its end before reading anything.
                let end = self.source.plan_batch().map_err(|e| self.error(e))?;
                self.planned = requested;
                if let Some(epochs) = self.epochs.as_ref().filter(|e| e.logs_plans()) {
                    epochs.send(CoordinatorEvent::BatchPlan {
                        epoch: requested,
                        node: self.node,
                        worker: self.worker,
                        end,
                    });
                }
            }
            // With a checkpoint location the plan must be durable first; the coordinator
            // wakes this worker once it is.
            if !self
                .epochs
                .as_ref()
                .is_none_or(|e| e.plan_logged(requested))
            {
                return Ok(Progress::IDLE);
            }
            if !self.exhausted {
                match self.read(out, budget)? {
                    Progress::Busy | Progress::Barrier(_) => return Ok(Progress::Busy),
                    Progress::Done => {
                        out.watermark(EventTime::MAX);
                        self.mark_exhausted();
                    }
                    // Idle before the planned end: what is left is on its way (Kafka records
                    // below the end offset not fetched yet).
                    idle @ Progress::Idle { .. } if !self.source.batch_complete() => {
                        return Ok(idle)
                    }
                    Progress::Idle { .. } => {}
                }
            }
            self.epoch = requested;
            self.captured = self.source.position().map_err(|e| self.error(e))?;
            return Ok(Progress::Barrier(requested));
        }
        if self
            .epochs
            .as_ref()
            .is_some_and(|e| e.ends_after(self.epoch))
        {
            return Ok(self.end_once_complete());
        }
        // Until the next trigger, which wakes the worker.
        Ok(Progress::IDLE)
    }
}

impl<S: SourceReader> Flow for SourceFlow<S> {
    type Out = S::Out;

    #[inline]
    fn poll<E: Emit<S::Out>>(&mut self, out: &mut E, budget: usize) -> Result<Progress, JobError> {
        if self.done {
            return Ok(Progress::Done);
        }
        if let Some(epochs) = &self.epochs {
            let completed = epochs.completed();
            if completed > self.completed {
                self.completed = completed;
                self.source
                    .checkpoint_complete(completed)
                    .map_err(|e| self.error(e))?;
            }
            let requested = epochs.requested();
            if self.micro_batch {
                return self.poll_batch(requested, out, budget);
            }
            if requested > self.epoch {
                // The barrier goes in between two records: the position covers exactly what
                // was emitted before it.
                self.epoch = requested;
                self.captured = self.source.position().map_err(|e| self.error(e))?;
                return Ok(Progress::Barrier(requested));
            }
            // With checkpoints, a stop (or the end of a bounded input) is a final epoch: the
            // source ends right after its barrier, so the final checkpoint holds everything.
            if epochs.ends_after(self.epoch) {
                return Ok(self.end_once_complete());
            }
            if self.exhausted {
                return Ok(Progress::IDLE);
            }
        } else if self.stop.load(Ordering::Relaxed) {
            // Graceful stop: the source ends here, and the end flows through the graph so
            // every downstream operator and sink finishes what it holds.
            self.done = true;
            return Ok(Progress::Done);
        }
        let progress = self.read(out, budget)?;
        if progress == Progress::Done {
            // The input is over (not stopped): no event time is left to wait for, so every
            // window and join interval downstream is final (Flink's end-of-input watermark).
            // A stopped job sends none: its open windows wait in its checkpoint.
            out.watermark(EventTime::MAX);
            if self.epochs.is_some() {
                // Wait for the final epoch, still answering barriers with the end position.
                self.mark_exhausted();
                return Ok(Progress::Busy);
            }
            self.done = true;
        }
        Ok(progress)
    }

    fn take_barrier_report(&mut self, report: &mut BarrierReport) {
        if let Some(position) = self.captured.take() {
            report.push(
                self.node,
                Box::new(WorkerBlob(position)) as Box<dyn StateSnapshot>,
            );
        }
    }
}
