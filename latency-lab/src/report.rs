//! Percentile summaries and the terminal table.

use std::time::Duration;

use hdrhistogram::Histogram;
use rill::prelude::*;

/// The figures of one run (latencies in nanoseconds).
#[derive(Debug, Clone, Default)]
pub(crate) struct Summary {
    pub rate: f64,
    pub achieved: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub p9999: u64,
    pub max: u64,
    pub samples: u64,
}

impl Summary {
    /// Summarizes a run at target `rate` whose measured window lasted `seconds`.
    pub(crate) fn from_histogram(rate: f64, seconds: f64, h: &Histogram<u64>) -> Self {
        Self {
            rate,
            achieved: h.len() as f64 / seconds,
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            p9999: h.value_at_quantile(0.9999),
            max: h.max(),
            samples: h.len(),
        }
    }

    /// The median of every field over the runs, and the spread (max - min) of every field.
    pub(crate) fn median(runs: &[Summary]) -> (Summary, Summary) {
        fn stat<T: Copy + PartialOrd + std::ops::Sub<Output = T>>(
            runs: &[Summary],
            get: impl Fn(&Summary) -> T,
        ) -> (T, T) {
            let mut v: Vec<T> = runs.iter().map(get).collect();
            v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
            (v[v.len() / 2], v[v.len() - 1] - v[0])
        }
        let (achieved, d_achieved) = stat(runs, |s| s.achieved);
        let (p50, d50) = stat(runs, |s| s.p50);
        let (p90, d90) = stat(runs, |s| s.p90);
        let (p99, d99) = stat(runs, |s| s.p99);
        let (p999, d999) = stat(runs, |s| s.p999);
        let (p9999, d9999) = stat(runs, |s| s.p9999);
        let (max, dmax) = stat(runs, |s| s.max);
        let (samples, dsamples) = stat(runs, |s| s.samples);
        let rate = runs.first().map_or(0.0, |s| s.rate);
        (
            Summary {
                rate,
                achieved,
                p50,
                p90,
                p99,
                p999,
                p9999,
                max,
                samples,
            },
            Summary {
                rate: 0.0,
                achieved: d_achieved,
                p50: d50,
                p90: d90,
                p99: d99,
                p999: d999,
                p9999: d9999,
                max: dmax,
                samples: dsamples,
            },
        )
    }
}

fn us(nanos: u64) -> String {
    format!("{:.1}", nanos as f64 / 1000.0)
}

/// The column heads, over a label column of `width` characters headed `label`.
fn header(width: usize, label: &str) -> String {
    format!(
        "{:<width$} {:>8} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>9}",
        label,
        "rate/s",
        "achieved/s",
        "p50 us",
        "p90 us",
        "p99 us",
        "p99.9 us",
        "p99.99 us",
        "max us",
        "samples"
    )
}

pub(crate) fn print_header() {
    println!("{}", header(8, ""));
}

/// One table row: a label of `width` characters, then the figures.
fn row(width: usize, label: &str, rate: &str, s: &Summary) -> String {
    format!(
        "{:<width$} {:>8} {:>10.0} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>9}",
        label,
        rate,
        s.achieved,
        us(s.p50),
        us(s.p90),
        us(s.p99),
        us(s.p999),
        us(s.p9999),
        us(s.max),
        s.samples
    )
}

pub(crate) fn print_row(label: &str, s: &Summary, spread: Option<&Summary>) {
    println!("{}", row(8, label, &format!("{:.0}", s.rate), s));
    if let Some(d) = spread {
        println!("{}", row(8, "spread", "", d));
    }
}

/// The closing table: one row per mode and rate, the medians over the runs.
pub(crate) fn print_summary(rows: &[(String, Summary)]) {
    let width = rows.iter().map(|(m, _)| m.len()).max().unwrap_or(4).max(4);
    println!("{}", header(width, "mode"));
    for (mode, s) in rows {
        println!("{}", row(width, mode, &format!("{:.0}", s.rate), s));
    }
}

