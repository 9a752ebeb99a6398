//! What the Kafka examples share: run until SIGTERM / Ctrl-C, and the zero-setup demo on an
//! embedded Kafka.

// Each example uses the part it needs.
#![allow(dead_code)]

use std::collections::BTreeMap;

use anyhow::Context;
use rill::connectors::kafka::{EmbeddedKafka, KafkaRecord, KafkaSink, KafkaSource, StartFrom};
use rill::prelude::*;

/// Waits for the job; SIGTERM or Ctrl-C stops it gracefully (everything in flight is written).
pub(crate) fn run_until_signal(handle: JobHandle) -> anyhow::Result<()> {
    let stopper = handle.stop_handle();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .context("installing signal handlers")?;
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            stopper.stop();
        }
    });
    handle.await_termination()?;
    Ok(())
}

/// A source reading `topic` from its beginning to its end at start: the demo's input.
pub(crate) fn bounded(brokers: &str, group: &str, topic: &str) -> KafkaSource {
    KafkaSource::new(brokers, group)
        .topics([topic])
        .start_from(StartFrom::Earliest)
        .bounded()
}

/// Starts an embedded Kafka, creates `inputs` and `output`, writes each input's records, runs
/// the job `build` makes for these brokers (the streaming job over [`bounded`] sources) to its
/// end, and returns the output records as (key, value) strings, in order.
pub(crate) fn embedded_demo(
    inputs: &[(&str, Vec<String>)],
    output: &str,
    build: impl FnOnce(&str) -> Job,
) -> anyhow::Result<Vec<(String, String)>> {
    let kafka = EmbeddedKafka::start()?;
    let brokers = kafka.bootstrap_servers();
    kafka.create_topic(output, 1)?;
    for (topic, records) in inputs {
        kafka.create_topic(topic, 1)?;
        let feed = Job::new("feed");
        feed.source(MemorySource::new(records.clone()))
            .sink(KafkaSink::<String>::new(&brokers).topic(*topic));
        feed.run(Config::default().with_workers(1))?
            .await_termination()?;
    }
    build(&brokers)
        .run(Config::default())?
        .await_termination()?;

    let read = Job::new("read");
    let out = CollectSink::default();
    read.source(bounded(&brokers, "rill-example-reader", output))
        .map(|r: KafkaRecord| {
            let text =
                |b: Option<Vec<u8>>| String::from_utf8_lossy(&b.unwrap_or_default()).into_owned();
            (r.offset, text(r.key), text(r.value))
        })
        .sink(out.clone());
    read.run(Config::default().with_workers(1))?
        .await_termination()?;
    let ordered: BTreeMap<i64, (String, String)> = out
        .take()
        .into_iter()
        .map(|(o, k, v)| (o, (k, v)))
        .collect();
    Ok(ordered.into_values().collect())
}
