//! Word count, the seed pattern: lines in, word counts out.
//!
//! ```text
//! # stdin -> stdout: prints `<word> <count>` per distinct word when the input ends
//! cargo run --release --example wordcount -- --stdin < book.txt
//!
//! # Kafka -> Kafka, Spark's "update" mode: for every input record, the updated count of each
//! # of its words (key = word, value = count as UTF-8 decimal); runs until SIGTERM / Ctrl-C
//! cargo run --release --example wordcount -- --brokers HOST:PORT --input input-text --output output-wordcount
//!
//! # the same, with a checkpoint every second (state and offsets survive a crash; a restart
//! # continues from the last checkpoint) and exactly-once output (one Kafka transaction per
//! # checkpoint; read the output with isolation.level=read_committed)
//! cargo run --release --example wordcount -- --brokers HOST:PORT --checkpoint-dir /var/lib/wc --exactly-once
//!
//! # no flags: an embedded Kafka (librdkafka's mock cluster), fed a demo text; prints the counts
//! cargo run --release --example wordcount
//! ```
//!
//! Words are split on Unicode whitespace (no case folding, no punctuation stripping) and
//! counted with `key_by` + `count` across all workers.

use std::collections::BTreeMap;

#[path = "support/mod.rs"]
mod support;

use clap::Parser;
use rill::connectors::kafka::{EmbeddedKafka, KafkaRecord, KafkaSink, KafkaSource};
use rill::prelude::*;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DEMO: &str = "the quick brown fox jumps over the lazy dog\nthe dog sleeps\nthe fox runs";

/// Counts words.
#[derive(Debug, Parser)]
#[command(name = "wordcount", about = "Count words with rill")]
struct Args {
    /// Read lines from standard input until end of file and print the final counts.
    #[arg(long, conflicts_with = "brokers")]
    stdin: bool,
    /// Kafka bootstrap servers: count words of `--input` records into `--output`.
    #[arg(long)]
    brokers: Option<String>,
    /// Input topic (Kafka mode).
    #[arg(long, default_value = "input-text")]
    input: String,
    /// Output topic (Kafka mode).
    #[arg(long, default_value = "output-wordcount")]
    output: String,
    /// Consumer group (Kafka mode).
    #[arg(long, default_value = "rill-wordcount")]
    group: String,
    /// Worker threads (default: available cores).
    #[arg(long)]
    workers: Option<usize>,
    /// Kafka mode: checkpoint state and input offsets into DIR, and restore from it at start.
    #[arg(long, value_name = "DIR")]
    checkpoint_dir: Option<std::path::PathBuf>,
    /// Time between checkpoints, e.g. `1s`, `250ms`.
    #[arg(long, default_value = "1s", value_parser = support::parse_duration)]
    checkpoint_interval: std::time::Duration,
    /// Kafka mode: exactly-once output (one transaction per checkpoint; needs
    /// --checkpoint-dir).
    #[arg(long, requires = "checkpoint_dir")]
    exactly_once: bool,
    /// Transactional id of the exactly-once sink (stable across restarts; default:
    /// `<group>-output`).
    #[arg(long)]
    transactional_id: Option<String>,
    /// Exactly-once: restore as if the output of checkpoint EPOCH was the newest committed,
    /// after the sink's commit marker was lost (the job refuses to start and says so).
    #[arg(long, value_name = "EPOCH", requires = "exactly_once")]
    assume_committed: Option<u64>,
    /// Kafka mode: fail once the broker or the input topic has been unreadable this long.
    #[arg(long, default_value = "60s", value_parser = support::parse_duration)]
    unavailable_timeout: std::time::Duration,
}

/// Splits a line into owned words.
fn words(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_owned).collect()
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut config = Config::default();
    if let Some(workers) = args.workers {
        config = config.with_workers(workers);
    }
    match (&args.brokers, args.stdin) {
        (_, true) => count_stdin(config),
        (Some(brokers), false) => count_kafka(brokers, &args, config),
        (None, false) => demo(&args, config),
    }
}

/// stdin -> final `<word> <count>` lines on stdout.
fn count_stdin(config: Config) -> anyhow::Result<()> {
    let job = Job::new("wordcount");
    job.source(StdinLines::new())
        .flat_map(|line: String| words(&line))
        .key_by(|word: &String| word.clone())
        .count()
        .latest_per_key()
        .map(|(word, n): (String, u64)| format!("{word} {n}"))
        .sink(StdoutLines::new());
    job.run(config)?.await_termination()?;
    Ok(())
}