/// The trigger of a mode, as the JSON names it.
pub(crate) fn trigger_name(mode: Mode) -> serde_json::Value {
    match mode {
        Mode::Continuous => serde_json::Value::Null,
        Mode::MicroBatch(Trigger::AsFastAsPossible) => "as_fast_as_possible".into(),
        Mode::MicroBatch(Trigger::AvailableNow) => "available_now".into(),
        Mode::MicroBatch(Trigger::ProcessingTime(d)) => {
            format!("processing_time_{}ms", d.as_millis()).into()
        }
    }
}

/// A latency for the summary line: microseconds below 10 ms, milliseconds above.
fn readable(nanos: u64) -> String {
    if nanos >= 10_000_000 {
        format!("{:.1} ms", nanos as f64 / 1e6)
    } else {
        format!("{:.1} us", nanos as f64 / 1e3)
    }
}

/// One path's summary at one rate: continuous p50 / p99, then each micro-batch trigger's,
/// with the ratio to continuous in brackets.
pub(crate) fn ratio_line(path: &str, rate: f64, modes: &[(Mode, Summary)]) -> String {
    let continuous = modes
        .iter()
        .find(|(m, _)| *m == Mode::Continuous)
        .map(|(_, s)| s);
    let mut line = format!("{path}, {rate:.0} rec/s:");
    if let Some(c) = continuous {
        line.push_str(&format!(
            " continuous p50 {} / p99 {}",
            readable(c.p50),
            readable(c.p99)
        ));
    }
    for (mode, s) in modes.iter().filter(|(m, _)| *m != Mode::Continuous) {
        let name = match mode {
            Mode::MicroBatch(Trigger::ProcessingTime(d)) => format!("{} ms", d.as_millis()),
            Mode::MicroBatch(Trigger::AvailableNow) => "available-now".into(),
            _ => "asap".into(),
        };
        let ratio = |x: u64, y: u64| match continuous {
            Some(_) if y > 0 && x >= 100 * y => format!(" ({:.0}x)", x as f64 / y as f64),
            Some(_) if y > 0 => format!(" ({:.1}x)", x as f64 / y as f64),
            _ => String::new(),
        };
        let (c50, c99) = continuous.map_or((0, 0), |c| (c.p50, c.p99));
        line.push_str(&format!(
            "; micro-batch {name} p50 {}{} / p99 {}{}",
            readable(s.p50),
            ratio(s.p50, c50),
            readable(s.p99),
            ratio(s.p99, c99)
        ));
    }
    line
}

