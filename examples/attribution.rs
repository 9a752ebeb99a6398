//! Attribution: join each ad impression with the clicks on the same ad and product that
//! followed it within five minutes (the seed's stream-stream join).
//!
//! ```text
//! cargo run --release --example attribution -- --brokers HOST:PORT --impressions impressions \
//!     --clicks clicks --output attributed --late late-events [--workers N]   # until SIGTERM
//! cargo run --release --example attribution                # demo on an embedded Kafka
//! ```
//!
//! Input values are JSON `{"ad_id": str, "product_id": str, "ts": <ms since epoch>}` on both
//! topics; event time is `ts`. Watermarks trail the newest `ts` of each partition by 10 s
//! (impressions) and 20 s (clicks), as in the seed. An impression and a click join when
//! `impression.ts <= click.ts <= impression.ts + 300000`; every matching pair goes to `--output`
//! as `{"ad_id", "product_id", "impression_ts", "click_ts"}`, keyed by `ad_id`. Records too
//! late to be joined go to `--late` with their original bytes; values that are not such JSON go
//! to `--dead-letter`. With `--checkpoint-dir` the join's buffers and the offsets survive a
//! restart; with `--exactly-once` too, a restart after a crash writes no pair twice.

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

/// An impression or a click as it arrives.
#[derive(Debug, Clone, Deserialize, Serialize)]
struct AdEvent {
    ad_id: String,
    product_id: String,
    ts: i64,
}

/// One attributed click.
#[derive(Debug, Serialize)]
struct Attributed<'a> {
    ad_id: &'a str,
    product_id: &'a str,
    impression_ts: i64,
    click_ts: i64,
}

/// How long after an impression a click is attributed to it.
const ATTRIBUTION_WINDOW: Duration = Duration::from_secs(300);

#[derive(Debug, Parser)]
#[command(
    name = "attribution",
    about = "Join impressions with the clicks that followed"
)]
struct Args {
    /// Kafka bootstrap servers; without it, a demo on an embedded Kafka.
    #[arg(long)]
    brokers: Option<String>,
    /// Impressions topic.
    #[arg(long, default_value = "impressions")]
    impressions: String,
    /// Clicks topic.
    #[arg(long, default_value = "clicks")]
    clicks: String,
    /// Output topic: one record per matching (impression, click).
    #[arg(long, default_value = "attributed")]
    output: String,
    /// Topic for records too late to be joined, as they came.
    #[arg(long, default_value = "late-events")]
    late: String,
    /// Topic for values that are not impression or click JSON.
    #[arg(long, default_value = "attributed-dlq")]
    dead_letter: String,
    /// A partition (or a worker without partitions) silent this long stops holding the
    /// watermark back.
    #[arg(long, default_value = "5s", value_parser = support::parse_duration)]
    idle_timeout: Duration,
    /// Consumer group prefix (`-impressions`, `-clicks`).
    #[arg(long, default_value = "rill-attribution")]
    group: String,
    #[command(flatten)]
    run: support::Running,
}

type Event = Decoded<AdEvent>;

/// One input: decoded, watermarked per partition by `delay`, keyed by (ad, product).
fn input(
    job: &Job,
    source: KafkaSource,
    delay: Duration,
    idle: Duration,
) -> KeyedStream<impl FlowBuilder<Out = ((String, String), Event)>> {
    let strategy = WatermarkStrategy::bounded_out_of_orderness(delay).idle_after(idle);
    job.source(source)
        .decode(|r: &KafkaRecord| Event::from_record(r))
        .with_split_watermark(
            |e: &Event| e.event.ts,
            |e: &Event| e.partition as u64,
            strategy,
        )
        .key_by(|e: &Event| (e.event.ad_id.clone(), e.event.product_id.clone()))
}

/// The job: both inputs, the interval join, the pairs encoded; late and bad records to their
/// topics.
fn job(brokers: &str, impressions: KafkaSource, clicks: KafkaSource, args: &Args) -> Job {
    let job = Job::new("attribution");
    job.dead_letter(KafkaSink::<DeadLetter>::new(brokers).topic(args.dead_letter.clone()));
    let idle = args.idle_timeout;
    let impressions = input(&job, impressions, Duration::from_secs(10), idle);
    let clicks = input(&job, clicks, Duration::from_secs(20), idle);
    let time = |e: &Event| e.event.ts;
    let (pairs, late) = impressions
        .interval_join(clicks, Interval::within(ATTRIBUTION_WINDOW), time, time)
        .inner();
    pairs
        .try_map(
            |j: Joined<(String, String), Event, Event>| -> Result<(String, String), rill::BoxError> {
                let (ad_id, product_id) = &j.key;
                let value = serde_json::to_string(&Attributed {
                    ad_id,
                    product_id,
                    impression_ts: j.left.event.ts,
                    click_ts: j.right.event.ts,
                })?;
                Ok((j.key.0, value))
            },
        )
        .sink(args.run.output_sink(brokers, &args.output, &args.group));
    late.map(
        |(_, side): ((String, String), JoinSide<Event, Event>)| match side {
            JoinSide::Left(e) | JoinSide::Right(e) => e.raw,
        },
    )
    .sink(KafkaSink::<Vec<u8>>::new(brokers).topic(args.late.clone()));
    job
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (impressions_group, clicks_group) = (
        format!("{}-impressions", args.group),
        format!("{}-clicks", args.group),
    );
    if let Some(brokers) = &args.brokers {
        let impressions =
            KafkaSource::new(brokers, impressions_group).topics([args.impressions.clone()]);
        let clicks = KafkaSource::new(brokers, clicks_group).topics([args.clicks.clone()]);
        let handle = job(brokers, impressions, clicks, &args).run(args.run.config())?;
        eprintln!(
            "attributing clicks of `{}` to impressions of `{}` into `{}`; SIGTERM or Ctrl-C stops",
            args.clicks, args.impressions, args.output
        );
        return support::run_until_signal(handle);
    }
    eprintln!("no --brokers: attributing demo clicks on an embedded Kafka");
    let event = |ad: &str, product: &str, s: i64| {
        format!(
            r#"{{"ad_id":"{ad}","product_id":"{product}","ts":{}}}"#,
            s * 1_000
        )
    };
    let impressions = vec![
        event("a1", "p1", 0),
        event("a1", "p2", 10),
        event("a2", "p1", 20),
    ];
    let clicks = vec![
        event("a1", "p1", 30),  // 30 s after its impression: attributed
        event("a1", "p1", 299), // still within five minutes
        event("a1", "p2", 400), // 390 s after: not attributed
        event("a2", "p1", 19),  // before the impression: not attributed
        "{not json".to_string(),
    ];
    let out = support::embedded_demo(
        &[
            (args.impressions.as_str(), impressions),
            (args.clicks.as_str(), clicks),
        ],
        &args.output,
        |b| {
            job(
                b,
                support::bounded(b, &impressions_group, &args.impressions),
                support::bounded(b, &clicks_group, &args.clicks),
                &args,
            )
        },
    )?;
    support::print_sorted_values(out);
    Ok(())
}
