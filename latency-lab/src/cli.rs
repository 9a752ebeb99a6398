//! The command line: every option, its default, and the parsers of its values.

use std::time::Duration;

use clap::{Parser, ValueEnum};
use rill::prelude::*;

/// How idle workers wait (see `rill::IdleStrategy`).
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Idle {
    /// Busy-poll: lowest latency, one busy core per worker.
    Spin,
    /// Yield to the OS between polls.
    Yield,
    /// Park at once when idle; wake on push or at the generator's next due time.
    Park,
    /// Spin 50 us, yield 500 us, then park.
    Backoff,
    /// The library default: park when every source wakes its workers (Kafka), else backoff.
    Auto,
}

impl Idle {
    pub(crate) fn strategy(self) -> IdleStrategy {
        match self {
            Idle::Spin => IdleStrategy::Spin,
            Idle::Yield => IdleStrategy::Yield,
            Idle::Park => IdleStrategy::Park,
            Idle::Backoff => IdleStrategy::Auto.resolve(false),
            Idle::Auto => IdleStrategy::Auto,
        }
    }
}

/// How the generator waits for each record's due time (see `rill::Pacing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum PacingArg {
    /// Polled by a worker that waits as `--idle` says (with spin: released exactly on time).
    Spin,
    /// A thread sleeps until each due time (as the Flink and Spark studies' sources did).
    Sleep,
}

/// Where records come from and go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum SourceKind {
    /// The in-process generator and a measuring sink: the engine's own latency.
    Memory,
    /// Kafka: producer -> topic -> job -> topic -> reader, on an embedded cluster
    /// (librdkafka's mock) or on the one `--brokers` names.
    Kafka,
    /// Both paths, memory first: what continuous processing buys with the broker out of the
    /// way, and what is left of it through Kafka.
    Both,
}

/// A `--broker`: where the Kafka path's broker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum BrokerArg {
    /// librdkafka's mock cluster, in this process.
    Embedded,
    /// noida-db, a separate broker process on this machine.
    Noida,
}

/// What the in-memory pipeline computes per key (`--operator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OperatorArg {
    /// The running count of each key (update mode, no event time).
    RunningCount,
    /// Event time: a watermark on the generator's schedule, and each key's count per 1 s
    /// tumbling window in update mode (every record's window result at once).
    WindowUpdate,
    /// A state function (`map_groups_with_state`): each key's last 10 records, in time
    /// order, emitted on every record, under a 1 h processing-time state TTL (the
    /// `user_profile` example's work).
    UserProfile,
    /// A stream-static join: each record looks up a row of a `--table-rows` table loaded
    /// from a JSON-lines file and reloaded in the background every `--table-reload`.
    TableJoin,
}

/// A `--modes` entry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum ModeArg {
    /// Record at a time.
    Continuous,
    /// Micro-batches, once per `--trigger`.
    MicroBatch,
    /// One micro-batch trigger named directly (`asap`, `100ms`).
    Exact(Mode),
}

