//! Union of two differently shaped topics: `client-event-web` and `client-event-app` (JSON),
//! converted to one common format and written to `client-event-unified`.
//!
//! ```text
//! cargo run --release --example union -- --brokers HOST:PORT     # until SIGTERM / Ctrl-C
//! cargo run --release --example union                            # demo on an embedded Kafka
//! ```
//!
//! Web events: `{"userId": "u1", "page": "/home", "timestamp": <ms>}`.
//! App events: `{"user": "u1", "screen": "Home", "ts_sec": <s>}`.
//! Output: `{"user": "u1", "source": "web" | "app", "view": "...", "ts": <ms>}`, keyed by user.

#[path = "support/mod.rs"]
mod support;

use clap::Parser;
use rill::connectors::kafka::{KafkaRecord, KafkaSink, KafkaSource};
use rill::prelude::*;
use serde::{Deserialize, Serialize};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WebEvent {
    user_id: String,
    page: String,
    timestamp: i64,
}

#[derive(Debug, Deserialize)]
struct AppEvent {
    user: String,
    screen: String,
    ts_sec: i64,
}

/// The common format.
#[derive(Debug, Serialize)]
struct ViewEvent {
    user: String,
    source: &'static str,
    view: String,
    ts: i64,
}

#[derive(Debug, Parser)]
#[command(name = "union", about = "Merge web and app events into one format")]
struct Args {
    /// Kafka bootstrap servers; without it, a demo on an embedded Kafka.
    #[arg(long)]
    brokers: Option<String>,
    /// Web events topic.
    #[arg(long, default_value = "client-event-web")]
    web: String,
    /// App events topic.
    #[arg(long, default_value = "client-event-app")]
    app: String,
    /// Output topic.
    #[arg(long, default_value = "client-event-unified")]
    output: String,
}

/// Decodes a record of either topic into the common format.
fn decode(r: &KafkaRecord, web_topic: &str) -> Result<ViewEvent, rill::BoxError> {
    Ok(if &*r.topic == web_topic {
        let e: WebEvent = r.value_json()?;
        ViewEvent {
            user: e.user_id,
            source: "web",
            view: e.page,
            ts: e.timestamp,
        }
    } else {
        let e: AppEvent = r.value_json()?;
        ViewEvent {
            user: e.user,
            source: "app",
            view: e.screen,
            ts: e.ts_sec * 1000,
        }
    })
}

/// The job: both topics as two streams, each converted, then unioned into one sink.
fn job(brokers: &str, web: KafkaSource, app: KafkaSource, web_topic: String, output: &str) -> Job {
    let job = Job::new("union");
    let web_topic_app = web_topic.clone();
    let web = job
        .source(web)
        .try_map(move |r: KafkaRecord| decode(&r, &web_topic));
    let app = job
        .source(app)
        .try_map(move |r: KafkaRecord| decode(&r, &web_topic_app));
    web.union(app)
        .try_map(|e: ViewEvent| -> Result<(String, String), rill::BoxError> {
            Ok((e.user.clone(), serde_json::to_string(&e)?))
        })
        .sink(KafkaSink::new(brokers).topic(output));
    job
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(brokers) = &args.brokers {
        let web = KafkaSource::new(brokers, "rill-union-web").topics([args.web.clone()]);
        let app = KafkaSource::new(brokers, "rill-union-app").topics([args.app.clone()]);
        let handle =
            job(brokers, web, app, args.web.clone(), &args.output).run(Config::default())?;
        return support::run_until_signal(handle);
    }
    eprintln!("no --brokers: merging demo events on an embedded Kafka");
    let web = vec![r#"{"userId":"u1","page":"/home","timestamp":1000}"#.to_string()];
    let app = vec![r#"{"user":"u2","screen":"Cart","ts_sec":2}"#.to_string()];
    let out = support::embedded_demo(
        &[(args.web.as_str(), web), (args.app.as_str(), app)],
        &args.output,
        |b| {
            let web = support::bounded(b, "rill-union-web", &args.web);
            let app = support::bounded(b, "rill-union-app", &args.app);
            job(b, web, app, args.web.clone(), &args.output)
        },
    )?;
    support::print_sorted_values(out);
    Ok(())
}
