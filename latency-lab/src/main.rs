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
use rill::engine::{Mode, Trigger};
use rill::prelude::*;
use rill::CheckpointLog;

use crate::report::{print_header, print_row, Summary};

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

/// Where records come from and go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SourceKind {
    /// The in-process generator and a measuring sink: the engine's own latency.
    Memory,
    /// An embedded Kafka (librdkafka's mock cluster): producer -> topic -> job -> topic ->
    /// reader.
    Kafka,
}

/// Measures per-record latency of a rill pipeline with an open-loop generator.
#[derive(Debug, Parser)]
#[command(name = "latency-lab", version)]
struct Args {
    /// Where records come from: the in-process generator, or an embedded Kafka.
    #[arg(long, value_enum, default_value_t = SourceKind::Memory)]
    source: SourceKind,
    /// Target rates to measure, records per second in total (comma separated).
    /// Default: 100000 in memory, 5000 through Kafka.
    #[arg(long, value_delimiter = ',')]
    rates: Vec<f64>,
    /// Measured time per run, in seconds (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Warm-up per run, in seconds: records scheduled before it ends are not recorded.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Pin worker i to core i.
    #[arg(long)]
    pin: bool,
    /// What idle workers do. rill's latency targets assume `spin`.
    #[arg(long, value_enum, default_value_t = Idle::Spin)]
    idle: Idle,
    /// Runs per rate; the table shows the median of each percentile and its spread.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Skip the platform baseline (the same schedule on bare threads, no engine).
    #[arg(long)]
    no_baseline: bool,
    /// Distinct keys of the running count.
    #[arg(long, default_value_t = 1024)]
    keys: u64,
    /// Capacity of each exchange ring, in messages.
    #[arg(long, default_value_t = 1024)]
    ring_capacity: usize,
    /// Execution modes to compare, each measured in turn (memory source): `continuous`,
    /// `asap` (micro-batches as fast as possible) or a micro-batch interval such as `100ms`
    /// (Spark's processing-time trigger).
    #[arg(long, value_delimiter = ',', default_value = "continuous", value_parser = parse_mode)]
    modes: Vec<Mode>,
    /// Also write every figure and setting as JSON to FILE (top level: `modes`, one entry per
    /// mode and rate with the medians over the runs).
    #[arg(long, value_name = "FILE")]
    json: Option<std::path::PathBuf>,
    /// Also write an SVG percentile-distribution chart to FILE: latency (log) against
    /// percentile, one line per mode and rate, each over all its runs.
    #[arg(long, value_name = "FILE")]
    plot: Option<std::path::PathBuf>,
    /// Take a checkpoint every this many seconds (memory source; into a temporary directory).
    /// Each run then prints the checkpoints' durations and sizes.
    #[arg(long)]
    checkpoint_interval: Option<f64>,
}

