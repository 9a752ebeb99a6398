//! Reading Kafka topics: one consumer per worker, all in the job's consumer group.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use rill_engine::state::{decode, encode, RestoredState};
use rill_engine::{BoxError, Emit, Epoch, Progress, Source, SourceReader, WorkerContext};

use super::{KafkaConnectorError, KafkaRecord};

/// Where a partition is read from when this job first gets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartFrom {
    /// From the group's committed offset; from the earliest offset if there is none.
    #[default]
    Committed,
    /// From the earliest available offset, whatever the group committed.
    Earliest,
    /// From the end: only records produced after the partition is assigned.
    Latest,
}

/// Librdkafka's poll loop also serves its main queue (logs, statistics); a parked worker is
/// woken at least this often to do so, even when no record arrives.
const MAIN_QUEUE_INTERVAL: Duration = Duration::from_millis(100);

/// Micro-batch mode: records past the batch's end held for the next batch, beyond which the
/// partitions they belong to are paused (librdkafka then refetches them after the batch).
const HOLD_LIMIT: usize = 65_536;

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

type PositionTable = Arc<Mutex<Vec<PartitionPosition>>>;

fn lock(table: &Mutex<Vec<PartitionPosition>>) -> MutexGuard<'_, Vec<PartitionPosition>> {
    // Positions are plain values updated in place: a panic cannot leave one half-written.
    table.lock().unwrap_or_else(|e| e.into_inner())
}

/// The positions of every worker of a [`KafkaSource`]: what the checkpoint stores and what a
/// restart seeks to. Readable from any thread while the job runs.
#[derive(Debug, Clone, Default)]
pub struct SourcePositions {
    workers: Arc<Mutex<Vec<PositionTable>>>,
}

impl SourcePositions {
    fn register(&self, table: PositionTable) {
        self.workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(table);
    }

    /// Every partition currently owned by a worker, with the next offset to read, sorted.
    pub fn snapshot(&self) -> Vec<PartitionPosition> {
        let workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<PartitionPosition> =
            workers.iter().flat_map(|t| lock(t).clone()).collect();
        all.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        all
    }
}

/// Counters of a [`KafkaSource`], over all its workers.
#[derive(Debug, Default)]
pub struct SourceStats {
    commits: AtomicU64,
    failed_commits: AtomicU64,
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
}

/// Reads Kafka topics as [`KafkaRecord`]s.
///
/// Every worker creates one consumer in the group `group_id`, so Kafka assigns each partition
/// to exactly one worker (a worker may get none when there are fewer partitions than workers).
/// Each worker polls its own consumer without blocking and pushes each record through its
/// pipeline at once; a parked worker is woken by librdkafka's queue callback.
///
/// Offsets are not auto-committed. The source commits the positions of what it handed on
/// when a partition is revoked (so the next owner continues after them: nothing handed on is
/// read twice) and when the source ends; checkpoints will commit after they complete. A broker
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
    brokers: String,
    group_id: String,
    topics: Vec<String>,
    start: StartFrom,
    overrides: Vec<(String, String)>,
    positions: SourcePositions,
    stats: Arc<SourceStats>,
    ownership: Arc<Ownership>,
    bounded: bool,
    static_assignment: bool,
}

/// How long a leaving source waits for its revocation (which commits what it handed on)
/// before giving up and letting the consumer close.
const FINAL_COMMIT_REJOIN: Duration = Duration::from_secs(10);

/// How long bounded-mode metadata and offset look-ups may take at start-up.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(30);

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
        }
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

    fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
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

