//! latency-lab: per-record latency of a rill pipeline, measured open-loop.
//!
//! The generator emits records at a fixed rate; record i is *scheduled* at start + i / rate and
//! carries that time. The pipeline is `generator -> map -> key_by -> running count -> sink`,
//! and the sink records `arrival - scheduled` for every record in an HdrHistogram. A record the
//! generator emits late is charged its lateness (no coordinated omission). Several runs are
//! made and the median of each percentile is reported with its spread.
//!
//! ```text
//! cargo run --release -p latency-lab                       # defaults: 100k rec/s, 2 workers, spin
//! cargo run --release -p latency-lab -- --idle backoff --rates 10000,100000
//! ```

mod baseline;
mod kafka_path;
mod plot;
mod report;

use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use rill::prelude::*;
use rill::CheckpointLog;

use crate::report::{print_header, print_row, print_summary, Summary};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How idle workers wait (see `rill::IdleStrategy`).
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Idle {
    /// Busy-poll: lowest latency, one busy core per worker.
    Spin,
    /// Yield to the OS between polls.
    Yield,
    /// Park at once when idle; wake on push or at the generator's next due time.
    Park,
    /// Spin 50 us, yield 500 us, then park (the library default).
    Backoff,
}

impl Idle {
    fn strategy(self) -> IdleStrategy {
        match self {
            Idle::Spin => IdleStrategy::Spin,
            Idle::Yield => IdleStrategy::Yield,
            Idle::Park => IdleStrategy::Park,
            Idle::Backoff => IdleStrategy::default(),
        }
    }
}

/// How the generator waits for each record's due time (see `rill::Pacing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PacingArg {
    /// Polled by a worker that waits as `--idle` says (with spin: released exactly on time).
    Spin,
    /// A thread sleeps until each due time (as the Flink and Spark studies' sources did).
    Sleep,
}

/// Where records come from and go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SourceKind {
    /// The in-process generator and a measuring sink: the engine's own latency.
    Memory,
    /// Kafka: producer -> topic -> job -> topic -> reader, on an embedded cluster
    /// (librdkafka's mock) or on the one `--brokers` names.
    Kafka,
}

/// A `--modes` entry.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ModeArg {
    /// Record at a time.
    Continuous,
    /// Micro-batches, once per `--trigger`.
    MicroBatch,
    /// One micro-batch trigger named directly (`asap`, `100ms`).
    Exact(Mode),
}

