//! Writing to Kafka: one producer per worker.

use std::borrow::Cow;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;
use rill_engine::{BoxError, Committer, DeadLetter, Epoch, Sink, SinkWriter, WorkerContext};

use super::transaction::{Transaction, TransactionalWriter};
use super::KafkaConnectorError;

/// What a [`KafkaSink`] needs from a record: topic (optional, else the sink's), key, value and
/// headers. Implemented for [`KafkaOutput`], for `String`/`Vec<u8>` values and for
/// `(key, value)` pairs of them.
pub trait ToKafka {
    /// The topic for this record (like Spark's `topic` column); `None` uses the sink's topic.
    fn topic(&self) -> Option<&str> {
        None
    }
    /// Key bytes, if any.
    fn key(&self) -> Option<&[u8]>;
    /// Value bytes, if any (`None` writes a tombstone).
    fn value(&self) -> Option<&[u8]>;
    /// Headers to attach.
    fn headers(&self) -> Cow<'_, [(String, Vec<u8>)]> {
        Cow::Borrowed(&[])
    }
}

/// Header names of a dead letter written to Kafka.
pub mod dead_letter_headers {
    /// The operator whose function failed.
    pub const STAGE: &str = "rill.dlq.stage";
    /// The error, with its causes.
    pub const ERROR: &str = "rill.dlq.error";
    /// The topic the record was read from.
    pub const TOPIC: &str = "rill.dlq.origin.topic";
    /// Its partition, decimal.
    pub const PARTITION: &str = "rill.dlq.origin.partition";
    /// Its offset, decimal.
    pub const OFFSET: &str = "rill.dlq.origin.offset";
}

/// A dead letter goes to Kafka as the original record (same key and value bytes), with its
/// provenance in headers (see [`dead_letter_headers`]), so that replaying the dead-letter topic
/// into the original topic (a bounded run) restores the record exactly.
impl ToKafka for DeadLetter {
    fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }
    fn value(&self) -> Option<&[u8]> {
        self.value.as_deref()
    }
    fn headers(&self) -> Cow<'_, [(String, Vec<u8>)]> {
        use dead_letter_headers as h;
        let mut headers = vec![
            (h::STAGE.to_string(), self.stage.as_bytes().to_vec()),
            (h::ERROR.to_string(), self.error.as_bytes().to_vec()),
        ];
        if let Some(o) = &self.origin {
            headers.push((h::TOPIC.to_string(), o.stream.as_bytes().to_vec()));
            headers.push((
                h::PARTITION.to_string(),
                o.partition.to_string().into_bytes(),
            ));
            headers.push((h::OFFSET.to_string(), o.offset.to_string().into_bytes()));
        }
        Cow::Owned(headers)
    }
}

/// A record to write, with every field a Kafka record can have.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KafkaOutput {
    /// Topic; `None` uses the sink's default topic.
    pub topic: Option<String>,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes.
    pub value: Option<Vec<u8>>,
    /// Headers.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl ToKafka for KafkaOutput {
    fn topic(&self) -> Option<&str> {
        self.topic.as_deref()
    }
    fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }
    fn value(&self) -> Option<&[u8]> {
        self.value.as_deref()
    }
    fn headers(&self) -> Cow<'_, [(String, Vec<u8>)]> {
        Cow::Borrowed(&self.headers)
    }
}

impl ToKafka for String {
    fn key(&self) -> Option<&[u8]> {
        None
    }
    fn value(&self) -> Option<&[u8]> {
        Some(self.as_bytes())
    }
}

impl ToKafka for Vec<u8> {
    fn key(&self) -> Option<&[u8]> {
        None
    }
    fn value(&self) -> Option<&[u8]> {
        Some(self)
    }
}

impl<K: AsRef<[u8]>, V: AsRef<[u8]>> ToKafka for (K, V) {
    fn key(&self) -> Option<&[u8]> {
        Some(self.0.as_ref())
    }
    fn value(&self) -> Option<&[u8]> {
        Some(self.1.as_ref())
    }
}

/// Writes records to Kafka, one producer per worker.
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
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            // librdkafka waits 5 ms by default to fill batches: pure latency on this path.
            .set("linger.ms", "0");
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

    fn create(&self, _ctx: &WorkerContext) -> Result<KafkaSinkWriter, BoxError> {
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
            )));
        }
        let config = self.producer_config();
        let failure = Arc::new(Mutex::new(None));
        let undelivered = self
            .dead_letter_failed
            .then(|| Arc::new(Mutex::new(Vec::new())));
        let producer: BaseProducer<DeliveryContext> = config
            .create_with_context(DeliveryContext {
                failure: failure.clone(),
                undelivered: undelivered.clone(),
            })
            .map_err(KafkaConnectorError::Config)?;
        Ok(KafkaSinkWriter::Plain(KafkaPlainWriter {
            producer,
            default_topic: self.topic.clone(),
            failure,
            undelivered,
            flush_timeout: self.flush_timeout,
        }))
    }

    fn name(&self) -> &str {
        "kafka"
    }
}

/// Records failed deliveries: the first one fails the job at the next flush, or, when the
/// sink dead-letters them, each becomes a dead letter.
/// Collects delivery failures reported by librdkafka's delivery callbacks.
pub(crate) struct DeliveryContext {
    pub(crate) failure: Arc<Mutex<Option<KafkaConnectorError>>>,
    pub(crate) undelivered: Option<Arc<Mutex<Vec<DeadLetter>>>>,
}