/// The Kafka job: every record's words, their updated counts to `output`.
fn kafka_job(brokers: &str, args: &Args, source: KafkaSource, linger_ms: &str) -> Job {
    let job = Job::new("wordcount");
    let mut sink = KafkaSink::new(brokers)
        .topic(args.output.clone())
        .set("linger.ms", linger_ms);
    if args.exactly_once {
        let id = args
            .transactional_id
            .clone()
            .unwrap_or_else(|| format!("{}-output", args.group));
        sink = sink.exactly_once(id);
    }
    job.source(source)
        .try_map(|r: KafkaRecord| r.value_str().map(words))
        .flat_map(|words: Vec<String>| words)
        .key_by(|word: &String| word.clone())
        .count()
        .map(|(word, n): (String, u64)| (word, n.to_string()))
        .sink(sink);
    job
}

/// Kafka -> Kafka until SIGTERM or Ctrl-C, then a clean stop (everything flushed).
fn count_kafka(brokers: &str, args: &Args, config: Config) -> anyhow::Result<()> {
    let source = KafkaSource::new(brokers, args.group.clone())
        .topics([args.input.clone()])
        .unavailable_timeout(args.unavailable_timeout);
    let mut config = config;
    if let Some(dir) = &args.checkpoint_dir {
        let mut checkpoints = CheckpointConfig::new(dir).with_interval(args.checkpoint_interval);
        if let Some(epoch) = args.assume_committed {
            checkpoints = checkpoints.assume_committed(epoch);
        }
        config = config.with_checkpoints(checkpoints);
    }
    let handle = kafka_job(brokers, args, source, "0").run(config)?;
    if let Some(log) = handle.checkpoints() {
        match log.restored_from {
            Some(epoch) => eprintln!("restored checkpoint {epoch}"),
            None => eprintln!("no checkpoint to restore: starting from the group's offsets"),
        }
    }
    eprintln!(
        "counting words of `{}` into `{}` on {brokers}; SIGTERM or Ctrl-C stops",
        args.input, args.output
    );
    support::run_until_signal(handle)
}

/// Embedded Kafka: feed the demo text, count it with a bounded run, print the final counts.
fn demo(args: &Args, config: Config) -> anyhow::Result<()> {
    eprintln!("no --brokers or --stdin: counting a demo text on an embedded Kafka (librdkafka's mock cluster)");
    let kafka = EmbeddedKafka::start()?;
    kafka.create_topic(&args.input, 2)?;
    kafka.create_topic(&args.output, 2)?;
    let brokers = kafka.bootstrap_servers();

    // Feed the demo text through the same sink the job uses.
    let feed = Job::new("feed");
    feed.source(MemorySource::new(DEMO.lines().map(str::to_owned).collect()))
        .sink(KafkaSink::<String>::new(&brokers).topic(args.input.clone()));
    feed.run(Config::default().with_workers(1))?
        .await_termination()?;

    // Count: a bounded run of the streaming job's pipeline.
    let source = support::bounded(&brokers, &args.group, &args.input);
    kafka_job(&brokers, args, source, EmbeddedKafka::PRODUCER_LINGER_MS)
        .run(config)?
        .await_termination()?;

    // Read the updates back; the last one per word is its count.
    let read = Job::new("read");
    let updates = CollectSink::default();
    read.source(support::bounded(
        &brokers,
        "rill-wordcount-reader",
        &args.output,
    ))
    .try_map(
        |r: KafkaRecord| -> Result<(i32, i64, String, String), rill::BoxError> {
            Ok((
                r.partition,
                r.offset,
                r.key_str()?.to_owned(),
                r.value_str()?.to_owned(),
            ))
        },
    )
    .sink(updates.clone());
    read.run(Config::default().with_workers(1))?
        .await_termination()?;
    let mut updates = updates.take();
    // A word's updates are in one partition, in order.
    updates.sort();
    let mut counts = BTreeMap::new();
    for (_, _, word, n) in updates {
        counts.insert(word, n);
    }
    for (word, n) in counts {
        println!("{word} {n}");
    }
    Ok(())
}
