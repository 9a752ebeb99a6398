//! Two-phase commit of a transactional sink, driven by the checkpoint coordinator.

use crate::error::BoxError;
use crate::runtime::message::Epoch;

/// The job-wide side of a transactional sink (for example the exactly-once Kafka sink).
///
/// The sink's per-worker instances write into the transaction this committer opened; at
/// `Barrier(n)` they stop adding to it (pre-commit) and hold later records until the
/// coordinator has made checkpoint n durable and called [`commit`](Self::commit)`(n)`, which
/// must atomically publish the records *and* record `n` as committed, so that after a crash
/// [`recover`](Self::recover) can tell whether checkpoint n's output is visible. The
/// coordinator then restores the newest checkpoint at or below that epoch, so the job's state
/// always matches what readers have seen: nothing lost, nothing twice.
pub trait Committer: Send + Sync + 'static {
    /// Called once before the workers start: fences earlier instances of this job's sink
    /// (aborting any transaction they left open) and returns the newest committed epoch, or
    /// `None` if nothing was ever committed.
    fn recover(&self) -> Result<Option<Epoch>, BoxError>;

    /// Opens the transaction for the records that follow barrier `after`.
    fn begin(&self, after: Epoch) -> Result<(), BoxError>;

    /// Publishes every record written before barrier `epoch`, and records `epoch` as
    /// committed, atomically.
    fn commit(&self, epoch: Epoch) -> Result<(), BoxError>;

    /// A short name for errors.
    fn name(&self) -> &str;
}
