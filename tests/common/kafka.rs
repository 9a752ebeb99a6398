//! Plain librdkafka clients for tests: feed input topics, read output topics back.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

/// A record as read back: key, value, headers.
pub(crate) type Read = (Option<Vec<u8>>, Option<Vec<u8>>, HashMap<String, Vec<u8>>);

/// Every partition of `topic`, positioned at `offset` (use `Offset::Invalid` for none).
fn partitions(consumer: &BaseConsumer, topic: &str, offset: Offset) -> TopicPartitionList {
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("topic metadata");
    let mut tpl = TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), offset)
                .expect("partition");
        }
    }
    tpl
}

/// Produces `(key, value)` records to `topic` and waits until all are acknowledged.
pub(crate) fn produce(brokers: &str, topic: &str, records: &[(Vec<u8>, Vec<u8>)]) {
    let producer: BaseProducer = rill::connectors::kafka::client_config(brokers)
        .set("linger.ms", "1")
        .create()
        .expect("test producer");
    for (k, v) in records {
        let mut record = BaseRecord::to(topic).key(k).payload(v);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("test input acknowledged");
}

/// Reads `topic` from the beginning (all partitions, no group) until `n` records arrived or
/// `timeout` passed, then returns what it read.
pub(crate) fn read(brokers: &str, topic: &str, n: usize, timeout: Duration) -> Vec<Read> {
    // Only committed transactions: what exactly-once output promises.
    read_isolated(brokers, topic, n, timeout, "read_committed")
}

/// A test reader of every partition of `topic` from the beginning (no group).
fn reader(brokers: &str, topic: &str, isolation: &str) -> BaseConsumer {
    let consumer: BaseConsumer = rill::connectors::kafka::client_config(brokers)
        .set("group.id", "rill-test-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .set("fetch.wait.max.ms", "5")
        .create()
        .expect("test consumer");
    let tpl = partitions(&consumer, topic, Offset::Beginning);
    consumer.assign(&tpl).expect("assign");
    consumer
}

/// The next record, if one arrives within 50 ms.
fn poll_one(consumer: &BaseConsumer) -> Option<Read> {
    let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) else {
        return None;
    };
    let headers = m
        .headers()
        .map(|hs| {
            use rdkafka::message::Headers;
            hs.iter()
                .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                .collect()
        })
        .unwrap_or_default();
    Some((
        m.key().map(<[u8]>::to_vec),
        m.payload().map(<[u8]>::to_vec),
        headers,
    ))
}

/// Like [`read`], with the given `isolation.level` (`read_uncommitted` shows records of
/// aborted and open transactions too).
pub(crate) fn read_isolated(
    brokers: &str,
    topic: &str,
    n: usize,
    timeout: Duration,
    isolation: &str,
) -> Vec<Read> {
    let consumer = reader(brokers, topic, isolation);
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        out.extend(poll_one(&consumer));
    }
    out
}

/// Everything `topic` holds now: reads every partition from the beginning up to the high
/// watermark it had when the read started. For checking for duplicates once the writers have
/// stopped: nothing written by then can be missed, and no fixed wait is needed. Panics if the
/// end is not reached within `timeout`.
pub(crate) fn read_to_end(brokers: &str, topic: &str, timeout: Duration) -> Vec<Read> {
    let consumer = reader(brokers, topic, "read_committed");
    let mut ends = Vec::new();
    for e in partitions(&consumer, topic, Offset::Beginning).elements() {
        let (_, high) = consumer
            .fetch_watermarks(topic, e.partition(), Duration::from_secs(10))
            .expect("high watermark");
        ends.push((e.partition(), high));
    }
    let reached = |consumer: &BaseConsumer| {
        let position = consumer.position().expect("position");
        ends.iter().all(|(partition, high)| {
            *high == 0
                || matches!(
                    position.find_partition(topic, *partition).map(|e| e.offset()),
                    Some(Offset::Offset(o)) if o >= *high
                )
        })
    };
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while !reached(&consumer) {
        assert!(
            Instant::now() < deadline,
            "{topic} not read to its end ({ends:?}) within {timeout:?}: {} records read",
            out.len()
        );
        out.extend(poll_one(&consumer));
    }
    out
}

/// The sum over `topic`'s partitions of the offsets `group` has committed (0 where none).
pub(crate) fn committed_total(brokers: &str, group: &str, topic: &str) -> i64 {
    let consumer: BaseConsumer = rill::connectors::kafka::client_config(brokers)
        .set("group.id", group)
        .create()
        .expect("test consumer");
    let tpl = partitions(&consumer, topic, Offset::Invalid);
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        })
        .sum()
}

/// Deletes the records of `topic`'s partition `partition` below `before` (what retention does
/// to old segments), through the admin API; returns the partition's new low watermark.
pub(crate) fn delete_records(brokers: &str, topic: &str, partition: i32, before: i64) -> i64 {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = rill::connectors::kafka::client_config(brokers)
        .create()
        .expect("admin client");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(before))
        .expect("partition");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let result =
        futures_executor::block_on(admin.delete_records(&tpl, &opts)).expect("DeleteRecords");
    let entry = result
        .find_partition(topic, partition)
        .expect("the partition in DeleteRecords' answer");
    entry.error().expect("records deleted");
    match entry.offset() {
        Offset::Offset(low) => low,
        other => panic!("DeleteRecords answered {other:?}"),
    }
}

