//! User sessions by event time: read `client-event`, group each user's events into sessions
//! that end after `--gap` without an event, and write one record per session to `sessions`
//! once the watermark has passed its last event plus the gap.
//!
//! ```text
//! cargo run --release --example sessions -- --brokers HOST:PORT --input client-event \
//!     --output sessions [--gap 30m] [--delay 10s]        # until SIGTERM / Ctrl-C
//! cargo run --release --example sessions                 # demo on an embedded Kafka
//! ```
//!
//! Input values are JSON `{"user_id": "u1", "event": "click", "ts": <ms since epoch>}`;
//! event time is `ts`, and the watermark trails each partition's newest `ts` by `--delay`.
//! A session is a `flat_map_groups_with_state` state per user with an event-time timeout at
//! its last event plus the gap: when the watermark reaches it, the session goes out as
//! `{"user_id", "session_start", "session_end", "events"}` (first ts, last ts, number of
//! events), keyed by user. An event at or behind the watermark goes, as it came, to `--late`;
//! values that are not such JSON go to `--dead-letter`. With `--checkpoint-dir` open
//! sessions and offsets survive a restart (`--exactly-once`: no session written twice).

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

/// A client event as it arrives (what sessions need of it).
#[derive(Debug, Clone, Deserialize, Serialize)]
struct ClientEvent {
    user_id: String,
    ts: i64,
}

/// An open session: the state per user.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Session {
    session_start: i64,
    session_end: i64,
    events: u64,
}

/// A closed session, as written.
#[derive(Debug, Serialize)]
struct SessionRecord<'a> {
    user_id: &'a str,
    session_start: i64,
    session_end: i64,
    events: u64,
}

/// What the session function emits.
#[derive(Debug, Clone)]
enum Emitted {
    /// A closed session of a user.
    Closed(String, Session),
    /// An event at or behind the watermark: its session may be gone already.
    Late(Vec<u8>),
}

#[derive(Debug, Parser)]
#[command(name = "sessions", about = "User sessions closed by an event-time gap")]
struct Args {
    /// Kafka bootstrap servers; without it, a demo on an embedded Kafka.
    #[arg(long)]
    brokers: Option<String>,
    /// Input topic of client-event JSON.
    #[arg(long, default_value = "client-event")]
    input: String,
    /// Output topic: one record per closed session.
    #[arg(long, default_value = "sessions")]
    output: String,
    /// The inactivity that ends a session, e.g. `30m`.
    #[arg(long, default_value = "30m", value_parser = support::parse_duration)]
    gap: Duration,
    /// How far behind a partition's newest event one may arrive and still count.
    #[arg(long, default_value = "10s", value_parser = support::parse_duration)]
    delay: Duration,
    /// A partition silent this long stops holding the watermark back.
    #[arg(long, default_value = "5s", value_parser = support::parse_duration)]
    idle_timeout: Duration,
    /// Topic for events that came after the watermark.
    #[arg(long, default_value = "client-event-late")]
    late: String,
    /// Topic for values that are not client-event JSON.
    #[arg(long, default_value = "client-event-dlq")]
    dead_letter: String,
    /// Consumer group.
    #[arg(long, default_value = "rill-sessions")]
    group: String,
    #[command(flatten)]
    run: support::Running,
}

