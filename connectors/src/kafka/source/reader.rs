//! [`KafkaReader`]: one worker's consumer, polled without blocking, and the positions of what
//! it handed on.

use rill_engine::sync::Lock;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::Offset;
use rill_engine::state::RestoredState;
use rill_engine::{BoxError, Emit, Epoch, Failure, Progress, SourceReader};

use super::health::ConsumerHealth;
use super::positions::{
    decode_positions, lock, LivePosition, PartitionPosition, PositionTable, StoredPosition,
};
use super::rebalance::{RebalanceContext, Unsubscribe, FINAL_COMMIT_REJOIN};
use crate::kafka::error::KafkaConnectorError;
use crate::kafka::record::KafkaRecord;

/// Librdkafka's poll loop also serves its main queue (logs, statistics); a parked worker is
/// woken at least this often to do so, even when no record arrives.
const MAIN_QUEUE_INTERVAL: Duration = Duration::from_millis(100);

/// The most events (not records) one poll serves before it yields; the worker comes back at
/// once for the rest. Bounds the time a burst of log lines keeps the worker from its other
/// work.
const MAX_EVENTS_PER_POLL: u32 = 64;

/// One worker's [`KafkaSource`](crate::kafka::KafkaSource): its consumer and the positions of what it handed on.
pub struct KafkaReader {
    pub(super) consumer: BaseConsumer<RebalanceContext>,
    pub(super) positions: PositionTable,
    /// The entry of the partition the last record came from: the next record most likely
    /// comes from it too, and then moves it without a lock or a search.
    pub(super) current: Option<Arc<LivePosition>>,
    pub(super) last_topic: Option<Arc<str>>,
    /// Bounded mode: the offset each owned partition is read up to (exclusive).
    pub(super) ends: Option<Vec<PartitionPosition>>,
    /// Partitions assigned by the job (bounded or checkpointing), not by the group.
    pub(super) statically: bool,
    /// The job checkpoints: offsets are committed when a checkpoint completes.
    pub(super) checkpointing: bool,
    /// The positions taken at the last barrier, committed when its checkpoint completes.
    pub(super) captured: Option<Vec<PartitionPosition>>,
    /// Micro-batch mode: the offset each owned partition is read up to (exclusive) in the
    /// current batch.
    pub(super) batch_ends: Option<Vec<PartitionPosition>>,
    /// Micro-batch mode: records read past their partition's batch end, oldest first; they
    /// open the next batch.
    pub(super) held: VecDeque<KafkaRecord>,
    /// Partitions paused because too many records are held.
    pub(super) paused: Vec<(Arc<str>, i32)>,
    /// After a restart: the ends of the interrupted batch, which the next plan replays.
    pub(super) replay_ends: Option<Vec<StoredPosition>>,
    /// Micro-batch mode: the most records this worker plans into one batch.
    pub(super) batch_share: Option<u64>,
    /// Micro-batch mode with `Trigger::AvailableNow`: the first plan fixes `ends`, and the
    /// source ends once it has read up to them.
    pub(super) available_now: bool,
    /// Consumer errors: counted, probed with backoff, fatal after the source's bound.
    pub(super) health: ConsumerHealth,
    /// Set when the job fails: the reader then commits nothing on its way out.
    pub(super) abort: rill_engine::AbortSignal,
}

impl std::fmt::Debug for KafkaReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaReader")
            .field("positions", &self.positions.snapshot())
            .finish()
    }
}

impl KafkaReader {
    /// The next offset to read of every partition this worker owns.
    pub fn positions(&self) -> Vec<PartitionPosition> {
        self.positions.snapshot()
    }

    /// Bounded mode: the end offset of a partition (`None` when unbounded).
    pub(super) fn end_of(&self, topic: &str, partition: i32) -> Option<i64> {
        self.ends.as_ref().and_then(|ends| {
            ends.iter()
                .find(|e| e.partition == partition && &*e.topic == topic)
                .map(|e| e.next_offset)
        })
    }

