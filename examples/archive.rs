//! Kafka into Parquet for query engines (the seed's first pattern): every record of a topic,
//! partitioned by the hour of its timestamp, exactly once.
//!
//! ```text
//! cargo run --release --example archive -- --brokers HOST:PORT --input events \
//!     --to file:///data/events --checkpoint-dir DIR               # until SIGTERM / Ctrl-C
//! cargo run --release --example archive -- --brokers HOST:PORT --input events \
//!     --to s3://bucket/events --s3-endpoint http://127.0.0.1:9000 --checkpoint-dir DIR
//! ```
//!
//! Rows are `topic, partition, offset, timestamp, key, value` (key and value as Parquet
//! BINARY, exactly the record's bytes), ZSTD-compressed, under
//! `dt=YYYY-MM-DD/hour=HH/` of the record's timestamp (UTC). Spark, DuckDB or Trino read
//! the directory as a table with `dt` and `hour` columns.
//!
//! `--checkpoint-dir` may be an object-store URL too (`s3://bucket/checkpoints`, through
//! `--s3-endpoint`), so the job can restart on another machine. With `--checkpoint-dir` files
//! are staged and published when a checkpoint completes
//! (every `--checkpoint-interval`), so readers see each record exactly once, even across
//! crashes; without it, at least once.

#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;

use clap::Parser;
use rill::connectors::kafka::{KafkaRecord, KafkaSource};
use rill::files::arrow_schema::{DataType, Field, Schema};
use rill::files::{FileSink, Format};
use rill::prelude::*;
use serde::Serialize;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "archive",
    about = "Archives a Kafka topic into Parquet, partitioned by hour, exactly once"
)]
struct Args {
    /// Kafka bootstrap servers.
    #[arg(long)]
    brokers: String,
    /// Topic to archive.
    #[arg(long)]
    input: String,
    /// Consumer group.
    #[arg(long, default_value = "rill-archive")]
    group: String,
    /// Roll files at about this many bytes.
    #[arg(long, default_value_t = 128 << 20)]
    roll_bytes: u64,
    /// Roll files after this long (and at every checkpoint).
    #[arg(long, default_value = "15m", value_parser = support::parse_duration)]
    roll_interval: std::time::Duration,
    #[command(flatten)]
    target: support::FilesTarget,
}

/// One archived record: a Parquet row.
#[derive(Debug, Serialize)]
struct Row {
    topic: String,
    partition: i32,
    offset: i64,
    timestamp: Option<i64>,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
}

fn schema() -> Schema {
    Schema::new(vec![
        Arc::new(Field::new("topic", DataType::Utf8, false)),
        Arc::new(Field::new("partition", DataType::Int32, false)),
        Arc::new(Field::new("offset", DataType::Int64, false)),
        Arc::new(Field::new("timestamp", DataType::Int64, true)),
        Arc::new(Field::new("key", DataType::Binary, true)),
        Arc::new(Field::new("value", DataType::Binary, true)),
    ])
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let location = args.target.location()?;
    let job = Job::new("archive");
    job.source(KafkaSource::new(&args.brokers, args.group.clone()).topics([args.input.clone()]))
        .map(|r: KafkaRecord| Row {
            topic: r.topic.to_string(),
            partition: r.partition,
            offset: r.offset,
            timestamp: r.timestamp,
            key: r.key,
            value: r.value,
        })
        .sink(
            FileSink::new(location, Format::parquet(&schema()))
                .partition_by(|r: &Row| rill::files::hourly(r.timestamp.unwrap_or(0)))
                .roll_size(args.roll_bytes)
                .roll_interval(args.roll_interval),
        );
    let handle = job.run(args.target.config()?)?;
    eprintln!(
        "archiving `{}` into Parquet under {} ({}); SIGTERM or Ctrl-C stops",
        args.input,
        args.target.to,
        args.target.guarantee()
    );
    support::run_until_signal(handle)
}
