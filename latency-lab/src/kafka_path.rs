//! The Kafka path: an open-loop producer into an input topic, the job
//! (Kafka source -> decode -> key_by -> running count -> Kafka sink), and a reader of the output
//! topic that records, for every result, the time it was read minus the time its input record
//! was scheduled to be produced. All three run in this process and share one clock.
//!
//! Runs on librdkafka's mock cluster (EmbeddedKafka): its figures are rill + librdkafka + the
//! mock broker on this machine, not a real Kafka's. Producers use `linger.ms = 1` (the mock's
//! throughput collapses with 0) and consumers `fetch.wait.max.ms = 5` (rill's default).

use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use rill::connectors::kafka::{EmbeddedKafka, KafkaRecord, KafkaSink, KafkaSource, StartFrom};
use rill::prelude::*;

/// How long the consumers may take to join their groups (about 3 s each on the mock).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long after the last scheduled record the reader keeps reading.
const DRAIN: Duration = Duration::from_secs(2);

fn parse_pair(r: &KafkaRecord) -> Result<(u64, u64), rill::BoxError> {
    let text = r.value_str()?;
    let (a, b) = text.split_once(',').ok_or("expected `a,b`")?;
    Ok((a.parse()?, b.parse()?))
}

/// One run at `rate` records/s: returns the latency histogram (ns) of the measured window.
pub fn run_once(
    rate: f64,
    warmup: Duration,
    duration: Duration,
    keys: u64,
    config: &Config,
) -> anyhow::Result<Histogram<u64>> {
    let kafka = EmbeddedKafka::start().context("starting the embedded Kafka")?;
    let brokers = kafka.bootstrap_servers();
    for topic in ["lab-in", "lab-out"] {
        kafka.create_topic(topic, 2)?;
    }
    let linger = EmbeddedKafka::PRODUCER_LINGER_MS;

    // The job under test.
    let job = Job::new("kafka-path");
    job.source(
        KafkaSource::new(&brokers, "lab")
            .topics(["lab-in"])
            .start_from(StartFrom::Earliest),
    )
    .decode(parse_pair)
    .key_by(move |(seq, _): &(u64, u64)| seq % keys)
    .aggregate(
        || (0u64, 0u64),
        |acc: &mut (u64, u64), (_, scheduled): (u64, u64)| {
            acc.0 += 1;
            acc.1 = scheduled;
        },
    )
    .map(|(key, (count, scheduled)): (u64, (u64, u64))| {
        (key.to_string(), format!("{count},{scheduled}"))
    })
    .sink(
        KafkaSink::new(&brokers)
            .topic("lab-out")
            .set("linger.ms", linger),
    );
    // One worker: with several, a member joining after the readiness probe came back moves a
    // partition mid-run, and its records arrive after the measurement (partition-aware
    // readiness is the next step).
    let pipeline = job.run(config.clone().with_workers(1))?;

    // The reader: measures at the moment each result is read back. What is measured is fixed
    // below, once the whole path is known to be up.
    let reader = Job::new("kafka-path-reader");
    let measure_from = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX));
    let threshold = measure_from.clone();
    let sink = LatencySink::new(|(_, scheduled): &(u64, u64)| *scheduled);
    reader
        .source(
            KafkaSource::new(&brokers, "lab-reader")
                .topics(["lab-out"])
                .start_from(StartFrom::Earliest),
        )
        .decode(parse_pair)
        // Probes, and records scheduled during the warm-up, are not measured.
        .filter(move |(_, scheduled): &(u64, u64)| {
            *scheduled >= threshold.load(std::sync::atomic::Ordering::Relaxed)
        })
        .sink(sink.clone());
    let reader = reader.run(config.clone().with_workers(1))?;

    // Wait until the whole path is up (both consumer groups joined): send probes until one
    // comes back through the reader.
    let deadline = std::time::Instant::now() + READY_TIMEOUT;
    let read_back = |h: &JobHandle| h.metrics().get("kafka").map_or(0, |m| m.records_out);
    while read_back(&reader) == 0 {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the Kafka path did not come up within {READY_TIMEOUT:?}: probes read by the job {}, written by it {}, read back {}",
            read_back(&pipeline),
            pipeline.metrics().get("kafka#2").map_or(0, |m| m.records_in),
            read_back(&reader)
        );
        let probe = Job::new("probe");
        probe
            .source(MemorySource::new(vec![(
                "probe".to_string(),
                "0,0".to_string(),
            )]))
            .sink(KafkaSink::new(&brokers).topic("lab-in"));
        probe
            .run(Config::default().with_workers(1))?
            .await_termination()?;
        std::thread::sleep(Duration::from_millis(200));
    }

    // The open-loop producer: record i due at start + JOIN_WAIT + i / rate, never waiting.
    let start_delay = Duration::from_millis(50);
    measure_from.store(
        rill::engine::time::now_nanos() + (start_delay + warmup).as_nanos() as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
    let producer = Job::new("kafka-path-producer");
    producer
        .source(
            Generator::new(rate, |seq| seq)
                .with_duration(warmup + duration)
                .with_start_delay(start_delay),
        )
        .map(|g: Generated<u64>| {
            (
                g.seq.to_string(),
                format!("{},{}", g.seq, g.scheduled_nanos),
            )
        })
        .sink(
            KafkaSink::new(&brokers)
                .topic("lab-in")
                .set("linger.ms", linger),
        );
    producer
        .run(
            Config::default()
                .with_workers(1)
                .with_idle(IdleStrategy::Spin),
        )?
        .await_termination()
        .context("producing")?;

    std::thread::sleep(DRAIN);
    pipeline.stop();
    reader.stop();
    pipeline.await_termination().context("the job")?;
    reader.await_termination().context("the reader")?;
    Ok(sink.histogram())
}