/// Measures per-record latency of a rill pipeline with an open-loop generator, in continuous
/// and micro-batch mode.
#[derive(Debug, Parser)]
#[command(name = "latency-lab", version)]
struct Args {
    /// Where records come from: an embedded Kafka (or `--brokers`), or the in-process
    /// generator.
    #[arg(long, value_enum, default_value_t = SourceKind::Kafka)]
    source: SourceKind,
    /// An external Kafka cluster (`host:port,...`) instead of the embedded one; the lab
    /// creates fresh topics on it for every run.
    #[arg(long)]
    brokers: Option<String>,
    /// Partitions of the input and output topics (Kafka).
    #[arg(long, default_value_t = 2)]
    partitions: i32,
    /// Target rates to measure, records per second in total (comma separated).
    /// Default: 100000 in memory; 1000,5000 through Kafka.
    #[arg(long, value_delimiter = ',')]
    rates: Vec<f64>,
    /// Measured time per run, in seconds (after the warm-up). Default: 10 in memory, 5
    /// through Kafka.
    #[arg(long)]
    duration: Option<f64>,
    /// Warm-up per run, in seconds: records scheduled before it ends are not recorded.
    /// Default: 2 in memory, 1 through Kafka.
    #[arg(long)]
    warmup: Option<f64>,
    /// Worker threads of the job. Default: 2 (the cores of the machine this was built on).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Pin worker i to core i.
    #[arg(long)]
    pin: bool,
    /// What idle workers do. rill's latency targets assume `spin`. Default: spin in memory;
    /// backoff through Kafka, where producer, broker, reader and librdkafka's threads need
    /// the cores too.
    #[arg(long, value_enum)]
    idle: Option<Idle>,
    /// How the generator waits for each record's due time. `sleep` is the fair setting next
    /// to the published Flink and Spark figures; rill's targets assume `spin`. Default: spin
    /// in memory, sleep through Kafka.
    #[arg(long, value_enum)]
    pacing: Option<PacingArg>,
    /// Runs per mode and rate; the table shows the median of each percentile and its spread.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Skip the platform baseline (memory: the same schedule on bare threads, no engine).
    #[arg(long)]
    no_baseline: bool,
    /// Distinct keys of the running count.
    #[arg(long, default_value_t = 1024)]
    keys: u64,
    /// Capacity of each exchange ring, in messages.
    #[arg(long, default_value_t = 1024)]
    ring_capacity: usize,
    /// Execution modes to compare, each measured in turn: `continuous`, `micro-batch` (once
    /// per `--trigger`), or a micro-batch trigger named directly (`asap`, `100ms`).
    #[arg(long, value_delimiter = ',', default_value = "continuous,micro-batch", value_parser = parse_mode)]
    modes: Vec<ModeArg>,
    /// Micro-batch triggers: `asap` (the next batch as soon as the previous one is done) or
    /// an interval such as `100ms` (Spark's processing-time trigger).
    #[arg(long, value_delimiter = ',', default_value = "asap,100ms", value_parser = parse_trigger)]
    trigger: Vec<Trigger>,
    /// Also write every figure and setting as JSON to FILE (top level: `modes`, one entry per
    /// mode and rate with the medians over the runs).
    #[arg(long, value_name = "FILE")]
    json: Option<std::path::PathBuf>,
    /// Also write an SVG percentile-distribution chart to FILE: latency (log) against
    /// percentile, one line per mode and rate, each over all its runs.
    #[arg(long, value_name = "FILE")]
    plot: Option<std::path::PathBuf>,
    /// Take a checkpoint every this many seconds (into a temporary directory). Each run then
    /// prints the checkpoints' durations and sizes. Micro-batch runs checkpoint every batch.
    #[arg(long)]
    checkpoint_interval: Option<f64>,
    /// Kafka: write results with the exactly-once (transactional) sink and read them
    /// `read_committed`: a result becomes visible when its checkpoint commits. Checkpoints
    /// every second unless `--checkpoint-interval` says otherwise.
    #[arg(long)]
    exactly_once: bool,
    /// Kafka: producer `linger.ms` (the lab's producer and the job's sink). Default: 1 on the
    /// embedded cluster (its throughput collapses with 0), 0 (rill's default) on `--brokers`.
    #[arg(long)]
    linger_ms: Option<u32>,
    /// Kafka: consumer `fetch.wait.max.ms` (the job and the reader): how long the broker may
    /// hold a fetch that has no data. librdkafka's default is 500, rill's 5. The lab uses 1:
    /// the embedded mock cluster holds every fetch that long even when data arrives (a real
    /// broker answers as soon as it has data), so on the mock it is a floor per Kafka hop.
    #[arg(long, default_value_t = 1)]
    fetch_wait_ms: u32,
}

/// Every setting of a measurement, resolved from the arguments and the source's defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    source: SourceKind,
    /// The external cluster, if any (Kafka).
    pub brokers: Option<String>,
    /// Partitions of each topic (Kafka).
    pub partitions: i32,
    workers: usize,
    pin: bool,
    idle: Idle,
    /// How the generator waits for due times.
    pub pacing: Pacing,
    ring_capacity: usize,
    /// Keys of the running count.
    pub keys: u64,
    /// Warm-up per run.
    pub warmup: Duration,
    /// Measured time per run.
    pub duration: Duration,
    runs: usize,
    /// Checkpoint interval, if checkpointing.
    pub checkpoint_interval: Option<Duration>,
    /// Exactly-once Kafka sink.
    pub exactly_once: bool,
    /// Producer `linger.ms`.
    pub linger_ms: u32,
    /// Consumer `fetch.wait.max.ms`.
    pub fetch_wait_ms: u32,
    modes: Vec<Mode>,
}

