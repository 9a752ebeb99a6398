//! A table from a Kafka topic: read from the beginning to the end, latest value per key.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};
use rill_connectors::kafka::client_config;
use serde::de::DeserializeOwned;

use crate::error::TableError;
use crate::pace::Pacer;

fn consumer(table: &str, brokers: &str, topic: &str) -> Result<BaseConsumer, TableError> {
    client_config(brokers)
        // No group: the table assigns every partition itself and commits nothing.
        .set("group.id", format!("rill-table-{table}"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create()
        .map_err(|e| kafka_error(table, topic, e))
}

fn kafka_error(table: &str, topic: &str, e: impl std::fmt::Display) -> TableError {
    TableError::Kafka {
        table: table.to_string(),
        topic: topic.to_string(),
        message: e.to_string(),
    }
}

/// The topic's partitions with their end (high watermark) offsets.
pub(crate) fn end_offsets(
    table: &str,
    brokers: &str,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<(i32, i64)>, TableError> {
    let consumer = consumer(table, brokers, topic)?;
    partition_ends(&consumer, table, topic, timeout)
}

fn partition_ends(
    consumer: &BaseConsumer,
    table: &str,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<(i32, i64)>, TableError> {
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| kafka_error(table, topic, e))?;
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err(kafka_error(table, topic, "not in the cluster's metadata"));
    };
    if let Some(e) = t.error() {
        return Err(kafka_error(table, topic, RDKafkaErrorCode::from(e)));
    }
    if t.partitions().is_empty() {
        return Err(kafka_error(table, topic, "the topic does not exist"));
    }
    let mut ends = Vec::new();
    for p in t.partitions() {
        let (_, high) = consumer
            .fetch_watermarks(topic, p.id(), timeout)
            .map_err(|e| kafka_error(table, topic, e))?;
        ends.push((p.id(), high));
    }
    Ok(ends)
}

/// Every partition of `topic` from its beginning to its end (as of the start of the read):
/// the latest row per record key (records without a key are rows of their own), deleting a
/// key at a tombstone; rows in offset order per partition.
pub(crate) fn read_topic<R: DeserializeOwned>(
    table: &str,
    brokers: &str,
    topic: &str,
    timeout: Duration,
    pacer: &mut Pacer,
) -> Result<Vec<R>, TableError> {
    let consumer = consumer(table, brokers, topic)?;
    let ends = partition_ends(&consumer, table, topic, timeout)?;
    let mut assignment = TopicPartitionList::new();
    let mut remaining = 0;
    for &(p, end) in &ends {
        if end > 0 {
            assignment
                .add_partition_offset(topic, p, Offset::Beginning)
                .map_err(|e| kafka_error(table, topic, e))?;
            remaining += 1;
        }
    }
    let mut keyed: HashMap<Vec<u8>, (i32, i64)> = HashMap::new();
    let mut rows: Vec<Option<R>> = Vec::new();
    if remaining == 0 {
        return Ok(Vec::new());
    }
    consumer
        .assign(&assignment)
        .map_err(|e| kafka_error(table, topic, e))?;
    let ends: HashMap<i32, i64> = ends.into_iter().collect();
    let mut done: HashMap<i32, bool> = HashMap::new();
    let deadline = Instant::now() + timeout;
    let mut index: HashMap<(i32, i64), usize> = HashMap::new();
    while remaining > 0 {
        if Instant::now() > deadline {
            return Err(kafka_error(
                table,
                topic,
                format!("not read to its end within {timeout:?}"),
            ));
        }
        let Some(msg) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let msg = match msg {
            Ok(m) => m,
            Err(KafkaError::PartitionEOF(p)) => {
                if !done.insert(p, true).unwrap_or(false) {
                    remaining -= 1;
                }
                continue;
            }
            Err(e) => return Err(kafka_error(table, topic, e)),
        };
        let (p, offset) = (msg.partition(), msg.offset());
        if offset >= ends.get(&p).copied().unwrap_or(i64::MAX) {
            // Written after the read began: the next reload sees it.
            if !done.insert(p, true).unwrap_or(false) {
                remaining -= 1;
            }
            continue;
        }
        let row = match msg.payload() {
            None => None,
            Some(bytes) => {
                Some(
                    serde_json::from_slice::<R>(bytes).map_err(|e| TableError::Parse {
                        table: table.to_string(),
                        path: format!("{topic}/{p}").into(),
                        line: offset.max(0) as u64,
                        message: e.to_string(),
                    })?,
                )
            }
        };
        if let Some(key) = msg.key() {
            if let Some(old) = keyed.insert(key.to_vec(), (p, offset)) {
                if let Some(&i) = index.get(&old) {
                    rows[i] = None;
                }
            }
        } else if row.is_none() {
            continue; // a tombstone without a key deletes nothing
        }
        index.insert((p, offset), rows.len());
        rows.push(row);
        pacer.step();
    }
    Ok(rows.into_iter().flatten().collect())
}
