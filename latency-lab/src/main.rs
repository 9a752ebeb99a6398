//! latency-lab: per-record latency of a rill pipeline, measured open-loop, in continuous and
//! micro-batch mode.
//!
//! A generator (or, on the default Kafka path, a producer) emits records at a fixed rate;
//! record i is *scheduled* at start + i / rate and carries that time. The job runs the records
//! through `decode -> map -> filter -> key_by -> running count -> sink`, and every result's
//! `arrival - scheduled` goes into an HdrHistogram. A record emitted late is charged its
//! lateness (no coordinated omission). Several runs are made and the median of each
//! percentile is reported with its spread, next to the machine's floor measured in the same
//! run.
//!
//! - [`cli`]: the options; [`settings`]: what they resolve to.
//! - [`memory_path`] and [`kafka_path`]: one run each way; [`baseline`]: the bare-thread floor;
//!   [`ring_hop`]: the floor with the pipeline's ring mesh; [`kafka_floor`]: the Kafka path's
//!   two hops with bare librdkafka clients.
//! - [`report`]: the table, the JSON entries; [`plot`]: the SVG chart.
//!
//! ```text
//! cargo run --release -p latency-lab                       # Kafka (embedded), both modes
//! cargo run --release -p latency-lab -- --source memory    # the engine alone, no Kafka
//! ```

mod allocator;
mod baseline;
mod cli;
mod kafka_floor;
mod kafka_path;
mod memory_path;
mod plot;
mod progress;
mod report;
mod ring_hop;
mod settings;

use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use hdrhistogram::Histogram;
use rill::prelude::*;
use rill_servers::Noida;

use crate::allocator::keep_freed_memory;
use crate::cli::{Args, BrokerArg, SourceKind};
use crate::memory_path::run_memory;
use crate::progress::progress_bar;
use crate::report::{
    json_entry, mode_name, print_checkpoints, print_header, print_row, print_summary, ratio_line,
    trigger_name, EpochFigures, Summary,
};
use crate::settings::Settings;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One run through Kafka, with a progress bar over the producer's schedule.
fn run_kafka(
    settings: &Settings,
    rate: f64,
    mode: Mode,
    run: usize,
) -> anyhow::Result<(Histogram<u64>, Option<rill::CheckpointLog>)> {
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
    Ok((run.histogram, run.checkpoints))
}

/// What one path's measurements produced.
#[derive(Default)]
struct PathOutcome {
    /// The closing table's rows: label and medians.
    table: Vec<(String, Summary)>,
    /// Each mode's medians at each rate, for the summary lines.
    modes: Vec<(Mode, Summary)>,
    entries: Vec<serde_json::Value>,
    curves: Vec<(String, Histogram<u64>)>,
}

/// The arguments of one path of a `--source both` run: the path's own defaults (rates, and
/// shorter memory runs so that the whole default run stays within a few minutes), and no
/// Kafka-only flags on the memory path.
fn path_args(args: &Args, path: SourceKind, both: bool) -> Args {
    let mut a = args.clone();
    a.source = path;
    if a.rates.is_empty() {
        a.rates = match path {
            SourceKind::Memory => vec![100_000.0],
            _ => vec![1_000.0, 5_000.0],
        };
    }
    if both && path == SourceKind::Memory {
        a.brokers = None;
        a.exactly_once = false;
        a.duration = a.duration.or(Some(Duration::from_secs(3)));
        a.warmup = a.warmup.or(Some(Duration::from_secs(1)));
    }
    a
}

/// The name of a path in the summary and the JSON.
fn path_name(settings: &Settings) -> String {
    match (&settings.source, &settings.brokers) {
        (SourceKind::Kafka, None) => "kafka (embedded)".into(),
        (SourceKind::Kafka, Some(_)) if settings.noida => "kafka (noida-db)".into(),
        (SourceKind::Kafka, Some(b)) => format!("kafka ({b})"),
        _ => "memory".into(),
    }
}