impl Settings {
    fn resolve(args: &Args) -> anyhow::Result<Self> {
        let kafka = args.source == SourceKind::Kafka;
        let mut modes = Vec::new();
        for m in &args.modes {
            match m {
                ModeArg::Continuous => modes.push(Mode::Continuous),
                ModeArg::MicroBatch => {
                    modes.extend(args.trigger.iter().map(|t| Mode::MicroBatch(*t)))
                }
                ModeArg::Exact(mode) => modes.push(*mode),
            }
        }
        if modes.is_empty() {
            bail!("--modes micro-batch needs at least one --trigger");
        }
        let seconds = |s: f64, what: &str| {
            if s.is_finite() && s >= 0.0 {
                Ok(Duration::from_secs_f64(s))
            } else {
                Err(anyhow::anyhow!(
                    "--{what} must be a non-negative number of seconds"
                ))
            }
        };
        let duration = seconds(
            args.duration.unwrap_or(if kafka { 5.0 } else { 10.0 }),
            "duration",
        )?;
        if duration.is_zero() {
            bail!("--duration must be positive");
        }
        let checkpoint_interval = match (args.checkpoint_interval, args.exactly_once) {
            (Some(s), _) => Some(seconds(s, "checkpoint-interval")?),
            (None, true) => Some(Duration::from_secs(1)),
            (None, false) => None,
        };
        if checkpoint_interval.is_some_and(|d| d.is_zero()) {
            bail!("--checkpoint-interval must be positive");
        }
        if args.exactly_once && !kafka {
            bail!("--exactly-once is about the Kafka sink: use it with --source kafka");
        }
        if args.brokers.is_some() && !kafka {
            bail!("--brokers needs --source kafka");
        }
        if args.workers == 0 || args.partitions <= 0 || args.runs == 0 {
            bail!("--workers, --partitions and --runs must be at least 1");
        }
        Ok(Self {
            source: args.source,
            brokers: args.brokers.clone(),
            partitions: args.partitions,
            workers: args.workers,
            pin: args.pin,
            idle: args
                .idle
                .unwrap_or(if kafka { Idle::Backoff } else { Idle::Spin }),
            pacing: match args.pacing.unwrap_or(if kafka {
                PacingArg::Sleep
            } else {
                PacingArg::Spin
            }) {
                PacingArg::Spin => Pacing::Spin,
                PacingArg::Sleep => Pacing::Sleep,
            },
            ring_capacity: args.ring_capacity,
            keys: args.keys.max(1),
            warmup: seconds(
                args.warmup.unwrap_or(if kafka { 1.0 } else { 2.0 }),
                "warmup",
            )?,
            duration,
            runs: args.runs,
            checkpoint_interval,
            exactly_once: args.exactly_once,
            linger_ms: args
                .linger_ms
                .unwrap_or(if args.brokers.is_some() { 0 } else { 1 }),
            fetch_wait_ms: args.fetch_wait_ms,
            modes,
        })
    }

    /// The job's configuration, without mode and checkpoints.
    pub fn job_config(&self) -> Config {
        Config::default()
            .with_workers(self.workers)
            .with_pinning(self.pin)
            .with_idle(self.idle.strategy())
            .with_ring_capacity(self.ring_capacity)
    }

    /// How long results may lag behind their input by design in `mode`: one trigger interval,
    /// and one checkpoint interval when an exactly-once sink holds them until it commits.
    pub fn batch_or_checkpoint_wait(&self, mode: Mode) -> Duration {
        let batch = match mode {
            Mode::MicroBatch(Trigger::ProcessingTime(d)) => d,
            _ => Duration::ZERO,
        };
        let checkpoint = if self.exactly_once {
            self.checkpoint_interval.unwrap_or_default()
        } else {
            Duration::ZERO
        };
        batch + checkpoint
    }

