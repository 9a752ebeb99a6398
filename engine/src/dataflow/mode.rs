//! How a job schedules its records: continuously, or in micro-batches.

use std::time::Duration;

/// The execution mode of a job. The job graph and its operators are the same in both: only
/// the scheduling differs, so latency-lab compares scheduling, not two engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Every record goes through the pipeline the moment it arrives (the default).
    #[default]
    Continuous,
    /// Spark's model: sources collect input until the trigger fires; the batch then flows
    /// through the operators, and sinks write its output at the end of the batch. Every batch
    /// is an epoch: with a checkpoint location, each completed batch is a checkpoint.
    MicroBatch(Trigger),
}

/// When the next micro-batch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A batch every `d` (Spark's `trigger(processingTime = "...")`); a batch that takes
    /// longer than `d` is followed at once by the next.
    ProcessingTime(Duration),
    /// The next batch as soon as the previous one is complete.
    AsFastAsPossible,
    /// Everything available at start, then the job ends (Spark's `Trigger.AvailableNow`):
    /// one batch, or several where a source caps its batches (a Kafka source's
    /// `max_records_per_batch`). Bounded sources end the job when they end; a planning
    /// source (Kafka, the generator) fixes what "available" means at its first batch.
    AvailableNow,
}
