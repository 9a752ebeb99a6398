//! Percentile summaries and the terminal table.

use hdrhistogram::Histogram;

/// The figures of one run (latencies in nanoseconds).
#[derive(Debug, Clone, Default)]
pub struct Summary {
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
    pub fn from_histogram(rate: f64, seconds: f64, h: &Histogram<u64>) -> Self {
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
    pub fn median(runs: &[Summary]) -> (Summary, Summary) {
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
        "{:<width$} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>9}",
        label, "rate/s", "achieved", "p50", "p90", "p99", "p99.9", "p99.99", "max", "samples"
    )
}

pub fn print_header() {
    println!("{}", header(8, ""));
}

/// One table row: a label of `width` characters, then the figures.
fn row(width: usize, label: &str, rate: &str, s: &Summary) -> String {
    format!(
        "{:<width$} {:>8} {:>9.0} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>9}",
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

pub fn print_row(label: &str, s: &Summary, spread: Option<&Summary>) {
    println!("{}", row(8, label, &format!("{:.0}", s.rate), s));
    if let Some(d) = spread {
        println!("{}", row(8, "spread", "", d));
    }
}

/// The closing table: one row per mode and rate, the medians over the runs.
pub fn print_summary(rows: &[(String, Summary)]) {
    let width = rows.iter().map(|(m, _)| m.len()).max().unwrap_or(4).max(4);
    println!("{}", header(width, "mode"));
    for (mode, s) in rows {
        println!("{}", row(width, mode, &format!("{:.0}", s.rate), s));
    }
}
