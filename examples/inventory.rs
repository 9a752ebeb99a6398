//! Per-key state pushed to a key-value store (the seed's third pattern): read `stock-changes`,
//! keep each product's running stock, and upsert it into Redis for services to read.
//!
//! ```text
//! cargo run --release --example inventory -- --brokers HOST:PORT --input stock-changes \
//!     --redis redis://HOST:PORT [--checkpoint-dir DIR]        # until SIGTERM / Ctrl-C
//! ```
//!
//! Input values are JSON `{"product_id": "p1", "delta": -2, "ts": <ms since epoch>}`. The
//! Redis hash `stock:{product_id}` gets field `qty`, the running sum of the deltas, and
//! `updated_ts`, the largest `ts` seen. Within a flush only a product's latest stock is
//! written. Values that are not such JSON go to `--dead-letter`.
//!
//! With `--checkpoint-dir` the sums and the input offsets are checkpointed; a restart, even
//! after SIGKILL, replays from the checkpoint and writes the same totals again, so the hashes
//! converge to the values of one uninterrupted run (the upserts are idempotent).

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use clap::Parser;
use rill::connectors::kafka::{KafkaRecord, KafkaSink, KafkaSource};
use rill::connectors::redis::{RedisSink, RedisUpsert};
use rill::prelude::*;
use serde::Deserialize;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A stock change as it arrives.
#[derive(Debug, Clone, Deserialize)]
struct StockChange {
    product_id: String,
    delta: i64,
    ts: i64,
}

#[derive(Debug, Parser)]
#[command(
    name = "inventory",
    about = "Running stock per product, upserted into Redis"
)]
struct Args {
    /// Kafka bootstrap servers.
    #[arg(long)]
    brokers: String,
    /// Input topic of stock-change JSON.
    #[arg(long, default_value = "stock-changes")]
    input: String,
    /// The Redis to write to, `redis://HOST:PORT[/DB]`.
    #[arg(long)]
    redis: String,
    /// Topic for values that are not stock-change JSON.
    #[arg(long, default_value = "stock-changes-dlq")]
    dead_letter: String,
    /// Consumer group.
    #[arg(long, default_value = "rill-inventory")]
    group: String,
    /// Worker threads (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    /// Checkpoint the sums and the input offsets into DIR, and restore from it at start.
    #[arg(long, value_name = "DIR")]
    checkpoint_dir: Option<std::path::PathBuf>,
    /// Time between checkpoints.
    #[arg(long, default_value = "1s", value_parser = support::parse_duration)]
    checkpoint_interval: Duration,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let job = Job::new("inventory");
    job.dead_letter(KafkaSink::<DeadLetter>::new(&args.brokers).topic(args.dead_letter.clone()));
    job.source(KafkaSource::new(&args.brokers, args.group.clone()).topics([args.input.clone()]))
        .decode(|r: &KafkaRecord| r.value_json::<StockChange>())
        .key_by(|c: &StockChange| c.product_id.clone())
        .aggregate(
            || (0i64, i64::MIN),
            |(qty, updated): &mut (i64, i64), c: StockChange| {
                *qty += c.delta;
                *updated = (*updated).max(c.ts);
            },
        )
        .sink(RedisSink::new(
            args.redis.clone(),
            |(product, (qty, updated)): (String, (i64, i64))| {
                RedisUpsert::hset(
                    format!("stock:{product}"),
                    [
                        ("qty", qty.to_string()),
                        ("updated_ts", updated.to_string()),
                    ],
                )
            },
        ));
    let config = support::config(
        args.workers,
        args.checkpoint_dir.as_deref(),
        args.checkpoint_interval,
    );
    let handle = job.run(config)?;
    eprintln!(
        "stock of `{}` per product into {} (hashes stock:{{product_id}}); SIGTERM or Ctrl-C stops",
        args.input, args.redis
    );
    support::run_until_signal(handle)
}
