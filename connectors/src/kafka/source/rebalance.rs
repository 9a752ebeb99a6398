//! Group membership: applying the start position to partitions the group assigns, committing
//! what was handed on when partitions are revoked, and leaving the group cleanly.

use rill_engine::sync::Lock;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::positions::{lock, PartitionPosition, PositionTable, SourceStats};
use super::start::StartFrom;

/// How long a leaving source waits for its revocation (which commits what it handed on)
/// before giving up and letting the consumer close.
pub(super) const FINAL_COMMIT_REJOIN: Duration = Duration::from_secs(10);

/// What all workers of one source share about partition ownership: partitions move between
/// them on every rebalance.
#[derive(Debug, Default)]
pub(super) struct Ownership {
    /// Partitions some worker of this job was assigned earlier in this run: `Earliest` and
    /// `Latest` apply only the first time, later assignments continue where the job was.
    pub(super) assigned_before: Mutex<HashSet<(String, i32)>>,
    /// Positions of partitions revoked from a worker whose commit the broker refused: the
    /// worker of this job that gets the partition next resumes there instead of at the stale
    /// committed offset.
    pub(super) released: Mutex<Vec<PartitionPosition>>,
}

/// Handles partition assignment: applies the start position and commits on revoke.
pub(super) struct RebalanceContext {
    pub(super) start: StartFrom,
    pub(super) positions: PositionTable,
    pub(super) ownership: Arc<Ownership>,
    pub(super) stats: Arc<SourceStats>,
    pub(super) error: Mutex<Option<KafkaError>>,
    /// Errors librdkafka reported through the client's error callback (brokers down,
    /// transport failures), for the reader to count and act on.
    pub(super) client_errors: Mutex<Vec<String>>,
    /// Set when `client_errors` has entries: the reader's poll checks this flag, not the
    /// lock, on every call.
    pub(super) has_client_errors: std::sync::atomic::AtomicBool,
    /// The job failed: nothing more is committed (what was handed on may not have been
    /// written by the sinks); a restart re-reads from the last acknowledged commit.
    pub(super) abandoned: std::sync::atomic::AtomicBool,
    /// How many events the consumer's poll served without returning them: rebalances, commit
    /// results, log lines, statistics. rdkafka's poll returns `None` both for an empty queue
    /// and after serving one such event; the reader tells the two apart by this count, so an
    /// event does not end its poll with more (records, or the next step of a rebalance)
    /// still queued. Only the polling worker's thread touches it.
    pub(super) events_served: AtomicU64,
}

impl RebalanceContext {
    /// How many events polls have served without returning them, so far.
    pub(super) fn events_served(&self) -> u64 {
        self.events_served.load(Ordering::Relaxed)
    }

    fn served_event(&self) {
        self.events_served.fetch_add(1, Ordering::Relaxed);
    }

    fn record_error(&self, e: KafkaError) {
        let mut slot = self.error.locked();
        slot.get_or_insert(e);
    }

    /// Removes the positions of `partitions` (all owned ones if `None`) from this worker's
    /// table, as a commit request.
    pub(super) fn take_positions(
        &self,
        partitions: Option<&TopicPartitionList>,
    ) -> (TopicPartitionList, Vec<PartitionPosition>) {
        let taken = self.positions.take(|topic, partition| {
            partitions.is_none_or(|tpl| tpl.find_partition(topic, partition).is_some())
        });
        let mut commit = TopicPartitionList::new();
        for p in &taken {
            let _ =
                commit.add_partition_offset(&p.topic, p.partition, Offset::Offset(p.next_offset));
        }
        (commit, taken)
    }

