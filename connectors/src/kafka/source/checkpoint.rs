//! The reader's part in checkpoints: its positions at a barrier, seeking to them on restore
//! at any number of workers, and committing them to the group once the checkpoint completes.

use std::sync::atomic::Ordering;

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use rill_engine::state::RestoredState;
use rill_engine::BoxError;

use super::positions::{decode_positions, encode_positions, lock};
use super::reader::KafkaReader;
use crate::kafka::error::KafkaConnectorError;

impl KafkaReader {
    /// The position of every owned partition, for a checkpoint.
    pub(super) fn checkpoint_position(&mut self) -> Result<Option<Vec<u8>>, BoxError> {
        let table = self.positions();
        let encoded = encode_positions(&table)?;
        self.captured = Some(table);
        Ok(Some(encoded))
    }

    /// Seeks every owned partition to the checkpoint's position (from whichever old worker
    /// owned it), so a job restores at any number of workers.
    pub(super) fn restore_positions(&mut self, state: &RestoredState<'_>) -> Result<(), BoxError> {
        let stored = decode_positions(state)?;
        let mut table = lock(&self.positions);
        let mut assignment = TopicPartitionList::new();
        for p in table.iter_mut() {
            if let Some((_, _, offset)) = stored
                .iter()
                .find(|(t, part, _)| *part == p.partition && **t == *p.topic)
            {
                p.next_offset = *offset;
            }
            assignment
                .add_partition_offset(&p.topic, p.partition, Offset::Offset(p.next_offset))
                .map_err(KafkaConnectorError::Client)?;
        }
        self.consumer
            .assign(&assignment)
            .map_err(KafkaConnectorError::Client)?;
        Ok(())
    }

    /// Commits the positions of a completed checkpoint to the group, for lag monitoring (the
    /// checkpoint, not the group, is where a restart resumes).
    pub(super) fn commit_captured(&mut self) {
        let Some(positions) = self.captured.take() else {
            return;
        };
        let mut tpl = TopicPartitionList::new();
        for p in &positions {
            let _ = tpl.add_partition_offset(&p.topic, p.partition, Offset::Offset(p.next_offset));
        }
        if tpl.count() > 0 {
            let stats = &self.consumer.context().stats;
            match self.consumer.commit(&tpl, CommitMode::Async) {
                Ok(()) => stats.commits.fetch_add(1, Ordering::Relaxed),
                Err(_) => stats.failed_commits.fetch_add(1, Ordering::Relaxed),
            };
        }
    }
}