/// Measures one path at every rate and mode, printing its rows as they come.
fn measure_path(
    args: &Args,
    settings: &Settings,
    run_id: &mut usize,
) -> anyhow::Result<PathOutcome> {
    let memory = settings.source == SourceKind::Memory;
    let seconds = settings.duration.as_secs_f64();
    let path = path_name(settings);
    let mut out = PathOutcome::default();
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
            out.entries.push(json_entry(
                &path,
                "baseline",
                serde_json::Value::Null,
                &summary,
                &Summary::default(),
                1,
            ));
            out.table.push(("baseline (bare threads)".into(), summary));
            let h = ring_hop::measure(
                rate,
                settings.workers,
                settings.pin,
                settings.warmup,
                settings.duration,
                settings.ring_capacity,
            );
            let summary = Summary::from_histogram(rate, seconds, &h);
            print_row("ring hop", &summary, None);
            out.entries.push(json_entry(
                &path,
                "floor: ring hop",
                serde_json::Value::Null,
                &summary,
                &Summary::default(),
                1,
            ));
            out.table.push(("floor: ring hop".into(), summary));
        }
        if !args.no_baseline && !memory {
            let h = kafka_floor::measure(settings, rate).context("measuring the Kafka floor")?;
            let summary = Summary::from_histogram(rate, seconds, &h);
            print_row("kafka floor", &summary, None);
            out.entries.push(json_entry(
                &path,
                KAFKA_FLOOR,
                serde_json::Value::Null,
                &summary,
                &Summary::default(),
                1,
            ));
            out.table.push((KAFKA_FLOOR.into(), summary));
        }
        for &mode in &settings.modes {
            println!("mode: {}, {rate} rec/s", mode_name(mode));
            let mut runs = Vec::with_capacity(settings.runs);
            let mut merged: Option<Histogram<u64>> = None;
            let mut logs = Vec::new();
            for run in 1..=settings.runs {
                *run_id += 1;
                let (histogram, log) = if memory {
                    run_memory(settings, rate, mode)?
                } else {
                    run_kafka(settings, rate, mode, *run_id)?
                };
                let summary = Summary::from_histogram(rate, seconds, &histogram);
                print_row(&format!("run {run}"), &summary, None);
                runs.push(summary);
                logs.extend(log);
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
                out.curves
                    .push((format!("{path}: {}, {rate} rec/s", mode_name(mode)), m));
            }
            let mut entry = json_entry(
                &path,
                name,
                trigger_name(mode),
                &median,
                &spread,
                runs.len(),
            );
            let logs: Vec<&rill::CheckpointLog> = logs.iter().collect();
            if let Some(epochs) = EpochFigures::of(&logs) {
                // Over every run's epochs together.
                entry["epochs"] = epochs.json(settings.checkpoint_interval.is_some());
            }
            out.entries.push(entry);
            out.table.push((mode_name(mode), median.clone()));
            out.modes.push((mode, median));
            println!();
        }
    }
    Ok(out)
}

/// The Kafka path's floor row: its name in the tables and the JSON's `mode`.
const KAFKA_FLOOR: &str = "floor: kafka relay";

