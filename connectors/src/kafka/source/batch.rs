//! Micro-batch planning: each batch ends at the end offsets the broker reports as it starts;
//! records read past them are held for the next batch, and a restart replays a logged plan.

use rdkafka::consumer::Consumer;
use rdkafka::TopicPartitionList;
use rill_engine::BoxError;

use super::assignment::LOOKUP_TIMEOUT;
use super::positions::{encode_positions, PartitionPosition};
use super::reader::KafkaReader;
use crate::kafka::error::KafkaConnectorError;
use crate::kafka::record::KafkaRecord;

/// Micro-batch mode: records past the batch's end held for the next batch, beyond which the
/// partitions they belong to are paused (librdkafka then refetches them after the batch).
const HOLD_LIMIT: usize = 65_536;

impl KafkaReader {
    /// The batch ends at each owned partition's end offset as the broker reports it when the
    /// batch starts (one ListOffsets round trip per partition, as Spark's `latestOffsets`; with
    /// `read_committed`, the last stable offset). Records arriving later wait for the next
    /// batch.
    pub(super) fn plan_ends(&mut self) -> Result<Vec<u8>, BoxError> {
        if !self.paused.is_empty() {
            let mut tpl = TopicPartitionList::new();
            for (topic, partition) in self.paused.drain(..) {
                tpl.add_partition(&topic, partition);
            }
            self.consumer
                .resume(&tpl)
                .map_err(KafkaConnectorError::Client)?;
        }
        let table = self.positions();
        let replay = self.replay_ends.take();
        let mut ends = Vec::with_capacity(table.len());
        for p in &table {
            let end = match &replay {
                Some(stored) => stored
                    .iter()
                    .find(|(t, part, _)| *part == p.partition && **t == *p.topic)
                    .map_or(p.next_offset, |(_, _, end)| *end),
                None => {
                    let (_, high) = self
                        .consumer
                        .fetch_watermarks(&p.topic, p.partition, LOOKUP_TIMEOUT)
                        .map_err(KafkaConnectorError::Client)?;
                    high.max(p.next_offset)
                }
            };
            ends.push(PartitionPosition {
                topic: p.topic.clone(),
                partition: p.partition,
                next_offset: end,
            });
        }
        let encoded = encode_positions(&ends)?;
        self.batch_ends = Some(ends);
        Ok(encoded)
    }

    /// Keeps a record read past its batch's end for the next batch; pauses its partition once
    /// too many are held, so memory stays bounded when input outpaces the batches.
    pub(super) fn hold(&mut self, record: KafkaRecord) -> Result<(), KafkaConnectorError> {
        if self.held.len() >= HOLD_LIMIT
            && !self
                .paused
                .iter()
                .any(|(t, p)| *p == record.partition && *t == record.topic)
        {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&record.topic, record.partition);
            self.consumer
                .pause(&tpl)
                .map_err(KafkaConnectorError::Client)?;
            self.paused.push((record.topic.clone(), record.partition));
        }
        self.held.push_back(record);
        Ok(())
    }
}
