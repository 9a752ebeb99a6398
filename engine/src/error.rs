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
    #[error("operator `{operator}` failed on worker {worker}: {source}")]
    UserFunction {
        /// Name of the operator whose function failed.
        operator: Arc<str>,
        /// Index of the worker it ran on.
        worker: usize,
        /// The error the function returned.
        source: BoxError,
    },
    /// A source could not be created or failed while reading.
    #[error("source `{source_name}` failed on worker {worker}: {source}")]
    Source {
        /// Name of the source.
        source_name: Arc<str>,
        /// Index of the worker it ran on.
        worker: usize,
        /// The underlying error.
        source: BoxError,
    },
    /// A sink could not be created, or failed to write, flush or close.
    #[error("sink `{sink}` failed on worker {worker}: {source}")]
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
    /// A worker thread could not be started.
    #[error("could not start worker {worker}: {source}")]
    Spawn {
        /// Index of the worker.
        worker: usize,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A record could not be processed by a user function: reported through
/// [`Emit::fail`](crate::Emit::fail) and turned into [`JobError::UserFunction`].
#[derive(Debug)]
pub struct Failure {
    pub(crate) operator: Option<Arc<str>>,
    pub(crate) error: BoxError,
    pub(crate) origin: Option<crate::dead_letter::Origin>,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) value: Option<Vec<u8>>,
}

impl Failure {
    /// A failure carrying the user function's error; the engine adds the operator's name.
    pub fn new(error: impl Into<BoxError>) -> Self {
        Self {
            operator: None,
            error: error.into(),
            origin: None,
            key: None,
            value: None,
        }
    }

    /// Keeps the failed record's origin and original bytes, for the dead-letter sink. Copies
    /// the bytes: only failures pay for it.
    pub fn with_record(mut self, record: &impl crate::dead_letter::RawRecord) -> Self {
        self.origin = record.origin();
        self.key = record.raw_key().map(<[u8]>::to_vec);
        self.value = record.raw_value().map(<[u8]>::to_vec);
        self
    }

    /// The operator the failure is attributed to, once the engine has tagged it.
    pub fn operator(&self) -> Option<&str> {
        self.operator.as_deref()
    }

    /// The user function's error.
    pub fn error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self.error.as_ref()
    }

    pub(crate) fn tag(&mut self, operator: &Arc<str>) {
        if self.operator.is_none() {
            self.operator = Some(operator.clone());
        }
    }

    pub(crate) fn into_job_error(self, worker: usize) -> JobError {
        JobError::UserFunction {
            operator: self.operator.unwrap_or_else(|| Arc::from("<unnamed>")),
            worker,
            source: self.error,
        }
    }
}
