//! Relay with enrichment: read `client-event`, add a session id per user (a new session after
//! 30 minutes without events), write to `client-event-sessionized`.
//!
//! ```text
//! cargo run --release --example relay -- --brokers HOST:PORT     # until SIGTERM / Ctrl-C
//! cargo run --release --example relay                            # demo on an embedded Kafka
//! ```
//!
//! Input values are JSON `{"user": "u1", "ts": <ms since epoch>, "event": "click"}`; the output
//! value is the same object with `"session_id": "<user>-<ms of the session's first event>"`,
//! keyed by user. Sessions follow the order events arrive in per user (Kafka keeps it per
//! partition); event-time sessions with watermarks come with the event-time work.

#[path = "support/mod.rs"]
mod support;

use clap::Parser;
use rill::connectors::kafka::{KafkaRecord, KafkaSink, KafkaSource};
use rill::prelude::*;
use serde::{Deserialize, Serialize};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Inactivity that closes a session: 30 minutes.
const SESSION_GAP_MS: i64 = 30 * 60 * 1000;

/// A client event as it arrives.
#[derive(Debug, Clone, Deserialize, Serialize)]
struct ClientEvent {
    user: String,
    ts: i64,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

/// The event with its session.
#[derive(Debug, Serialize)]
struct SessionizedEvent {
    #[serde(flatten)]
    event: ClientEvent,
    session_id: String,
}

/// Per-user state: when the current session started, when it was last active, and the event
/// that updated it last.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Session {
    started: i64,
    last: i64,
    event: Option<ClientEvent>,
}

#[derive(Debug, Parser)]
#[command(name = "relay", about = "Sessionize client events")]
struct Args {
    /// Kafka bootstrap servers; without it, a demo on an embedded Kafka.
    #[arg(long)]
    brokers: Option<String>,
    /// Input topic.
    #[arg(long, default_value = "client-event")]
    input: String,
    /// Output topic.
    #[arg(long, default_value = "client-event-sessionized")]
    output: String,
}

/// The relay: decode, key by user, track sessions, encode.
fn job(brokers: &str, source: KafkaSource, output: &str) -> Job {
    let job = Job::new("relay");
    job.source(source)
        .try_map(|r: KafkaRecord| r.value_json::<ClientEvent>())
        .key_by(|e: &ClientEvent| e.user.clone())
        .aggregate(Session::default, |s: &mut Session, e: ClientEvent| {
            if s.event.is_none() || e.ts - s.last > SESSION_GAP_MS {
                s.started = e.ts;
            }
            s.last = s.last.max(e.ts);
            s.event = Some(e);
        })
        .try_map(
            |(user, s): (String, Session)| -> Result<(String, String), rill::BoxError> {
                let event = s.event.ok_or("session without an event")?;
                let out = SessionizedEvent {
                    session_id: format!("{user}-{}", s.started),
                    event,
                };
                Ok((user, serde_json::to_string(&out)?))
            },
        )
        .sink(KafkaSink::new(brokers).topic(output));
    job
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(brokers) = &args.brokers {
        let source = KafkaSource::new(brokers, "rill-relay").topics([args.input.clone()]);
        return support::run_until_signal(
            job(brokers, source, &args.output).run(Config::default())?,
        );
    }
    eprintln!("no --brokers: sessionizing demo events on an embedded Kafka");
    let minute = 60_000;
    let events: Vec<String> = [("u1", 0), ("u2", 5), ("u1", 10), ("u1", 45), ("u2", 50)]
        .iter()
        .map(|(user, at)| {
            format!(
                r#"{{"user":"{user}","ts":{},"event":"click"}}"#,
                at * minute
            )
        })
        .collect();
    let out = support::embedded_demo(&[(args.input.as_str(), events)], &args.output, |b| {
        job(
            b,
            support::bounded(b, "rill-relay", &args.input),
            &args.output,
        )
    })?;
    for (_, value) in out {
        println!("{value}");
    }
    Ok(())
}
