//! Kafka source and sink against librdkafka's mock cluster (EmbeddedKafka), over the wire.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use rill::connectors::kafka::{EmbeddedKafka, KafkaRecord, KafkaSink, KafkaSource, StartFrom};
use rill::prelude::*;

use common::kafka::{committed_total, produce, read};

#[test]
fn relay_reads_every_partition_and_writes_every_record_once() {
    let kafka = EmbeddedKafka::start().expect("mock cluster");
    kafka.create_topic("in", 3).expect("topic");
    kafka.create_topic("out", 3).expect("topic");
    let brokers = kafka.bootstrap_servers();
    let input: Vec<(Vec<u8>, Vec<u8>)> = (0..3000)
        .map(|i| (format!("k{i}").into_bytes(), format!("v{i}").into_bytes()))
        .collect();
    produce(&brokers, "in", &input);

    let job = Job::new("relay");
    let source = KafkaSource::new(brokers.clone(), "relay-group")
        .topics(["in"])
        .start_from(StartFrom::Earliest);
    let positions = source.positions();
    job.source(source)
        .try_map(
            |r: KafkaRecord| -> Result<(String, String), rill::BoxError> {
                Ok((r.key_str()?.to_string(), r.value_str()?.to_uppercase()))
            },
        )
        .sink(
            KafkaSink::new(brokers.clone())
                .topic("out")
                .set("linger.ms", EmbeddedKafka::PRODUCER_LINGER_MS),
        );
    let handle = job
        .run(Config::default().with_workers(2))
        .expect("job starts");

    let output = read(&brokers, "out", input.len(), Duration::from_secs(60));
    handle.stop();
    let metrics = common::finish(handle).expect("stops cleanly");

    assert_eq!(output.len(), input.len(), "every record relayed");
    let got: HashSet<(Vec<u8>, Vec<u8>)> = output
        .into_iter()
        .map(|(k, v, _)| (k.unwrap_or_default(), v.unwrap_or_default()))
        .collect();
    let want: HashSet<(Vec<u8>, Vec<u8>)> = input
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                String::from_utf8_lossy(v).to_uppercase().into_bytes(),
            )
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(metrics.get("kafka").map(|m| m.records_out), Some(3000));
    // On stop the source committed what it had handed on: every partition to its end.
    assert_eq!(committed_total(&brokers, "relay-group", "in"), 3000);
    assert!(positions.snapshot().is_empty(), "released on stop");
}