    /// What the run measures, where, and with what: printed before the table.
    fn describe(&self, cores: usize) -> String {
        let pipeline = match self.source {
            SourceKind::Memory => format!(
                "pipeline: generator -> map -> key_by ({} keys) -> running count -> latency sink\n\
                 source:   memory (the in-process generator; no Kafka): the engine's own latency",
                self.keys
            ),
            SourceKind::Kafka => format!(
                "pipeline: producer -> topic -> [Kafka source -> decode -> map -> filter -> key_by ({} keys) -> running count -> Kafka sink{}] -> topic -> reader\n\
                 broker:   {}; topics of {} partitions, fresh for every run\n\
                 kafka:    linger.ms {}, fetch.wait.max.ms {}, reader isolation read_committed",
                self.keys,
                if self.exactly_once { " (exactly-once, transactional)" } else { "" },
                match &self.brokers {
                    Some(b) => format!("EXTERNAL cluster at {b}"),
                    None => "EMBEDDED librdkafka mock cluster (in this process; not a real Kafka: its figures are not Kafka's, and it does not isolate uncommitted records)".into(),
                },
                self.partitions,
                self.linger_ms,
                self.fetch_wait_ms,
            ),
        };
        format!(
            "{pipeline}\n\
             settings: workers {} on {cores} cores, idle {}, pin {}, pacing {}, ring {} msgs, warm-up {}s, measured {}s, runs {}, checkpoints {}, {}={}",
            self.workers,
            self.idle.strategy(),
            self.pin,
            self.pacing,
            self.ring_capacity,
            self.warmup.as_secs_f64(),
            self.duration.as_secs_f64(),
            self.runs,
            self.checkpoint_interval
                .map_or("off".to_string(), |d| format!("every {}s", d.as_secs_f64())),
            PURGE_DELAY,
            std::env::var(PURGE_DELAY).unwrap_or_default(),
        )
    }

    /// Every setting, for `--json`.
    fn json(&self, cores: usize) -> serde_json::Value {
        serde_json::json!({
            "source": match self.source {
                SourceKind::Memory => "memory",
                SourceKind::Kafka => "kafka",
            },
            "broker": match (self.source, &self.brokers) {
                (SourceKind::Memory, _) => serde_json::Value::Null,
                (SourceKind::Kafka, Some(b)) => format!("external {b}").into(),
                (SourceKind::Kafka, None) => "embedded librdkafka mock cluster".into(),
            },
            "partitions": self.partitions,
            "workers": self.workers,
            "cores": cores,
            "pin": self.pin,
            "idle": self.idle.strategy().to_string(),
            "pacing": self.pacing.to_string(),
            "ring_capacity": self.ring_capacity,
            "keys": self.keys,
            "warmup_s": self.warmup.as_secs_f64(),
            "duration_s": self.duration.as_secs_f64(),
            "runs": self.runs,
            "checkpoint_interval_s": self.checkpoint_interval.map(|d| d.as_secs_f64()),
            "exactly_once": self.exactly_once,
            "linger_ms": self.linger_ms,
            "fetch_wait_max_ms": self.fetch_wait_ms,
            "mimalloc_purge_delay": std::env::var(PURGE_DELAY).ok(),
        })
    }
}

