//! rill's connectors: where records come from and where they go.
//!
//! | connector | kind | for |
//! |---|---|---|
//! | [`MemorySource`] | source, bounded | tests, embedding, benchmarks: a `Vec` or an iterator per worker |
//! | [`StdinLines`] / [`StdoutLines`] | source / sink | command-line pipelines |
//! | [`FileLines`] | source, bounded | lines of files (batch runs, replaying archives) |
//! | [`CollectSink`] | sink | tests and embedding: read results back in the same process |
//! | [`DiscardSink`] | sink | benchmarks: drops every record |
//! | [`Generator`] | source | open-loop load at a fixed rate, each record stamped with its *scheduled* time |
//! | [`LatencySink`] | sink | per-record latency from the scheduled time into an HdrHistogram |
//! | [`kafka::KafkaSource`] / [`kafka::KafkaSink`] | source / sink | Kafka over its wire protocol (librdkafka), feature `kafka` |
//! | [`kafka::EmbeddedKafka`] | | librdkafka's in-process mock cluster, for zero-setup runs and tests |
//! | [`redis::RedisSink`] | sink | per-key upserts into Redis (pipelined, coalesced), feature `redis` |

mod collect;
mod discard;
mod file;
mod generator;
#[cfg(feature = "kafka")]
pub mod kafka;
mod latency;
mod lines;
mod memory;
#[cfg(feature = "redis")]
pub mod redis;
mod stdio;

pub use collect::{CollectSink, CollectWriter};
pub use discard::{DiscardSink, DiscardWriter};
pub use file::{FileLine, FileLines, FileLinesReader};
pub use generator::{Generated, Generator, GeneratorReader, Pacing};
pub use latency::{LatencySink, LatencyWriter};
pub use lines::{LineTooLong, DEFAULT_MAX_LINE_BYTES};
pub use memory::{FnPartition, MemoryReader, MemorySource, Partition, VecPartition};
pub use stdio::{StdinLines, StdinReader, StdioError, StdoutLines, StdoutWriter};