impl KafkaSource {
    /// Bounded mode: assigns this worker its share of the partitions, from their start
    /// positions, and returns the end offset of each (the high watermark at start).
    fn assign_share(
        &self,
        consumer: &BaseConsumer<RebalanceContext>,
        ctx: &WorkerContext,
        positions: &PositionTable,
    ) -> Result<Vec<PartitionPosition>, KafkaConnectorError> {
        let mut all = Vec::new();
        for topic in &self.topics {
            let metadata = consumer
                .fetch_metadata(Some(topic), LOOKUP_TIMEOUT)
                .map_err(KafkaConnectorError::Client)?;
            for t in metadata.topics() {
                if let Some(e) = t.error() {
                    return Err(KafkaConnectorError::Client(KafkaError::MetadataFetch(
                        e.into(),
                    )));
                }
                for p in t.partitions() {
                    all.push((t.name().to_string(), p.id()));
                }
            }
        }
        all.sort();
        let mine: Vec<(String, i32)> = all
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % ctx.workers() == ctx.worker())
            .map(|(_, tp)| tp)
            .collect();
        let mut committed = TopicPartitionList::new();
        for (topic, partition) in &mine {
            committed.add_partition(topic, *partition);
        }
        let committed = if self.start == StartFrom::Committed && !mine.is_empty() {
            consumer
                .committed_offsets(committed, LOOKUP_TIMEOUT)
                .map_err(KafkaConnectorError::Client)?
        } else {
            committed
        };
        let mut assignment = TopicPartitionList::new();
        let mut ends = Vec::with_capacity(mine.len());
        for (topic, partition) in mine {
            let (low, high) = consumer
                .fetch_watermarks(&topic, partition, LOOKUP_TIMEOUT)
                .map_err(KafkaConnectorError::Client)?;
            let from = match self.start {
                StartFrom::Earliest => low,
                StartFrom::Latest => high,
                StartFrom::Committed => match committed
                    .find_partition(&topic, partition)
                    .map(|e| e.offset())
                {
                    Some(Offset::Offset(o)) => o.clamp(low, high),
                    _ => low,
                },
            };
            assignment
                .add_partition_offset(&topic, partition, Offset::Offset(from))
                .map_err(KafkaConnectorError::Client)?;
            let topic: Arc<str> = Arc::from(topic.as_str());
            lock(positions).push(PartitionPosition {
                topic: topic.clone(),
                partition,
                next_offset: from,
            });
            ends.push(PartitionPosition {
                topic,
                partition,
                next_offset: high,
            });
        }
        consumer
            .assign(&assignment)
            .map_err(KafkaConnectorError::Client)?;
        Ok(ends)
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
        };
        let mut consumer: BaseConsumer<RebalanceContext> = self
            .client_config()
            .create_with_context(context)
            .map_err(KafkaConnectorError::Config)?;
        // With checkpoints the partitions are assigned by the job, not the group: a rebalance
        // between two workers' barriers would make the checkpoint's positions inconsistent.
        let statically = self.bounded || self.static_assignment || ctx.checkpointing();
        let ends = if statically {
            let ends = self.assign_share(&consumer, ctx, &positions)?;
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
            last_topic: None,
            ends,
            statically,
            checkpointing: ctx.checkpointing(),
            captured: None,
            batch_ends: None,
            held: VecDeque::new(),
            paused: Vec::new(),
            replay_ends: None,
        })
    }

    fn name(&self) -> &str {
        "kafka"
    }
}

/// What all workers of one source share about partition ownership: partitions move between
/// them on every rebalance.
#[derive(Debug, Default)]
struct Ownership {
    /// Partitions some worker of this job was assigned earlier in this run: `Earliest` and
    /// `Latest` apply only the first time, later assignments continue where the job was.
    assigned_before: Mutex<HashSet<(String, i32)>>,
    /// Positions of partitions revoked from a worker whose commit the broker refused: the
    /// worker of this job that gets the partition next resumes there instead of at the stale
    /// committed offset.
    released: Mutex<Vec<PartitionPosition>>,
}

/// Handles partition assignment: applies the start position and commits on revoke.
struct RebalanceContext {
    start: StartFrom,
    positions: PositionTable,
    ownership: Arc<Ownership>,
    stats: Arc<SourceStats>,
    error: Mutex<Option<KafkaError>>,
}

impl RebalanceContext {
    fn record_error(&self, e: KafkaError) {
        let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert(e);
    }

