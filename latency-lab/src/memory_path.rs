//! The in-memory path: the generator, the pipeline and a measuring sink in one process, so
//! the figures are the engine's own latency.

use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use rill::prelude::*;

use crate::cli::OperatorArg;
use crate::progress::progress_bar;
use crate::report::{mode_name, print_checkpoints};
use crate::settings::Settings;

/// One in-memory run: the pipeline at one rate, returning the latency histogram (ns).
pub(crate) fn run_memory(
    settings: &Settings,
    rate: f64,
    mode: Mode,
) -> anyhow::Result<Histogram<u64>> {
    let checkpoint_dir = settings.checkpoint_dir("memory");
    let warmup = settings.warmup;
    let total = warmup + settings.duration;
    let keys = settings.keys;
    // The generator's clock starts when the job starts: measure from start + warm-up.
    let start_delay = Duration::from_millis(20);

    let job = Job::new("latency-lab");
    let sink = LatencySink::new(|(_, (_, scheduled)): &(u64, (u64, u64))| *scheduled)
        .warm_up(start_delay + warmup);
    let keyed = job
        .source(
            Generator::new(rate, |seq| seq)
                .with_duration(total)
                .with_start_delay(start_delay)
                .with_pacing(settings.pacing),
        )
        // A little per-record work before the exchange: derive the key. Consecutive records
        // hit consecutive keys, so after `keys` records every key holds state.
        .map(move |g: Generated<u64>| (g.value % keys, g.scheduled_nanos));
    match settings.operator {
        OperatorArg::RunningCount => {
            keyed
                .key_by(|(key, _): &(u64, u64)| *key)
                // Running count per key; the output keeps the scheduled time of the record
                // that caused it, so the sink measures that record's latency.
                .aggregate(
                    || (0u64, 0u64),
                    |acc: &mut (u64, u64), (_, scheduled): (u64, u64)| {
                        acc.0 += 1;
                        acc.1 = scheduled;
                    },
                )
                .sink(sink.clone());
        }
        OperatorArg::WindowUpdate => {
            // Event time is the schedule (ms); the records are in order, so nothing is late.
            let event_time = |(_, scheduled): &(u64, u64)| (*scheduled / 1_000_000) as i64;
            let (results, late) = keyed
                .with_watermark(
                    event_time,
                    WatermarkStrategy::bounded_out_of_orderness(Duration::from_secs(1)),
                )
                .key_by(|(key, _): &(u64, u64)| *key)
                .window(Windows::tumbling(Duration::from_secs(1)), event_time)
                .output_mode(OutputMode::Update)
                .aggregate(
                    (0u64, 0u64),
                    |acc: &mut (u64, u64), (_, scheduled): &(u64, u64)| {
                        acc.0 += 1;
                        acc.1 = *scheduled;
                    },
                    |acc: &mut (u64, u64), other: (u64, u64)| {
                        acc.0 += other.0;
                        acc.1 = acc.1.max(other.1);
                    },
                );
            results
                .map(|r: WindowResult<u64, (u64, u64)>| (r.key, r.value))
                .sink(sink.clone());
            late.sink(DiscardSink::new());
        }
    }

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
