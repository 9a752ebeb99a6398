//! Exactly-once output to Kafka: one transaction per checkpoint epoch.
//!
//! All workers of a job write through one transactional producer (librdkafka's producer is
//! thread-safe; a background thread serves its delivery reports). The transaction open during
//! epoch n holds every record the workers wrote before their `Barrier(n)`. A worker that has
//! passed the barrier holds its next records in memory until the coordinator has made
//! checkpoint n durable and committed the transaction; then they go into transaction n + 1.
//!
//! **Knowing what was committed.** librdkafka cannot resume another process's transaction, so
//! a crash between "checkpoint n written" and "transaction n committed" must be told apart
//! from a crash after the commit. The commit therefore carries a marker: the transaction also
//! commits, through `send_offsets_to_transaction`, the offset `n` for partition 0 of the
//! output topic in a consumer group of its own (`<transactional id>.rill-commits`). That
//! offset becomes visible atomically with the records. At start,
//! [`Committer::recover`] fences the previous producer with `init_transactions` (aborting its
//! open transaction) and reads the marker; the job then restores the newest checkpoint at or
//! below it. Readers with `isolation.level=read_committed` see every record exactly once.
//!
//! **The marker goes in early.** The transaction opened after checkpoint n-1 commits as
//! checkpoint n or not at all (epochs are consecutive, and a failed checkpoint fails the job),
//! so its marker `n` is added (`send_offsets_to_transaction`, two broker round trips) on a
//! thread of its own as soon as the transaction opens, while the epoch's records flow. The
//! commit then only waits for the records' acknowledgements and `EndTxn`. Nothing of it is
//! visible before the commit, and an aborted transaction takes its marker with it.

use rill_engine::sync::Lock;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerGroupMetadata};
use rdkafka::error::KafkaError;
use rdkafka::producer::{Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use rill_engine::{AbortSignal, BoxError, CheckpointConfig, Committer, Epoch, SinkWriter};

use super::client::client_config;
use super::error::KafkaConnectorError;
use super::output::{KafkaOutput, ToKafka};
use super::producer::{record_of, DeliveryContext};

/// The job-wide side of an exactly-once [`KafkaSink`](super::KafkaSink).
pub(crate) struct Transaction {
    id: String,
    /// The producer's settings; [`Committer::prepare`] adds the transaction timeout.
    producer_config: Mutex<ClientConfig>,
    brokers: String,
    marker_topic: String,
    timeout: Duration,
    producer: OnceLock<ThreadedProducer<DeliveryContext>>,
    marker: OnceLock<BaseConsumer>,
    failure: Arc<Mutex<Option<KafkaConnectorError>>>,
    /// The open transaction's marker being added: its epoch, and the thread adding it.
    pending_marker: Mutex<Option<PendingMarker>>,
}

/// A commit marker being added to the open transaction on a thread of its own.
type PendingMarker = (
    Epoch,
    std::thread::JoinHandle<Result<(), KafkaConnectorError>>,
);

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("id", &self.id)
            .field("marker_topic", &self.marker_topic)
            .finish()
    }
}

fn client(e: KafkaError) -> KafkaConnectorError {
    KafkaConnectorError::Client(e)
}

impl Transaction {
    pub(crate) fn new(
        id: String,
        mut producer_config: ClientConfig,
        brokers: String,
        marker_topic: String,
        timeout: Duration,
    ) -> Self {
        producer_config
            .set("transactional.id", &id)
            .set("enable.idempotence", "true");
        Self {
            id,
            producer_config: Mutex::new(producer_config),
            brokers,
            marker_topic,
            timeout,
            producer: OnceLock::new(),
            marker: OnceLock::new(),
            failure: Arc::default(),
            pending_marker: Mutex::new(None),
        }
    }

    fn producer(&self) -> Result<&ThreadedProducer<DeliveryContext>, KafkaConnectorError> {
        self.producer.get().ok_or(KafkaConnectorError::NotRecovered)
    }

    fn marker_group(&self) -> String {
        format!("{}.rill-commits", self.id)
    }

    fn take_failure(&self) -> Option<KafkaConnectorError> {
        self.failure.locked().take()
    }

