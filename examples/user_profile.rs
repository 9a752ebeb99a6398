//! In-memory state with a TTL feeding Kafka (the seed's fourth pattern): per user, the last
//! `--last` events in time order, written to `user-profiles` on every event; a user with no
//! event for `--ttl` is forgotten.
//!
//! ```text
//! cargo run --release --example user_profile -- --brokers HOST:PORT --input client-event \
//!     --output user-profiles [--last 10] [--ttl 1h]      # until SIGTERM / Ctrl-C
//! cargo run --release --example user_profile             # demo on an embedded Kafka
//! ```
//!
//! Input values are JSON `{"user_id": "u1", "event": "click", "ts": <ms since epoch>}`. The
//! profile is a `map_groups_with_state` state per user (the events sorted by `ts`, the oldest
//! dropped beyond `--last`), under a processing-time state TTL; each event writes the user's
//! profile `{"user_id", "events": [{"event", "ts"}, ...]}`, keyed by user. Values that are
//! not such JSON go to `--dead-letter`. With `--checkpoint-dir` profiles and offsets survive a
//! restart.

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use clap::Parser;
use rill::connectors::kafka::{KafkaRecord, KafkaSink, KafkaSource};
use rill::prelude::*;
use serde::{Deserialize, Serialize};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A client event as it arrives.
#[derive(Debug, Clone, Deserialize, Serialize)]
struct ClientEvent {
    user_id: String,
    event: String,
    ts: i64,
}

/// One event of a profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Recent {
    event: String,
    ts: i64,
}

/// A user's profile, as written.
#[derive(Debug, Serialize)]
struct Profile<'a> {
    user_id: &'a str,
    events: &'a [Recent],
}

#[derive(Debug, Parser)]
#[command(
    name = "user_profile",
    about = "Each user's last events, with a TTL, to Kafka"
)]
struct Args {
    /// Kafka bootstrap servers; without it, a demo on an embedded Kafka.
    #[arg(long)]
    brokers: Option<String>,
    /// Input topic of client-event JSON.
    #[arg(long, default_value = "client-event")]
    input: String,
    /// Output topic: the user's profile after each event.
    #[arg(long, default_value = "user-profiles")]
    output: String,
    /// Events kept per user.
    #[arg(long, default_value_t = 10)]
    last: usize,
    /// A user with no event for this long is forgotten.
    #[arg(long, default_value = "1h", value_parser = support::parse_duration)]
    ttl: Duration,
    /// Topic for values that are not client-event JSON.
    #[arg(long, default_value = "client-event-dlq")]
    dead_letter: String,
    /// Consumer group.
    #[arg(long, default_value = "rill-user-profile")]
    group: String,
    #[command(flatten)]
    run: support::Running,
}

/// Adds `events` to `profile` in time order (a later event of equal time after the earlier
/// ones), keeping the newest `last`.
fn add_events(profile: &mut Vec<Recent>, events: impl Iterator<Item = ClientEvent>, last: usize) {
    for e in events {
        let at = profile.partition_point(|r| r.ts <= e.ts);
        profile.insert(
            at,
            Recent {
                event: e.event,
                ts: e.ts,
            },
        );
    }
    let excess = profile.len().saturating_sub(last);
    profile.drain(..excess);
}

/// The job: decode, per user the last events, encode.
fn job(brokers: &str, source: KafkaSource, args: &Args) -> Job {
    let job = Job::new("user_profile");
    job.dead_letter(KafkaSink::<DeadLetter>::new(brokers).topic(args.dead_letter.clone()));
    let last = args.last;
    job.source(source)
        .decode(|r: &KafkaRecord| r.value_json::<ClientEvent>())
        .key_by(|e: &ClientEvent| e.user_id.clone())
        .state_ttl(StateTtl::processing_time(args.ttl))
        .map_groups_with_state(
            move |user: &String,
                  events: Values<'_, ClientEvent>,
                  state: &mut GroupState<'_, Vec<Recent>>| {
                let mut profile = state.remove().unwrap_or_default();
                add_events(&mut profile, events, last);
                let value = serde_json::to_string(&Profile {
                    user_id: user,
                    events: &profile,
                });
                state.update(profile);
                (user.clone(), value)
            },
        )
        .try_map(|(user, value): (String, serde_json::Result<String>)| value.map(|v| (user, v)))
        .sink(args.run.output_sink(brokers, &args.output, &args.group));
    job
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = args.run.config();
    if let Some(brokers) = &args.brokers {
        let source = KafkaSource::new(brokers, args.group.clone()).topics([args.input.clone()]);
        let handle = job(brokers, source, &args).run(config)?;
        eprintln!(
            "profiles of `{}` (last {} events per user, forgotten after {:?}) into `{}`; \
             SIGTERM or Ctrl-C stops",
            args.input, args.last, args.ttl, args.output
        );
        return support::run_until_signal(handle);
    }
    eprintln!("no --brokers: profiles of demo events on an embedded Kafka (last 3 per user)");
    let args = Args { last: 3, ..args };
    let events: Vec<String> = [
        ("u1", "open", 1_000),
        ("u2", "open", 1_500),
        ("u1", "click", 3_000),
        ("u1", "scroll", 2_000), // out of order: placed before the click
        ("u1", "buy", 4_000),    // the fourth: the oldest is dropped
    ]
    .iter()
    .map(|(user, event, ts)| format!(r#"{{"user_id":"{user}","event":"{event}","ts":{ts}}}"#))
    .chain(["not json".to_string()])
    .collect();
    let out = support::embedded_demo(&[(args.input.as_str(), events)], &args.output, |b| {
        job(b, support::bounded(b, &args.group, &args.input), &args)
    })?;
    for (_, v) in out {
        println!("{v}");
    }
    Ok(())
}