    /// Removes the positions of `partitions` (all owned ones if `None`) from this worker's
    /// table, as a commit request.
    fn take_positions(
        &self,
        partitions: Option<&TopicPartitionList>,
    ) -> (TopicPartitionList, Vec<PartitionPosition>) {
        let mut table = lock(&self.positions);
        let mut commit = TopicPartitionList::new();
        let mut taken = Vec::new();
        table.retain(|p| {
            let selected =
                partitions.is_none_or(|tpl| tpl.find_partition(&p.topic, p.partition).is_some());
            if selected {
                let _ = commit.add_partition_offset(
                    &p.topic,
                    p.partition,
                    Offset::Offset(p.next_offset),
                );
                taken.push(p.clone());
            }
            !selected
        });
        (commit, taken)
    }

    /// Commits the positions of `partitions` (all owned ones if `None`), and forgets them.
    ///
    /// A failed commit is not a job failure: nothing is lost, but the partition's next owner
    /// may re-read what was handed on since the last successful commit. It is counted in
    /// [`SourceStats`], and the positions are kept for the job's other workers.
    fn commit_positions(
        &self,
        consumer: &BaseConsumer<Self>,
        partitions: Option<&TopicPartitionList>,
    ) {
        let (commit, taken) = self.take_positions(partitions);
        if commit.count() == 0 {
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
}

impl ClientContext for RebalanceContext {}

impl ConsumerContext for RebalanceContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let start = match self.start {
                    StartFrom::Committed => None,
                    StartFrom::Earliest => Some(Offset::Beginning),
                    StartFrom::Latest => Some(Offset::End),
                };
                let mut before = self
                    .ownership
                    .assigned_before
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                let owned: Vec<(String, i32)> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition()))
                    .collect();
                let mut released = lock(&self.ownership.released);
                for (topic, partition) in owned {
                    let first_time = before.insert((topic.clone(), partition));
                    let resume = released
                        .iter()
                        .position(|p| p.partition == partition && *p.topic == *topic)
                        .map(|i| released.swap_remove(i));
                    let offset = match (resume, first_time, start) {
                        (Some(p), _, _) => {
                            let offset = Some(Offset::Offset(p.next_offset));
                            // Owned again: its position must be committed or released later
                            // even if nothing new is handed on before then.
                            lock(&self.positions).push(p);
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
                drop(released);
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
                    // Lost (not revoked): another member may already own them; drop positions.
                    lock(&self.positions)
                        .retain(|p| tpl.find_partition(&p.topic, p.partition).is_none());
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
}

/// One worker's [`KafkaSource`]: its consumer and the positions of what it handed on.
pub struct KafkaReader {
    consumer: BaseConsumer<RebalanceContext>,
    positions: PositionTable,
    last_topic: Option<Arc<str>>,
    /// Bounded mode: the offset each owned partition is read up to (exclusive).
    ends: Option<Vec<PartitionPosition>>,
    /// Partitions assigned by the job (bounded or checkpointing), not by the group.
    statically: bool,
    /// The job checkpoints: offsets are committed when a checkpoint completes.
    checkpointing: bool,
    /// The positions taken at the last barrier, committed when its checkpoint completes.
    captured: Option<Vec<PartitionPosition>>,
    /// Micro-batch mode: the offset each owned partition is read up to (exclusive) in the
    /// current batch.
    batch_ends: Option<Vec<PartitionPosition>>,
    /// Micro-batch mode: records read past their partition's batch end, oldest first; they
    /// open the next batch.
    held: VecDeque<KafkaRecord>,
    /// Partitions paused because too many records are held.
    paused: Vec<(Arc<str>, i32)>,
    /// After a restart: the ends of the interrupted batch, which the next plan replays.
    replay_ends: Option<Vec<StoredPosition>>,
}

/// A partition's position as stored in a checkpoint (or its end, in a batch plan).
type StoredPosition = (String, i32, i64);

/// Partition offsets as a checkpoint or batch plan stores them.
fn encode_positions(positions: &[PartitionPosition]) -> Result<Vec<u8>, BoxError> {
    let stored: Vec<StoredPosition> = positions
        .iter()
        .map(|p| (p.topic.to_string(), p.partition, p.next_offset))
        .collect();
    Ok(encode(&stored)?)
}

/// Every old worker's stored offsets merged: partitions may have moved between workers.
fn decode_positions(state: &RestoredState<'_>) -> Result<Vec<StoredPosition>, BoxError> {
    let mut stored: Vec<StoredPosition> = Vec::new();
    for blob in state.worker_blobs().iter().flatten() {
        stored.extend(decode::<Vec<StoredPosition>>(blob, state.node())?);
    }
    Ok(stored)
}

impl std::fmt::Debug for KafkaReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaReader")
            .field("positions", &*lock(&self.positions))
            .finish()
    }
}

