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

use rill_engine::sync::Lock;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use rill_engine::{BoxError, Committer, Epoch, SinkWriter};

use super::error::KafkaConnectorError;
use super::output::{KafkaOutput, ToKafka};
use super::producer::{record_of, DeliveryContext};

/// The job-wide side of an exactly-once [`KafkaSink`](super::KafkaSink).
pub(crate) struct Transaction {
    id: String,
    producer_config: ClientConfig,
    brokers: String,
    marker_topic: String,
    timeout: Duration,
    producer: OnceLock<ThreadedProducer<DeliveryContext>>,
    marker: OnceLock<BaseConsumer>,
    failure: Arc<Mutex<Option<KafkaConnectorError>>>,
}

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
            producer_config,
            brokers,
            marker_topic,
            timeout,
            producer: OnceLock::new(),
            marker: OnceLock::new(),
            failure: Arc::default(),
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
}

impl Committer for Transaction {
    fn recover(&self) -> Result<Option<Epoch>, BoxError> {
        let producer: ThreadedProducer<DeliveryContext> = self
            .producer_config
            .create_with_context(DeliveryContext {
                failure: self.failure.clone(),
                undelivered: None,
            })
            .map_err(KafkaConnectorError::Config)?;
        // Fences every earlier producer with this transactional id and aborts the transaction
        // it left open (a crash before its checkpoint completed).
        producer.init_transactions(self.timeout).map_err(client)?;
        let marker: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
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

    fn begin(&self, _after: Epoch) -> Result<(), BoxError> {
        self.producer()?.begin_transaction().map_err(client)?;
        Ok(())
    }

    fn commit(&self, epoch: Epoch) -> Result<(), BoxError> {
        let producer = self.producer()?;
        if let Some(e) = self.take_failure() {
            let _ = producer.abort_transaction(self.timeout);
            return Err(e.into());
        }
        let marker = self.marker.get().ok_or(KafkaConnectorError::NotRecovered)?;
        let metadata = marker
            .group_metadata()
            .ok_or("the commit-marker consumer has no group metadata")?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.marker_topic, 0, Offset::Offset(epoch as i64))
            .map_err(client)?;
        producer
            .send_offsets_to_transaction(&tpl, &metadata, self.timeout)
            .map_err(client)?;
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

/// One worker's exactly-once Kafka sink: writes into the job's open transaction, and holds
/// records after a barrier until that epoch's checkpoint is committed.
pub struct TransactionalWriter {
    txn: Arc<Transaction>,
    default_topic: Option<String>,
    held: Option<Epoch>,
    buffer: Vec<KafkaOutput>,
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
    pub(crate) fn new(txn: Arc<Transaction>, default_topic: Option<String>) -> Self {
        Self {
            txn,
            default_topic,
            held: None,
            buffer: Vec::new(),
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
            self.buffer.push(KafkaOutput {
                topic: item.topic().map(str::to_string),
                key: item.key().map(<[u8]>::to_vec),
                value: item.value().map(<[u8]>::to_vec),
                headers: item.headers().into_owned(),
            });
            return Ok(());
        }
        self.send(&item)
    }

    fn flush(&mut self) -> Result<(), BoxError> {
        self.check()
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
