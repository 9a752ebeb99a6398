//! Two-phase commit of a transactional sink, driven by the checkpoint coordinator.

use crate::checkpoint::config::CheckpointConfig;
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
///
/// A minimal transactional sink: writers stage each epoch's records at its barrier, and the
/// committer publishes everything staged up to an epoch together with that epoch's number,
/// under one lock (the atomicity a real store gets from its transaction):
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use rill_engine::sync::Lock;
/// use rill_engine::{BoxError, CheckpointConfig, Committer, Config, Epoch, Job, Sink, SinkWriter, WorkerContext};
/// use rill_connectors::MemorySource;
///
/// #[derive(Default)]
/// struct Store { staged: Vec<(Epoch, u32)>, published: Vec<u32>, committed: Option<Epoch> }
///
/// #[derive(Clone, Default)]
/// struct Published(Arc<Mutex<Store>>);
///
/// impl Committer for Published {
///     fn recover(&self) -> Result<Option<Epoch>, BoxError> {
///         let mut store = self.0.locked();
///         store.staged.clear(); // a crashed run's uncommitted records are aborted
///         Ok(store.committed)
///     }
///     fn begin(&self, _after: Epoch) -> Result<(), BoxError> {
///         Ok(())
///     }
///     fn commit(&self, epoch: Epoch) -> Result<(), BoxError> {
///         let mut store = self.0.locked();
///         let (now, later) = store.staged.drain(..).partition(|(e, _)| *e <= epoch);
///         store.staged = later;
///         store.published.extend(now.into_iter().map(|(_, r): (Epoch, u32)| r));
///         store.committed = Some(epoch);
///         Ok(())
///     }
///     fn name(&self) -> &str {
///         "published"
///     }
/// }
///
/// struct StagingWriter { store: Arc<Mutex<Store>>, pending: Vec<u32> }
///
/// impl SinkWriter<u32> for StagingWriter {
///     fn write(&mut self, item: u32) -> Result<(), BoxError> {
///         self.pending.push(item);
///         Ok(())
///     }
///     // Pre-commit: what came before barrier `epoch` belongs to that epoch's transaction.
///     fn on_barrier(&mut self, epoch: Epoch) -> Result<(), BoxError> {
///         let staged = self.pending.drain(..).map(|r| (epoch, r));
///         self.store.locked().staged.extend(staged);
///         Ok(())
///     }
/// }
///
/// impl Sink<u32> for Published {
///     type Writer = StagingWriter;
///     fn create(&self, _ctx: &WorkerContext) -> Result<StagingWriter, BoxError> {
///         Ok(StagingWriter { store: self.0.clone(), pending: Vec::new() })
///     }
///     fn name(&self) -> &str {
///         "published"
///     }
///     fn committer(&self) -> Option<Arc<dyn Committer>> {
///         Some(Arc::new(self.clone()))
///     }
/// }
///
/// let dir = std::env::temp_dir().join(format!("rill-committer-doc-{}", std::process::id()));
/// # let _ = std::fs::remove_dir_all(&dir);
/// let out = Published::default();
/// let job = Job::new("transactional");
/// job.source(MemorySource::new((0u32..100).collect())).sink(out.clone());
/// let config = Config::default().with_workers(2).with_checkpoints(CheckpointConfig::new(&dir));
/// job.run(config)?.await_termination()?;
/// // The final checkpoint committed everything, once.
/// let store = out.0.locked();
/// assert_eq!(store.published.len(), 100);
/// assert!(store.staged.is_empty() && store.committed.is_some());
/// # drop(store);
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok::<(), rill_engine::JobError>(())
/// ```
pub trait Committer: Send + Sync + 'static {
    /// Called once before [`recover`](Self::recover) with the job's checkpoint settings: a
    /// transaction stays open from one checkpoint's completion until the next one's, so up to
    /// `interval + timeout`. A committer whose store aborts transactions open longer than some
    /// limit (Kafka's `transaction.timeout.ms`) raises that limit here, or refuses the
    /// configuration with a clear error. The default accepts any setting.
    fn prepare(&self, checkpoints: &CheckpointConfig) -> Result<(), BoxError> {
        let _ = checkpoints;
        Ok(())
    }

    /// Called once before the workers start: fences earlier instances of this job's sink
    /// (aborting any transaction they left open) and returns the newest committed epoch, or
    /// `None` if nothing was ever committed.
    fn recover(&self) -> Result<Option<Epoch>, BoxError>;

    /// Where this committer records the newest committed epoch, in words, for the error that
    /// stops a job whose record went missing (for a Kafka sink: the consumer group of its
    /// commit marker). The default names the sink.
    fn commit_record(&self) -> String {
        format!("kept by sink `{}`", self.name())
    }

    /// Opens the transaction for the records that follow barrier `after`.
    fn begin(&self, after: Epoch) -> Result<(), BoxError>;

    /// Publishes every record written before barrier `epoch`, and records `epoch` as
    /// committed, atomically.
    fn commit(&self, epoch: Epoch) -> Result<(), BoxError>;

    /// A short name for errors.
    fn name(&self) -> &str;

    /// Whether the sink needs checkpoints at all. `true` (the default): a job without
    /// checkpoints is refused, because the sink's output would never be committed. A sink
    /// that can also publish on its own, at-least-once, returns `false`: without checkpoints
    /// the job then runs without this committer, whose [`recover`](Self::recover) is never
    /// called: that is how its writers can tell (micro-batch epochs run even without a
    /// checkpoint location, so epochs alone do not say that anything will commit).
    fn needs_checkpoints(&self) -> bool {
        true
    }
}