    /// What adds `epoch`'s commit marker to the open transaction: the partition offset, and
    /// the marker group's metadata.
    fn marker_of(
        &self,
        epoch: Epoch,
    ) -> Result<(TopicPartitionList, ConsumerGroupMetadata), BoxError> {
        let marker = self.marker.get().ok_or(KafkaConnectorError::NotRecovered)?;
        let metadata = marker
            .group_metadata()
            .ok_or("the commit-marker consumer has no group metadata")?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.marker_topic, 0, Offset::Offset(epoch as i64))
            .map_err(client)?;
        Ok((tpl, metadata))
    }

    /// Adds `epoch`'s commit marker to the open transaction: at once if none is being added
    /// for it, else waits for the thread adding it.
    fn add_marker(&self, epoch: Epoch) -> Result<(), BoxError> {
        let pending = self.pending_marker.locked().take();
        if let Some((for_epoch, adding)) = pending {
            let added = adding
                .join()
                .map_err(|_| "the thread adding the commit marker panicked")?;
            if for_epoch == epoch {
                return Ok(added?);
            }
        }
        let (tpl, metadata) = self.marker_of(epoch)?;
        Ok(send_marker(
            self.producer()?,
            &tpl,
            &metadata,
            self.timeout,
        )?)
    }
}

/// Adds the commit marker `tpl` (for the marker group `metadata`) to `producer`'s open
/// transaction: two broker round trips, visible only with the commit.
fn send_marker(
    producer: &ThreadedProducer<DeliveryContext>,
    tpl: &TopicPartitionList,
    metadata: &ConsumerGroupMetadata,
    timeout: Duration,
) -> Result<(), KafkaConnectorError> {
    producer
        .send_offsets_to_transaction(tpl, metadata, timeout)
        .map_err(client)
}

/// The longest `transaction.timeout.ms` a broker accepts by default
/// (`transaction.max.timeout.ms`, 15 minutes).
const BROKER_MAX_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Slack over the longest a transaction can stay open: the commit itself, and the wait between
/// a checkpoint's completion and the next transaction's first record.
const TRANSACTION_SLACK: Duration = Duration::from_secs(10);

/// The `transaction.timeout.ms` an exactly-once sink needs: a transaction stays open from one
/// checkpoint's completion to the next one's, up to the interval plus the checkpoint timeout.
/// `configured` is the user's own setting, if any, which must be long enough; otherwise the
/// derived value, which must fit the broker's default maximum.
fn transaction_timeout(
    checkpoints: &CheckpointConfig,
    configured: Option<&str>,
) -> Result<Duration, KafkaConnectorError> {
    let needed = checkpoints.interval + checkpoints.timeout + TRANSACTION_SLACK;
    let refuse = |reason: String| KafkaConnectorError::TransactionTimeout {
        interval: checkpoints.interval,
        timeout: checkpoints.timeout,
        reason,
    };
    match configured {
        Some(ms) => {
            let set = ms.parse::<u64>().map(Duration::from_millis).map_err(|_| {
                refuse(format!(
                    "transaction.timeout.ms `{ms}` is not a number of milliseconds"
                ))
            })?;
            if set < needed {
                return Err(refuse(format!(
                    "transaction.timeout.ms is {} ms, but a transaction can stay open {} ms: \
                     raise it, or shorten the checkpoint interval or timeout",
                    set.as_millis(),
                    needed.as_millis()
                )));
            }
            Ok(set)
        }
        None if needed > BROKER_MAX_TRANSACTION_TIMEOUT => Err(refuse(format!(
            "a transaction can stay open {} s, longer than brokers allow by default ({} s, \
             transaction.max.timeout.ms): shorten the checkpoint interval or timeout, or set \
             transaction.timeout.ms on the sink if your brokers allow more",
            needed.as_secs(),
            BROKER_MAX_TRANSACTION_TIMEOUT.as_secs()
        ))),
        None => Ok(needed),
    }
}

impl Committer for Transaction {
    /// Sets `transaction.timeout.ms` from the checkpoint settings (librdkafka's default of
    /// 60 s would abort every transaction of a job that checkpoints every 60 s or more, and the
    /// job would crash-loop), or refuses settings no broker default can serve.
    fn prepare(&self, checkpoints: &CheckpointConfig) -> Result<(), BoxError> {
        let mut config = self.producer_config.locked();
        let timeout = transaction_timeout(checkpoints, config.get("transaction.timeout.ms"))?;
        config.set("transaction.timeout.ms", timeout.as_millis().to_string());
        Ok(())
    }