/// Measures per-record latency of a rill pipeline with an open-loop generator, in continuous
/// and micro-batch mode.
#[derive(Debug, Clone, Parser)]
#[command(name = "latency-lab", version)]
pub(crate) struct Args {
    /// Which path to measure: `both` (the default: in memory, then through Kafka), `memory`
    /// (the in-process generator, the engine alone) or `kafka` (an embedded cluster, or
    /// `--brokers`).
    #[arg(long, value_enum, default_value_t = SourceKind::Both)]
    pub(crate) source: SourceKind,
    /// An external Kafka cluster (`host:port,...`) instead of the embedded one; the lab
    /// creates fresh topics on it for every run.
    #[arg(long, conflicts_with = "broker")]
    pub(crate) brokers: Option<String>,
    /// The broker the Kafka path runs on when `--brokers` names none: `embedded` (librdkafka's
    /// mock cluster inside this process) or `noida` (noida-db's Kafka broker as a separate
    /// process on this machine, as the tests use it: installed into `target/tools/` on first
    /// use, started on a free loopback port, stopped when the lab ends).
    #[arg(long, value_enum, default_value_t = BrokerArg::Embedded)]
    pub(crate) broker: BrokerArg,
    /// Partitions of the input and output topics (Kafka).
    #[arg(long, default_value_t = 2)]
    pub(crate) partitions: i32,
    /// Target rates to measure, records per second in total (comma separated).
    /// Default: 100000 in memory; 1000,5000 through Kafka.
    #[arg(long, value_delimiter = ',')]
    pub(crate) rates: Vec<f64>,
    /// Measured time per run, in seconds or as a duration like 500ms (after the warm-up). Default: 10 in memory, 5
    /// through Kafka.
    #[arg(long, value_parser = parse_seconds)]
    pub(crate) duration: Option<Duration>,
    /// Warm-up per run, in seconds or as a duration: records scheduled before it ends are not recorded.
    /// Default: 2 in memory, 1 through Kafka.
    #[arg(long, value_parser = parse_seconds)]
    pub(crate) warmup: Option<Duration>,
    /// Worker threads of the job. Default: 2 (the cores of the machine this was built on).
    #[arg(long, default_value_t = 2)]
    pub(crate) workers: usize,
    /// Pin worker i to core i.
    #[arg(long)]
    pub(crate) pin: bool,
    /// What idle workers do. rill's latency targets assume `spin`. Default: spin in memory;
    /// auto (the library default, which parks a Kafka job's workers) through Kafka, where
    /// producer, broker, reader and librdkafka's threads need the cores too.
    #[arg(long, value_enum)]
    pub(crate) idle: Option<Idle>,
    /// How the generator waits for each record's due time. `sleep` is the fair setting next
    /// to the published Flink and Spark figures; rill's targets assume `spin`. Default: spin
    /// in memory, sleep through Kafka.
    #[arg(long, value_enum)]
    pub(crate) pacing: Option<PacingArg>,
    /// Runs per mode and rate; the table shows the median of each percentile and its spread.
    #[arg(long, default_value_t = 3)]
    pub(crate) runs: usize,
    /// Skip the floor rows: in memory, the same schedule on bare threads and through bare
    /// rings (no engine); through Kafka, the same schedule through the same two Kafka hops
    /// with bare librdkafka clients (no engine).
    #[arg(long)]
    pub(crate) no_baseline: bool,
    /// Distinct keys of the running count.
    #[arg(long, default_value_t = 1024)]
    pub(crate) keys: u64,
    /// What the in-memory pipeline computes per key (`--source memory`).
    #[arg(long, value_enum, default_value_t = OperatorArg::RunningCount)]
    pub(crate) operator: OperatorArg,
    /// `--operator table-join`: rows of the table.
    #[arg(long, default_value_t = 1_000_000)]
    pub(crate) table_rows: u64,
    /// `--operator table-join`: how often the table is reloaded while the run measures.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub(crate) table_reload: std::time::Duration,
    /// Capacity of each exchange ring, in messages.
    #[arg(long, default_value_t = 1024)]
    pub(crate) ring_capacity: usize,
    /// Execution modes to compare, each measured in turn: `continuous`, `micro-batch` (once
    /// per `--trigger`), or a micro-batch trigger named directly (`asap`, `100ms`).
    #[arg(long, value_delimiter = ',', default_value = "continuous,micro-batch", value_parser = parse_mode)]
    pub(crate) modes: Vec<ModeArg>,
    /// Micro-batch triggers: `asap` (the next batch as soon as the previous one is done) or
    /// an interval such as `100ms` or `1s` (Spark's processing-time trigger).
    #[arg(long, value_delimiter = ',', default_value = "asap,100ms", value_parser = parse_trigger)]
    pub(crate) trigger: Vec<Trigger>,
    /// Also write every figure and setting as JSON to FILE (top level: `modes`, one entry per
    /// mode and rate with the medians over the runs; with checkpoints or micro-batches, its
    /// `epochs`: how many, how long, how big, and where the slowest spent its time, over all
    /// runs).
    #[arg(long, value_name = "FILE")]
    pub(crate) json: Option<std::path::PathBuf>,
    /// Also write an SVG percentile-distribution chart to FILE: latency (log) against
    /// percentile, one line per mode and rate, each over all its runs.
    #[arg(long, value_name = "FILE")]
    pub(crate) plot: Option<std::path::PathBuf>,
    /// Take a checkpoint every this many seconds, or at this interval (`500ms`), into a
    /// temporary directory. Each run then
    /// prints the checkpoints' durations and sizes. Micro-batch runs checkpoint every batch.
    #[arg(long, value_parser = parse_seconds)]
    pub(crate) checkpoint_interval: Option<Duration>,
    /// With checkpoints: every this many checkpoints one stores all keyed state, the others
    /// only the key groups written since the previous one (1: every checkpoint is full).
    #[arg(long, default_value_t = 10)]
    pub(crate) full_every: u32,
    /// Kafka: write results with the exactly-once (transactional) sink and read them
    /// `read_committed`: a result becomes visible when its checkpoint commits. Checkpoints
    /// every second unless `--checkpoint-interval` says otherwise. Needs `--broker noida` or
    /// `--brokers`: the embedded mock cluster does not keep uncommitted results from
    /// `read_committed` readers, so what it measured would not be exactly-once latency.
    #[arg(long)]
    pub(crate) exactly_once: bool,
    /// Kafka: producer `linger.ms` (the lab's producer and the job's sink). Default: 1 on the
    /// embedded cluster (its throughput collapses with 0), 0 (rill's default) on `--brokers`.
    #[arg(long)]
    pub(crate) linger_ms: Option<u32>,
    /// Kafka: consumer `fetch.wait.max.ms` (the job and the reader): how long the broker may
    /// hold a fetch that has no data. librdkafka's default is 500, rill's 5. The lab uses 1:
    /// the embedded mock cluster holds every fetch that long even when data arrives (a real
    /// broker answers as soon as it has data), so on the mock it is a floor per Kafka hop.
    #[arg(long, default_value_t = 1)]
    pub(crate) fetch_wait_ms: u32,
}