/// Parses a `--modes` entry.
fn parse_mode(s: &str) -> Result<ModeArg, String> {
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

/// Parses a `--trigger` entry: `asap` or an interval in milliseconds (`100ms`).
fn parse_trigger(s: &str) -> Result<Trigger, String> {
    if s == "asap" {
        return Ok(Trigger::AsFastAsPossible);
    }
    let ms = s
        .strip_suffix("ms")
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .ok_or_else(|| format!("`{s}`: expected asap or a batch interval like 100ms"))?;
    Ok(Trigger::ProcessingTime(Duration::from_millis(ms)))
}

/// The trigger of a mode, as the JSON names it.
fn trigger_name(mode: Mode) -> serde_json::Value {
    match mode {
        Mode::Continuous => serde_json::Value::Null,
        Mode::MicroBatch(Trigger::AsFastAsPossible) => "as_fast_as_possible".into(),
        Mode::MicroBatch(Trigger::AvailableNow) => "available_now".into(),
        Mode::MicroBatch(Trigger::ProcessingTime(d)) => {
            format!("processing_time_{}ms", d.as_millis()).into()
        }
    }
}

/// One JSON entry: the median figures of a mode at a rate, in microseconds.
fn json_entry(
    mode: &str,
    trigger: serde_json::Value,
    median: &Summary,
    spread: &Summary,
    runs: usize,
) -> serde_json::Value {
    let us = |ns: u64| ns as f64 / 1e3;
    serde_json::json!({
        "mode": mode,
        "trigger": trigger,
        "rate": median.rate,
        "achieved_rate": median.achieved,
        "p50_us": us(median.p50),
        "p90_us": us(median.p90),
        "p99_us": us(median.p99),
        "p999_us": us(median.p999),
        "p9999_us": us(median.p9999),
        "max_us": us(median.max),
        "samples": median.samples,
        "runs": runs,
        "spread_us": {
            "p50": us(spread.p50),
            "p99": us(spread.p99),
            "p999": us(spread.p999),
            "max": us(spread.max),
        },
    })
}

/// A mode as the table names it.
fn mode_name(mode: Mode) -> String {
    match mode {
        Mode::Continuous => "continuous".into(),
        Mode::MicroBatch(Trigger::AsFastAsPossible) => "micro-batch, as fast as possible".into(),
        Mode::MicroBatch(Trigger::ProcessingTime(d)) => {
            format!("micro-batch, trigger every {} ms", d.as_millis())
        }
        Mode::MicroBatch(Trigger::AvailableNow) => "micro-batch, available now".into(),
    }
}

/// A temporary checkpoint directory for one run, when the settings checkpoint.
fn checkpoint_dir(settings: &Settings) -> Option<std::path::PathBuf> {
    settings.checkpoint_interval.map(|_| {
        std::env::temp_dir().join(format!(
            "latency-lab-checkpoints-{}-{}",
            std::process::id(),
            rill::time::now_nanos()
        ))
    })
}

/// A progress bar for one run of `total`, on stderr and only on a terminal (indicatif draws
/// nothing otherwise), so the table on stdout stays clean for pipes and files.
fn progress_bar(label: String, total: Duration) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total.as_millis() as u64).with_style(
        indicatif::ProgressStyle::with_template("{prefix} [{bar:40}] {elapsed}/{msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(label);
    bar.set_message(format!("{:.0}s", total.as_secs_f64()));
    bar
}

/// One in-memory run: the pipeline at one rate, returning the latency histogram (ns).
fn run_memory(settings: &Settings, rate: f64, mode: Mode) -> anyhow::Result<Histogram<u64>> {
    let checkpoint_dir = checkpoint_dir(settings);
    let warmup = settings.warmup;
    let total = warmup + settings.duration;
    let keys = settings.keys;
    // The generator's clock starts when the job starts: measure from start + warm-up.
    let start_delay = Duration::from_millis(20);

    let job = Job::new("latency-lab");
    let sink = LatencySink::new(|(_, (_, scheduled)): &(u64, (u64, u64))| *scheduled)
        .warm_up(start_delay + warmup);
    job.source(
        Generator::new(rate, |seq| seq)
            .with_duration(total)
            .with_start_delay(start_delay)
            .with_pacing(settings.pacing),
    )
    // A little per-record work before the exchange: derive the key. Consecutive records hit
    // consecutive keys, so after `keys` records every key holds state.
    .map(move |g: Generated<u64>| (g.value % keys, g.scheduled_nanos))
    .key_by(|(key, _): &(u64, u64)| *key)
    // Running count per key; the output keeps the scheduled time of the record that caused it,
    // so the sink measures that record's latency.
    .aggregate(
        || (0u64, 0u64),
        |acc: &mut (u64, u64), (_, scheduled): (u64, u64)| {
            acc.0 += 1;
            acc.1 = scheduled;
        },
    )
    .sink(sink.clone());

    let mut config = settings.job_config().with_mode(mode);
    if let (Some(dir), Some(every)) = (&checkpoint_dir, settings.checkpoint_interval) {
        config = config.with_checkpoints(CheckpointConfig::new(dir).with_interval(every));
    }
    let mut handle = job.run(config).context("starting the job")?;
    let bar = progress_bar(format!("{}, {rate} rec/s", mode_name(mode)), total);
    let started = std::time::Instant::now();
    let result = loop {
        if let Some(r) = handle.await_termination_timeout(Duration::from_millis(100)) {
            break r;
        }
        bar.set_position(started.elapsed().as_millis() as u64);
    };
    bar.finish_and_clear();
    result.context("running the job")?;
    if let Some(log) = handle.checkpoints() {
        print_checkpoints(&log, settings.checkpoint_interval.is_some());
    }
    if let Some(dir) = checkpoint_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(sink.histogram())
}

/// One run through Kafka, with a progress bar over the producer's schedule.
fn run_kafka(
    settings: &Settings,
    rate: f64,
    mode: Mode,
    run: usize,
) -> anyhow::Result<Histogram<u64>> {
    let total = settings.warmup + settings.duration;
    let bar = progress_bar(format!("{}, {rate} rec/s", mode_name(mode)), total);
    let ticking = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let ticker = {
        let (bar, ticking) = (bar.clone(), ticking.clone());
        std::thread::spawn(move || {
            let started = std::time::Instant::now();
            while ticking.load(std::sync::atomic::Ordering::Relaxed) {
                bar.set_position(started.elapsed().as_millis() as u64);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let result = kafka_path::run_once(settings, rate, mode, run);
    ticking.store(false, std::sync::atomic::Ordering::Relaxed);
    let _ = ticker.join();
    bar.finish_and_clear();
    let run = result?;
    if let Some(log) = &run.checkpoints {
        print_checkpoints(log, settings.checkpoint_interval.is_some());
    }
    if run.read_back != run.produced {
        println!(
            "      WARNING: {} records produced, {} results read back within the drain time",
            run.produced, run.read_back
        );
    }
    Ok(run.histogram)
}

/// One line about a run's epochs: checkpoints (how many, how long, how big), or, for a
/// micro-batch run without a checkpoint store, its batches.
fn print_checkpoints(log: &CheckpointLog, stored: bool) {
    let done = &log.completed;
    let what = if stored { "checkpoints" } else { "batches" };
    if done.is_empty() {
        println!("      {what}: none completed");
        return;
    }
    let mut durations: Vec<Duration> = done.iter().map(|c| c.duration).collect();
    durations.sort();
    let median = durations[durations.len() / 2];
    let max = durations[durations.len() - 1];
    let align = done.iter().map(|c| c.alignment).max().unwrap_or_default();
    // The log keeps the newest 1,000; epochs count from the restored one.
    let count = done[done.len() - 1].epoch - log.restored_from.unwrap_or(0);
    let over = if count as usize > done.len() {
        format!(" (figures over the last {})", done.len())
    } else {
        String::new()
    };
    let size = if stored {
        let last = &done[done.len() - 1];
        format!(
            ", last {} bytes written in {:.1} ms",
            last.bytes,
            last.write_time.as_secs_f64() * 1e3
        )
    } else {
        String::new()
    };
    println!(
        "      {what}: {count} completed{over}, duration median {:.1} ms max {:.1} ms (start to completion){size}, longest alignment {:.2} ms",
        median.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        align.as_secs_f64() * 1e3,
    );
}

/// mimalloc's setting for how long freed memory is kept before it is handed back to the OS.
const PURGE_DELAY: &str = "MIMALLOC_PURGE_DELAY";

/// Restarts this process with mimalloc's purging off, unless the caller chose a setting.
///
/// Checkpoints free many megabytes per second (the state versions a snapshot held). mimalloc
/// hands freed pages back to the OS after 10 ms by default, and the TLB shootdowns that causes
/// interrupt every core of the process, spinning workers included: measured with 1 M keys of
/// state, p99.9 went from about 0.15 ms to 6 to 15 ms. A latency-critical service keeps its
/// memory; so does latency-lab. mimalloc reads the setting when it starts, hence the re-exec.
#[cfg(unix)]
fn keep_freed_memory() -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    if std::env::var_os(PURGE_DELAY).is_some() {
        return Ok(());
    }
    let exe = std::env::current_exe().context("locating latency-lab's own binary")?;
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(PURGE_DELAY, "-1")
        .exec();
    Err(err).context("restarting latency-lab with mimalloc's purging off")
}

#[cfg(not(unix))]
fn keep_freed_memory() -> anyhow::Result<()> {
    Ok(())
}

fn main() -> anyhow::Result<()> {
    keep_freed_memory()?;
    let mut args = Args::parse();
    if args.rates.is_empty() {
        args.rates = match args.source {
            SourceKind::Memory => vec![100_000.0],
            SourceKind::Kafka => vec![1_000.0, 5_000.0],
        };
    }
    if args.rates.iter().any(|r| !r.is_finite() || *r <= 0.0) {
        bail!("--rates must be positive numbers");
    }
    let settings = Settings::resolve(&args)?;
    let memory = settings.source == SourceKind::Memory;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("latency-lab: per-record latency, scheduled emission -> result read, open loop");
    println!("{}", settings.describe(cores));
    println!();
    print_header();
    let mut entries = Vec::new();
    let mut table: Vec<(String, Summary)> = Vec::new();
    let mut curves: Vec<(String, Histogram<u64>)> = Vec::new();
    let seconds = settings.duration.as_secs_f64();
    let mut run_id = 0;
    for &rate in &args.rates {
        if !args.no_baseline && memory {
            let h = baseline::measure(
                rate,
                settings.workers,
                settings.pin,
                settings.warmup,
                settings.duration,
            );
            let summary = Summary::from_histogram(rate, seconds, &h);
            print_row("baseline", &summary, None);
            entries.push(json_entry(
                "baseline",
                serde_json::Value::Null,
                &summary,
                &Summary::default(),
                1,
            ));
            table.push(("baseline (bare threads)".into(), summary));
        }
        for &mode in &settings.modes {
            println!("mode: {}, {rate} rec/s", mode_name(mode));
            let mut runs = Vec::with_capacity(settings.runs);
            let mut merged: Option<Histogram<u64>> = None;
            for run in 1..=settings.runs {
                run_id += 1;
                let histogram = if memory {
                    run_memory(&settings, rate, mode)?
                } else {
                    run_kafka(&settings, rate, mode, run_id)?
                };
                let summary = Summary::from_histogram(rate, seconds, &histogram);
                print_row(&format!("run {run}"), &summary, None);
                runs.push(summary);
                match merged.as_mut() {
                    Some(m) => m.add(&histogram).context("merging the runs' histograms")?,
                    None => merged = Some(histogram),
                }
            }
            let (median, spread) = Summary::median(&runs);
            print_row("median", &median, Some(&spread));
            let name = match mode {
                Mode::Continuous => "continuous",
                Mode::MicroBatch(_) => "micro_batch",
            };
            if let Some(m) = merged {
                curves.push((format!("{}, {rate} rec/s", mode_name(mode)), m));
            }
            entries.push(json_entry(
                name,
                trigger_name(mode),
                &median,
                &spread,
                runs.len(),
            ));
            table.push((mode_name(mode), median));
            println!();
        }
    }
    println!(
        "summary: median of {} run(s) per row, latencies in microseconds{}",
        settings.runs,
        if memory { "" } else { ", through Kafka" }
    );
    print_summary(&table);
    println!("spread = max - min over the runs");
    if let Some(path) = &args.plot {
        let title = format!(
            "latency-lab: {}, {} workers, idle {}, pacing {}",
            match (&settings.source, &settings.brokers) {
                (SourceKind::Memory, _) => "memory source".to_string(),
                (SourceKind::Kafka, None) => "embedded Kafka (mock)".to_string(),
                (SourceKind::Kafka, Some(b)) => format!("Kafka at {b}"),
            },
            settings.workers,
            settings.idle.strategy(),
            settings.pacing,
        );
        std::fs::write(path, plot::svg(&title, &curves))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("chart written to {}", path.display());
    }
    if let Some(path) = &args.json {
        let doc = serde_json::json!({
            "tool": "latency-lab",
            "source": match (&settings.source, &settings.brokers) {
                (SourceKind::Memory, _) => "memory",
                (SourceKind::Kafka, None) => "embedded-kafka",
                (SourceKind::Kafka, Some(_)) => "kafka",
            },
            "settings": settings.json(cores),
            "modes": entries,
        });
        let text = serde_json::to_string_pretty(&doc).context("encoding the JSON report")?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
        println!("figures written to {}", path.display());
    }
    if !args.no_baseline && memory {
        println!(
            "baseline = the same open-loop schedule on {} bare spinning threads with no engine: the machine's own floor",
            settings.workers
        );
    }
    Ok(())
}
