//! [`KafkaSink`]: writing to Kafka, at least once (a producer per worker) or exactly once
//! (one transaction per checkpoint).

use std::marker::PhantomData;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::producer::BaseProducer;
use rill_engine::{BoxError, Committer, DeadLetter, Epoch, Sink, SinkWriter, WorkerContext};

use super::client::client_config;
use super::error::KafkaConnectorError;
use super::output::ToKafka;
use super::plain::KafkaPlainWriter;
use super::producer::{warm_up, DeliveryContext};
use super::transaction::{Transaction, TransactionalWriter};

/// The value length a dead letter is cut to when its topic refuses it as too large (the
/// header [`TRUNCATED`](crate::kafka::dead_letter_headers::TRUNCATED) then holds the original
/// length).
const LETTER_VALUE_LIMIT: usize = 64 * 1024;

/// Writes records to Kafka, one producer per worker.
///
/// The producer is idempotent (`enable.idempotence=true`, which implies `acks=all`): a
/// broker restart or a lost acknowledgement makes librdkafka retry, and the broker discards
/// what it already has, so retries neither duplicate nor reorder a partition's records.
/// A restart of the *job* without checkpoints still re-sends what was not acknowledged
/// (at least once); exactly-once output needs [`KafkaSink::exactly_once`].
///
/// Sends are asynchronous: `write` hands the record to librdkafka, which batches (for at most
/// `linger.ms`, 0 by default here) and retries transient failures itself. A record that still
/// fails (retries exhausted, message too large, unknown topic) fails the job with
/// [`KafkaConnectorError::Delivery`] at the next flush; nothing is dropped silently. When the
/// input ends (or the job is stopped) the sink waits until every record is acknowledged.
///
/// ```no_run
/// use rill_connectors::kafka::KafkaSink;
/// let sink = KafkaSink::<(String, String)>::new("localhost:9092")
///     .topic("output-wordcount")
///     .set("linger.ms", "1");
/// ```
pub struct KafkaSink<T> {
    brokers: String,
    topic: Option<String>,
    overrides: Vec<(String, String)>,
    flush_timeout: Duration,
    dead_letter_failed: bool,
    transactional_id: Option<String>,
    max_held_bytes: usize,
    /// The job-wide transaction, created when the sink joins a job.
    transaction: Arc<OnceLock<Arc<Transaction>>>,
    _records: PhantomData<fn(T)>,
}

