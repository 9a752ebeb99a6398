//! Where and how often a job checkpoints.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::checkpoint::storage::CheckpointStorage;

/// Where and how often a job checkpoints.
///
/// ```
/// use std::time::Duration;
/// use rill_engine::CheckpointConfig;
/// let c = CheckpointConfig::new("/tmp/rill-ckpt").with_interval(Duration::from_millis(500));
/// assert_eq!(c.retain, 3);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CheckpointConfig {
    /// The checkpoint directory; created if missing. A job restores from it at start.
    pub location: PathBuf,
    /// Time from the start of one checkpoint to the start of the next (Flink's checkpoint
    /// interval), and at least half of it from the completion of one to the start of the
    /// next, so that a checkpoint slower than the interval is not followed at once by another.
    /// Exactly-once output becomes visible once per interval. Default 1 s.
    pub interval: Duration,
    /// Complete checkpoints kept; older ones are deleted, except the files a kept incremental
    /// checkpoint still refers to. Default 3 (at least 1).
    pub retain: usize,
    /// Every `full_every`-th checkpoint (and the first of every run) stores all keyed state;
    /// the ones in between are incremental: they store only the entries written and the keys
    /// removed since the previous checkpoint, and a restore applies them in order on top of
    /// the last full one, so a checkpoint of 1 M keys of which a few hundred changed writes
    /// kilobytes, not megabytes. A larger value makes checkpoints cheaper and restores read
    /// more files. Default 10; 1 makes every checkpoint full. (State kept with an event-time
    /// watermark, such as windows and state functions, is stored whole every time.)
    pub full_every: u32,
    /// A checkpoint not complete after this long fails the job. Default 60 s.
    pub timeout: Duration,
    /// An operator's statement that the output of this epoch (and every one before it) is
    /// committed, for the one restart after a transactional sink lost its own record of what
    /// it committed; see [`assume_committed`](Self::assume_committed). Default `None`.
    pub assumed_committed: Option<u64>,
    /// Where the checkpoints go when they do not go to the directory `location`: an object
    /// store (see [`CheckpointConfig::on`]). Default `None`.
    pub storage: Option<Arc<dyn CheckpointStorage>>,
}

impl CheckpointConfig {
    /// Checkpoints under `location` every second, keeping three.
    pub fn new(location: impl Into<PathBuf>) -> Self {
        Self {
            location: location.into(),
            interval: Duration::from_secs(1),
            retain: 3,
            full_every: 10,
            timeout: Duration::from_secs(60),
            assumed_committed: None,
            storage: None,
        }
    }

    /// Checkpoints into `storage` (an object store, `s3://bucket/prefix`) every second,
    /// keeping three: the same format and guarantees as a directory, on a location every
    /// process of a job can reach. `location` becomes the storage's URL, for messages.
    pub fn on(storage: Arc<dyn CheckpointStorage>) -> Self {
        let mut config = Self::new(storage.url());
        config.storage = Some(storage);
        config
    }
    /// Sets the interval between checkpoints.
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }
    /// Sets how many complete checkpoints are kept.
    pub fn with_retain(mut self, retain: usize) -> Self {
        self.retain = retain.max(1);
        self
    }
    /// Sets how often a checkpoint stores all keyed state (see
    /// [`full_every`](Self::full_every)); 1 turns incremental checkpoints off.
    ///
    /// ```
    /// use rill_engine::CheckpointConfig;
    /// let every_one_full = CheckpointConfig::new("/tmp/rill-ckpt").with_full_every(1);
    /// assert_eq!(every_one_full.full_every, 1);
    /// assert_eq!(CheckpointConfig::new("/tmp/rill-ckpt").with_full_every(0).full_every, 1);
    /// ```
    pub fn with_full_every(mut self, full_every: u32) -> Self {
        self.full_every = full_every.max(1);
        self
    }
    /// Sets the time after which an incomplete checkpoint fails the job.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
    /// Restores as if a transactional sink had committed the output of `epoch` and of every
    /// epoch before it, when the sink's own record of its commits is missing or older than
    /// what the checkpoints prove (a Kafka sink's commit marker is a consumer-group offset,
    /// which the broker deletes after `offsets.retention.minutes` without commits, or which a
    /// changed transactional id no longer finds).
    ///
    /// Without it such a job refuses to start and keeps its checkpoints: guessing would
    /// either repeat committed output or skip uncommitted output. The refusal names the range
    /// `epoch` must lie in. It has no effect when the sink's record is consistent with the
    /// checkpoints; a checkpoint of `epoch` must exist.
    pub fn assume_committed(mut self, epoch: u64) -> Self {
        self.assumed_committed = Some(epoch);
        self
    }
}
