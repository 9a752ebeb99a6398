//! The dead-letter archive (the seed's (B) -> (C)): copy a dead-letter topic into JSON-lines
//! files before the topic's retention deletes it, exactly once.
//!
//! ```text
//! cargo run --release --example dlq_archive -- --brokers HOST:PORT --input DLQ_TOPIC \
//!     --to file:///var/archive/dlq [--checkpoint-dir DIR]     # until SIGTERM / Ctrl-C
//! cargo run --release --example dlq_archive -- --brokers HOST:PORT --input DLQ_TOPIC \
//!     --to s3://bucket/dlq --s3-endpoint http://127.0.0.1:9000 --checkpoint-dir DIR
//! ```
//!
//! Each line is one dead letter: its topic, partition, offset, timestamp, key, value and
//! every header (the origin topic, partition and offset, the failing stage and the error),
//! bytes kept exactly (a string when UTF-8, else `{"base64": ...}`). Files are partitioned
//! by the letter's origin topic and day (`topic=orders/dt=2026-11-30/`).
//!
//! `--checkpoint-dir` may be an object-store URL too (`s3://bucket/checkpoints`, through
//! `--s3-endpoint`), so the job can restart on another machine. With `--checkpoint-dir` the archive is exactly once: files are staged and published when
//! a checkpoint completes, and a restart after a crash neither loses nor repeats a letter.
//! Without it, at least once. S3 credentials and region come from `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY` and `AWS_REGION`. `dlq_replay` writes an archive back to Kafka.

#[path = "support/mod.rs"]
mod support;

use clap::Parser;
use rill::connectors::kafka::{ArchivedRecord, KafkaRecord, KafkaSource};
use rill::files::{FileSink, Format};
use rill::prelude::*;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "dlq_archive",
    about = "Copies a dead-letter topic into JSON-lines files, exactly once"
)]
struct Args {
    /// Kafka bootstrap servers.
    #[arg(long)]
    brokers: String,
    /// The dead-letter topic.
    #[arg(long)]
    input: String,
    /// Consumer group.
    #[arg(long, default_value = "rill-dlq-archive")]
    group: String,
    /// Roll files after this long (and at every checkpoint).
    #[arg(long, default_value = "5m", value_parser = support::parse_duration)]
    roll_interval: std::time::Duration,
    #[command(flatten)]
    target: support::FilesTarget,
}

/// `topic=<origin>/dt=<day>` of a letter.
fn partition(r: &ArchivedRecord) -> String {
    let topic = r.origin_topic().unwrap_or(&r.topic);
    format!(
        "{}/{}",
        rill::files::hive([("topic", topic)]),
        rill::files::daily(r.timestamp.unwrap_or(0))
    )
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let location = args.target.location()?;
    let job = Job::new("dlq-archive");
    job.source(KafkaSource::new(&args.brokers, args.group.clone()).topics([args.input.clone()]))
        .map(|r: KafkaRecord| ArchivedRecord::from_record(&r))
        .sink(
            FileSink::new(location, Format::json_lines())
                .partition_by(partition)
                .roll_interval(args.roll_interval),
        );
    let handle = job.run(args.target.config()?)?;
    eprintln!(
        "archiving `{}` into {} ({}); SIGTERM or Ctrl-C stops",
        args.input,
        args.target.to,
        args.target.guarantee()
    );
    support::run_until_signal(handle)
}
