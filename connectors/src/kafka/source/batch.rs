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
                    let high = high.max(p.next_offset);
                    // AvailableNow: never past what was there at the first batch.
                    self.end_of(&p.topic, p.partition)
                        .map_or(high, |e| high.min(e))
                }
            };
            ends.push(PartitionPosition {
                topic: p.topic.clone(),
                partition: p.partition,
                next_offset: end,
            });
        }
        if replay.is_none() {
            if self.available_now && self.ends.is_none() {
                self.ends = Some(ends.clone());
            }
            if let Some(share) = self.batch_share {
                cap_ends(&table, &mut ends, share);
            }
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

/// Caps a batch at `share` records over the partitions of `from`: each partition's end moves
/// back towards its position in proportion to its backlog (Spark's `maxOffsetsPerTrigger`),
/// and every partition with a backlog gets at least one record, so none starves.
fn cap_ends(from: &[PartitionPosition], ends: &mut [PartitionPosition], share: u64) {
    let backlog = |p: &PartitionPosition, e: &PartitionPosition| {
        (e.next_offset - p.next_offset).max(0) as u64
    };
    let total: u64 = from
        .iter()
        .zip(ends.iter())
        .map(|(p, e)| backlog(p, e))
        .sum();
    if total <= share {
        return;
    }
    for (p, e) in from.iter().zip(ends.iter_mut()) {
        let behind = backlog(p, e);
        if behind == 0 {
            continue;
        }
        let part = ((u128::from(behind) * u128::from(share)) / u128::from(total)) as u64;
        e.next_offset = p.next_offset + part.clamp(1, behind) as i64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn at(partition: i32, offset: i64) -> PartitionPosition {
        PartitionPosition {
            topic: Arc::from("t"),
            partition,
            next_offset: offset,
        }
    }

    #[test]
    fn a_capped_batch_splits_its_share_by_backlog_and_starves_no_partition() {
        let from = [at(0, 100), at(1, 0), at(2, 50), at(3, 7)];
        let mut ends = [at(0, 1_100), at(1, 3_000), at(2, 51), at(3, 7)];
        cap_ends(&from, &mut ends, 400);
        let planned: Vec<i64> = ends.iter().map(|e| e.next_offset).collect();
        // Backlogs 1000, 3000, 1, 0 of 4001: 99, 299, at least 1, none.
        assert_eq!(planned, vec![199, 299, 51, 7]);
        let mut small = [at(0, 1_100)];
        cap_ends(&from[..1], &mut small, 5_000);
        assert_eq!(small[0].next_offset, 1_100, "under the cap: unchanged");
    }
}
