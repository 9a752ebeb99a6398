//! [`KafkaSource`]: what a user configures, and how it creates each worker's reader.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rill_engine::{BoxError, Source, WorkerContext};

use super::assignment::assign_share;
use super::health::ConsumerHealth;
use super::positions::{PositionTable, SourcePositions, SourceStats};
use super::reader::KafkaReader;
use super::rebalance::{Ownership, RebalanceContext};
use super::start::StartFrom;
use crate::kafka::client_config;
use crate::kafka::error::KafkaConnectorError;

/// Reads Kafka topics as [`KafkaRecord`](crate::kafka::KafkaRecord)s.
///
/// Every worker creates one consumer in the group `group_id`, so Kafka assigns each partition
/// to exactly one worker (a worker may get none when there are fewer partitions than workers).
/// Each worker polls its own consumer without blocking and pushes each record through its
/// pipeline at once; a parked worker is woken by librdkafka's queue callback.
///
/// Offsets are not auto-committed. The source commits the positions of what it handed on
/// when a partition is revoked (so the next owner continues after them: nothing handed on is
/// read twice) and when the source ends. A broker
/// may refuse the revoke-time commit (librdkafka's mock cluster does while a new member is
/// joining; real brokers accept it from the current generation): then the next owner re-reads
/// from the previous commit, which [`SourceStats::failed_commits`] counts, unless it is a
/// worker of the same job: partitions moving between this job's workers always resume exactly
/// where the job was.
///
/// **With checkpoints** (`Config::with_checkpoints`) the job, not the group, assigns the
/// partitions: partition i of the sorted list goes to worker i mod P, as in bounded mode, so
/// that every checkpoint holds one consistent offset per partition (a group rebalance between
/// two workers' barriers would not). Offsets are stored in the checkpoint and a restarted job
/// seeks to them, at any number of workers; they are also committed to the group when a
/// checkpoint completes, for lag monitoring. Partitions added to a topic while the job runs
/// are picked up at its next start.
///
/// ```no_run
/// use rill_connectors::kafka::{KafkaSource, StartFrom};
/// let source = KafkaSource::new("localhost:9092", "wordcount")
///     .topics(["input-text"])
///     .start_from(StartFrom::Earliest)
///     .set("fetch.wait.max.ms", "1");
/// ```
#[derive(Debug, Clone)]
pub struct KafkaSource {
    pub(super) brokers: String,
    pub(super) group_id: String,
    pub(super) topics: Vec<String>,
    pub(super) start: StartFrom,
    pub(super) overrides: Vec<(String, String)>,
    pub(super) positions: SourcePositions,
    pub(super) stats: Arc<SourceStats>,
    pub(super) ownership: Arc<Ownership>,
    pub(super) bounded: bool,
    pub(super) static_assignment: bool,
    pub(super) max_records_per_batch: Option<u64>,
    pub(super) unavailable_timeout: Duration,
    pub(super) commit_interval: Duration,
}