impl<T> Clone for KafkaSink<T> {
    fn clone(&self) -> Self {
        Self {
            brokers: self.brokers.clone(),
            topic: self.topic.clone(),
            overrides: self.overrides.clone(),
            flush_timeout: self.flush_timeout,
            dead_letter_failed: self.dead_letter_failed,
            transactional_id: self.transactional_id.clone(),
            max_held_bytes: self.max_held_bytes,
            transaction: self.transaction.clone(),
            _records: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for KafkaSink<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .finish()
    }
}

impl<T> KafkaSink<T> {
    /// A sink writing to the cluster at `brokers`.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            topic: None,
            overrides: Vec::new(),
            flush_timeout: Duration::from_secs(60),
            dead_letter_failed: false,
            transactional_id: None,
            max_held_bytes: 64 << 20,
            transaction: Arc::default(),
            _records: PhantomData,
        }
    }

    /// Writes exactly once: one Kafka transaction per checkpoint epoch, committed when the
    /// checkpoint completes (the job must have checkpoints). Readers with
    /// `isolation.level=read_committed` then see each record once, and only after its
    /// checkpoint: visibility latency grows to about the checkpoint interval. Without this,
    /// the sink is at-least-once and records are visible at once.
    ///
    /// `transactional_id` must be stable across restarts of the job (it is how a restarted
    /// job fences its crashed predecessor) and unique among jobs. Needs a default
    /// [`topic`](Self::topic). `dead_letter_failed_deliveries` does not apply: a failed
    /// delivery aborts the epoch's transaction and fails the checkpoint, so the job restarts
    /// from the previous one.
    ///
    /// ```no_run
    /// use rill_connectors::kafka::KafkaSink;
    /// let sink: KafkaSink<(String, String)> =
    ///     KafkaSink::new("localhost:9092").topic("counts").exactly_once("wordcount-counts");
    /// ```
    pub fn exactly_once(mut self, transactional_id: impl Into<String>) -> Self {
        self.transactional_id = Some(transactional_id.into());
        self
    }

    /// Exactly-once: the most bytes (keys, values, headers) a worker holds between a barrier
    /// and its checkpoint's commit (default 64 MiB). Past it the job pauses its input until
    /// the commit, instead of growing.
    pub fn max_held_bytes(mut self, bytes: usize) -> Self {
        self.max_held_bytes = bytes.max(1);
        self
    }

    /// The topic for records that do not name one.
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = Some(topic.into());
        self
    }

    /// Sets any librdkafka producer property, overriding rill's defaults.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.overrides.push((key.into(), value.into()));
        self
    }

    /// Hands records the broker finally rejects (too large, unknown topic, retries exhausted)
    /// to the job's dead-letter sink ([`Job::dead_letter`](rill_engine::Job::dead_letter))
    /// with their key and value bytes, instead of failing the job. Without a dead-letter sink
    /// the job still fails.
    pub fn dead_letter_failed_deliveries(mut self) -> Self {
        self.dead_letter_failed = true;
        self
    }

    /// How long closing the sink may wait for acknowledgements (default 60 s).
    pub fn flush_timeout(mut self, timeout: Duration) -> Self {
        self.flush_timeout = timeout;
        self
    }
}

impl<T> KafkaSink<T> {
    fn producer_config(&self) -> ClientConfig {
        let mut config = client_config(&self.brokers);
        config
            // librdkafka waits 5 ms by default to fill batches: pure latency on this path.
            .set("linger.ms", "0")
            // Retries after a broker restart or a lost acknowledgement neither duplicate nor
            // reorder records within a partition: the broker drops a retried batch it already
            // has by its producer id and sequence number (implies acks=all).
            .set("enable.idempotence", "true");
        for (k, v) in &self.overrides {
            config.set(k, v);
        }
        config
    }
}

impl<T: ToKafka + 'static> Sink<T> for KafkaSink<T> {
    type Writer = KafkaSinkWriter;

    fn committer(&self) -> Option<Arc<dyn Committer>> {
        let id = self.transactional_id.clone()?;
        let txn = self.transaction.get_or_init(|| {
            Arc::new(Transaction::new(
                id,
                self.producer_config(),
                self.brokers.clone(),
                self.topic.clone().unwrap_or_default(),
                self.flush_timeout,
            ))
        });
        Some(txn.clone() as Arc<dyn Committer>)
    }

    fn create(&self, ctx: &WorkerContext) -> Result<KafkaSinkWriter, BoxError> {
        if self.transactional_id.is_some() {
            if self.topic.is_none() {
                return Err(KafkaConnectorError::NoMarkerTopic.into());
            }
            let txn = self
                .transaction
                .get()
                .ok_or(KafkaConnectorError::NotRecovered)?;
            return Ok(KafkaSinkWriter::Transactional(TransactionalWriter::new(
                txn.clone(),
                self.topic.clone(),
                ctx.abort_signal(),
                self.max_held_bytes,
            )));
        }
        let config = self.producer_config();
        let failure = Arc::new(Mutex::new(None));
        let undelivered = self
            .dead_letter_failed
            .then(|| Arc::new(Mutex::new(Vec::new())));
        // A dead-letter topic: a letter too large for it is cut, not a second failure.
        let oversized = (std::any::TypeId::of::<T>() == std::any::TypeId::of::<DeadLetter>())
            .then(|| (LETTER_VALUE_LIMIT, Arc::new(Mutex::new(Vec::new()))));
        let producer: BaseProducer<DeliveryContext> = config
            .create_with_context(DeliveryContext {
                failure: failure.clone(),
                undelivered: undelivered.clone(),
                oversized: oversized.clone(),
            })
            .map_err(KafkaConnectorError::Config)?;
        if config.get("enable.idempotence") == Some("true") {
            warm_up(&producer);
        }
        Ok(KafkaSinkWriter::Plain(KafkaPlainWriter {
            producer,
            default_topic: self.topic.clone(),
            failure,
            undelivered,
            flush_timeout: self.flush_timeout,
            abort: ctx.abort_signal(),
            oversized,
        }))
    }

    fn name(&self) -> &str {
        "kafka"
    }
}