/// One JSON entry: the median figures of a mode at a rate, in microseconds.
pub(crate) fn json_entry(
    path: &str,
    mode: &str,
    trigger: serde_json::Value,
    median: &Summary,
    spread: &Summary,
    runs: usize,
) -> serde_json::Value {
    let us = |ns: u64| ns as f64 / 1e3;
    serde_json::json!({
        "path": path,
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
pub(crate) fn mode_name(mode: Mode) -> String {
    match mode {
        Mode::Continuous => "continuous".into(),
        Mode::MicroBatch(Trigger::AsFastAsPossible) => "micro-batch, as fast as possible".into(),
        Mode::MicroBatch(Trigger::ProcessingTime(d)) => {
            format!("micro-batch, trigger every {} ms", d.as_millis())
        }
        Mode::MicroBatch(Trigger::AvailableNow) => "micro-batch, available now".into(),
    }
}

/// What the completed epochs of one run, or of several runs together, add up to.
pub(crate) struct EpochFigures {
    /// Epochs completed (counted from each run's restored epoch).
    pub completed: u64,
    /// Epochs the figures are over: each run's log keeps its newest 1,000.
    pub sampled: usize,
    pub median: Duration,
    /// The slowest epoch's duration.
    pub max: Duration,
    pub longest_alignment: Duration,
    pub write_median: Duration,
    /// Median bytes and count of the full checkpoints, then of the incremental ones (a
    /// stopping job's final checkpoint left out).
    pub full: Option<(u64, usize)>,
    pub incremental: Option<(u64, usize)>,
    /// Where the slowest epoch's time went.
    pub slowest: EpochSteps,
}

/// Where one epoch's time went: the graph, the disk, or the sink's system.
pub(crate) struct EpochSteps {
    pub barriers: Duration,
    pub writes: Duration,
    pub commit: Duration,
}

impl EpochFigures {
    /// The figures of `logs` together; `None` when no epoch completed.
    pub(crate) fn of(logs: &[&CheckpointLog]) -> Option<Self> {
        let done: Vec<&rill::CheckpointStats> = logs.iter().flat_map(|l| &l.completed).collect();
        let completed = logs
            .iter()
            .filter_map(|l| {
                l.completed
                    .last()
                    .map(|c| c.epoch - l.restored_from.unwrap_or(0))
            })
            .sum();
        let median_of = |mut v: Vec<Duration>| {
            v.sort();
            v.get(v.len() / 2).copied().unwrap_or_default()
        };
        let median_bytes = |full: bool| {
            let mut b: Vec<u64> = done
                .iter()
                .filter(|c| c.full == full && !c.last)
                .map(|c| c.bytes)
                .collect();
            b.sort_unstable();
            b.get(b.len() / 2).map(|m| (*m, b.len()))
        };
        let slowest = done.iter().max_by_key(|c| c.duration)?;
        Some(Self {
            completed,
            sampled: done.len(),
            median: median_of(done.iter().map(|c| c.duration).collect()),
            max: slowest.duration,
            longest_alignment: done.iter().map(|c| c.alignment).max().unwrap_or_default(),
            write_median: median_of(done.iter().map(|c| c.write_time).collect()),
            full: median_bytes(true),
            incremental: median_bytes(false),
            slowest: EpochSteps {
                barriers: slowest.barrier_time,
                writes: slowest.write_time,
                commit: slowest.commit_time,
            },
        })
    }

    /// The figures in the `--json` report (durations in milliseconds); `stored` says whether
    /// the epochs were checkpoints or, without a checkpoint store, micro-batches.
    pub(crate) fn json(&self, stored: bool) -> serde_json::Value {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let mut figures = serde_json::json!({
            "kind": if stored { "checkpoints" } else { "batches" },
            "completed": self.completed,
            "duration_median_ms": ms(self.median),
            "duration_max_ms": ms(self.max),
            "longest_alignment_ms": ms(self.longest_alignment),
            "slowest": {
                "duration_ms": ms(self.max),
                "barriers_ms": ms(self.slowest.barriers),
                "writes_ms": ms(self.slowest.writes),
                "sink_commit_ms": ms(self.slowest.commit),
            },
        });
        if stored {
            figures["write_time_median_ms"] = ms(self.write_median).into();
            for (kind, size) in [("full", self.full), ("incremental", self.incremental)] {
                if let Some((median, count)) = size {
                    figures[kind] = serde_json::json!({ "count": count, "median_bytes": median });
                }
            }
        }
        figures
    }
}

/// One line about a run's epochs: checkpoints (how many, how long, how big, and where the
/// slowest spent its time), or, for a micro-batch run without a checkpoint store, its batches.
pub(crate) fn print_checkpoints(log: &CheckpointLog, stored: bool) {
    let what = if stored { "checkpoints" } else { "batches" };
    let Some(f) = EpochFigures::of(&[log]) else {
        println!("      {what}: none completed");
        return;
    };
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let over = if f.completed as usize > f.sampled {
        format!(" (figures over the last {})", f.sampled)
    } else {
        String::new()
    };
    let size = if stored {
        // Full and incremental checkpoints apart: what each kind writes, at the median.
        let kinds: Vec<String> = [("full", f.full), ("incremental", f.incremental)]
            .into_iter()
            .filter_map(|(name, size)| size.map(|(m, n)| format!("{n} {name} median {m} bytes")))
            .collect();
        format!(
            ", {}; write time median {:.1} ms",
            kinds.join(", "),
            ms(f.write_median)
        )
    } else {
        String::new()
    };
    // Which step the slowest one spent its time in: the graph, the disk or the sink's system.
    let EpochSteps {
        barriers,
        writes,
        commit,
    } = f.slowest;
    println!(
        "      {what}: {} completed{over}, duration median {:.1} ms max {:.1} ms (start to completion){size}, longest alignment {:.2} ms; the slowest: barriers {:.1} ms, writes {:.1} ms, sink commit {:.1} ms",
        f.completed,
        ms(f.median),
        ms(f.max),
        ms(f.longest_alignment),
        ms(barriers),
        ms(writes),
        ms(commit),
    );
}