impl KafkaReader {
    /// The next offset to read of every partition this worker owns.
    pub fn positions(&self) -> Vec<PartitionPosition> {
        lock(&self.positions).clone()
    }

    /// Bounded mode: the end offset of a partition (`None` when unbounded).
    fn end_of(&self, topic: &str, partition: i32) -> Option<i64> {
        self.ends.as_ref().and_then(|ends| {
            ends.iter()
                .find(|e| e.partition == partition && &*e.topic == topic)
                .map(|e| e.next_offset)
        })
    }

    /// Micro-batch mode: the current batch's end offset of a partition.
    fn batch_end_of(&self, topic: &str, partition: i32) -> Option<i64> {
        self.batch_ends.as_ref().and_then(|ends| {
            ends.iter()
                .find(|e| e.partition == partition && &*e.topic == topic)
                .map(|e| e.next_offset)
        })
    }

    /// Bounded mode: whether every owned partition has been read up to its end.
    fn reached_ends(&self) -> bool {
        self.ends.as_ref().is_some_and(|ends| self.read_up_to(ends))
    }

    /// Whether every partition in `ends` has been read up to its end. Uses the consumer's
    /// fetch position too, which moves past offsets that hold no record (transaction markers,
    /// compacted records).
    fn read_up_to(&self, ends: &[PartitionPosition]) -> bool {
        let fetched = self.consumer.position().ok();
        let table = lock(&self.positions);
        ends.iter().all(|end| {
            let handed_on = table
                .iter()
                .find(|p| p.partition == end.partition && p.topic == end.topic)
                .map_or(0, |p| p.next_offset);
            let fetch_position = fetched
                .as_ref()
                .and_then(|tpl| tpl.find_partition(&end.topic, end.partition))
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                })
                .unwrap_or(0);
            handed_on.max(fetch_position) >= end.next_offset
        })
    }

    fn advance(&self, topic: &Arc<str>, partition: i32, offset: i64) {
        let mut table = lock(&self.positions);
        match table
            .iter_mut()
            .find(|p| p.partition == partition && p.topic == *topic)
        {
            Some(p) => p.next_offset = offset + 1,
            None => table.push(PartitionPosition {
                topic: topic.clone(),
                partition,
                next_offset: offset + 1,
            }),
        }
    }
}

/// The shared name of `topic`: records of one topic share one allocation.
fn cached_topic(cache: &mut Option<Arc<str>>, topic: &str) -> Arc<str> {
    match cache {
        Some(t) if &**t == topic => t.clone(),
        _ => cache.insert(Arc::from(topic)).clone(),
    }
}

impl SourceReader for KafkaReader {
    type Out = KafkaRecord;