fn main() -> anyhow::Result<()> {
    keep_freed_memory()?;
    let args = Args::parse();
    if args.rates.iter().any(|r| !r.is_finite() || *r <= 0.0) {
        bail!("--rates must be positive numbers");
    }
    let both = args.source == SourceKind::Both;
    let paths: Vec<SourceKind> = match args.source {
        SourceKind::Both => vec![SourceKind::Memory, SourceKind::Kafka],
        one => vec![one],
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("latency-lab: per-record latency, scheduled emission -> result read, open loop");
    // The separate broker process lives as long as the lab: every Kafka run uses it.
    let noida = match (args.broker, args.source) {
        (BrokerArg::Noida, SourceKind::Memory) => bail!("--broker noida needs the Kafka path"),
        (BrokerArg::Noida, _) => {
            eprintln!("starting noida-db (installed into target/tools/ on first use)...");
            let broker = Noida::start().context("starting noida-db")?;
            eprintln!("noida-db listens at {}", broker.bootstrap());
            Some(broker)
        }
        (BrokerArg::Embedded, _) => None,
    };
    let mut args = args;
    if let Some(broker) = &noida {
        args.brokers = Some(broker.bootstrap().to_string());
    }
    let mut measured: Vec<(Args, Settings, PathOutcome)> = Vec::new();
    let mut run_id = 0;
    for path in paths {
        let args = path_args(&args, path, both);
        let settings = Settings::resolve(&args)?;
        println!();
        println!("== path: {}", path_name(&settings));
        println!("{}", settings.describe(cores));
        println!();
        print_header();
        let outcome = measure_path(&args, &settings, &mut run_id)?;
        measured.push((args, settings, outcome));
    }
    for (_, settings, outcome) in &measured {
        println!(
            "summary, {}: median of {} run(s) per row",
            path_name(settings),
            settings.runs
        );
        print_summary(&outcome.table);
        println!();
    }
    println!("continuous against micro-batch, per path (micro-batch / continuous in brackets):");
    for (args, settings, outcome) in &measured {
        for &rate in &args.rates {
            let at_rate: Vec<(Mode, Summary)> = outcome
                .modes
                .iter()
                .filter(|(_, s)| s.rate == rate)
                .cloned()
                .collect();
            println!("  {}", ratio_line(&path_name(settings), rate, &at_rate));
        }
    }
    println!("spread = max - min over the runs");
    let curves: Vec<(String, Histogram<u64>)> = measured
        .iter()
        .flat_map(|(_, _, o)| o.curves.iter().cloned())
        .collect();
    let first = &measured[0].1;
    if let Some(path) = &args.plot {
        let title = format!(
            "latency-lab: {}, {} workers, idle {}, pacing {}",
            measured
                .iter()
                .map(|(_, s, _)| path_name(s))
                .collect::<Vec<_>>()
                .join(" and "),
            first.workers,
            first.idle.strategy(),
            first.pacing,
        );
        std::fs::write(path, plot::svg(&title, &curves))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("chart written to {}", path.display());
    }
    if let Some(path) = &args.json {
        let source_name = |settings: &Settings| match (&settings.source, &settings.brokers) {
            (SourceKind::Kafka, None) => "embedded-kafka",
            (SourceKind::Kafka, Some(_)) if settings.noida => "noida-kafka",
            (SourceKind::Kafka, Some(_)) => "kafka",
            _ => "memory",
        };
        let doc = serde_json::json!({
            "tool": "latency-lab",
            "source": if both { "both" } else { source_name(first) },
            "settings": first.json(cores),
            "paths": measured
                .iter()
                .map(|(_, s, _)| serde_json::json!({
                    "path": path_name(s),
                    "source": source_name(s),
                    "settings": s.json(cores),
                }))
                .collect::<Vec<_>>(),
            "modes": measured
                .iter()
                .flat_map(|(_, _, o)| o.entries.iter().cloned())
                .collect::<Vec<_>>(),
        });
        let text = serde_json::to_string_pretty(&doc).context("encoding the JSON report")?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
        println!("figures written to {}", path.display());
    }
    if measured
        .iter()
        .any(|(a, s, _)| !a.no_baseline && s.source == SourceKind::Kafka)
    {
        println!(
            "{KAFKA_FLOOR} = the same schedule through the same two Kafka hops on the same broker with bare librdkafka clients (producer -> topic -> relay thread -> topic -> reader), no engine: the floor of the Kafka path"
        );
    }
    if let Some((_, settings, _)) = measured
        .iter()
        .find(|(a, s, _)| !a.no_baseline && s.source == SourceKind::Memory)
    {
        println!(
            "baseline = the same open-loop schedule on {} bare spinning threads with no engine: the machine's own floor",
            settings.workers
        );
        println!(
            "floor: ring hop = the same schedule on {0} bare threads that send each record through the pipeline's {0} x {0} mesh of rtrb rings: the floor of a one-exchange pipeline",
            settings.workers
        );
    }
    Ok(())
}