/// Parses a `--modes` entry.
fn parse_mode(s: &str) -> Result<Mode, String> {
    match s {
        "continuous" => Ok(Mode::Continuous),
        "asap" => Ok(Mode::MicroBatch(Trigger::AsFastAsPossible)),
        _ => {
            let ms = s
                .strip_suffix("ms")
                .and_then(|n| n.parse::<u64>().ok())
                .ok_or_else(|| {
                    format!("`{s}`: expected continuous, asap, or a batch interval like 100ms")
                })?;
            Ok(Mode::MicroBatch(Trigger::ProcessingTime(
                Duration::from_millis(ms),
            )))
        }
    }
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

/// One run: the pipeline at one rate, returning the latency histogram (ns) and records seen.
fn run_once(args: &Args, rate: f64, mode: Mode) -> anyhow::Result<Histogram<u64>> {
    let checkpoint_dir = args.checkpoint_interval.map(|_| {
        std::env::temp_dir().join(format!(
            "latency-lab-checkpoints-{}-{}",
            std::process::id(),
            rill::engine::time::now_nanos()
        ))
    });
    let warmup = Duration::from_secs_f64(args.warmup);
    let total = warmup + Duration::from_secs_f64(args.duration);
    let keys = args.keys.max(1);
    // The generator's clock starts when the job starts: measure from start + warm-up.
    let start_delay = Duration::from_millis(20);

    let job = Job::new("latency-lab");
    let sink = LatencySink::new(|(_, (_, scheduled)): &(u64, (u64, u64))| *scheduled)
        .warm_up(start_delay + warmup);
    job.source(
        Generator::new(rate, |seq| seq)
            .with_duration(total)
            .with_start_delay(start_delay),
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

    let mut config = Config::default()
        .with_workers(args.workers)
        .with_pinning(args.pin)
        .with_idle(args.idle.strategy())
        .with_ring_capacity(args.ring_capacity)
        .with_mode(mode);
    if let (Some(dir), Some(every)) = (&checkpoint_dir, args.checkpoint_interval) {
        config = config.with_checkpoints(
            CheckpointConfig::new(dir).with_interval(Duration::from_secs_f64(every)),
        );
    }
    let mut handle = job.run(config).context("starting the job")?;
    // On stderr, and only when it is a terminal (indicatif draws nothing otherwise), so the
    // table on stdout stays clean for pipes and files.
    let bar = indicatif::ProgressBar::new(total.as_millis() as u64).with_style(
        indicatif::ProgressStyle::with_template("{prefix} [{bar:40}] {elapsed}/{msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("{}, {rate} rec/s", mode_name(mode)));
    bar.set_message(format!("{:.0}s", total.as_secs_f64()));
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
        print_checkpoints(&log);
    }
    if let Some(dir) = checkpoint_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(sink.histogram())
}

/// One line about a run's checkpoints: how many, how long, how big.
fn print_checkpoints(log: &CheckpointLog) {
    let done = &log.completed;
    if done.is_empty() {
        println!("      checkpoints: none completed");
        return;
    }
    let mut durations: Vec<Duration> = done.iter().map(|c| c.duration).collect();
    durations.sort();
    let median = durations[durations.len() / 2];
    let max = durations[durations.len() - 1];
    let last = &done[done.len() - 1];
    let align = done.iter().map(|c| c.alignment).max().unwrap_or_default();
    println!(
        "      checkpoints: {} completed, duration median {:.1} ms max {:.1} ms (barrier to completion), \
         last {} bytes written in {:.1} ms, longest alignment {:.2} ms",
        done.len(),
        median.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        last.bytes,
        last.write_time.as_secs_f64() * 1e3,
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
        args.rates = vec![match args.source {
            SourceKind::Memory => 100_000.0,
            SourceKind::Kafka => 5_000.0,
        }];
    }
    if args.rates.iter().any(|r| !r.is_finite() || *r <= 0.0) {
        bail!("--rates must be positive numbers");
    }
    if args.duration <= 0.0 || args.warmup < 0.0 {
        bail!("--duration must be positive and --warmup not negative");
    }
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("latency-lab: per-record latency, scheduled emission -> arrival at the sink");
    match args.source {
        SourceKind::Memory => println!(
            "pipeline: generator -> map -> key_by ({} keys) -> running count -> latency sink; source: memory (in-process generator)",
            args.keys
        ),
        SourceKind::Kafka => println!(
            "pipeline: producer -> lab-in -> [decode -> key_by ({} keys) -> running count, 1 worker] -> lab-out -> reader; broker: EMBEDDED mock cluster (librdkafka), not a real Kafka; linger.ms 1, fetch.wait.max.ms 5",
            args.keys
        ),
    }
    println!(
        "settings: workers {} on {cores} cores, idle {}, pin {}, ring {} msgs, pacing: generator polled by its worker ({}), warm-up {}s, measured {}s, runs {}, checkpoints {}, {}={}",
        args.workers,
        args.idle.strategy(),
        args.pin,
        args.ring_capacity,
        match args.idle {
            Idle::Spin => "spin",
            Idle::Yield => "yield",
            Idle::Park | Idle::Backoff => "sleep until due",
        },
        args.warmup,
        args.duration,
        args.runs,
        args.checkpoint_interval
            .map_or("off".to_string(), |s| format!("every {s}s")),
        PURGE_DELAY,
        std::env::var(PURGE_DELAY).unwrap_or_default(),
    );
    println!();
    print_header();
    let mut entries = Vec::new();
    let mut curves: Vec<(String, Histogram<u64>)> = Vec::new();
    for &rate in &args.rates {
        if !args.no_baseline && args.source == SourceKind::Memory {
            let h = baseline::measure(
                rate,
                args.workers,
                args.pin,
                Duration::from_secs_f64(args.warmup),
                Duration::from_secs_f64(args.duration),
            );
            let summary = Summary::from_histogram(rate, args.duration, &h);
            print_row("baseline", &summary, None);
            entries.push(json_entry(
                "baseline",
                serde_json::Value::Null,
                &summary,
                &Summary::default(),
                1,
            ));
        }
        let modes = match args.source {
            SourceKind::Memory => args.modes.clone(),
            SourceKind::Kafka => vec![Mode::Continuous],
        };
        for &mode in &modes {
            if modes.len() > 1 {
                println!("mode: {}", mode_name(mode));
            }
            let mut runs = Vec::with_capacity(args.runs);
            let mut merged: Option<Histogram<u64>> = None;
            for run in 1..=args.runs {
                let histogram = match args.source {
                    SourceKind::Memory => run_once(&args, rate, mode)?,
                    SourceKind::Kafka => kafka_path::run_once(
                        rate,
                        Duration::from_secs_f64(args.warmup),
                        Duration::from_secs_f64(args.duration),
                        args.keys,
                        &Config::default()
                            .with_workers(args.workers)
                            .with_pinning(args.pin)
                            .with_idle(args.idle.strategy()),
                    )?,
                };
                let summary = Summary::from_histogram(rate, args.duration, &histogram);
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
            println!();
        }
    }
    println!("latencies in microseconds; spread = max - min over the runs");
    if let Some(path) = &args.plot {
        let title = format!(
            "latency-lab: {} source, {} workers, idle {}",
            match args.source {
                SourceKind::Memory => "memory",
                SourceKind::Kafka => "embedded Kafka",
            },
            args.workers,
            args.idle.strategy()
        );
        std::fs::write(path, plot::svg(&title, &curves))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("chart written to {}", path.display());
    }
    if let Some(path) = &args.json {
        let doc = serde_json::json!({
            "tool": "latency-lab",
            "source": match args.source {
                SourceKind::Memory => "memory",
                SourceKind::Kafka => "embedded-kafka",
            },
            "settings": {
                "workers": args.workers,
                "cores": cores,
                "pin": args.pin,
                "idle": args.idle.strategy().to_string(),
                "ring_capacity": args.ring_capacity,
                "keys": args.keys,
                "warmup_s": args.warmup,
                "duration_s": args.duration,
                "runs": args.runs,
                "checkpoint_interval_s": args.checkpoint_interval,
                "mimalloc_purge_delay": std::env::var(PURGE_DELAY).ok(),
            },
            "modes": entries,
        });
        let text = serde_json::to_string_pretty(&doc).context("encoding the JSON report")?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
        println!("figures written to {}", path.display());
    }
    if !args.no_baseline && args.source == SourceKind::Memory {
        println!(
            "baseline = the same open-loop schedule on {} bare spinning threads with no engine: the machine's own floor",
            args.workers
        );
    }
    Ok(())
}