    fn recover(&self) -> Result<Option<Epoch>, BoxError> {
        let producer: ThreadedProducer<DeliveryContext> = self
            .producer_config
            .locked()
            .create_with_context(DeliveryContext {
                failure: self.failure.clone(),
                undelivered: None,
                oversized: None,
            })
            .map_err(KafkaConnectorError::Config)?;
        // Fences every earlier producer with this transactional id and aborts the transaction
        // it left open (a crash before its checkpoint completed).
        producer.init_transactions(self.timeout).map_err(client)?;
        let marker: BaseConsumer = client_config(&self.brokers)
            .set("group.id", self.marker_group())
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .create()
            .map_err(KafkaConnectorError::Config)?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.marker_topic, 0);
        let committed = marker
            .committed_offsets(tpl, self.timeout)
            .map_err(client)?;
        let epoch = committed
            .find_partition(&self.marker_topic, 0)
            .and_then(|e| match e.offset() {
                Offset::Offset(o) if o >= 0 => Some(o as Epoch),
                _ => None,
            });
        self.producer
            .set(producer)
            .map_err(|_| "the exactly-once Kafka sink was recovered twice")?;
        let _ = self.marker.set(marker);
        Ok(epoch)
    }

    fn commit_record(&self) -> String {
        format!(
            "its commit marker, the offset of partition 0 of topic `{}` committed in consumer \
             group `{}` on {}",
            self.marker_topic,
            self.marker_group(),
            self.brokers
        )
    }

    /// Opens the transaction of epoch `after + 1` and starts adding its commit marker.
    fn begin(&self, after: Epoch) -> Result<(), BoxError> {
        let producer = self.producer()?;
        producer.begin_transaction().map_err(client)?;
        let epoch = after + 1;
        let (tpl, metadata) = self.marker_of(epoch)?;
        let (producer, timeout) = (producer.clone(), self.timeout);
        let adding = std::thread::Builder::new()
            .name("rill-kafka-marker".into())
            .spawn(move || send_marker(&producer, &tpl, &metadata, timeout))
            .map_err(|e| format!("starting the thread that adds the commit marker: {e}"))?;
        *self.pending_marker.locked() = Some((epoch, adding));
        Ok(())
    }

    fn commit(&self, epoch: Epoch) -> Result<(), BoxError> {
        let producer = self.producer()?;
        let marked = self.add_marker(epoch);
        if let Some(e) = self.take_failure() {
            let _ = producer.abort_transaction(self.timeout);
            return Err(e.into());
        }
        marked?;
        await_acknowledgements(producer, self.timeout);
        producer.commit_transaction(self.timeout).map_err(client)?;
        if let Some(e) = self.take_failure() {
            return Err(e.into());
        }
        Ok(())
    }

    fn name(&self) -> &str {
        &self.id
    }
}

/// How often [`await_acknowledgements`] looks at what librdkafka still holds: about a tenth of
/// a loopback round trip.
const ACKNOWLEDGEMENT_POLL: Duration = Duration::from_micros(50);

/// Waits (at most `timeout`) until librdkafka holds no record and no unserved delivery report
/// of `producer`.
///
/// rdkafka's `commit_transaction` first flushes, and its flush waits by polling the producer's
/// event queue in slices of up to 100 ms. A [`ThreadedProducer`]'s own thread serves that queue
/// too and takes the delivery reports the slice waits for, so the slice runs to its end: a
/// commit with records still in flight took 100 ms more (measured on noida-db at 5,000
/// records/s with 20 ms checkpoints: about 1 commit in 30 took 100 to 140 ms instead of 1 to 2).
/// With nothing outstanding, the flush returns at its first look.
fn await_acknowledgements(producer: &ThreadedProducer<DeliveryContext>, timeout: Duration) {
    let deadline = std::time::Instant::now() + timeout;
    while producer.in_flight_count() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(ACKNOWLEDGEMENT_POLL);
    }
}

/// One worker's exactly-once Kafka sink: writes into the job's open transaction, and holds
/// records after a barrier until that epoch's checkpoint is committed.
pub struct TransactionalWriter {
    txn: Arc<Transaction>,
    default_topic: Option<String>,
    held: Option<Epoch>,
    buffer: Vec<KafkaOutput>,
    /// Bytes (keys, values, headers) in `buffer`, and the most it may hold.
    buffered_bytes: usize,
    max_held_bytes: usize,
    /// The job's abort: a full queue is waited on only while the job runs.
    abort: AbortSignal,
}

impl std::fmt::Debug for TransactionalWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionalWriter")
            .field("transaction", &self.txn.id)
            .field("held", &self.held)
            .field("buffered", &self.buffer.len())
            .finish()
    }
}

impl TransactionalWriter {
    pub(crate) fn new(
        txn: Arc<Transaction>,
        default_topic: Option<String>,
        abort: AbortSignal,
        max_held_bytes: usize,
    ) -> Self {
        Self {
            txn,
            default_topic,
            abort,
            held: None,
            buffer: Vec::new(),
            buffered_bytes: 0,
            max_held_bytes,
        }
    }

