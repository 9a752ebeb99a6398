//! What the Kafka examples share: run until SIGTERM / Ctrl-C, and the zero-setup demo on an
//! embedded Kafka.

// Each example uses the part it needs.
#![allow(dead_code)]

use std::collections::BTreeMap;

use anyhow::Context;
use rill::connectors::kafka::{EmbeddedKafka, KafkaRecord, KafkaSink, KafkaSource, StartFrom};
use rill::prelude::*;

/// Waits for the job; SIGTERM or Ctrl-C stops it gracefully (everything in flight is written).
pub(crate) fn run_until_signal(handle: JobHandle) -> anyhow::Result<()> {
    let stopper = handle.stop_handle();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .context("installing signal handlers")?;
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            stopper.stop();
        }
    });
    handle.await_termination()?;
    Ok(())
}

/// Parses a duration in humantime's notation (`250ms`, `2s`, `1m`); a bare number is
/// milliseconds.
pub(crate) fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(std::time::Duration::from_millis(ms));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration like 250ms, 2s or 1m: {e}"))
}

/// How a Kafka example's job runs: the flags every one of them takes.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Running {
    /// Worker threads (default: one per core).
    #[arg(long)]
    pub(crate) workers: Option<usize>,
    /// Checkpoint the job's state and input offsets into DIR (a directory, or an object-store
    /// URL such as s3://bucket/prefix), and restore from it at start.
    #[arg(long, value_name = "DIR")]
    pub(crate) checkpoint_dir: Option<std::path::PathBuf>,
    /// Time between checkpoints.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub(crate) checkpoint_interval: std::time::Duration,
    /// Exactly-once output: one Kafka transaction per checkpoint, so that a restart after a
    /// crash writes no result twice (needs --checkpoint-dir; read with read_committed).
    #[arg(long, requires = "checkpoint_dir")]
    pub(crate) exactly_once: bool,
}

impl Running {
    /// The job's configuration.
    pub(crate) fn config(&self) -> Config {
        config(
            self.workers,
            self.checkpoint_dir.as_deref(),
            self.checkpoint_interval,
        )
    }

    /// The job's configuration, where an `s3://` checkpoint location is reached through
    /// `s3_endpoint` (an S3-compatible server).
    pub(crate) fn config_with_endpoint(&self, s3_endpoint: Option<&str>) -> anyhow::Result<Config> {
        let Some(url) = self
            .checkpoint_dir
            .as_deref()
            .and_then(|d| d.to_str())
            .filter(|d| d.contains("://"))
        else {
            return Ok(self.config());
        };
        let location = open_location(url, s3_endpoint)?;
        let mut config = Config::default().with_checkpoints(
            rill::files::ObjectStoreCheckpoints::config(location)
                .with_interval(self.checkpoint_interval),
        );
        if let Some(workers) = self.workers {
            config = config.with_workers(workers);
        }
        Ok(config)
    }

    /// The results' sink on `topic`: exactly-once under the transactional id
    /// `{group}-output` with `--exactly-once`.
    pub(crate) fn output_sink(
        &self,
        brokers: &str,
        topic: &str,
        group: &str,
    ) -> KafkaSink<(String, String)> {
        output_sink(
            brokers,
            topic,
            self.exactly_once.then(|| format!("{group}-output")),
        )
    }
}

/// Where a Kafka-to-files example writes, and how its job runs: `--to`, `--s3-endpoint` and
/// the run flags.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct FilesTarget {
    /// Where the files go: file:///DIR, a path, or s3://BUCKET/PREFIX.
    #[arg(long)]
    pub(crate) to: String,
    /// Endpoint of an S3-compatible server, e.g. http://127.0.0.1:9000 (plain HTTP allowed
    /// when it says http://); for `--to` and an s3:// `--checkpoint-dir`.
    #[arg(long)]
    pub(crate) s3_endpoint: Option<String>,
    #[command(flatten)]
    pub(crate) running: Running,
}

impl FilesTarget {
    /// The files' location, checked.
    pub(crate) fn location(&self) -> anyhow::Result<rill::files::StoreLocation> {
        open_location(&self.to, self.s3_endpoint.as_deref())
    }

    /// The job's configuration (checkpoints possibly on the object store).
    pub(crate) fn config(&self) -> anyhow::Result<Config> {
        if self.running.exactly_once {
            anyhow::bail!(
                "--exactly-once is about Kafka output; files are exactly once with \
                 --checkpoint-dir alone"
            );
        }
        self.running
            .config_with_endpoint(self.s3_endpoint.as_deref())
    }

    /// What the run promises, for its start message.
    pub(crate) fn guarantee(&self) -> &'static str {
        if self.running.checkpoint_dir.is_some() {
            "exactly once"
        } else {
            "at least once: give --checkpoint-dir for exactly once"
        }
    }
}

