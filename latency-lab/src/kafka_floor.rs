//! The floor of the Kafka path: the same open-loop schedule through the same two Kafka hops
//! on the same broker, with bare librdkafka clients and no engine.
//!
//! A producer thread writes record i at its due time into an input topic; a relay thread
//! (one consumer, one producer: the job's shape without rill) writes each record it reads to
//! an output topic, same key and value; a reader thread reads the output `read_committed` and
//! records how late each record arrived against its due time. The consumers wait in
//! librdkafka's blocking poll, which wakes as soon as a fetch brings a record. Producer and
//! consumer settings are the job's: `linger.ms`, `fetch.wait.max.ms`, idempotent producers.
//! What the Kafka path's rows add above this row is rill's; what this row adds above the
//! in-memory floor is two broker round trips and the clients' own threads.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use rill::connectors::kafka::client_config;
use rill::time::now_nanos;

use crate::baseline::new_histogram;
use crate::kafka_path::open_broker;
use crate::settings::Settings;

/// How long the clients may take to connect and see the topics.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long after the last due time the reader may take to read every record.
const DRAIN: Duration = Duration::from_secs(10);
/// How long a blocking poll waits before looking at the stop flag.
const POLL: Duration = Duration::from_millis(100);

/// Sends `record`, waiting while librdkafka's queue is full (it empties as the broker
/// acknowledges).
fn send<K, V>(producer: &BaseProducer, mut record: BaseRecord<'_, K, V>)
where
    K: rdkafka::message::ToBytes + ?Sized,
    V: rdkafka::message::ToBytes + ?Sized,
{
    while let Err((_, r)) = producer.send(record) {
        record = r;
        producer.poll(Duration::from_millis(1));
    }
}

/// Runs the schedule at `rate` records/s for the settings' warm-up and duration, returning the
/// latency histogram (ns, due time to read) of the records due after the warm-up.
pub(crate) fn measure(settings: &Settings, rate: f64) -> anyhow::Result<Histogram<u64>> {
    let id = format!("{}-{}", std::process::id(), now_nanos());
    let (input, output) = (format!("floor-in-{id}"), format!("floor-out-{id}"));
    let partitions = settings.partitions;
    // Kept until the end: an embedded cluster stops when dropped.
    let (_embedded, brokers) = open_broker(settings, &[&input, &output])?;
    let producer_config = {
        let mut c = client_config(&brokers);
        c.set("linger.ms", settings.linger_ms.to_string())
            .set("enable.idempotence", "true");
        c
    };
    let consumer = |group: &str, topic: &str| -> anyhow::Result<BaseConsumer> {
        let consumer: BaseConsumer = client_config(&brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", settings.fetch_wait_ms.to_string())
            .set("isolation.level", "read_committed")
            .create()?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning)?;
        }
        consumer.assign(&tpl)?;
        consumer.fetch_metadata(Some(topic), CONNECT_TIMEOUT)?;
        Ok(consumer)
    };
    let relay_in = consumer(&format!("floor-relay-{id}"), &input)?;
    let reader = consumer(&format!("floor-reader-{id}"), &output)?;
    let relay_out: BaseProducer = producer_config.create()?;
    let writer: BaseProducer = producer_config.create()?;
    for p in [&relay_out, &writer] {
        p.client().fetch_metadata(None, CONNECT_TIMEOUT)?;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let relay = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                relay_out.poll(Duration::ZERO);
                let Some(Ok(msg)) = relay_in.poll(POLL) else {
                    continue;
                };
                let mut record = BaseRecord::<[u8], [u8]>::to(&output)
                    .partition(msg.partition())
                    .payload(msg.payload().unwrap_or_default());
                if let Some(key) = msg.key() {
                    record = record.key(key);
                }
                send(&relay_out, record);
            }
            let _ = relay_out.flush(Duration::from_secs(5));
        })
    };
    let start = now_nanos() + 50_000_000;
    let measure_from = start + settings.warmup.as_nanos() as u64;
    let end = measure_from + settings.duration.as_nanos() as u64;
    let read = Arc::new(AtomicU64::new(0));
    let reading = {
        let (stop, read) = (stop.clone(), read.clone());
        std::thread::spawn(move || {
            let mut h = new_histogram();
            while !stop.load(Ordering::Relaxed) {
                let Some(Ok(msg)) = reader.poll(POLL) else {
                    continue;
                };
                let now = now_nanos();
                let due = msg
                    .payload()
                    .and_then(|p| std::str::from_utf8(p).ok())
                    .and_then(|s| s.parse::<u64>().ok());
                if let Some(due) = due {
                    if due >= measure_from {
                        h.saturating_record(now.saturating_sub(due).max(1));
                    }
                }
                read.fetch_add(1, Ordering::Relaxed);
            }
            h
        })
    };

    // The open-loop writer: record i due at start + i / rate, sent at its due time however
    // late the previous ones are.
    rill::time::precise_timed_waits();
    let interval = 1e9 / rate;
    let mut sent = 0u64;
    loop {
        let due = start + (sent as f64 * interval) as u64;
        if due >= end {
            break;
        }
        let now = now_nanos();
        if now < due {
            std::thread::sleep(Duration::from_nanos(due - now));
        }
        let (key, value) = (sent.to_string(), due.to_string());
        send(&writer, BaseRecord::to(&input).key(&key).payload(&value));
        writer.poll(Duration::ZERO);
        sent += 1;
    }
    writer
        .flush(Duration::from_secs(30))
        .context("the floor's writer could not deliver")?;
    let deadline = Instant::now() + DRAIN;
    while read.load(Ordering::Relaxed) < sent && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = relay.join();
    let histogram = reading
        .join()
        .map_err(|_| anyhow::anyhow!("the floor's reader panicked"))?;
    let got = read.load(Ordering::Relaxed);
    if got < sent {
        eprintln!("      WARNING: Kafka floor: {sent} records sent, {got} read back within the drain time");
    }
    Ok(histogram)
}
