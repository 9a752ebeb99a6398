//! Static assignment: the job, not the consumer group, hands out the partitions (bounded
//! runs, checkpointing jobs, `static_assignment`): partition i of the sorted list goes to
//! worker i mod P.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use rill_engine::WorkerContext;

use super::positions::{PartitionPosition, PositionTable};
use super::rebalance::RebalanceContext;
use super::start::StartFrom;
use crate::kafka::error::KafkaConnectorError;

/// How long bounded-mode metadata and offset look-ups may take at start-up.
pub(super) const LOOKUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Bounded mode: assigns this worker its share of the partitions, from their start
/// positions, and returns the end offset of each (the high watermark at start).
pub(super) fn assign_share(
    consumer: &BaseConsumer<RebalanceContext>,
    topics: &[String],
    start: StartFrom,
    ctx: &WorkerContext,
    positions: &PositionTable,
) -> Result<Vec<PartitionPosition>, KafkaConnectorError> {
    let mut all = Vec::new();
    for topic in topics {
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
    let committed = if start == StartFrom::Committed && !mine.is_empty() {
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
        let from = match start {
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
        positions.put(PartitionPosition {
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
