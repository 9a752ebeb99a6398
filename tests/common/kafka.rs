//! Plain librdkafka clients for tests: feed input topics, read output topics back.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
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
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
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

/// Like [`read`], with the given `isolation.level` (`read_uncommitted` shows records of
/// aborted and open transactions too).
pub(crate) fn read_isolated(
    brokers: &str,
    topic: &str,
    n: usize,
    timeout: Duration,
    isolation: &str,
) -> Vec<Read> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "rill-test-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .set("fetch.wait.max.ms", "5")
        .create()
        .expect("test consumer");
    let tpl = partitions(&consumer, topic, Offset::Beginning);
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
            let headers = m
                .headers()
                .map(|hs| {
                    use rdkafka::message::Headers;
                    hs.iter()
                        .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default();
            out.push((
                m.key().map(<[u8]>::to_vec),
                m.payload().map(<[u8]>::to_vec),
                headers,
            ));
        }
    }
    out
}

/// The sum over `topic`'s partitions of the offsets `group` has committed (0 where none).
pub(crate) fn committed_total(brokers: &str, group: &str, topic: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
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
