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
//!   [`ring_hop`]: the floor with the pipeline's ring mesh.
//! - [`report`]: the table, the JSON entries; [`plot`]: the SVG chart.
//!
//! ```text
//! cargo run --release -p latency-lab                       # Kafka (embedded), both modes
//! cargo run --release -p latency-lab -- --source memory    # the engine alone, no Kafka
//! ```

mod allocator;
mod baseline;
mod cli;
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

use crate::allocator::keep_freed_memory;
use crate::cli::{Args, SourceKind};
use crate::memory_path::run_memory;
use crate::progress::progress_bar;
use crate::report::{
    json_entry, mode_name, print_checkpoints, print_header, print_row, print_summary, trigger_name,
    Summary,
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
            entries.push(json_entry(
                "floor: ring hop",
                serde_json::Value::Null,
                &summary,
                &Summary::default(),
                1,
            ));
            table.push(("floor: ring hop".into(), summary));
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
        println!(
            "floor: ring hop = the same schedule on {0} bare threads that send each record through the pipeline's {0} x {0} mesh of rtrb rings: the floor of a one-exchange pipeline",
            settings.workers
        );
    }
    Ok(())
}