/// A librdkafka record from its parts.
pub(crate) fn record_of<'a>(
    topic: &'a str,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    headers: &[(String, Vec<u8>)],
) -> BaseRecord<'a, [u8], [u8]> {
    let mut record: BaseRecord<'a, [u8], [u8]> = BaseRecord::to(topic);
    if let Some(key) = key {
        record = record.key(key);
    }
    if let Some(value) = value {
        record = record.payload(value);
    }
    if !headers.is_empty() {
        let headers = headers.iter().fold(OwnedHeaders::new(), |hs, (k, v)| {
            hs.insert(Header {
                key: k,
                value: Some(v),
            })
        });
        record = record.headers(headers);
    }
    record
}

/// A record the broker rejected, as a dead letter of the sink.
fn undelivered_letter(
    topic: &str,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    e: &KafkaError,
) -> DeadLetter {
    DeadLetter {
        stage: Arc::from("kafka"),
        error: format!("delivery to Kafka topic `{topic}` failed: {e}"),
        origin: None,
        key: key.map(<[u8]>::to_vec),
        value: value.map(<[u8]>::to_vec),
    }
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, msg)) = result {
            if let Some(undelivered) = &self.undelivered {
                let letter = undelivered_letter(msg.topic(), msg.key(), msg.payload(), e);
                undelivered
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(letter);
                return;
            }
            let mut slot = self.failure.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert_with(|| KafkaConnectorError::Delivery {
                topic: msg.topic().to_string(),
                source: e.clone(),
            });
        }
    }
}

/// One worker's [`KafkaSink`].
pub struct KafkaPlainWriter {
    producer: BaseProducer<DeliveryContext>,
    default_topic: Option<String>,
    failure: Arc<Mutex<Option<KafkaConnectorError>>>,
    undelivered: Option<Arc<Mutex<Vec<DeadLetter>>>>,
    flush_timeout: Duration,
}

impl std::fmt::Debug for KafkaPlainWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaPlainWriter")
            .field("default_topic", &self.default_topic)
            .field("in_flight", &self.producer.in_flight_count())
            .finish()
    }
}

impl KafkaPlainWriter {
    fn check_deliveries(&self) -> Result<(), BoxError> {
        match self
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }
}

/// Waits until every record handed to `producer` is acknowledged (or failed), serving
/// delivery reports as they come; `Err` with the records still in flight after `timeout`.
///
/// Not `Producer::flush`: rdkafka 0.39 flushes by polling in slices of up to 100 ms, and its
/// `poll` runs until its timeout even when the last report has arrived (rust-rdkafka PR #748),
/// so every flush with a record in flight took at least 100 ms. Measured in latency-lab, that
/// was a 0-100 ms wait on every record of a micro-batch or checkpointing job. Here the wait
/// ends within tens of microseconds of the last acknowledgement.
fn flush_promptly<C: ProducerContext>(
    producer: &BaseProducer<C>,
    timeout: Duration,
) -> Result<(), i32> {
    let deadline = Instant::now() + timeout;
    loop {
        // Serves every delivery report already queued (a zero timeout returns at once).
        producer.poll(Duration::ZERO);
        let in_flight = producer.in_flight_count();
        if in_flight == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(in_flight);
        }
        // A broker round trip is 0.1 ms to a few ms: wait in short steps, off the CPU.
        std::thread::sleep(Duration::from_micros(20));
    }
}

impl<T: ToKafka> SinkWriter<T> for KafkaPlainWriter {
    fn write(&mut self, item: T) -> Result<(), BoxError> {
        let topic = item
            .topic()
            .or(self.default_topic.as_deref())
            .ok_or(KafkaConnectorError::NoTopic)?;
        let item_headers = item.headers();
        let mut record = record_of(topic, item.key(), item.value(), &item_headers);
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                // librdkafka's queue is full: back-pressure from the broker. Serve delivery
                // reports (which frees room) and try again.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    self.producer.poll(Duration::from_millis(1));
                    self.check_deliveries()?;
                }
                Err((e, _)) => {
                    if let Some(undelivered) = &self.undelivered {
                        let letter = undelivered_letter(topic, item.key(), item.value(), &e);
                        undelivered
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(letter);
                        return Ok(());
                    }
                    return Err(KafkaConnectorError::Delivery {
                        topic: topic.to_string(),
                        source: e,
                    }
                    .into());
                }
            }
        }
    }

    fn flush(&mut self) -> Result<(), BoxError> {
        // Non-blocking: serve delivery reports, surface failures.
        self.producer.poll(Duration::ZERO);
        self.check_deliveries()
    }

    /// At-least-once with checkpoints: every record written before the barrier must be
    /// acknowledged before the checkpoint may say the input behind it is done.
    fn on_barrier(&mut self, _epoch: Epoch) -> Result<(), BoxError> {
        if flush_promptly(&self.producer, self.flush_timeout).is_err() {
            self.check_deliveries()?;
            return Err(KafkaConnectorError::FlushTimeout {
                in_flight: self.producer.in_flight_count(),
            }
            .into());
        }
        self.check_deliveries()
    }

    fn take_dead_letters(&mut self) -> Vec<DeadLetter> {
        match &self.undelivered {
            Some(u) => std::mem::take(&mut *u.lock().unwrap_or_else(|p| p.into_inner())),
            None => Vec::new(),
        }
    }

    fn close(&mut self) -> Result<(), BoxError> {
        if flush_promptly(&self.producer, self.flush_timeout).is_err() {
            self.check_deliveries()?;
            return Err(KafkaConnectorError::FlushTimeout {
                in_flight: self.producer.in_flight_count(),
            }
            .into());
        }
        self.check_deliveries()
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
}