/// Where an example's files are: `url` (file:///DIR, a path, or s3://BUCKET/PREFIX), through
/// `s3_endpoint` for an S3-compatible server; checked (the bucket exists, the store answers)
/// before the job starts.
pub(crate) fn open_location(
    url: &str,
    s3_endpoint: Option<&str>,
) -> anyhow::Result<rill::files::StoreLocation> {
    let settings = rill::files::S3Settings {
        endpoint: s3_endpoint.map(str::to_string),
        ..rill::files::S3Settings::default()
    };
    let location = rill::files::StoreLocation::parse_with(url, &settings)?;
    location.check()?;
    Ok(location)
}

/// Prints the values of a demo's output records, sorted (the golden files' order).
pub(crate) fn print_sorted_values(out: Vec<(String, String)>) {
    let mut values: Vec<String> = out.into_iter().map(|(_, v)| v).collect();
    values.sort();
    for v in values {
        println!("{v}");
    }
}

/// The job configuration of a Kafka example: `workers` if given, and checkpoints every
/// `interval` into `dir` if given.
pub(crate) fn config(
    workers: Option<usize>,
    dir: Option<&std::path::Path>,
    interval: std::time::Duration,
) -> Config {
    let mut config = Config::default();
    if let Some(workers) = workers {
        config = config.with_workers(workers);
    }
    if let Some(dir) = dir {
        config = config.with_checkpoints(CheckpointConfig::new(dir).with_interval(interval));
    }
    config
}

/// The output sink of a Kafka example: exactly-once (one transaction per checkpoint, under
/// `transactional_id`) when one is given.
pub(crate) fn output_sink(
    brokers: &str,
    topic: &str,
    transactional_id: Option<String>,
) -> KafkaSink<(String, String)> {
    let sink = KafkaSink::new(brokers).topic(topic.to_string());
    match transactional_id {
        Some(id) => sink.exactly_once(id),
        None => sink,
    }
}

/// A Kafka record decoded as JSON `T`, with what event-time jobs keep of the raw record: its
/// partition (watermarks are per partition) and its value bytes (a late record goes to its
/// topic as it came).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Decoded<T> {
    pub(crate) partition: i32,
    pub(crate) raw: Vec<u8>,
    pub(crate) event: T,
}

impl<T: serde::de::DeserializeOwned> Decoded<T> {
    /// Decodes `r`'s value; the error keeps nothing, `decode` keeps the raw record.
    pub(crate) fn from_record(r: &KafkaRecord) -> Result<Self, rill::BoxError> {
        Ok(Self {
            partition: r.partition,
            raw: r.value.clone().unwrap_or_default(),
            event: r.value_json()?,
        })
    }
}

/// A source reading `topic` from its beginning to its end at start: the demo's input.
pub(crate) fn bounded(brokers: &str, group: &str, topic: &str) -> KafkaSource {
    KafkaSource::new(brokers, group)
        .topics([topic])
        .start_from(StartFrom::Earliest)
        .bounded()
}

/// Starts an embedded Kafka, creates `inputs` and `output`, writes each input's records, runs
/// the job `build` makes for these brokers (the streaming job over [`bounded`] sources) to its
/// end, and returns the output records as (key, value) strings, in order.
pub(crate) fn embedded_demo(
    inputs: &[(&str, Vec<String>)],
    output: &str,
    build: impl FnOnce(&str) -> Job,
) -> anyhow::Result<Vec<(String, String)>> {
    let kafka = EmbeddedKafka::start()?;
    let brokers = kafka.bootstrap_servers();
    kafka.create_topic(output, 1)?;
    for (topic, records) in inputs {
        kafka.create_topic(topic, 1)?;
        let feed = Job::new("feed");
        feed.source(MemorySource::new(records.clone()))
            .sink(KafkaSink::<String>::new(&brokers).topic(*topic));
        feed.run(Config::default().with_workers(1))?
            .await_termination()?;
    }
    build(&brokers)
        .run(Config::default())?
        .await_termination()?;

    let read = Job::new("read");
    let out = CollectSink::default();
    read.source(bounded(&brokers, "rill-example-reader", output))
        .map(|r: KafkaRecord| {
            let text =
                |b: Option<Vec<u8>>| String::from_utf8_lossy(&b.unwrap_or_default()).into_owned();
            (r.offset, text(r.key), text(r.value))
        })
        .sink(out.clone());
    read.run(Config::default().with_workers(1))?
        .await_termination()?;
    let ordered: BTreeMap<i64, (String, String)> = out
        .take()
        .into_iter()
        .map(|(o, k, v)| (o, (k, v)))
        .collect();
    Ok(ordered.into_values().collect())
}
