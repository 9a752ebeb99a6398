//! Positions: the next offset of every partition a worker handed on, as a live table, as
//! stored in checkpoints and batch plans, and the commit counters.

use rill_engine::sync::Lock;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
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

/// One owned partition in a worker's live table. The owning worker moves its next offset on
/// every record it hands on with an atomic store, no lock: the table's lock guards only which
/// partitions are owned (assignment, revocation, restore), which changes rarely.
#[derive(Debug)]
pub(super) struct LivePosition {
    topic: Arc<str>,
    partition: i32,
    next_offset: AtomicI64,
    /// Cleared when the partition leaves the table: a handle a reader kept is then stale.
    owned: AtomicBool,
}

impl LivePosition {
    /// Whether this is `partition` of `topic`; the topic compares by pointer first, as
    /// records of one topic share its name.
    #[inline]
    pub(super) fn is(&self, topic: &Arc<str>, partition: i32) -> bool {
        self.partition == partition && (Arc::ptr_eq(&self.topic, topic) || self.topic == *topic)
    }

    /// Still in its worker's table.
    #[inline]
    pub(super) fn is_owned(&self) -> bool {
        self.owned.load(Ordering::Relaxed)
    }

    /// Moves the next offset (the owning worker's thread only).
    #[inline]
    pub(super) fn set(&self, next_offset: i64) {
        self.next_offset.store(next_offset, Ordering::Release);
    }

    pub(super) fn next_offset(&self) -> i64 {
        self.next_offset.load(Ordering::Acquire)
    }

    pub(super) fn get(&self) -> PartitionPosition {
        PartitionPosition {
            topic: self.topic.clone(),
            partition: self.partition,
            next_offset: self.next_offset(),
        }
    }
}

/// The partitions a worker owns and the next offset of each: written by the worker, read by
/// its rebalance callbacks (on the same thread) and by [`SourcePositions`] (any thread).
#[derive(Debug, Default)]
pub(super) struct LiveTable {
    owned: Mutex<Vec<Arc<LivePosition>>>,
}

pub(super) type PositionTable = Arc<LiveTable>;

impl LiveTable {
    fn entries(&self) -> MutexGuard<'_, Vec<Arc<LivePosition>>> {
        // Entries are added and removed whole: a panic cannot leave one half-written.
        self.owned.locked()
    }

    /// Every owned partition with its next offset, in the order they were added.
    pub(super) fn snapshot(&self) -> Vec<PartitionPosition> {
        self.entries().iter().map(|p| p.get()).collect()
    }

    /// The live entry of `partition` of `topic`, if owned.
    pub(super) fn find(&self, topic: &Arc<str>, partition: i32) -> Option<Arc<LivePosition>> {
        self.entries()
            .iter()
            .find(|p| p.is(topic, partition))
            .cloned()
    }

    /// Sets a partition's position, adding it if it is not owned yet; returns its entry.
    pub(super) fn put(&self, position: PartitionPosition) -> Arc<LivePosition> {
        let mut entries = self.entries();
        if let Some(live) = entries
            .iter()
            .find(|p| p.is(&position.topic, position.partition))
        {
            live.set(position.next_offset);
            return live.clone();
        }
        let live = Arc::new(LivePosition {
            topic: position.topic,
            partition: position.partition,
            next_offset: AtomicI64::new(position.next_offset),
            owned: AtomicBool::new(true),
        });
        entries.push(live.clone());
        live
    }

    /// Removes the partitions `selected` picks (topic, partition) and returns their positions.
    pub(super) fn take(&self, selected: impl Fn(&str, i32) -> bool) -> Vec<PartitionPosition> {
        let mut taken = Vec::new();
        self.entries().retain(|p| {
            if selected(&p.topic, p.partition) {
                p.owned.store(false, Ordering::Relaxed);
                taken.push(p.get());
                false
            } else {
                true
            }
        });
        taken
    }

    /// Every owned entry, to move each one (restore).
    pub(super) fn live(&self) -> Vec<Arc<LivePosition>> {
        self.entries().clone()
    }
}

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
        let mut all: Vec<PartitionPosition> = workers.iter().flat_map(|t| t.snapshot()).collect();
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
    pub(super) lost_assignments: AtomicU64,
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

    /// Times a worker's partitions were lost rather than revoked: the group's coordinator
    /// dropped the member (a missed session timeout, or a broker that restarted its group).
    /// What the worker had handed on is where this job's next owner of each partition
    /// resumes; a consumer of another process would start at the group's last commit.
    pub fn lost_assignments(&self) -> u64 {
        self.lost_assignments.load(Ordering::Relaxed)
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
