//! The Kafka path: an open-loop producer into an input topic, the job
//! (Kafka source -> decode -> map -> filter -> key_by -> running count -> Kafka sink), and a
//! reader of the output topic that records, for every result, the time it was read minus the
//! time its input record was scheduled to be produced. All three run in this process and share
//! one clock.
//!
//! Each run gets fresh topics: on the embedded cluster (librdkafka's mock, started per run) or
//! on the external cluster `--brokers` names. Its figures are rill + librdkafka + that broker
//! on this machine; on the mock they are not a real Kafka's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use rill::connectors::kafka::{
    create_topics, EmbeddedKafka, KafkaRecord, KafkaSink, KafkaSource, SourcePositions, StartFrom,
};
use rill::prelude::*;

use crate::settings::Settings;

/// How long the whole path may take to come up (consumers connected, first fetches served).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long after the last scheduled record the reader may take to read every result back,
/// beyond one micro-batch interval or checkpoint interval.
const DRAIN: Duration = Duration::from_secs(10);
/// Probe records sent per readiness round: distinct keys, so every partition gets some.
const PROBES: u64 = 16;
/// Probes' sequence numbers start here, far above any measured record's.
const PROBE_SEQ: u64 = 1 << 63;

/// One run's result.
pub(crate) struct KafkaRun {
    /// Latencies (ns) of the measured results.
    pub histogram: Histogram<u64>,
    /// Records the producer wrote (probes excluded).
    pub produced: u64,
    /// Results read back (probes excluded): equal to `produced` unless results were lost or
    /// late beyond the drain time.
    pub read_back: u64,
    /// The job's checkpoints, when it took any.
    pub checkpoints: Option<rill::CheckpointLog>,
}

/// An input record, `seq,scheduled`; anything else is a decode error (the job's dead-letter
/// path).
fn parse_input(r: &KafkaRecord) -> Result<(u64, u64), rill::BoxError> {
    let text = r.value_str()?;
    let (a, b) = text.split_once(',').ok_or("expected `seq,scheduled`")?;
    Ok((a.parse()?, b.parse()?))
}

/// A result, `count,scheduled,seq`: the running count of a key, and the record that moved it.
fn parse_result(r: &KafkaRecord) -> Result<(u64, u64, u64), rill::BoxError> {
    let text = r.value_str()?;
    let mut fields = text.splitn(3, ',').map(str::parse::<u64>);
    match (fields.next(), fields.next(), fields.next()) {
        (Some(a), Some(b), Some(c)) => Ok((a?, b?, c?)),
        _ => Err("expected `count,scheduled,seq`".into()),
    }
}

/// Whether every partition of `topic` (`partitions` of them) has been read at least once.
fn read_every_partition(positions: &SourcePositions, partitions: i32) -> bool {
    let seen = positions.snapshot();
    (0..partitions).all(|p| {
        seen.iter()
            .any(|pos| pos.partition == p && pos.next_offset > 0)
    })
}

/// The broker a run uses, with `topics` created fresh on it (`settings.partitions` each): the
/// cluster `--brokers` names, or an embedded one started for the run (dropped with it).
pub(crate) fn open_broker(
    settings: &Settings,
    topics: &[&str],
) -> anyhow::Result<(Option<EmbeddedKafka>, String)> {
    let embedded = match &settings.brokers {
        Some(_) => None,
        None => Some(EmbeddedKafka::start().context("starting the embedded Kafka")?),
    };
    let brokers = match (&settings.brokers, &embedded) {
        (Some(b), _) => b.clone(),
        (_, Some(k)) => k.bootstrap_servers(),
        (None, None) => anyhow::bail!("no broker: an embedded one starts when none is named"),
    };
    match &embedded {
        Some(k) => {
            for topic in topics {
                k.create_topic(topic, settings.partitions)?;
            }
        }
        None => {
            let wanted: Vec<(&str, i32)> =
                topics.iter().map(|t| (*t, settings.partitions)).collect();
            create_topics(&brokers, &wanted, Duration::from_secs(30))
                .with_context(|| format!("creating the lab's topics on {brokers}"))?;
        }
    }
    Ok((embedded, brokers))
}