/// The session function: events within `gap` of the open session extend it; an event a gap
/// or more after it closes it and opens the next; the timeout at the last event plus the
/// gap closes it when no event came.
fn sessionize(
    gap: i64,
) -> impl Fn(&String, Values<'_, Decoded<ClientEvent>>, &mut GroupState<'_, Session>) -> Vec<Emitted>
       + Clone
       + Send
       + Sync
       + 'static {
    move |user, events, session| {
        let mut out = Vec::new();
        if session.has_timed_out() {
            if let Some(s) = session.remove() {
                out.push(Emitted::Closed(user.clone(), s));
            }
            return out;
        }
        let watermark = session.current_watermark();
        for e in events {
            let ts = e.event.ts;
            if ts <= watermark {
                out.push(Emitted::Late(e.raw));
                continue;
            }
            match session.get_mut() {
                Some(s) if ts < s.session_end.saturating_add(gap) => {
                    s.session_start = s.session_start.min(ts);
                    s.session_end = s.session_end.max(ts);
                    s.events += 1;
                }
                _ => {
                    if let Some(closed) = session.remove() {
                        out.push(Emitted::Closed(user.clone(), closed));
                    }
                    session.update(Session {
                        session_start: ts,
                        session_end: ts,
                        events: 1,
                    });
                }
            }
        }
        if let Some(end) = session.get().map(|s| s.session_end) {
            session.set_timeout_timestamp(end.saturating_add(gap));
        }
        out
    }
}

/// The job: decode, watermark per partition, sessions per user, encode; late events and bad
/// records to their topics.
fn job(brokers: &str, source: KafkaSource, args: &Args) -> Job {
    let job = Job::new("sessions");
    job.dead_letter(KafkaSink::<DeadLetter>::new(brokers).topic(args.dead_letter.clone()));
    let strategy =
        WatermarkStrategy::bounded_out_of_orderness(args.delay).idle_after(args.idle_timeout);
    let gap = i64::try_from(args.gap.as_millis()).unwrap_or(i64::MAX);
    let (closed, late) = job
        .source(source)
        .decode(|r: &KafkaRecord| Decoded::<ClientEvent>::from_record(r))
        .with_split_watermark(
            |e: &Decoded<ClientEvent>| e.event.ts,
            |e: &Decoded<ClientEvent>| e.partition as u64,
            strategy,
        )
        .key_by(|e: &Decoded<ClientEvent>| e.event.user_id.clone())
        .flat_map_groups_with_state(sessionize(gap))
        .side_output("sessions:late", |e: Emitted| match e {
            Emitted::Closed(user, s) => Branch::First((user, s)),
            Emitted::Late(raw) => Branch::Second(raw),
        });
    closed
        .try_map(
            |(user, s): (String, Session)| -> Result<(String, String), rill::BoxError> {
                let value = serde_json::to_string(&SessionRecord {
                    user_id: &user,
                    session_start: s.session_start,
                    session_end: s.session_end,
                    events: s.events,
                })?;
                Ok((user, value))
            },
        )
        .sink(args.run.output_sink(brokers, &args.output, &args.group));
    late.sink(KafkaSink::<Vec<u8>>::new(brokers).topic(args.late.clone()));
    job
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = args.run.config();
    if let Some(brokers) = &args.brokers {
        let source = KafkaSource::new(brokers, args.group.clone()).topics([args.input.clone()]);
        let handle = job(brokers, source, &args).run(config)?;
        eprintln!(
            "sessions of `{}` per user, closed after {:?} without an event, into `{}`; \
             SIGTERM or Ctrl-C stops",
            args.input, args.gap, args.output
        );
        return support::run_until_signal(handle);
    }
    eprintln!("no --brokers: sessions of demo events on an embedded Kafka");
    let minute = 60_000;
    let events: Vec<String> = [
        ("u1", "open", 0),
        ("u1", "click", 5),
        ("u2", "open", 10),
        ("u1", "click", 34), // 29 minutes after the last: same session
        ("u1", "open", 70),  // 36 minutes after: a new session
        ("u2", "buy", 12),
        ("u1", "click", 71),
    ]
    .iter()
    .map(|(user, event, m)| {
        format!(
            r#"{{"user_id":"{user}","event":"{event}","ts":{}}}"#,
            m * minute
        )
    })
    .chain(["not json".to_string()])
    .collect();
    let out = support::embedded_demo(&[(args.input.as_str(), events)], &args.output, |b| {
        job(b, support::bounded(b, &args.group, &args.input), &args)
    })?;
    support::print_sorted_values(out);
    Ok(())
}