    fn poll<E: Emit<KafkaRecord>>(
        &mut self,
        out: &mut E,
        budget: usize,
    ) -> Result<Progress, BoxError> {
        let mut emitted = 0;
        // Micro-batch mode: records held from the previous batch come first.
        while emitted < budget && !out.should_yield() {
            let Some(front) = self.held.front() else {
                break;
            };
            if self
                .batch_end_of(&front.topic, front.partition)
                .is_none_or(|end| front.offset >= end)
            {
                break;
            }
            let Some(record) = self.held.pop_front() else {
                break;
            };
            self.advance(&record.topic, record.partition, record.offset);
            out.emit(record);
            emitted += 1;
        }
        while emitted < budget && !out.should_yield() {
            let record = match self.consumer.poll(Duration::ZERO) {
                None => break,
                Some(Ok(msg)) => {
                    if let Some(end) = self.end_of(msg.topic(), msg.partition()) {
                        // Produced after the bounded run started: not part of this run.
                        if msg.offset() >= end {
                            continue;
                        }
                    }
                    let topic = cached_topic(&mut self.last_topic, msg.topic());
                    KafkaRecord {
                        topic,
                        partition: msg.partition(),
                        offset: msg.offset(),
                        timestamp: msg.timestamp().to_millis(),
                        key: msg.key().map(<[u8]>::to_vec),
                        value: msg.payload().map(<[u8]>::to_vec),
                        headers: msg
                            .headers()
                            .map(|hs| {
                                hs.iter()
                                    .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                                    .collect()
                            })
                            .unwrap_or_default(),
                    }
                }
                Some(Err(KafkaError::PartitionEOF(_))) => continue,
                Some(Err(e))
                    if matches!(
                        e,
                        KafkaError::MessageConsumptionFatal(_)
                            | KafkaError::Global(RDKafkaErrorCode::Fatal)
                    ) =>
                {
                    return Err(KafkaConnectorError::FatalConsumer(e).into());
                }
                // Transient (broker down, transport failure): librdkafka reconnects and
                // retries by itself; no record is lost, only delayed.
                Some(Err(_)) => continue,
            };
            if self
                .batch_end_of(&record.topic, record.partition)
                .is_some_and(|end| record.offset >= end)
            {
                // Arrived during this batch: it belongs to the next one.
                self.hold(record)?;
                continue;
            }
            self.advance(&record.topic, record.partition, record.offset);
            out.emit(record);
            emitted += 1;
        }
        let failure = self
            .consumer
            .context()
            .error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(e) = failure {
            return Err(KafkaConnectorError::Client(e).into());
        }
        if self.ends.is_some() && emitted < budget && self.reached_ends() {
            return Ok(Progress::Done);
        }
        Ok(if emitted > 0 {
            Progress::Busy
        } else {
            Progress::Idle {
                deadline: Some(Instant::now() + MAIN_QUEUE_INTERVAL),
            }
        })
    }

    /// The next offset of every partition this worker reads.
    fn position(&mut self) -> Result<Option<Vec<u8>>, BoxError> {
        self.checkpoint_position()
    }

    fn restore(&mut self, state: &RestoredState<'_>) -> Result<(), BoxError> {
        self.restore_positions(state)
    }

    fn checkpoint_complete(&mut self, _epoch: Epoch) -> Result<(), BoxError> {
        self.commit_captured();
        Ok(())
    }

    /// The batch ends at each owned partition's end offset as the broker reports it when the
    /// batch starts (one ListOffsets round trip per partition, as Spark's `latestOffsets`; with
    /// `read_committed`, the last stable offset). Records arriving later wait for the next
    /// batch.
    fn plan_batch(&mut self) -> Result<Option<Vec<u8>>, BoxError> {
        if !self.paused.is_empty() {
            let mut tpl = TopicPartitionList::new();
            for (topic, partition) in self.paused.drain(..) {
                tpl.add_partition(&topic, partition);
            }
            self.consumer
                .resume(&tpl)
                .map_err(KafkaConnectorError::Client)?;
        }
        let table = self.positions();
        let replay = self.replay_ends.take();
        let mut ends = Vec::with_capacity(table.len());
        for p in &table {
            let end = match &replay {
                Some(stored) => stored
                    .iter()
                    .find(|(t, part, _)| *part == p.partition && **t == *p.topic)
                    .map_or(p.next_offset, |(_, _, end)| *end),
                None => {
                    let (_, high) = self
                        .consumer
                        .fetch_watermarks(&p.topic, p.partition, LOOKUP_TIMEOUT)
                        .map_err(KafkaConnectorError::Client)?;
                    high.max(p.next_offset)
                }
            };
            ends.push(PartitionPosition {
                topic: p.topic.clone(),
                partition: p.partition,
                next_offset: end,
            });
        }
        let encoded = encode_positions(&ends)?;
        self.batch_ends = Some(ends);
        Ok(Some(encoded))
    }

    fn replay_batch(&mut self, plan: &RestoredState<'_>) -> Result<(), BoxError> {
        self.replay_ends = Some(decode_positions(plan)?);
        Ok(())
    }

