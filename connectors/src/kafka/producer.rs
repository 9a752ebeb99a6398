//! What every Kafka producer of rill shares: delivery reports turned into errors or dead
//! letters, records built from their parts, and a flush that returns as soon as the last
//! acknowledgement arrives.

use rill_engine::sync::Lock;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;
use rill_engine::DeadLetter;

use super::error::KafkaConnectorError;

/// Records failed deliveries: the first one fails the job at the next flush, or, when the
/// sink dead-letters them, each becomes a dead letter.
/// Collects delivery failures reported by librdkafka's delivery callbacks.
pub(crate) struct DeliveryContext {
    pub(crate) failure: Arc<Mutex<Option<KafkaConnectorError>>>,
    pub(crate) undelivered: Option<Arc<Mutex<Vec<DeadLetter>>>>,
    /// A dead-letter sink: records the broker rejects as too large, to send again with
    /// their value cut to this many bytes.
    pub(crate) oversized: Option<(usize, Arc<Mutex<Vec<Resend>>>)>,
}

/// A record's headers as rill writes them.
pub(crate) type RecordHeaders = Vec<(String, Vec<u8>)>;

/// A record to send again: topic, key, value, headers.
pub(crate) type Resend = (String, Option<Vec<u8>>, Option<Vec<u8>>, RecordHeaders);

use super::output::dead_letter_headers::TRUNCATED as TRUNCATED_HEADER;

/// Whether `e` says the record is larger than the client or the broker accepts.
pub(crate) fn too_large(e: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode::MessageSizeTooLarge;
    matches!(e, KafkaError::MessageProduction(MessageSizeTooLarge))
}

/// `value` cut to `limit` bytes, and `headers` with [`TRUNCATED_HEADER`] added (once).
pub(crate) fn truncated(
    value: Option<&[u8]>,
    headers: &[(String, Vec<u8>)],
    limit: usize,
) -> (Option<Vec<u8>>, RecordHeaders) {
    let original = value.map_or(0, <[u8]>::len);
    let mut headers: Vec<(String, Vec<u8>)> = headers
        .iter()
        .filter(|(k, _)| k != TRUNCATED_HEADER)
        .cloned()
        .collect();
    headers.push((
        TRUNCATED_HEADER.to_string(),
        original.to_string().into_bytes(),
    ));
    (value.map(|v| v[..v.len().min(limit)].to_vec()), headers)
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
pub(crate) fn undelivered_letter(
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
            if let Some((limit, resend)) = self.oversized.as_ref().filter(|_| too_large(e)) {
                let already = msg
                    .headers()
                    .is_some_and(|hs| hs.iter().any(|h| h.key == TRUNCATED_HEADER));
                if !already {
                    let headers: Vec<(String, Vec<u8>)> = msg
                        .headers()
                        .map(|hs| {
                            hs.iter()
                                .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                                .collect()
                        })
                        .unwrap_or_default();
                    let (value, headers) = truncated(msg.payload(), &headers, *limit);
                    resend.locked().push((
                        msg.topic().to_string(),
                        msg.key().map(<[u8]>::to_vec),
                        value,
                        headers,
                    ));
                    return;
                }
            }
            if let Some(undelivered) = &self.undelivered {
                let letter = undelivered_letter(msg.topic(), msg.key(), msg.payload(), e);
                undelivered.locked().push(letter);
                return;
            }
            let mut slot = self.failure.locked();
            slot.get_or_insert_with(|| KafkaConnectorError::Delivery {
                topic: msg.topic().to_string(),
                source: e.clone(),
            });
        }
    }
}

/// How long each metadata round trip of [`warm_up`] may take: past librdkafka's own 500 ms
/// retry timer, waiting longer gains nothing.
const WARM_UP_TIMEOUT: Duration = Duration::from_millis(500);

/// Makes a new idempotent producer ready to send before its first record: librdkafka asks for
/// a producer id only once metadata arrives from a broker it is connected to, and otherwise
/// retries on a 500 ms timer, during which records wait. Measured on noida-db, 100,000
/// records were acknowledged 547 ms after the producer was created, 117 ms with this warm-up
/// (52 ms of it the warm-up itself);
/// a bounded relay spent most of its run waiting for it.
///
/// Two metadata round trips: the first learns the cluster's brokers from the bootstrap
/// connection, the second arrives once connected to one, which starts the id request. They
/// ask for every topic's metadata, not the sink's topic: asking for a topic that does not
/// exist yet creates it on a broker that auto-creates topics, before the user's own set-up
/// could. Best effort: a broker that does not answer is left to the producer's own retries
/// (and to delivery reports), so a job still starts while its broker is down.
pub(crate) fn warm_up<C: ProducerContext>(producer: &BaseProducer<C>) {
    for _ in 0..2 {
        if producer
            .client()
            .fetch_metadata(None, WARM_UP_TIMEOUT)
            .is_err()
        {
            return;
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
pub(crate) fn flush_promptly<C: ProducerContext>(
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
