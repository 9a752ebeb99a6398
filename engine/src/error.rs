//! Typed errors of building and running a job.

use std::sync::Arc;

/// Any error a user function, source or sink reports. Boxed so that callers keep their own
/// error types; [`JobError`] says where it happened.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a job could not start or did not finish.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// The configuration or the job graph cannot run (for example zero workers, or no sink).
    #[error("invalid job: {0}")]
    Invalid(String),
    /// A user function returned an error for a record (for example from `try_map`).
    #[error("operator `{operator}` failed on worker {worker}")]
    UserFunction {
        /// Name of the operator whose function failed.
        operator: Arc<str>,
        /// Index of the worker it ran on.
        worker: usize,
        /// The error the function returned.
        source: BoxError,
    },
    /// A source could not be created or failed while reading.
    #[error("source `{source_name}` failed on worker {worker}")]
    Source {
        /// Name of the source.
        source_name: Arc<str>,
        /// Index of the worker it ran on.
        worker: usize,
        /// The underlying error.
        source: BoxError,
    },
    /// A sink could not be created, or failed to write, flush or close.
    #[error("sink `{sink}` failed on worker {worker}")]
    Sink {
        /// Name of the sink.
        sink: Arc<str>,
        /// Index of the worker it ran on.
        worker: usize,
        /// The underlying error.
        source: BoxError,
    },
    /// User code panicked on a worker thread. The other workers were stopped.
    #[error("worker {worker} panicked in `{task}`: {message}")]
    Panicked {
        /// Index of the worker whose thread panicked.
        worker: usize,
        /// The task (chain ending in a sink or exchange) that was running.
        task: Arc<str>,
        /// The panic payload, if it was a string.
        message: String,
    },
    /// A checkpoint could not be completed (state could not be encoded or written, the
    /// transactional sink could not commit, or it timed out). The job stops so that it can be
    /// restarted from the last complete checkpoint.
    #[error("checkpoint {epoch} failed: {message}")]
    Checkpoint {
        /// The epoch of the failed checkpoint.
        epoch: u64,
        /// What went wrong.
        message: String,
    },
    /// The job cannot start from its checkpoint directory: unreadable, or written by a job
    /// whose graph or state types differ.
    #[error("cannot restore from checkpoint: {0}")]
    Restore(String),
    /// Another running job (another instance of this one, say mid-deploy) holds the
    /// checkpoint location's lock. Two instances on one location would read the same input
    /// and prune each other's checkpoints, so the second one stops before doing anything.
    #[error(
        "checkpoint location {location} is in use by another running job ({holder}); stop \
         that instance first, or give this one its own checkpoint location"
    )]
    LocationInUse {
        /// The checkpoint location.
        location: std::path::PathBuf,
        /// Who holds it: job name, process id, host and start time.
        holder: String,
    },
    /// A worker thread could not be started.
    #[error("could not start worker {worker}")]
    Spawn {
        /// Index of the worker.
        worker: usize,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Shows an error with every cause in its [`source`](std::error::Error::source) chain, joined
/// by `": "`: how rill turns an error into one line (a dead letter's `error`, a message that
/// wraps another error). rill's own errors never repeat their source in their message, so the
/// chain is the whole story, once.
///
/// ```
/// use rill_engine::ErrorChain;
/// let io = std::io::Error::other("disk full");
/// let err = rill_engine::JobError::Sink { sink: "files".into(), worker: 0, source: io.into() };
/// assert_eq!(err.to_string(), "sink `files` failed on worker 0");
/// assert_eq!(ErrorChain(&err).to_string(), "sink `files` failed on worker 0: disk full");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}