/// Parses a `--modes` entry.
pub(crate) fn parse_mode(s: &str) -> Result<ModeArg, String> {
    match s {
        "continuous" => Ok(ModeArg::Continuous),
        "micro-batch" | "microbatch" | "micro_batch" => Ok(ModeArg::MicroBatch),
        _ => parse_trigger(s)
            .map(|t| ModeArg::Exact(Mode::MicroBatch(t)))
            .map_err(|_| {
                format!(
                    "`{s}`: expected continuous, micro-batch, asap, or a batch interval like 100ms"
                )
            }),
    }
}

/// Parses a `--trigger` entry: `asap`, or an interval in humantime's notation (`100ms`,
/// `1s`, `1m 30s`).
pub(crate) fn parse_trigger(s: &str) -> Result<Trigger, String> {
    if s == "asap" {
        return Ok(Trigger::AsFastAsPossible);
    }
    let interval = humantime::parse_duration(s)
        .map_err(|e| format!("`{s}`: expected asap or a batch interval like 100ms or 1s ({e})"))?;
    if interval.is_zero() {
        return Err(format!("`{s}`: a batch interval must be positive"));
    }
    Ok(Trigger::ProcessingTime(interval))
}

/// Parses a span of time: a number of seconds (`2`, `0.5`) or a humantime duration (`500ms`,
/// `2s`, `1m`).
pub(crate) fn parse_seconds(s: &str) -> Result<Duration, String> {
    if let Ok(seconds) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds)
            .map_err(|_| format!("`{s}`: expected a non-negative number of seconds"));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}`: expected seconds (2, 0.5) or a duration like 500ms ({e})"))
}