impl KafkaSource {
    /// A source reading from the cluster at `brokers` as consumer group `group_id`. Name the
    /// topics with [`topics`](Self::topics) (a name starting with `^` is a regex pattern).
    pub fn new(brokers: impl Into<String>, group_id: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            group_id: group_id.into(),
            topics: Vec::new(),
            start: StartFrom::default(),
            overrides: Vec::new(),
            positions: SourcePositions::default(),
            stats: Arc::default(),
            ownership: Arc::default(),
            bounded: false,
            static_assignment: false,
            max_records_per_batch: None,
            unavailable_timeout: Duration::from_secs(60),
            commit_interval: Duration::from_secs(5),
        }
    }

    /// Without checkpoints: how often the job commits to the consumer group the offsets of
    /// what every sink has acknowledged (default 5 s, Kafka's `auto.commit.interval.ms`). A
    /// job that fails commits nothing more, and one that is killed re-reads at most about
    /// this much: at least once, never lost. With checkpoints, offsets are committed when a
    /// checkpoint completes instead.
    pub fn commit_interval(mut self, interval: Duration) -> Self {
        self.commit_interval = interval;
        self
    }

    /// How long the consumer may keep reporting errors, with the cluster or a topic still
    /// unreadable, before the job fails with [`KafkaConnectorError::Unavailable`] (default
    /// 60 s). Until then librdkafka retries and the source probes the topics' metadata with
    /// backoff; the errors are counted in [`SourceStats::consumer_errors`]. A broker that is
    /// down at start, or a topic deleted or not authorized, ends the job (and a bounded run)
    /// instead of leaving it idle forever.
    pub fn unavailable_timeout(mut self, timeout: Duration) -> Self {
        self.unavailable_timeout = timeout;
        self
    }

    /// Micro-batch mode: at most `n` records per batch from this source, over all workers
    /// and partitions (Spark's `maxOffsetsPerTrigger`). A batch then never has to read a
    /// whole backlog, so it finishes within the checkpoint timeout and a restart that
    /// replays it does not fail the same way. Each worker plans `n / workers` (at least 1),
    /// split over its partitions in proportion to their backlog. With
    /// [`Trigger::AvailableNow`](rill_engine::Trigger::AvailableNow) the job runs as many
    /// batches as it takes to read what was there at its first batch. Offsets, not bytes: a
    /// batch of large records is large.
    pub fn max_records_per_batch(mut self, n: u64) -> Self {
        self.max_records_per_batch = Some(n.max(1));
        self
    }

    /// Reads only what the topics hold when the job starts, then ends (Spark's batch read,
    /// `Trigger.AvailableNow`): the job terminates by itself once every partition is read up
    /// to the end offset observed at start, after flushing its sinks. This is how an archived
    /// dead-letter topic is replayed.
    ///
    /// A bounded source does not join the consumer group: partition i of the sorted partition
    /// list is read by worker i mod P, from the position `start_from` gives (`Committed` uses
    /// the group's committed offsets), and the positions reached are committed to the group at
    /// the end. Topic patterns are not supported in this mode.
    pub fn bounded(mut self) -> Self {
        self.bounded = true;
        self
    }

    /// The job, not the consumer group, assigns the partitions: partition i of the sorted list
    /// goes to worker i mod P from the start, as in bounded mode and with checkpoints (where
    /// this is always so). No group join (about 3 s on the mock cluster, a rebalance timeout
    /// on a real one) and no partition moving while the job runs: what a latency measurement
    /// or a fixed deployment wants. Topic patterns are not supported in this mode.
    pub fn static_assignment(mut self) -> Self {
        self.static_assignment = true;
        self
    }

    /// The topics to subscribe to; `^name.*` subscribes to every topic matching the regex.
    pub fn topics<I, S>(mut self, topics: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.topics = topics.into_iter().map(Into::into).collect();
        self
    }

    /// Where partitions are first read from (default: the committed offset, else earliest).
    pub fn start_from(mut self, start: StartFrom) -> Self {
        self.start = start;
        self
    }

    /// Sets any librdkafka consumer property, overriding rill's defaults.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.overrides.push((key.into(), value.into()));
        self
    }

    /// A live view of the positions of every worker's consumer.
    pub fn positions(&self) -> SourcePositions {
        self.positions.clone()
    }

    /// Offset-commit counters of every worker's consumer.
    pub fn stats(&self) -> Arc<SourceStats> {
        self.stats.clone()
    }

    pub(crate) fn client_config(&self) -> ClientConfig {
        let mut config = client_config(&self.brokers);
        config
            .set("group.id", &self.group_id)
            .set("enable.auto.commit", "false")
            // Where a partition with no committed offset starts: consistent with `start`.
            .set(
                "auto.offset.reset",
                if self.start == StartFrom::Latest {
                    "latest"
                } else {
                    "earliest"
                },
            )
            // librdkafka's 500 ms default is the latency floor of a quiet topic.
            .set("fetch.wait.max.ms", "5")
            .set("fetch.error.backoff.ms", "10")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "500")
            // Incremental rebalancing: a member keeps its partitions while the group re-forms
            // and gives up only those that move, once the group is stable again, so its
            // commit of what it handed on is accepted (brokers refuse commits while a group
            // is re-forming under the eager protocol: noida-db and librdkafka's mock do).
            .set("partition.assignment.strategy", "cooperative-sticky");
        for (k, v) in &self.overrides {
            config.set(k, v);
        }
        config
    }
}

impl Source for KafkaSource {
    type Reader = KafkaReader;

    fn create(&self, ctx: &WorkerContext) -> Result<KafkaReader, BoxError> {
        if self.topics.is_empty() {
            return Err("KafkaSource has no topics: call .topics([...])".into());
        }
        let positions: PositionTable = Arc::default();
        self.positions.register(positions.clone());
        let context = RebalanceContext {
            start: self.start,
            positions: positions.clone(),
            ownership: self.ownership.clone(),
            stats: self.stats.clone(),
            error: Mutex::default(),
            client_errors: Mutex::default(),
            has_client_errors: Default::default(),
            abandoned: Default::default(),
            events_served: Default::default(),
        };
        let mut consumer: BaseConsumer<RebalanceContext> = self
            .client_config()
            .create_with_context(context)
            .map_err(KafkaConnectorError::Config)?;
        // With checkpoints the partitions are assigned by the job, not the group: a rebalance
        // between two workers' barriers would make the checkpoint's positions inconsistent.
        let statically = self.bounded || self.static_assignment || ctx.checkpointing();
        let ends = if statically {
            let ends = assign_share(&consumer, &self.topics, self.start, ctx, &positions)?;
            self.bounded.then_some(ends)
        } else {
            let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
            consumer
                .subscribe(&topics)
                .map_err(KafkaConnectorError::Client)?;
            None
        };
        let waker = ctx.waker();
        consumer.set_nonempty_callback(move || waker.wake());
        Ok(KafkaReader {
            consumer,
            positions,
            current: None,
            last_topic: None,
            ends,
            statically,
            checkpointing: ctx.checkpointing(),
            captured: None,
            batch_ends: None,
            held: VecDeque::new(),
            paused: Vec::new(),
            replay_ends: None,
            batch_share: self
                .max_records_per_batch
                .map(|n| n.div_ceil(ctx.workers() as u64).max(1)),
            available_now: ctx.trigger() == Some(rill_engine::Trigger::AvailableNow),
            health: ConsumerHealth::new(self.topics.clone(), self.unavailable_timeout),
            abort: ctx.abort_signal(),
        })
    }

    fn name(&self) -> &str {
        "kafka"
    }

    /// librdkafka's queue callback wakes the worker when a fetch brings records.
    fn wakes_workers(&self) -> bool {
        true
    }

    fn acknowledgement_interval(&self) -> Option<Duration> {
        Some(self.commit_interval)
    }
}
