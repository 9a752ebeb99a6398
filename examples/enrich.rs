//! Stream-static join with a refreshed table (the seed's product metadata, read by batch and
//! reloaded, joined with the event stream): read `product-event`, add each product's name and
//! price from a JSON-lines file, write to `enriched`.
//!
//! ```text
//! cargo run --release --example enrich -- --brokers HOST:PORT --input product-event \
//!     --products PATH --output enriched [--refresh 1s]   # until SIGTERM / Ctrl-C
//! cargo run --release --example enrich                    # demo on an embedded Kafka
//! ```
//!
//! Input values are JSON `{"product_id": "p1", "user_id": "u1", "ts": <ms>}` (other fields
//! are kept). PATH is a JSON-lines file (or a directory of them) of `{"product_id", "name",
//! "price"}`, loaded at start (a job whose table cannot be loaded does not start) and checked
//! every `--refresh` for changes, then re-read in the background and swapped in whole. The
//! output is the event plus `"name"` and `"price"` from the table version current when the
//! event was processed, `null` for a product the table does not have (a left join), keyed
//! by product. A reload that fails keeps the previous table and is logged. Values that are
//! not such JSON go to `--dead-letter`.

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use clap::Parser;
use rill::connectors::kafka::{KafkaRecord, KafkaSink, KafkaSource};
use rill::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A product event: its product, and every other field as it came.
#[derive(Debug, Clone, Deserialize, Serialize)]
struct ProductEvent {
    product_id: String,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

/// A row of the products table.
#[derive(Debug, Clone, Deserialize)]
struct Product {
    product_id: String,
    name: String,
    price: serde_json::Number,
}

#[derive(Debug, Parser)]
#[command(
    name = "enrich",
    about = "Product events joined with a refreshed product table"
)]
struct Args {
    /// Kafka bootstrap servers; without it, a demo on an embedded Kafka.
    #[arg(long)]
    brokers: Option<String>,
    /// Input topic of product-event JSON.
    #[arg(long, default_value = "product-event")]
    input: String,
    /// The products table: a JSON-lines file, or a directory of them.
    #[arg(long, value_name = "PATH")]
    products: Option<std::path::PathBuf>,
    /// Output topic: each event with its product's name and price.
    #[arg(long, default_value = "enriched")]
    output: String,
    /// How often the table is checked for changes.
    #[arg(long, default_value = "1s", value_parser = support::parse_duration)]
    refresh: Duration,
    /// Topic for values that are not product-event JSON.
    #[arg(long, default_value = "product-event-dlq")]
    dead_letter: String,
    /// Consumer group.
    #[arg(long, default_value = "rill-enrich")]
    group: String,
    #[command(flatten)]
    run: support::Running,
}

/// The event with the product's name and price (`null` without a product).
fn enriched(event: ProductEvent, product: Option<Product>) -> (String, Value) {
    let mut out = event.rest;
    out.insert("product_id".into(), Value::from(event.product_id.clone()));
    let (name, price) = match product {
        Some(p) => (Value::from(p.name), Value::from(p.price)),
        None => (Value::Null, Value::Null),
    };
    out.insert("name".into(), name);
    out.insert("price".into(), price);
    (event.product_id, Value::Object(out))
}

/// The job: decode, join with the table, encode.
fn job(brokers: &str, source: KafkaSource, products: &Table<String, Product>, args: &Args) -> Job {
    let job = Job::new("enrich");
    job.dead_letter(KafkaSink::<DeadLetter>::new(brokers).topic(args.dead_letter.clone()));
    job.source(source)
        .decode(|r: &KafkaRecord| r.value_json::<ProductEvent>())
        .join_table(products, |e: &ProductEvent| &e.product_id)
        .left()
        .map(|(e, p): (ProductEvent, Option<Product>)| enriched(e, p))
        .try_map(|(k, v): (String, Value)| serde_json::to_string(&v).map(|v| (k, v)))
        .sink(args.run.output_sink(brokers, &args.output, &args.group));
    job
}

fn load(path: &std::path::Path, refresh: Duration) -> anyhow::Result<Table<String, Product>> {
    Ok(TableBuilder::new("products", TableSource::json_lines(path))
        .refresh(Refresh::OnChange(refresh))
        .load(|p: &Product| p.product_id.clone())?)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = args.run.config();
    if let Some(brokers) = &args.brokers {
        let Some(path) = &args.products else {
            anyhow::bail!("--products PATH is required with --brokers");
        };
        let products = load(path, args.refresh)?;
        let source = KafkaSource::new(brokers, args.group.clone()).topics([args.input.clone()]);
        let handle = job(brokers, source, &products, &args).run(config)?;
        eprintln!(
            "enriching `{}` with {} products from {} (checked every {:?}) into `{}`; \
             SIGTERM or Ctrl-C stops",
            args.input,
            products.stats().rows,
            path.display(),
            args.refresh,
            args.output
        );
        support::run_until_signal(handle)?;
        let stats = products.stats();
        eprintln!(
            "products table: version {}, {} rows, {} loads, {} failed reloads",
            stats.version, stats.rows, stats.loads, stats.failures
        );
        return Ok(());
    }
    eprintln!("no --brokers: enriching demo events on an embedded Kafka");
    let dir = std::env::temp_dir().join(format!("rill-enrich-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("products.jsonl");
    std::fs::write(
        &path,
        concat!(
            r#"{"product_id":"p1","name":"kettle","price":25.5}"#,
            "\n",
            r#"{"product_id":"p2","name":"teapot","price":12}"#,
            "\n"
        ),
    )?;
    let products = load(&path, args.refresh)?;
    let events: Vec<String> = [
        ("p1", "u1", 1_000),
        ("p2", "u2", 2_000),
        ("p9", "u1", 3_000),
    ]
    .iter()
    .map(|(p, u, ts)| format!(r#"{{"product_id":"{p}","user_id":"{u}","ts":{ts}}}"#))
    .chain(["not json".to_string()])
    .collect();
    let out = support::embedded_demo(&[(args.input.as_str(), events)], &args.output, |b| {
        job(
            b,
            support::bounded(b, &args.group, &args.input),
            &products,
            &args,
        )
    })?;
    let _ = std::fs::remove_dir_all(&dir);
    support::print_sorted_values(out);
    Ok(())
}