    /// Commits the positions of `partitions` (all owned ones if `None`), and forgets them.
    ///
    /// A failed commit is not a job failure: nothing is lost, but the partition's next owner
    /// may re-read what was handed on since the last successful commit. It is counted in
    /// [`SourceStats`], and the positions are kept for the job's other workers.
    pub(super) fn commit_positions(
        &self,
        consumer: &BaseConsumer<Self>,
        partitions: Option<&TopicPartitionList>,
    ) {
        let (commit, taken) = self.take_positions(partitions);
        if commit.count() == 0 || self.abandoned.load(Ordering::Acquire) {
            return;
        }
        match consumer.commit(&commit, CommitMode::Sync) {
            Ok(()) => self.stats.commits.fetch_add(1, Ordering::Relaxed),
            Err(_) => {
                lock(&self.ownership.released).extend(taken);
                self.stats.failed_commits.fetch_add(1, Ordering::Relaxed)
            }
        };
    }

    /// Partitions lost rather than revoked (the coordinator dropped this member): a commit
    /// would be refused. What was handed on is kept for this job's worker that gets each
    /// partition next, as for a refused commit; without it that worker would start at the
    /// group's last commit and hand on everything since a second time.
    fn release_lost(&self, partitions: &TopicPartitionList) {
        let (_, taken) = self.take_positions(Some(partitions));
        if !taken.is_empty() && !self.abandoned.load(Ordering::Acquire) {
            lock(&self.ownership.released).extend(taken);
            self.stats.lost_assignments.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Where each newly assigned partition in `tpl` starts, set in `tpl`: where this job
    /// released it (a refused revoke-time commit), else the configured start the first time
    /// this job gets it, else the group's committed offset (left unset).
    ///
    /// Returns the partitions that resume where this job released them.
    fn apply_start_positions(&self, tpl: &mut TopicPartitionList) -> Vec<PartitionPosition> {
        let start = match self.start {
            StartFrom::Committed => None,
            StartFrom::Earliest => Some(Offset::Beginning),
            StartFrom::Latest => Some(Offset::End),
        };
        let mut before = self.ownership.assigned_before.locked();
        let owned: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        let mut released = lock(&self.ownership.released);
        let mut resumed = Vec::new();
        for (topic, partition) in owned {
            let first_time = before.insert((topic.clone(), partition));
            let resume = released
                .iter()
                .position(|p| p.partition == partition && *p.topic == *topic)
                .map(|i| released.swap_remove(i));
            let offset = match (resume, first_time, start) {
                (Some(p), _, _) => {
                    let offset = Some(Offset::Offset(p.next_offset));
                    // Owned again: its position must be committed or released later even if
                    // nothing new is handed on before then.
                    resumed.push(p.clone());
                    self.positions.put(p);
                    offset
                }
                (None, true, Some(start)) => Some(start),
                _ => None,
            };
            if let Some(offset) = offset {
                if let Err(e) = tpl.set_partition_offset(&topic, partition, offset) {
                    self.record_error(e);
                }
            }
        }
        resumed
    }

    /// Moves each partition in `resumed` up to the group's committed offset where that is
    /// further on: a consumer of another process may have owned it in between and read
    /// past where this job left it. Without an answer from the broker the job's own position
    /// stands (records may be read twice, none are skipped).
    fn catch_up_with_commits(
        &self,
        consumer: &BaseConsumer<Self>,
        tpl: &mut TopicPartitionList,
        resumed: &[PartitionPosition],
    ) {
        let mut asked = TopicPartitionList::new();
        for p in resumed {
            asked.add_partition(&p.topic, p.partition);
        }
        let Ok(committed) = consumer.committed_offsets(asked, COMMITTED_LOOKUP) else {
            return;
        };
        for p in ahead_of(resumed, &committed) {
            if let Err(e) =
                tpl.set_partition_offset(&p.topic, p.partition, Offset::Offset(p.next_offset))
            {
                self.record_error(e);
            }
            self.positions.put(p);
        }
    }
}

/// How long a rebalance waits for the group's committed offsets of partitions it resumes.
const COMMITTED_LOOKUP: Duration = Duration::from_secs(5);

/// The partitions of `resumed` whose committed offset in `committed` is further on, at that
/// offset.
fn ahead_of(
    resumed: &[PartitionPosition],
    committed: &TopicPartitionList,
) -> Vec<PartitionPosition> {
    resumed
        .iter()
        .filter_map(
            |p| match committed.find_partition(&p.topic, p.partition)?.offset() {
                Offset::Offset(c) if c > p.next_offset => Some(PartitionPosition {
                    next_offset: c,
                    ..p.clone()
                }),
                _ => None,
            },
        )
        .collect()
}

impl ClientContext for RebalanceContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let mut errors = self.client_errors.locked();
        // Bounded: the reader drains them at every poll.
        if errors.len() < 64 {
            errors.push(format!("{error}: {reason}"));
        }
        self.has_client_errors.store(true, Ordering::Release);
    }