/// One worker's [`KafkaSink`]: at-least-once ([`KafkaPlainWriter`]) or exactly-once
/// ([`TransactionalWriter`]).
#[derive(Debug)]
pub enum KafkaSinkWriter {
    /// A producer of its own; records are visible at once.
    Plain(KafkaPlainWriter),
    /// Writes into the job's transaction of the current epoch.
    Transactional(TransactionalWriter),
}

impl<T: ToKafka> SinkWriter<T> for KafkaSinkWriter {
    #[inline]
    fn write(&mut self, item: T) -> Result<(), BoxError> {
        match self {
            KafkaSinkWriter::Plain(s) => s.write(item),
            KafkaSinkWriter::Transactional(s) => s.write(item),
        }
    }
    fn flush(&mut self) -> Result<(), BoxError> {
        match self {
            KafkaSinkWriter::Plain(s) => SinkWriter::<T>::flush(s),
            KafkaSinkWriter::Transactional(s) => SinkWriter::<T>::flush(s),
        }
    }
    fn close(&mut self) -> Result<(), BoxError> {
        match self {
            KafkaSinkWriter::Plain(s) => SinkWriter::<T>::close(s),
            KafkaSinkWriter::Transactional(s) => SinkWriter::<T>::close(s),
        }
    }
    fn take_dead_letters(&mut self) -> Vec<DeadLetter> {
        match self {
            KafkaSinkWriter::Plain(s) => SinkWriter::<T>::take_dead_letters(s),
            KafkaSinkWriter::Transactional(s) => SinkWriter::<T>::take_dead_letters(s),
        }
    }
    fn on_barrier(&mut self, epoch: Epoch) -> Result<(), BoxError> {
        match self {
            KafkaSinkWriter::Plain(s) => SinkWriter::<T>::on_barrier(s, epoch),
            KafkaSinkWriter::Transactional(s) => SinkWriter::<T>::on_barrier(s, epoch),
        }
    }
    fn checkpoint_complete(&mut self, epoch: Epoch) -> Result<(), BoxError> {
        match self {
            KafkaSinkWriter::Plain(s) => SinkWriter::<T>::checkpoint_complete(s, epoch),
            KafkaSinkWriter::Transactional(s) => SinkWriter::<T>::checkpoint_complete(s, epoch),
        }
    }
    fn is_full(&self) -> bool {
        match self {
            KafkaSinkWriter::Plain(s) => SinkWriter::<T>::is_full(s),
            KafkaSinkWriter::Transactional(s) => SinkWriter::<T>::is_full(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_producer_is_idempotent_unless_the_user_says_otherwise() {
        let sink = KafkaSink::<String>::new("127.0.0.1:9");
        assert_eq!(
            sink.producer_config().get("enable.idempotence"),
            Some("true")
        );
        let sink = sink.set("enable.idempotence", "false");
        assert_eq!(
            sink.producer_config().get("enable.idempotence"),
            Some("false")
        );
    }

    #[test]
    fn sources_and_sinks_open_their_broker_connections_at_once() {
        let sink = KafkaSink::<String>::new("127.0.0.1:9");
        let source = crate::kafka::KafkaSource::new("127.0.0.1:9", "group");
        for config in [sink.producer_config(), source.client_config()] {
            assert_eq!(config.get("bootstrap.servers"), Some("127.0.0.1:9"));
            assert_eq!(config.get("enable.sparse.connections"), Some("false"));
        }
    }
}
