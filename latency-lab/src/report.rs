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

/// One line about a run's epochs: checkpoints (how many, how long, how big, and where the
/// slowest spent its time), or, for a micro-batch run without a checkpoint store, its batches.
pub(crate) fn print_checkpoints(log: &CheckpointLog, stored: bool) {
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
    // Which step the slowest one spent its time in: the graph, the disk or the sink's system.
    let slowest = done
        .iter()
        .max_by_key(|c| c.duration)
        .map(|c| {
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            format!(
                "; the slowest: barriers {:.1} ms, writes {:.1} ms, sink commit {:.1} ms",
                ms(c.barrier_time),
                ms(c.write_time),
                ms(c.commit_time)
            )
        })
        .unwrap_or_default();
    let align = done.iter().map(|c| c.alignment).max().unwrap_or_default();
    // The log keeps the newest 1,000; epochs count from the restored one.
    let count = done[done.len() - 1].epoch - log.restored_from.unwrap_or(0);
    let over = if count as usize > done.len() {
        format!(" (figures over the last {})", done.len())
    } else {
        String::new()
    };
    let size = if stored {
        // Full and incremental checkpoints apart: what each kind writes, at the median.
        let median_bytes = |full: bool| {
            let mut b: Vec<u64> = done
                .iter()
                .filter(|c| c.full == full && !c.last)
                .map(|c| c.bytes)
                .collect();
            b.sort_unstable();
            b.get(b.len() / 2).map(|m| (*m, b.len()))
        };
        let kinds: Vec<String> = [(true, "full"), (false, "incremental")]
            .into_iter()
            .filter_map(|(full, name)| {
                median_bytes(full).map(|(m, n)| format!("{n} {name} median {m} bytes"))
            })
            .collect();
        format!(", {}; write time median {:.1} ms", kinds.join(", "), {
            let mut w: Vec<Duration> = done.iter().map(|c| c.write_time).collect();
            w.sort();
            w[w.len() / 2].as_secs_f64() * 1e3
        })
    } else {
        String::new()
    };
    println!(
        "      {what}: {count} completed{over}, duration median {:.1} ms max {:.1} ms (start to completion){size}, longest alignment {:.2} ms{slowest}",
        median.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        align.as_secs_f64() * 1e3,
    );
}