    /// Forwards to the `log` crate as rdkafka's default does, and counts the event.
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.served_event();
        let level = match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => log::Level::Error,
            RDKafkaLogLevel::Warning => log::Level::Warn,
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => log::Level::Info,
            RDKafkaLogLevel::Debug => log::Level::Debug,
        };
        log::log!(target: "librdkafka", level, "librdkafka: {fac} {log_message}");
    }

    /// Logs the statistics at `info` as rdkafka's default does, and counts the event.
    fn stats(&self, statistics: Statistics) {
        self.served_event();
        log::info!("Client stats: {statistics:?}");
    }
}

impl ConsumerContext for RebalanceContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        self.served_event();
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let resumed = self.apply_start_positions(tpl);
                if !resumed.is_empty() {
                    self.catch_up_with_commits(consumer, tpl, &resumed);
                }
                if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                // Everything handed on from these partitions has gone through this worker's
                // pipeline: commit so the next owner starts after it.
                if !consumer.assignment_lost() {
                    self.commit_positions(consumer, Some(tpl));
                } else {
                    self.release_lost(tpl);
                }
                if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                }
            }
            other => Err(KafkaError::Rebalance(other.into())),
        };
        if let Err(e) = result {
            self.record_error(e);
        }
    }

    /// Asynchronous commit results: counted as served; a failed commit is already counted
    /// where it was made.
    fn commit_callback(&self, _result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        self.served_event();
    }
}

/// Leaving the group cleanly.
pub(super) trait Unsubscribe {
    /// Unsubscribes and serves the resulting revocation until nothing is assigned, or `wait`
    /// has passed (then `Err`).
    fn unsubscribe_and_wait(&self, wait: Duration) -> Result<(), ()>;
}

impl Unsubscribe for BaseConsumer<RebalanceContext> {
    fn unsubscribe_and_wait(&self, wait: Duration) -> Result<(), ()> {
        self.unsubscribe();
        let deadline = Instant::now() + wait;
        loop {
            let assigned = self.assignment().map(|a| a.count()).unwrap_or(0);
            if assigned == 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(());
            }
            // Serves the revocation; any record polled now was never handed on.
            let _ = self.poll(Duration::from_millis(50));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(start: StartFrom) -> RebalanceContext {
        RebalanceContext {
            start,
            positions: PositionTable::default(),
            ownership: Arc::default(),
            stats: Arc::default(),
            error: Mutex::default(),
            client_errors: Mutex::default(),
            has_client_errors: Default::default(),
            abandoned: Default::default(),
            events_served: AtomicU64::new(0),
        }
    }

    fn position(topic: &str, partition: i32, next_offset: i64) -> PartitionPosition {
        PartitionPosition {
            topic: Arc::from(topic),
            partition,
            next_offset,
        }
    }

    /// The offsets `apply_start_positions` sets for an assignment of `partitions` of `t`.
    fn assign(ctx: &RebalanceContext, partitions: &[i32]) -> Vec<(i32, Offset)> {
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            tpl.add_partition("t", *p);
        }
        let _ = ctx.apply_start_positions(&mut tpl);
        tpl.elements()
            .iter()
            .map(|e| (e.partition(), e.offset()))
            .collect()
    }

    #[test]
    fn the_configured_start_applies_only_the_first_time_a_partition_is_assigned() {
        let ctx = context(StartFrom::Earliest);
        assert_eq!(
            assign(&ctx, &[0, 1]),
            [(0, Offset::Beginning), (1, Offset::Beginning)]
        );
        // Moved away and back: continue from the group's committed offset.
        assert_eq!(
            assign(&ctx, &[1, 2]),
            [(1, Offset::Invalid), (2, Offset::Beginning)]
        );
        let committed = context(StartFrom::Committed);
        assert_eq!(assign(&committed, &[0]), [(0, Offset::Invalid)]);
    }

