//! Clicks per ad per minute, by event time: read `clicks`, count each ad's clicks per tumbling
//! window, write one record per (ad, window) to `clicks-per-minute` once the window is final.
//!
//! ```text
//! cargo run --release --example ad_clicks -- --brokers HOST:PORT --input clicks \
//!     --output clicks-per-minute [--window 60s] [--delay 10s]     # until SIGTERM / Ctrl-C
//! cargo run --release --example ad_clicks                        # demo on an embedded Kafka
//! ```
//!
//! Input values are JSON `{"ad_id": "a1", "product_id": "p1", "ts": <ms since epoch>}` (other
//! fields are ignored); event time is `ts`, not the Kafka timestamp. The watermark trails the
//! newest `ts` of each partition by `--delay`; a window `[start, end)` is final once it passes
//! `end`, and then its count goes out as `{"ad_id", "window_start", "window_end", "count"}`
//! (epoch ms), keyed by ad. Clicks older than the watermark go, as they came, to `--late`;
//! values that are not such JSON go to `--dead-letter` with their provenance in headers.
//! With `--checkpoint-dir` open windows and offsets survive a restart; with `--exactly-once`
//! too, a restart after a crash writes no window twice (read with `read_committed`).

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use clap::Parser;
use rill::connectors::kafka::{KafkaRecord, KafkaSink, KafkaSource};
use rill::prelude::*;
use serde::{Deserialize, Serialize};

use support::Decoded;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A click as it arrives (what the count needs of it).
#[derive(Debug, Clone, Deserialize, Serialize)]
struct Click {
    ad_id: String,
    ts: i64,
}

/// One window's count.
#[derive(Debug, Serialize)]
struct WindowCount<'a> {
    ad_id: &'a str,
    window_start: i64,
    window_end: i64,
    count: u64,
}

#[derive(Debug, Parser)]
#[command(name = "ad_clicks", about = "Clicks per ad per event-time window")]
struct Args {
    /// Kafka bootstrap servers; without it, a demo on an embedded Kafka.
    #[arg(long)]
    brokers: Option<String>,
    /// Input topic of click JSON.
    #[arg(long, default_value = "clicks")]
    input: String,
    /// Output topic: one count per ad and window.
    #[arg(long, default_value = "clicks-per-minute")]
    output: String,
    /// Window length (tumbling), e.g. `60s`, `5m`.
    #[arg(long, default_value = "60s", value_parser = support::parse_duration)]
    window: Duration,
    /// How far behind a partition's newest click one may arrive and still count.
    #[arg(long, default_value = "10s", value_parser = support::parse_duration)]
    delay: Duration,
    /// A partition (or a worker without partitions) silent this long stops holding the
    /// watermark back.
    #[arg(long, default_value = "5s", value_parser = support::parse_duration)]
    idle_timeout: Duration,
    /// Topic for clicks that came after their window was final.
    #[arg(long, default_value = "clicks-late")]
    late: String,
    /// Topic for values that are not click JSON.
    #[arg(long, default_value = "clicks-dlq")]
    dead_letter: String,
    /// Consumer group.
    #[arg(long, default_value = "rill-ad-clicks")]
    group: String,
    #[command(flatten)]
    run: support::Running,
}

/// The job: decode, watermark per partition, count per ad and window, encode; late clicks and
/// bad records to their topics.
fn job(brokers: &str, source: KafkaSource, args: &Args) -> Job {
    let job = Job::new("ad_clicks");
    job.dead_letter(KafkaSink::<DeadLetter>::new(brokers).topic(args.dead_letter.clone()));
    let strategy =
        WatermarkStrategy::bounded_out_of_orderness(args.delay).idle_after(args.idle_timeout);
    let (counts, late) = job
        .source(source)
        .decode(|r: &KafkaRecord| Decoded::<Click>::from_record(r))
        .with_split_watermark(
            |c: &Decoded<Click>| c.event.ts,
            |c: &Decoded<Click>| c.partition as u64,
            strategy,
        )
        .key_by(|c: &Decoded<Click>| c.event.ad_id.clone())
        .window(Windows::tumbling(args.window), |c: &Decoded<Click>| {
            c.event.ts
        })
        .count();
    counts
        .try_map(
            |r: WindowResult<String, u64>| -> Result<(String, String), rill::BoxError> {
                let value = serde_json::to_string(&WindowCount {
                    ad_id: &r.key,
                    window_start: r.window.start,
                    window_end: r.window.end,
                    count: r.value,
                })?;
                Ok((r.key, value))
            },
        )
        .sink(args.run.output_sink(brokers, &args.output, &args.group));
    late.map(|(_, c): (String, Decoded<Click>)| c.raw)
        .sink(KafkaSink::<Vec<u8>>::new(brokers).topic(args.late.clone()));
    job
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(brokers) = &args.brokers {
        let source = KafkaSource::new(brokers, args.group.clone()).topics([args.input.clone()]);
        let handle = job(brokers, source, &args).run(args.run.config())?;
        eprintln!(
            "counting clicks of `{}` per ad and {:?} window into `{}`; SIGTERM or Ctrl-C stops",
            args.input, args.window, args.output
        );
        return support::run_until_signal(handle);
    }
    eprintln!("no --brokers: counting demo clicks on an embedded Kafka");
    let second = 1_000;
    let clicks: Vec<String> = [
        ("a1", 1),
        ("a2", 5),
        ("a1", 59),
        ("a1", 61),
        ("a2", 58), // behind the newest click, within the delay: still counted
        ("a1", 130),
    ]
    .iter()
    .map(|(ad, s)| {
        format!(
            r#"{{"ad_id":"{ad}","product_id":"p1","ts":{}}}"#,
            s * second
        )
    })
    .chain(["not json".to_string()])
    .collect();
    let out = support::embedded_demo(&[(args.input.as_str(), clicks)], &args.output, |b| {
        job(b, support::bounded(b, &args.group, &args.input), &args)
    })?;
    support::print_sorted_values(out);
    Ok(())
}