    fn batch_complete(&mut self) -> bool {
        match &self.batch_ends {
            Some(ends) => self.read_up_to(ends),
            None => true,
        }
    }
}

impl KafkaReader {
    /// Keeps a record read past its batch's end for the next batch; pauses its partition once
    /// too many are held, so memory stays bounded when input outpaces the batches.
    fn hold(&mut self, record: KafkaRecord) -> Result<(), KafkaConnectorError> {
        if self.held.len() >= HOLD_LIMIT
            && !self
                .paused
                .iter()
                .any(|(t, p)| *p == record.partition && *t == record.topic)
        {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&record.topic, record.partition);
            self.consumer
                .pause(&tpl)
                .map_err(KafkaConnectorError::Client)?;
            self.paused.push((record.topic.clone(), record.partition));
        }
        self.held.push_back(record);
        Ok(())
    }

    /// The position of every owned partition, for a checkpoint.
    fn checkpoint_position(&mut self) -> Result<Option<Vec<u8>>, BoxError> {
        let table = self.positions();
        let encoded = encode_positions(&table)?;
        self.captured = Some(table);
        Ok(Some(encoded))
    }

    /// Seeks every owned partition to the checkpoint's position (from whichever old worker
    /// owned it), so a job restores at any number of workers.
    fn restore_positions(&mut self, state: &RestoredState<'_>) -> Result<(), BoxError> {
        let stored = decode_positions(state)?;
        let mut table = lock(&self.positions);
        let mut assignment = TopicPartitionList::new();
        for p in table.iter_mut() {
            if let Some((_, _, offset)) = stored
                .iter()
                .find(|(t, part, _)| *part == p.partition && **t == *p.topic)
            {
                p.next_offset = *offset;
            }
            assignment
                .add_partition_offset(&p.topic, p.partition, Offset::Offset(p.next_offset))
                .map_err(KafkaConnectorError::Client)?;
        }
        self.consumer
            .assign(&assignment)
            .map_err(KafkaConnectorError::Client)?;
        Ok(())
    }

    /// Commits the positions of a completed checkpoint to the group, for lag monitoring (the
    /// checkpoint, not the group, is where a restart resumes).
    fn commit_captured(&mut self) {
        let Some(positions) = self.captured.take() else {
            return;
        };
        let mut tpl = TopicPartitionList::new();
        for p in &positions {
            let _ = tpl.add_partition_offset(&p.topic, p.partition, Offset::Offset(p.next_offset));
        }
        if tpl.count() > 0 {
            let stats = &self.consumer.context().stats;
            match self.consumer.commit(&tpl, CommitMode::Async) {
                Ok(()) => stats.commits.fetch_add(1, Ordering::Relaxed),
                Err(_) => stats.failed_commits.fetch_add(1, Ordering::Relaxed),
            };
        }
    }
}

impl Drop for KafkaReader {
    fn drop(&mut self) {
        // The source has ended (stop, end of a bounded run, or failure): commit what was
        // handed on so a restart of the group continues after it.
        let context = self.consumer.context();
        if self.checkpointing {
            // Checkpoints commit offsets when they complete; what was handed on after the
            // last one is not acknowledged.
            let _ = self.consumer.unassign();
            return;
        }
        if self.statically {
            // Bounded: not a group member, a plain commit.
            context.commit_positions(&self.consumer, None);
            let _ = self.consumer.unassign();
            return;
        }
        // A group member leaves by unsubscribing: the revocation that follows commits what was
        // handed on (the same path as any revocation). Waiting until nothing is assigned before
        // the consumer closes also avoids librdkafka's hang when a rebalance is delivered
        // during close (confluentinc/librdkafka#4527, #4884).
        let _ = self.consumer.unsubscribe_and_wait(FINAL_COMMIT_REJOIN);
        // Revocation never came (the group was re-forming for too long): count it.
        let (left, taken) = context.take_positions(None);
        if left.count() > 0 {
            lock(&context.ownership.released).extend(taken);
            context.stats.failed_commits.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Leaving the group cleanly.
trait Unsubscribe {
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
