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
) -> anyhow::Result<(Histogram<u64>, Option<CheckpointLog>)> {
    let checkpoint_dir = settings.checkpoint_dir("memory");
    let warmup = settings.warmup;
    let total = warmup + settings.duration;
    let keys = settings.keys;
    // The generator's clock starts when the job starts: measure from start + warm-up.
    let start_delay = Duration::from_millis(20);

    let job = Job::new("latency-lab");
    let mut tables = Vec::new();
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
        OperatorArg::UserProfile => {
            keyed
                .key_by(|(key, _): &(u64, u64)| *key)
                .state_ttl(StateTtl::processing_time(Duration::from_secs(3_600)))
                .map_groups_with_state(
                    |key: &u64,
                     records: Values<'_, (u64, u64)>,
                     last: &mut GroupState<'_, Vec<u64>>| {
                        let mut times = last.remove().unwrap_or_default();
                        let mut newest = 0;
                        for (_, scheduled) in records {
                            let at = times.partition_point(|t| *t <= scheduled);
                            times.insert(at, scheduled);
                            newest = newest.max(scheduled);
                        }
                        let excess = times.len().saturating_sub(10);
                        times.drain(..excess);
                        let n = times.len() as u64;
                        last.update(times);
                        (*key, (n, newest))
                    },
                )
                .sink(sink.clone());
        }
        OperatorArg::TableJoin => {
            let (rows, reload) = settings.table;
            let (table, path) = load_table(rows, reload)?;
            keyed
                .key_by(|(key, _): &(u64, u64)| *key)
                .into_stream()
                // A row spread over the whole table per record (a hash of the schedule):
                // lookups miss the cache as a large table's do.
                .map(move |(key, (_, scheduled)): (u64, (u64, u64))| {
                    (
                        key,
                        scheduled,
                        (scheduled.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) % rows,
                    )
                })
                .join_table(&table, |r: &(u64, u64, u64)| &r.2)
                .left()
                .map(
                    |((key, scheduled, _), row): ((u64, u64, u64), Option<(u64, u64)>)| {
                        (key, (row.map_or(0, |r| r.1), scheduled))
                    },
                )
                .sink(sink.clone());
            tables.push((table, path));
        }
    }

    let mut config = settings.job_config().with_mode(mode);
    if let (Some(dir), Some(every)) = (&checkpoint_dir, settings.checkpoint_interval) {
        config = config.with_checkpoints(settings.checkpoints(dir, every));
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
    let log = handle.checkpoints();
    if let Some(log) = &log {
        print_checkpoints(log, settings.checkpoint_interval.is_some());
    }
    for (table, path) in tables {
        let _ = std::fs::remove_file(path);
        let stats = table.stats();
        eprintln!(
            "table: {} rows, {} loads during the run, the last in {:.0?}; {} failed",
            stats.rows, stats.loads, stats.last_load, stats.failures
        );
    }
    if let Some(dir) = checkpoint_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok((sink.histogram(), log))
}

/// Row id -> (id, value).
type LabTable = Table<u64, (u64, u64)>;

/// The `--operator table-join` table: `rows` rows `[id, value]` written to a temporary
/// JSON-lines file, loaded, and reloaded every `reload` in the background.
fn load_table(rows: u64, reload: Duration) -> anyhow::Result<(LabTable, std::path::PathBuf)> {
    use std::io::Write;
    let path = std::env::temp_dir().join(format!("latency-lab-table-{}.jsonl", std::process::id()));
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
    for id in 0..rows {
        writeln!(file, "[{id},{}]", id * 3)?;
    }
    file.flush()?;
    let table = TableBuilder::new("latency-lab", TableSource::json_lines(&path))
        .refresh(Refresh::Every(reload))
        .load(|r: &(u64, u64)| r.0)?;
    let stats = table.stats();
    eprintln!(
        "table: {} rows loaded in {:.0?}",
        stats.rows, stats.last_load
    );
    Ok((table, path))
}