/// One run of `mode` at `rate` records/s; `run` makes topic and group names unique.
pub(crate) fn run_once(
    settings: &Settings,
    rate: f64,
    mode: Mode,
    run: usize,
) -> anyhow::Result<KafkaRun> {
    let id = format!("{}-{}-{run}", std::process::id(), rill::time::now_nanos());
    let (input, output) = (format!("lab-in-{id}"), format!("lab-out-{id}"));
    let partitions = settings.partitions;
    // Kept until the end: an embedded cluster stops when dropped.
    let (_embedded, brokers) = open_broker(settings, &[&input, &output])?;
    let linger = settings.linger_ms.to_string();
    let fetch_wait = settings.fetch_wait_ms.to_string();
    let keys = settings.keys;

    // The job under test.
    let job = Job::new("kafka-path");
    let source = KafkaSource::new(&brokers, format!("lab-{id}"))
        .topics([input.clone()])
        .start_from(StartFrom::Earliest)
        .static_assignment()
        .set("fetch.wait.max.ms", &fetch_wait);
    let job_positions = source.positions();
    let mut sink = KafkaSink::new(&brokers)
        .topic(output.clone())
        .set("linger.ms", &linger);
    if settings.exactly_once {
        sink = sink.exactly_once(format!("lab-{id}"));
    }
    job.source(source)
        .decode(parse_input)
        .map(move |(seq, scheduled): (u64, u64)| (seq % keys, scheduled, seq))
        // Records without a schedule stamp cannot be measured: dropped (probes carry one).
        .filter(|(_, scheduled, _): &(u64, u64, u64)| *scheduled > 0)
        .key_by(|(key, _, _): &(u64, u64, u64)| *key)
        // Running count per key; the result names the record that caused it.
        .aggregate(
            || (0u64, 0u64, 0u64),
            |acc: &mut (u64, u64, u64), (_, scheduled, seq): (u64, u64, u64)| {
                acc.0 += 1;
                acc.1 = scheduled;
                acc.2 = seq;
            },
        )
        .map(|(key, (count, scheduled, seq)): (u64, (u64, u64, u64))| {
            (key.to_string(), format!("{count},{scheduled},{seq}"))
        })
        .sink(sink);
    let checkpoint_dir = settings.checkpoint_dir(&format!("kafka-{id}"));
    let mut config = settings.job_config().with_mode(mode);
    if let (Some(dir), Some(every)) = (&checkpoint_dir, settings.checkpoint_interval) {
        config = config.with_checkpoints(settings.checkpoints(dir, every));
    }
    let pipeline = job.run(config).context("starting the job")?;

    // The reader: measures at the moment each result is read back. What is measured is fixed
    // below, once the whole path is known to be up. It parks until librdkafka's queue callback
    // wakes it: a spinning reader would take a core from the job on a small machine.
    let reader = Job::new("kafka-path-reader");
    // Records from this sequence number on are measured: none until the producer starts.
    let measure_from = Arc::new(AtomicU64::new(u64::MAX));
    let threshold = measure_from.clone();
    let latency = LatencySink::new(|(_, scheduled, _): &(u64, u64, u64)| *scheduled);
    let reader_source = KafkaSource::new(&brokers, format!("lab-reader-{id}"))
        .topics([output.clone()])
        .start_from(StartFrom::Earliest)
        .static_assignment()
        .set("fetch.wait.max.ms", &fetch_wait)
        // librdkafka's default, named because it is what --exactly-once shows: results become
        // visible when their transaction (their checkpoint) commits.
        .set("isolation.level", "read_committed");
    let reader_positions = reader_source.positions();
    reader
        .source(reader_source)
        .decode(parse_result)
        // Probes, and records scheduled during the warm-up, are not measured.
        .filter(move |(_, _, seq): &(u64, u64, u64)| {
            *seq >= threshold.load(Ordering::Relaxed) && *seq < PROBE_SEQ
        })
        .sink(latency.clone());
    let reader = reader
        .run(
            Config::default()
                .with_workers(1)
                .with_idle(IdleStrategy::Park),
        )
        .context("starting the reader")?;
    let read_back = |h: &JobHandle| h.metrics().get("kafka").map_or(0, |m| m.records_out);

    // Wait until the whole path is up: probes on every input partition read by the job, and
    // results on every output partition read back.
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut probes = 0u64;
    while !(read_every_partition(&job_positions, partitions)
        && read_every_partition(&reader_positions, partitions))
    {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the Kafka path did not come up within {READY_TIMEOUT:?}: input partitions read {:?}, results read back {}",
            job_positions.snapshot().iter().map(|p| (p.partition, p.next_offset)).collect::<Vec<_>>(),
            read_back(&reader)
        );
        let probe = Job::new("probe");
        probe
            .source(MemorySource::new(
                (probes..probes + PROBES)
                    .map(|i| (format!("probe-{i}"), format!("{},1", PROBE_SEQ + i)))
                    .collect::<Vec<_>>(),
            ))
            .sink(KafkaSink::new(&brokers).topic(input.clone()));
        probe
            .run(Config::default().with_workers(1))?
            .await_termination()
            .context("sending probes")?;
        probes += PROBES;
        std::thread::sleep(Duration::from_millis(100));
    }

    // The open-loop producer: record i due at start + i / rate, never waiting.
    let start_delay = Duration::from_millis(50);
    let warmup = settings.warmup;
    // Record i is due at start + i / rate: the warm-up is the records due before it ends.
    measure_from.store(
        (warmup.as_secs_f64() * rate).ceil() as u64,
        Ordering::Relaxed,
    );
    let producer = Job::new("kafka-path-producer");
    let generator = Generator::new(rate, |seq| seq)
        .with_duration(warmup + settings.duration)
        .with_start_delay(start_delay)
        .with_pacing(settings.pacing);
    producer
        .source(generator)
        .map(|g: Generated<u64>| {
            (
                g.seq.to_string(),
                format!("{},{}", g.seq, g.scheduled_nanos),
            )
        })
        .sink(
            KafkaSink::new(&brokers)
                .topic(input)
                .set("linger.ms", &linger),
        );
    let producer_idle = match settings.pacing {
        // The pacing thread wakes the producer's worker for each release.
        Pacing::Sleep => IdleStrategy::Park,
        Pacing::Spin => IdleStrategy::Spin,
    };
    let produced = producer
        .run(Config::default().with_workers(1).with_idle(producer_idle))
        .context("starting the producer")?
        .await_termination()
        .context("producing")?
        .get("generator")
        .map_or(0, |m| m.records_out);

    // Every input record yields one result: wait for all of them, or report what is missing.
    let drain = DRAIN + settings.batch_or_checkpoint_wait(mode);
    let deadline = Instant::now() + drain;
    while read_back(&reader) < produced + probes && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let read = read_back(&reader).saturating_sub(probes);
    let checkpoints = pipeline.checkpoints();
    pipeline.stop();
    reader.stop();
    pipeline.await_termination().context("the job")?;
    reader.await_termination().context("the reader")?;
    if let Some(dir) = checkpoint_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(KafkaRun {
        histogram: latency.histogram(),
        produced,
        read_back: read,
        checkpoints,
    })
}
