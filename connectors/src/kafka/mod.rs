//! Kafka, spoken over its real wire protocol through librdkafka (`rdkafka`).
//!
//! - [`KafkaSource`]: every worker is one consumer of the same group, so Kafka spreads the
//!   partitions over the workers; each worker polls its own consumer without blocking and pushes
//!   every record through its pipeline at once. A parked worker is woken by librdkafka's queue
//!   callback the moment a record arrives.
//! - [`KafkaSink`]: one producer per worker; delivery failures fail the job; everything is
//!   flushed before the job's handle returns. With [`KafkaSink::exactly_once`], one
//!   transaction per checkpoint epoch instead: `read_committed` readers see every record
//!   exactly once, after its checkpoint completes.
//! - [`EmbeddedKafka`]: librdkafka's in-process mock cluster, so examples and tests need no
//!   broker. Its limits are listed on the type; figures measured on it are not Kafka figures.
//!
//! Defaults favour latency over batching: the consumer's `fetch.wait.max.ms` is 5 (librdkafka's
//! 500 ms default dominates latency when traffic is light) and the producer's `linger.ms` is 0
//! (librdkafka's default is 5). Every client opens its broker connections at once
//! ([`client_config`]). Every librdkafka property can be overridden with `set`.

mod admin;
mod archived;
mod client;
mod embedded;
mod error;
mod output;
mod plain;
mod producer;
mod record;
mod sink;
mod source;
mod transaction;

pub use admin::create_topics;
pub use archived::{ArchivedBytes, ArchivedBytesError, ArchivedRecord};
pub use client::client_config;
pub use embedded::EmbeddedKafka;
pub use error::KafkaConnectorError;
pub use output::{dead_letter_headers, KafkaOutput, ToKafka};
pub use plain::KafkaPlainWriter;
pub use record::{DecodeError, KafkaRecord, Origin};
pub use sink::{KafkaSink, KafkaSinkWriter};
pub use source::{
    KafkaReader, KafkaSource, PartitionPosition, SourcePositions, SourceStats, StartFrom,
};
pub use transaction::TransactionalWriter;