    #[test]
    fn a_released_partition_resumes_where_this_job_left_it() {
        let ctx = context(StartFrom::Latest);
        assert_eq!(assign(&ctx, &[0]), [(0, Offset::End)]);
        // Revoked with its commit refused: kept for the next owner among this job's workers.
        lock(&ctx.ownership.released).push(position("t", 0, 42));
        assert_eq!(assign(&ctx, &[0]), [(0, Offset::Offset(42))]);
        assert!(lock(&ctx.ownership.released).is_empty(), "taken once");
        // Owned again: its position is tracked, so the next revocation commits it.
        assert_eq!(ctx.positions.snapshot(), [position("t", 0, 42)]);
    }

    #[test]
    fn lost_partitions_resume_where_this_job_left_them() {
        let ctx = context(StartFrom::Committed);
        assert_eq!(
            assign(&ctx, &[0, 1]),
            [(0, Offset::Invalid), (1, Offset::Invalid)]
        );
        ctx.positions.put(position("t", 0, 120));
        ctx.positions.put(position("t", 1, 80));
        let mut lost = TopicPartitionList::new();
        lost.add_partition("t", 0);
        lost.add_partition("t", 1);
        ctx.release_lost(&lost);
        assert!(ctx.positions.snapshot().is_empty());
        assert_eq!(ctx.stats.lost_assignments(), 1);
        // The group hands them out again: each resumes after what was handed on, not at the
        // group's committed offset.
        assert_eq!(assign(&ctx, &[1]), [(1, Offset::Offset(80))]);
        assert_eq!(assign(&ctx, &[0]), [(0, Offset::Offset(120))]);

        // A failed job keeps nothing: a restart reads from the last acknowledged commit.
        let failed = context(StartFrom::Committed);
        failed.positions.put(position("t", 0, 120));
        failed.abandoned.store(true, Ordering::Release);
        failed.release_lost(&lost);
        assert!(lock(&failed.ownership.released).is_empty());
    }

    #[test]
    fn a_resumed_partition_moves_up_to_a_commit_that_is_further_on() {
        let resumed = [
            position("t", 0, 100),
            position("t", 1, 100),
            position("t", 2, 100),
        ];
        let mut committed = TopicPartitionList::new();
        // Another process read partition 0 further; 1 is behind this job; 2 has no commit.
        let _ = committed.add_partition_offset("t", 0, Offset::Offset(250));
        let _ = committed.add_partition_offset("t", 1, Offset::Offset(40));
        let _ = committed.add_partition_offset("t", 2, Offset::Invalid);
        assert_eq!(ahead_of(&resumed, &committed), [position("t", 0, 250)]);
    }

    #[test]
    fn a_revocation_takes_exactly_the_revoked_partitions() {
        let ctx = context(StartFrom::Committed);
        for p in [
            position("t", 0, 5),
            position("t", 1, 7),
            position("u", 0, 9),
        ] {
            ctx.positions.put(p);
        }
        let mut revoked = TopicPartitionList::new();
        revoked.add_partition("t", 1);
        revoked.add_partition("u", 0);
        let (commit, taken) = ctx.take_positions(Some(&revoked));
        let offsets: Vec<(String, i32, Offset)> = commit
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition(), e.offset()))
            .collect();
        assert_eq!(
            offsets,
            [
                ("t".to_string(), 1, Offset::Offset(7)),
                ("u".to_string(), 0, Offset::Offset(9))
            ]
        );
        assert_eq!(taken, [position("t", 1, 7), position("u", 0, 9)]);
        assert_eq!(ctx.positions.snapshot(), [position("t", 0, 5)]);
        let (rest, _) = ctx.take_positions(None);
        assert_eq!(rest.count(), 1);
        assert!(ctx.positions.snapshot().is_empty());
    }
}