    fn send<T: ToKafka + ?Sized>(&self, item: &T) -> Result<(), BoxError> {
        let producer = self.txn.producer()?;
        let topic = item
            .topic()
            .or(self.default_topic.as_deref())
            .ok_or(KafkaConnectorError::NoTopic)?;
        let headers = item.headers();
        let mut record = record_of(topic, item.key(), item.value(), &headers);
        loop {
            match producer.send(record) {
                Ok(()) => return Ok(()),
                // The producer's background thread frees room as the broker acknowledges.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    self.check()?;
                    if self.abort.is_aborted() {
                        return Err(KafkaConnectorError::AbortedWhileQueueFull {
                            topic: topic.to_string(),
                        }
                        .into());
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err((e, _)) => {
                    return Err(KafkaConnectorError::Delivery {
                        topic: topic.to_string(),
                        source: e,
                    }
                    .into())
                }
            }
        }
    }

    fn check(&self) -> Result<(), BoxError> {
        match self.txn.take_failure() {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }
}

impl<T: ToKafka> SinkWriter<T> for TransactionalWriter {
    fn write(&mut self, item: T) -> Result<(), BoxError> {
        if self.held.is_some() {
            let out = KafkaOutput {
                topic: item.topic().map(str::to_string),
                key: item.key().map(<[u8]>::to_vec),
                value: item.value().map(<[u8]>::to_vec),
                headers: item.headers().into_owned(),
            };
            self.buffered_bytes += out.key.as_ref().map_or(0, Vec::len)
                + out.value.as_ref().map_or(0, Vec::len)
                + out
                    .headers
                    .iter()
                    .map(|(k, v)| k.len() + v.len())
                    .sum::<usize>();
            self.buffer.push(out);
            return Ok(());
        }
        self.send(&item)
    }

    fn flush(&mut self) -> Result<(), BoxError> {
        self.check()
    }

    /// Records held for the next transaction are bounded in bytes: past the bound, the
    /// job pauses its input until the checkpoint commits.
    fn is_full(&self) -> bool {
        self.buffered_bytes >= self.max_held_bytes
    }

    /// Pre-commit: what was written is in the open transaction, which the coordinator commits
    /// once the checkpoint is durable; later records wait for that.
    fn on_barrier(&mut self, epoch: Epoch) -> Result<(), BoxError> {
        self.check()?;
        self.held = Some(epoch);
        Ok(())
    }

    fn checkpoint_complete(&mut self, epoch: Epoch) -> Result<(), BoxError> {
        if self.held.is_some_and(|h| h <= epoch) {
            self.held = None;
            self.buffered_bytes = 0;
            for out in std::mem::take(&mut self.buffer) {
                self.send(&out)?;
            }
        }
        Ok(())
    }

    fn close(&mut self) -> Result<(), BoxError> {
        self.check()?;
        if !self.buffer.is_empty() {
            return Err(format!(
                "{} records arrived after the final checkpoint and were not committed",
                self.buffer.len()
            )
            .into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every(interval: u64, timeout: u64) -> CheckpointConfig {
        CheckpointConfig::new("unused")
            .with_interval(Duration::from_secs(interval))
            .with_timeout(Duration::from_secs(timeout))
    }

    #[test]
    fn the_transaction_timeout_covers_an_interval_and_a_checkpoint() {
        // librdkafka's default (60 s) would abort every transaction of this job.
        let t = transaction_timeout(&every(60, 60), None).expect("fits the broker's maximum");
        assert_eq!(t, Duration::from_secs(130));
        assert_eq!(
            transaction_timeout(&every(1, 60), None).expect("fits"),
            Duration::from_secs(71)
        );
    }

    #[test]
    fn settings_no_transaction_can_serve_are_refused() {
        let err = transaction_timeout(&every(20 * 60, 60), None).expect_err("too long");
        assert!(
            err.to_string().contains("longer than brokers allow"),
            "{err}"
        );
        let err = transaction_timeout(&every(60, 60), Some("60000")).expect_err("too short");
        assert!(
            err.to_string()
                .contains("transaction.timeout.ms is 60000 ms"),
            "{err}"
        );
        // A user who raised it enough (their brokers allow it) is taken at their word.
        assert_eq!(
            transaction_timeout(&every(20 * 60, 60), Some("3600000")).expect("long enough"),
            Duration::from_secs(3600)
        );
    }

    #[test]
    fn prepare_sets_the_producers_transaction_timeout() {
        let txn = Transaction::new(
            "t".into(),
            ClientConfig::new(),
            "localhost:9".into(),
            "out".into(),
            Duration::from_secs(1),
        );
        txn.prepare(&every(60, 60)).expect("prepared");
        assert_eq!(
            txn.producer_config.locked().get("transaction.timeout.ms"),
            Some("130000")
        );
    }
}
