//! The dead-letter replay (the seed's option 2): after the bug is fixed, write the archived
//! dead letters back into Kafka, a bounded run.
//!
//! ```text
//! cargo run --release --example dlq_replay -- --from file:///var/archive/dlq \
//!     --brokers HOST:PORT [--output TOPIC] [--s3-endpoint http://127.0.0.1:9000]
//! ```
//!
//! Reads every JSON-lines file `dlq_archive` committed under `--from` (a path or prefix,
//! local or `s3://`) and writes each record's original key and value bytes to `--output`, or,
//! by default, to the topic it originally came from (its `rill.dlq.origin.topic` header).
//! Exits 0 once every record is written and acknowledged by the broker. A line that is not
//! an archived record stops the run with its file and line: nothing is skipped silently.

#[path = "support/mod.rs"]
mod support;

use clap::Parser;
use rill::connectors::kafka::{ArchivedRecord, KafkaOutput, KafkaSink};
use rill::files::{FileSource, Format};
use rill::prelude::*;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "dlq_replay",
    about = "Writes an archive of dead letters back to Kafka"
)]
struct Args {
    /// The archive: file:///DIR, a path, or s3://BUCKET/PREFIX.
    #[arg(long)]
    from: String,
    /// Kafka bootstrap servers.
    #[arg(long)]
    brokers: String,
    /// Topic to write to (default: each record's original topic).
    #[arg(long)]
    output: Option<String>,
    /// Endpoint of an S3-compatible server, e.g. http://127.0.0.1:9000.
    #[arg(long)]
    s3_endpoint: Option<String>,
    /// Worker threads (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let location = support::open_location(&args.from, args.s3_endpoint.as_deref())?;
    let output = args.output.clone();
    let replayed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = replayed.clone();
    let job = Job::new("dlq-replay");
    job.source(FileSource::<ArchivedRecord>::new(
        location,
        Format::json_lines(),
    ))
    .try_map(move |r: ArchivedRecord| {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        r.replay(output.as_deref())
    })
    .sink(KafkaSink::<KafkaOutput>::new(&args.brokers));
    let mut config = Config::default();
    if let Some(w) = args.workers {
        config = config.with_workers(w);
    }
    job.run(config)?.await_termination()?;
    eprintln!(
        "replayed {} records from {}",
        replayed.load(std::sync::atomic::Ordering::Relaxed),
        args.from
    );
    Ok(())
}
