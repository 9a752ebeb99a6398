//! Failures of user functions, and dead letters: what is kept of a record that could not be
//! processed.
//!
//! A user function reports a [`Failure`] through [`Emit::fail`](crate::Emit::fail). Without a
//! dead-letter sink the first failure ends the job (the safe default: nothing is dropped
//! unnoticed). With one ([`Job::dead_letter`](crate::Job::dead_letter)), every failure
//! becomes a [`DeadLetter`], with the record's [`Origin`] and original bytes where the failing
//! stage saw the [`RawRecord`], and the job goes on.
//!
//! Depends on [`error`](crate::error) only, so every layer can use it.

use std::sync::Arc;

use crate::error::{BoxError, ErrorChain, JobError};

/// Where a record came from: a stream (Kafka topic, file), a partition of it, an offset.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The stream: a Kafka topic, a file path.
    pub stream: Arc<str>,
    /// The partition (0 for unpartitioned streams).
    pub partition: i32,
    /// The offset (record number for files).
    pub offset: i64,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}@{}", self.stream, self.partition, self.offset)
    }
}

/// A record as it arrived, before decoding: what a dead letter keeps of it.
pub trait RawRecord {
    /// Where it came from, if known.
    fn origin(&self) -> Option<Origin>;
    /// Its key bytes, if any.
    fn raw_key(&self) -> Option<&[u8]>;
    /// Its value bytes, if any.
    fn raw_value(&self) -> Option<&[u8]>;
}

/// A record that failed, with everything needed to find, understand and replay it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The operator whose function failed (its name in the job's metrics).
    pub stage: Arc<str>,
    /// The error, with its causes.
    pub error: String,
    /// Where the record came from, if the failing stage saw the raw record.
    pub origin: Option<Origin>,
    /// The record's original key bytes.
    pub key: Option<Vec<u8>>,
    /// The record's original value bytes.
    pub value: Option<Vec<u8>>,
}

impl DeadLetter {
    pub(crate) fn from_failure(failure: Failure) -> Self {
        let error = ErrorChain(failure.error.as_ref()).to_string();
        Self {
            stage: failure.operator.unwrap_or_else(|| Arc::from("<unnamed>")),
            error,
            origin: failure.origin,
            key: failure.key,
            value: failure.value,
        }
    }
}

/// A record could not be processed by a user function: reported through
/// [`Emit::fail`](crate::Emit::fail) and turned into [`JobError::UserFunction`].
#[derive(Debug)]
pub struct Failure {
    pub(crate) operator: Option<Arc<str>>,
    pub(crate) error: BoxError,
    pub(crate) origin: Option<Origin>,
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
    pub fn with_record(mut self, record: &impl RawRecord) -> Self {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("value of record t/0@7 is not valid UTF-8")]
    struct Decode(#[source] std::str::Utf8Error);

    #[test]
    fn a_dead_letter_names_each_cause_once() {
        let bytes = vec![0xff, 0xfe];
        let utf8 = std::str::from_utf8(&bytes).expect_err("invalid on purpose");
        let mut failure = Failure::new(Decode(utf8));
        failure.tag(&Arc::from("decode"));
        let letter = DeadLetter::from_failure(failure);
        assert_eq!(
            letter.error,
            format!("value of record t/0@7 is not valid UTF-8: {utf8}")
        );
        assert_eq!(letter.error.matches(&utf8.to_string()).count(), 1);
    }
}

/// A user function panicked on a record. With a dead-letter sink the record becomes a dead
/// letter with this error (and the job goes on); without one the panic ends the job as
/// [`JobError::Panicked`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("panicked: {message}")]
pub struct PanickedOnRecord {
    /// The panic's message, if its payload was a string.
    pub message: String,
}

impl PanickedOnRecord {
    /// The error for a caught panic's payload.
    pub(crate) fn from_payload(payload: &(dyn std::any::Any + Send)) -> Self {
        Self {
            message: panic_message(payload),
        }
    }
}

/// The text of a panic's payload (`panic!` with a string or a format), or a placeholder.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}
