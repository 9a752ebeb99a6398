//! Reading Kafka topics: one consumer per worker, all in the job's consumer group, or
//! partitions assigned by the job when it is bounded or checkpoints.
//!
//! - [`start`]: where a partition is first read from ([`StartFrom`]).
//! - [`builder`]: [`KafkaSource`], what a user configures, and the creation of each reader.
//! - [`assignment`]: static assignment by the job (bounded runs, checkpoints).
//! - [`rebalance`]: group membership: start positions on assignment, commits on revocation.
//! - [`positions`]: the per-partition positions of what was handed on, and commit counters.
//! - [`reader`]: [`KafkaReader`], one worker's consumer, polled without blocking.
//! - [`checkpoint`]: the reader's positions in checkpoints, restored at any worker count.
//! - [`health`]: consumer errors counted, probed with backoff, and fatal after a bound.
//! - [`batch`]: micro-batch planning: end offsets per batch, records held past them.
//!
//! The engine's source flow injects checkpoint barriers between two polls, right after taking
//! the reader's [`checkpoint`] position, so a position covers exactly what was emitted.

mod assignment;
mod batch;
mod builder;
mod checkpoint;
mod health;
mod positions;
mod reader;
mod rebalance;
mod start;

pub use builder::KafkaSource;
pub use positions::{PartitionPosition, SourcePositions, SourceStats};
pub use reader::KafkaReader;
pub use start::StartFrom;