/// Produces one record whose header key is arbitrary bytes (`header_key` need not be UTF-8),
/// which no librdkafka client can write: a hand-built Produce v3 request with a v2 record
/// batch, sent to `brokers` (a single broker that leads `topic`'s partition `partition`).
pub(crate) fn produce_with_raw_header(
    brokers: &str,
    topic: &str,
    partition: i32,
    value: &[u8],
    header_key: &[u8],
    header_value: &[u8],
) {
    use std::io::{Read as _, Write as _};
    fn varint(out: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        loop {
            let byte = (z & 0x7f) as u8;
            z >>= 7;
            if z == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    fn crc32c(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for b in bytes {
            crc ^= u32::from(*b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0x82F6_3B78
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    let mut record = Vec::new();
    record.push(0); // attributes
    varint(&mut record, 0); // timestamp delta
    varint(&mut record, 0); // offset delta
    varint(&mut record, -1); // no key
    varint(&mut record, value.len() as i64);
    record.extend_from_slice(value);
    varint(&mut record, 1); // one header
    varint(&mut record, header_key.len() as i64);
    record.extend_from_slice(header_key);
    varint(&mut record, header_value.len() as i64);
    record.extend_from_slice(header_value);
    let mut records = Vec::new();
    varint(&mut records, record.len() as i64);
    records.extend_from_slice(&record);

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    // Everything the batch's CRC covers: from the attributes to the end.
    let mut covered = Vec::new();
    covered.extend_from_slice(&0i16.to_be_bytes()); // attributes
    covered.extend_from_slice(&0i32.to_be_bytes()); // last offset delta
    covered.extend_from_slice(&now.to_be_bytes()); // base timestamp
    covered.extend_from_slice(&now.to_be_bytes()); // max timestamp
    covered.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    covered.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
    covered.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    covered.extend_from_slice(&1i32.to_be_bytes()); // record count
    covered.extend_from_slice(&records);
    let mut after_length = Vec::new();
    after_length.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
    after_length.push(2); // magic
    after_length.extend_from_slice(&crc32c(&covered).to_be_bytes());
    after_length.extend_from_slice(&covered);
    let mut batch = Vec::new();
    batch.extend_from_slice(&0i64.to_be_bytes()); // base offset
    batch.extend_from_slice(&(after_length.len() as i32).to_be_bytes());
    batch.extend_from_slice(&after_length);

    let mut request = Vec::new();
    request.extend_from_slice(&0i16.to_be_bytes()); // Produce
    request.extend_from_slice(&3i16.to_be_bytes()); // version 3
    request.extend_from_slice(&7i32.to_be_bytes()); // correlation id
    request.extend_from_slice(&4i16.to_be_bytes());
    request.extend_from_slice(b"test");
    request.extend_from_slice(&(-1i16).to_be_bytes()); // no transactional id
    request.extend_from_slice(&1i16.to_be_bytes()); // acks
    request.extend_from_slice(&10_000i32.to_be_bytes()); // timeout
    request.extend_from_slice(&1i32.to_be_bytes()); // one topic
    request.extend_from_slice(&(topic.len() as i16).to_be_bytes());
    request.extend_from_slice(topic.as_bytes());
    request.extend_from_slice(&1i32.to_be_bytes()); // one partition
    request.extend_from_slice(&partition.to_be_bytes());
    request.extend_from_slice(&(batch.len() as i32).to_be_bytes());
    request.extend_from_slice(&batch);

    let mut stream = std::net::TcpStream::connect(brokers).expect("broker connection");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
        .write_all(&(request.len() as i32).to_be_bytes())
        .and_then(|()| stream.write_all(&request))
        .expect("Produce request sent");
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).expect("Produce response");
    let mut response = vec![0u8; i32::from_be_bytes(size) as usize];
    stream
        .read_exact(&mut response)
        .expect("Produce response body");
    // correlation id, topics (1), name, partitions (1), partition, error code, ...
    let name_end = 4 + 4 + 2 + topic.len();
    let error_at = name_end + 4 + 4;
    let error = i16::from_be_bytes([response[error_at], response[error_at + 1]]);
    assert_eq!(
        error, 0,
        "the broker refused the hand-built record (error {error})"
    );
}

/// The key of the records [`poke`] writes.
pub(crate) const POKE: &[u8] = b"~poke";

/// Writes one plain (non-transactional) record to every partition of `topic`.
///
/// noida-db 0.2.3 does not hand a partition's newest committed transaction to
/// `read_committed` fetchers until something else is written to that partition (seen here:
/// the last 100 committed updates became visible to a fresh reader right after a plain write,
/// with the broker reporting the same last stable offset for both isolation levels). Real
/// Kafka does; the test pokes the output partitions instead of waiting forever.
pub(crate) fn poke(brokers: &str, topic: &str) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let producer: BaseProducer = rill::connectors::kafka::client_config(brokers)
        .create()
        .expect("poke producer");
    for partition in 0..2 {
        producer
            .send(
                BaseRecord::to(topic)
                    .partition(partition)
                    .key(POKE)
                    .payload(""),
            )
            .expect("poke queued");
    }
    producer
        .flush(Duration::from_secs(10))
        .expect("poke written");
}
