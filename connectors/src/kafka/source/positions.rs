//! Positions: the next offset of every partition a worker handed on, as a live table, as
//! stored in checkpoints and batch plans, and the commit counters.

use rill_engine::sync::Lock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rill_engine::state::{decode, encode, RestoredState};
use rill_engine::BoxError;

/// The next offset to read, per partition, of the records a worker has handed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionPosition {
    /// Topic.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// Offset of the next record to read (last handed on + 1).
    pub next_offset: i64,
}

pub(super) type PositionTable = Arc<Mutex<Vec<PartitionPosition>>>;

pub(super) fn lock(
    table: &Mutex<Vec<PartitionPosition>>,
) -> MutexGuard<'_, Vec<PartitionPosition>> {
    // Positions are plain values updated in place: a panic cannot leave one half-written.
    table.locked()
}

/// The positions of every worker of a [`KafkaSource`](crate::kafka::KafkaSource): what the checkpoint stores and what a
/// restart seeks to. Readable from any thread while the job runs.
#[derive(Debug, Clone, Default)]
pub struct SourcePositions {
    workers: Arc<Mutex<Vec<PositionTable>>>,
}

impl SourcePositions {
    pub(super) fn register(&self, table: PositionTable) {
        self.workers.locked().push(table);
    }

    /// Every partition currently owned by a worker, with the next offset to read, sorted.
    pub fn snapshot(&self) -> Vec<PartitionPosition> {
        let workers = self.workers.locked();
        let mut all: Vec<PartitionPosition> =
            workers.iter().flat_map(|t| lock(t).clone()).collect();
        all.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        all
    }
}

/// Counters of a [`KafkaSource`](crate::kafka::KafkaSource), over all its workers.
#[derive(Debug, Default)]
pub struct SourceStats {
    pub(super) commits: AtomicU64,
    pub(super) failed_commits: AtomicU64,
    pub(super) out_of_range: AtomicU64,
    pub(super) consumer_errors: AtomicU64,
}

impl SourceStats {
    /// Successful offset commits (on revoke and at the end).
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Offset commits the broker refused (for example during a rebalance). Each one may make
    /// the partition's next owner re-read records handed on since the last successful commit.
    pub fn failed_commits(&self) -> u64 {
        self.failed_commits.load(Ordering::Relaxed)
    }

    /// Errors the consumers reported (a broker unreachable, a topic deleted or not
    /// authorized): each is retried; an outage longer than the source's
    /// `unavailable_timeout` fails the job.
    pub fn consumer_errors(&self) -> u64 {
        self.consumer_errors.load(Ordering::Relaxed)
    }

    /// Restored positions that were no longer in their partition's range (retention deleted
    /// the records, or the topic was recreated) and restarted at the earliest retained
    /// offset. Each one means records the job never read are gone; a warning says which.
    pub fn out_of_range_positions(&self) -> u64 {
        self.out_of_range.load(Ordering::Relaxed)
    }
}

/// A partition's position as stored in a checkpoint (or its end, in a batch plan).
pub(super) type StoredPosition = (String, i32, i64);

/// Partition offsets as a checkpoint or batch plan stores them.
pub(super) fn encode_positions(positions: &[PartitionPosition]) -> Result<Vec<u8>, BoxError> {
    let stored: Vec<StoredPosition> = positions
        .iter()
        .map(|p| (p.topic.to_string(), p.partition, p.next_offset))
        .collect();
    Ok(encode(&stored)?)
}

/// Every old worker's stored offsets merged: partitions may have moved between workers.
pub(super) fn decode_positions(state: &RestoredState<'_>) -> Result<Vec<StoredPosition>, BoxError> {
    let mut stored: Vec<StoredPosition> = Vec::new();
    for blob in state.worker_blobs().iter().flatten() {
        stored.extend(decode::<Vec<StoredPosition>>(blob, state.node())?);
    }
    Ok(stored)
}
