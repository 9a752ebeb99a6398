//! Throughput of Kafka source -> map -> Kafka sink, as a bounded run over a pre-filled topic.
//!
//! By default against librdkafka's mock cluster (EmbeddedKafka): a figure of rill plus
//! librdkafka plus the mock broker, not of Kafka. With `RILL_BENCH_BROKERS=host:port` it runs
//! against that broker instead (topics are created through its admin API).
//!
//! Each iteration fills a fresh topic with `RECORDS` records of 100 bytes (not timed) and times
//! the job from `run` to `await_termination`, which includes the consumer's start-up (a few ms
//! without a group join: bounded runs assign partitions directly) and the final flush.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rill::connectors::kafka::{EmbeddedKafka, KafkaRecord, KafkaSink, KafkaSource, StartFrom};
use rill::prelude::*;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RECORDS: u64 = 100_000;

fn fill(brokers: &str, topic: &str) {
    let job = Job::new("fill");
    job.source(MemorySource::from_fn(|w, p| (w as u64..RECORDS).step_by(p)))
        .map(|i: u64| (i.to_string(), format!("{i:0>100}")))
        .sink(
            KafkaSink::new(brokers)
                .topic(topic)
                .set("linger.ms", "5")
                .set("batch.num.messages", "10000"),
        );
    job.run(Config::default().with_workers(1))
        .and_then(|h| h.await_termination())
        .expect("fill the input topic");
}

fn relay(c: &mut Criterion) {
    let external = std::env::var("RILL_BENCH_BROKERS").ok();
    let embedded = if external.is_none() {
        Some(EmbeddedKafka::start().expect("mock cluster"))
    } else {
        None
    };
    let brokers = external
        .clone()
        .or_else(|| embedded.as_ref().map(EmbeddedKafka::bootstrap_servers))
        .expect("brokers");
    let label = if external.is_some() {
        "external"
    } else {
        "embedded"
    };
    let mut group = c.benchmark_group("kafka_relay");
    group.throughput(Throughput::Elements(RECORDS));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    let mut run = 0u32;
    group.bench_function(label, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                run += 1;
                let (input, output) = (format!("relay-in-{run}"), format!("relay-out-{run}"));
                match &embedded {
                    Some(kafka) => {
                        kafka.create_topic(&input, 2).expect("topic");
                        kafka.create_topic(&output, 2).expect("topic");
                    }
                    None => rill::connectors::kafka::create_topics(
                        &brokers,
                        &[(&input, 2), (&output, 2)],
                        Duration::from_secs(30),
                    )
                    .expect("creating the topics"),
                }
                fill(&brokers, &input);
                let job = Job::new("relay");
                job.source(
                    KafkaSource::new(brokers.clone(), format!("relay-{run}"))
                        .topics([input])
                        .start_from(StartFrom::Earliest)
                        .bounded(),
                )
                .map(|r: KafkaRecord| (r.key.unwrap_or_default(), r.value.unwrap_or_default()))
                .sink(
                    KafkaSink::new(brokers.clone())
                        .topic(output)
                        .set("linger.ms", EmbeddedKafka::PRODUCER_LINGER_MS),
                );
                let t0 = Instant::now();
                job.run(Config::default().with_workers(2))
                    .and_then(|h| h.await_termination())
                    .expect("relay run");
                total += t0.elapsed();
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, relay);
criterion_main!(benches);
