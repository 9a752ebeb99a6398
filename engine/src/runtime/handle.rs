//! The handles of a running job: wait for it, stop it, read its metrics and checkpoints.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::checkpoint::coordinator::CheckpointLog;
use crate::checkpoint::epoch::CoordinatorEvent;
use crate::error::JobError;
use crate::runtime::control::{Shared, WorkerEvent};
use crate::runtime::metrics::{JobMetrics, MetricsRegistry};
use crate::sync::Lock;

/// The checkpoint coordinator's thread and the channel that tells it the workers are done.
pub(crate) type CoordinatorThread = (JoinHandle<Result<(), JobError>>, Sender<CoordinatorEvent>);

/// Stops a running job gracefully from any thread (a signal handler, another service).
#[derive(Debug, Clone)]
pub struct StopHandle {
    shared: Arc<Shared>,
}

impl StopHandle {
    /// Asks the job to stop: sources end, records in flight drain, sinks flush and close.
    /// Returns at once; the job's `await_termination` returns when it is done.
    pub fn stop(&self) {
        self.shared.request_stop();
    }
}

/// A running job.
///
/// Dropping the handle without waiting aborts the job (workers stop at once, without
/// draining) and joins its threads.
#[derive(Debug)]
pub struct JobHandle {
    pub(crate) name: String,
    pub(crate) coordinator: Option<CoordinatorThread>,
    pub(crate) checkpoint_log: Option<Arc<std::sync::Mutex<CheckpointLog>>>,
    pub(crate) threads: Vec<JoinHandle<()>>,
    pub(crate) events: Receiver<WorkerEvent>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) metrics: Arc<MetricsRegistry>,
    pub(crate) reported: usize,
    pub(crate) first_error: Option<JobError>,
    pub(crate) finished: bool,
    pub(crate) outcome_taken: bool,
}

impl JobHandle {
    /// The job's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Live counters: records in and out of every node, summed over the workers.
    pub fn metrics(&self) -> JobMetrics {
        self.metrics.snapshot()
    }

    /// What checkpointing has done so far: the epoch restored from, and figures of every
    /// completed checkpoint. `None` if the job does not checkpoint.
    pub fn checkpoints(&self) -> Option<CheckpointLog> {
        self.checkpoint_log.as_ref().map(|l| l.locked().clone())
    }

    /// Asks the job to stop gracefully (see [`StopHandle::stop`]). With checkpoints on, the
    /// job takes a final checkpoint first.
    pub fn stop(&self) {
        self.shared.request_stop();
    }

    /// A handle that can stop the job from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            shared: self.shared.clone(),
        }
    }

    /// Waits until every worker has finished: every bounded source has ended and all output
    /// is flushed and closed, or the job was stopped, or it failed. Returns the final metrics,
    /// or the first error (a user function's error or panic, a source or sink failure); on an
    /// error the other workers are stopped at once, so this never hangs on a failed job.
    pub fn await_termination(mut self) -> Result<JobMetrics, JobError> {
        match self.wait(None) {
            Some(result) => result,
            None => unreachable!("waiting without a deadline always ends with a result"),
        }
    }

    /// Like [`await_termination`](Self::await_termination), but gives up after `timeout`,
    /// returning `None` while the job is still running.
    pub fn await_termination_timeout(
        &mut self,
        timeout: Duration,
    ) -> Option<Result<JobMetrics, JobError>> {
        self.wait(Some(Instant::now() + timeout))
    }

    /// Whether every worker has ended.
    pub fn is_finished(&self) -> bool {
        self.finished || self.threads.iter().all(|t| t.is_finished())
    }

    fn wait(&mut self, deadline: Option<Instant>) -> Option<Result<JobMetrics, JobError>> {
        while !self.finished && self.reported < self.threads.len() {
            let event = match deadline {
                None => self
                    .events
                    .recv()
                    .map_err(|_| RecvTimeoutError::Disconnected),
                Some(at) => self.events.recv_deadline(at),
            };
            match event {
                Ok(WorkerEvent::Finished) => self.reported += 1,
                Ok(WorkerEvent::Failed(error)) => {
                    self.reported += 1;
                    if self.first_error.is_none() {
                        self.first_error = Some(error);
                        self.shared.request_abort();
                    }
                }
                Err(RecvTimeoutError::Timeout) => return None,
                // Every worker sends before exiting, so this only happens once all have.
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        if !self.finished {
            self.finished = true;
            for t in self.threads.drain(..) {
                let _ = t.join();
            }
            if let Err(e) = self.join_coordinator() {
                if self.first_error.is_none() {
                    self.first_error = Some(e);
                }
            }
        }
        if self.outcome_taken {
            return Some(Err(JobError::Invalid(
                "the job's outcome was already returned".into(),
            )));
        }
        self.outcome_taken = true;
        Some(match self.first_error.take() {
            Some(e) => Err(e),
            None => Ok(self.metrics.snapshot()),
        })
    }
}

impl JobHandle {
    /// Tells the coordinator the workers are gone and waits for it.
    fn join_coordinator(&mut self) -> Result<(), JobError> {
        match self.coordinator.take() {
            Some((thread, tx)) => {
                let _ = tx.send(CoordinatorEvent::WorkersDone);
                thread.join().unwrap_or_else(|_| {
                    Err(JobError::Checkpoint {
                        epoch: 0,
                        message: "the checkpoint coordinator panicked".into(),
                    })
                })
            }
            None => Ok(()),
        }
    }
}

impl Drop for JobHandle {
    fn drop(&mut self) {
        if !self.finished {
            self.shared.request_abort();
            for t in self.threads.drain(..) {
                let _ = t.join();
            }
            let _ = self.join_coordinator();
        }
    }
}
