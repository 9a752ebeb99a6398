//! The reader's part in checkpoints: its positions at a barrier, seeking to them on restore
//! at any number of workers, and committing them to the group once the checkpoint completes.

use std::sync::atomic::Ordering;

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use rill_engine::state::RestoredState;
use rill_engine::BoxError;

use super::assignment::LOOKUP_TIMEOUT;
use super::positions::{decode_positions, encode_positions};
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
    ///
    /// A position outside its partition's range is moved into it, with a warning and a count
    /// ([`SourceStats::out_of_range_positions`](super::SourceStats::out_of_range_positions)):
    /// below the earliest retained offset (retention deleted records the job had not read)
    /// to that offset, whatever the source's `StartFrom` (whose `auto.offset.reset` would
    /// skip a `Latest` source past the whole retained backlog); above the partition's end
    /// (a broker lost records it had acknowledged, or the topic was recreated) to its end,
    /// rather than to its start, which would read the whole partition a second time.
    pub(super) fn restore_positions(&mut self, state: &RestoredState<'_>) -> Result<(), BoxError> {
        let stored = decode_positions(state)?;
        let mut assignment = TopicPartitionList::new();
        for live in self.positions.live() {
            let p = live.get();
            if let Some((_, _, offset)) = stored
                .iter()
                .find(|(t, part, _)| *part == p.partition && **t == *p.topic)
            {
                let (low, high) = self
                    .consumer
                    .fetch_watermarks(&p.topic, p.partition, LOOKUP_TIMEOUT)
                    .map_err(KafkaConnectorError::Client)?;
                let (resume, warning) = resume_position(*offset, low, high);
                if let Some(warning) = warning {
                    self.consumer
                        .context()
                        .stats
                        .out_of_range
                        .fetch_add(1, Ordering::Relaxed);
                    eprintln!(
                        "rill: warning: the checkpoint's position {offset} of {}/{} {warning}",
                        p.topic, p.partition
                    );
                }
                live.set(resume);
            }
            assignment
                .add_partition_offset(&p.topic, p.partition, Offset::Offset(live.next_offset()))
                .map_err(KafkaConnectorError::Client)?;
        }
        self.consumer
            .assign(&assignment)
            .map_err(KafkaConnectorError::Client)?;
        Ok(())
    }

    /// Commits the positions taken at a completed epoch's barrier to the group: with
    /// checkpoints for lag monitoring (the checkpoint, not the group, is where a restart
    /// resumes); without, as the group's record of what every sink acknowledged.
    pub(super) fn commit_captured(&mut self) {
        let Some(positions) = self.captured.take() else {
            return;
        };
        // In a consumer group, a partition revoked since the barrier has a new owner, which
        // commits it from now on: only partitions still owned are committed.
        let owned = (!self.statically).then(|| self.positions.snapshot());
        let mut tpl = TopicPartitionList::new();
        for p in &positions {
            let still_owned = owned.as_ref().is_none_or(|table| {
                table
                    .iter()
                    .any(|o| o.partition == p.partition && o.topic == p.topic)
            });
            if still_owned {
                let _ =
                    tpl.add_partition_offset(&p.topic, p.partition, Offset::Offset(p.next_offset));
            }
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

/// Where a restored position `offset` resumes in a partition holding `low..high`, and why
/// it moved, if it did.
fn resume_position(offset: i64, low: i64, high: i64) -> (i64, Option<String>) {
    if offset > high {
        let why = format!(
            "is past the partition's end {high} (the broker lost records it had acknowledged, \
             or the topic was recreated): resuming at {high}"
        );
        (high, Some(why))
    } else if offset < low {
        let why = format!(
            "is below the partition's earliest retained offset {low}: resuming at {low}; \
             records the job had not read are gone"
        );
        (low, Some(why))
    } else {
        (offset, None)
    }
}