    /// Micro-batch mode: the current batch's end offset of a partition.
    pub(super) fn batch_end_of(&self, topic: &str, partition: i32) -> Option<i64> {
        self.batch_ends.as_ref().and_then(|ends| {
            ends.iter()
                .find(|e| e.partition == partition && &*e.topic == topic)
                .map(|e| e.next_offset)
        })
    }

    /// Bounded mode: whether every owned partition has been read up to its end, and no
    /// record fetched for a later micro-batch is still held.
    pub(super) fn reached_ends(&self) -> bool {
        self.held.is_empty() && self.ends.as_ref().is_some_and(|ends| self.read_up_to(ends))
    }

    /// Whether every partition in `ends` has been read up to its end. Uses the consumer's
    /// fetch position too, which moves past offsets that hold no record (transaction markers,
    /// compacted records).
    pub(super) fn read_up_to(&self, ends: &[PartitionPosition]) -> bool {
        let fetched = self.consumer.position().ok();
        ends.iter().all(|end| {
            let handed_on = self
                .positions
                .find(&end.topic, end.partition)
                .map_or(0, |p| p.next_offset());
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

    /// Records that the record at `offset` was handed on: the partition's next offset is the
    /// one after it. Once per record, so without a lock while records keep coming from the
    /// same partition (librdkafka hands them over in per-partition runs).
    #[inline]
    pub(super) fn advance(&mut self, topic: &Arc<str>, partition: i32, offset: i64) {
        if let Some(live) = &self.current {
            if live.is(topic, partition) && live.is_owned() {
                live.set(offset + 1);
                return;
            }
        }
        self.current = Some(self.positions.put(PartitionPosition {
            topic: topic.clone(),
            partition,
            next_offset: offset + 1,
        }));
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
        // A poll that returns nothing may have served an event instead of finding the queue
        // empty (see `RebalanceContext::events_served`): polling goes on after one, up to
        // `MAX_EVENTS_PER_POLL` per call.
        // Records do not move the count, so it is read once here and again only after a
        // `None`, not once per record.
        let mut served = 0;
        let mut more_queued = false;
        let mut events_before = self.consumer.context().events_served();
        while emitted < budget && !out.should_yield() {
            let record = match self.consumer.poll(Duration::ZERO) {
                None => {
                    let events_now = self.consumer.context().events_served();
                    if events_now == events_before {
                        break;
                    }
                    events_before = events_now;
                    served += 1;
                    if served == MAX_EVENTS_PER_POLL {
                        more_queued = true;
                        break;
                    }
                    continue;
                }
                Some(Ok(msg)) => {
                    if let Some(end) = self.end_of(msg.topic(), msg.partition()) {
                        // Produced after the bounded run started: not part of this run.
                        if msg.offset() >= end {
                            continue;
                        }
                    }
                    let topic = cached_topic(&mut self.last_topic, msg.topic());
                    let (headers, unreadable) = msg.headers().map(read_headers).unwrap_or_default();
                    let record = KafkaRecord {
                        topic,
                        partition: msg.partition(),
                        offset: msg.offset(),
                        timestamp: msg.timestamp().to_millis(),
                        key: msg.key().map(<[u8]>::to_vec),
                        value: msg.payload().map(<[u8]>::to_vec),
                        headers,
                    };
                    if let Some(index) = unreadable {
                        // Handed on as a dead letter: its position advances like any record's,
                        // so a restart does not read it (and fail on it) again.
                        self.advance(&record.topic, record.partition, record.offset);
                        let error = KafkaConnectorError::HeaderKeyNotUtf8 { index };
                        out.fail(Failure::new(error).with_record(&record));
                        emitted += 1;
                        continue;
                    }
                    record
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
                // Broker down, transport failure, topic gone: librdkafka retries by itself;
                // the outage is counted and probed, and fails the job past its bound.
                Some(Err(e)) => {
                    let stats = self.consumer.context().stats.clone();
                    self.health.error(&stats, e.to_string());
                    continue;
                }
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
        let failure = self.consumer.context().error.locked().take();
        if let Some(e) = failure {
            return Err(KafkaConnectorError::Client(e).into());
        }
        let context = self.consumer.context();
        if context.has_client_errors.swap(false, Ordering::Acquire) {
            let reported = std::mem::take(&mut *context.client_errors.locked());
            let stats = context.stats.clone();
            for e in reported {
                self.health.error(&stats, e);
            }
        }
        if emitted > 0 {
            self.health.record();
        }
        self.health.check(&self.consumer)?;
        if self.ends.is_some() && emitted < budget && self.reached_ends() {
            return Ok(Progress::Done);
        }
        Ok(if emitted > 0 || more_queued {
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
    /// batch starts (one ListOffsets round trip per partition, as Spark's `latestOffsets`).
    fn plan_batch(&mut self) -> Result<Option<Vec<u8>>, BoxError> {
        self.plan_ends().map(Some)
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

impl Drop for KafkaReader {
    fn drop(&mut self) {
        self.release();
        close_promptly(&self.consumer);
    }
}

/// How long a reader's drop waits for its consumer to close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Closes the consumer now, polling without a timeout until librdkafka says it is closed.
///
/// rdkafka 0.39 closes a consumer on drop by polling in 100 ms slices, and its poll runs to
/// the end of the slice even once the close is done: every reader's drop took 100 ms, at the
/// end of every bounded run and every stop. Closed here first, the close ends as soon as
/// librdkafka's does (tens of microseconds). rdkafka's drop then finds the consumer closed;
/// its second close request fails harmlessly (it reports that at the `log` crate's error
/// level, which only an application that installs a logger sees).
fn close_promptly(consumer: &BaseConsumer<RebalanceContext>) {
    if consumer.close_queue().is_err() {
        return;
    }
    let deadline = Instant::now() + CLOSE_TIMEOUT;
    while !consumer.closed() && Instant::now() < deadline {
        // Serves the close's own events (a final revocation) without waiting for more.
        let _ = consumer.poll(Duration::ZERO);
        std::thread::sleep(Duration::from_micros(200));
    }
}

impl KafkaReader {
    /// The source has ended (stop, end of a bounded run, or failure): commit what was
    /// handed on so a restart of the group continues after it.
    fn release(&mut self) {
        let context = self.consumer.context();
        if self.abort.is_aborted() {
            // The job failed: records handed on may still be in rings or unacknowledged in a
            // producer. Only what a completed epoch acknowledged stays committed.
            context.abandoned.store(true, Ordering::Release);
            let _ = self.consumer.unassign();
            return;
        }
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

/// One header of a [`KafkaRecord`]: key and value.
type RecordHeader = (String, Option<Vec<u8>>);

/// A record's headers, and the position of the first one whose key is not UTF-8.
///
/// rdkafka 0.39 unwraps a header key's UTF-8 inside `Headers::try_get`, so a key another
/// client wrote as raw bytes panics there. Reading under `catch_unwind` keeps that panic from
/// ending the worker: the readable headers are kept, one at a time, and the first unreadable
/// one is reported (its key and value cannot be had without `unsafe`).
fn read_headers<H: Headers>(headers: &H) -> (Vec<RecordHeader>, Option<usize>) {
    let read = |i: usize| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            headers
                .try_get(i)
                .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
        }))
    };
    let mut out = Vec::with_capacity(headers.count());
    let mut unreadable = None;
    for i in 0..headers.count() {
        match read(i) {
            Ok(Some(header)) => out.push(header),
            Ok(None) => {}
            Err(_) => {
                unreadable.get_or_insert(i);
            }
        }
    }
    (out, unreadable)
}
