//! The storage examples against real servers: `archive` (Kafka -> Parquet by hour) killed
//! five times mid-output, and the dead-letter round trip `dlq_archive` -> S3 -> `dlq_replay`.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::s3_server::S3Server;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rill::connectors::kafka::EmbeddedKafka;
use rill::connectors::CollectSink;
use rill::files::{FileSource, Format, StoreLocation};
use rill::prelude::*;
use serde::Deserialize;

/// A row of `archive`'s Parquet files, as read back.
#[derive(Debug, Clone, Deserialize)]
struct Row {
    topic: String,
    partition: i32,
    offset: i64,
    timestamp: Option<i64>,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
}

fn sigkill(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Every committed row under `location` (Parquet), by (partition, offset); a duplicate
/// fails the test.
fn committed_rows(location: &StoreLocation, format: &Format) -> BTreeMap<(i32, i64), Row> {
    let out = CollectSink::default();
    let job = Job::new("read-archive");
    job.source(FileSource::<Row>::new(location.clone(), format.clone()))
        .sink(out.clone());
    common::finish(job.run(Config::default()).expect("read job")).expect("read");
    let mut rows = BTreeMap::new();
    for r in out.take() {
        let at = (r.partition, r.offset);
        assert!(rows.insert(at, r).is_none(), "record {at:?} archived twice");
    }
    rows
}

#[test]
fn archive_killed_five_times_holds_every_record_exactly_once() {
    let kafka = EmbeddedKafka::start().expect("mock cluster");
    let brokers = kafka.bootstrap_servers();
    kafka.create_topic("events", 2).expect("topic");
    let dir = common::gated::temp_dir("archive-kills");
    let out_dir = dir.join("lake");
    let start = || {
        Command::new(common::example_binary("archive"))
            .args(["--brokers", &brokers, "--input", "events", "--to"])
            .arg(&out_dir)
            // Files roll every few KB, so at any instant some are staged for a checkpoint
            // still to come: a kill then always catches uncommitted output.
            .args(["--workers", "2", "--roll-bytes", "3000"])
            .args(["--checkpoint-interval", "300ms"])
            .arg("--checkpoint-dir")
            .arg(dir.join("checkpoints"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("archive starts")
    };
    // Records spread over three hours of timestamps, so several partitions are open at once.
    let base = 1_796_061_900_000i64;
    let mut produced: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for round in 0..6i64 {
        let records: Vec<(Vec<u8>, Vec<u8>)> = (0..2_000i64)
            .map(|i| {
                let n = round * 2_000 + i;
                let key = format!("k{n}").into_bytes();
                let value = format!(r#"{{"n":{n},"ts":{}}}"#, base + n * 900).into_bytes();
                produced.insert(key.clone(), value.clone());
                (key, value)
            })
            .collect();
        let child = start();
        let producer = {
            let brokers = brokers.clone();
            std::thread::spawn(move || {
                for chunk in records.chunks(100) {
                    common::kafka::produce(&brokers, "events", chunk);
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        if round < 5 {
            std::thread::sleep(Duration::from_millis(800));
            sigkill(child);
            producer.join().expect("producer");
        } else {
            producer.join().expect("producer");
            let location = StoreLocation::parse(out_dir.to_str().expect("utf-8")).expect("dir");
            let format = Format::parquet(&rill::files::arrow_schema::Schema::empty());
            let deadline = Instant::now() + Duration::from_secs(90);
            while committed_rows(&location, &format).len() < produced.len()
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(200));
            }
            common::stop_with_sigterm(child);
            let rows = committed_rows(&location, &format);
            assert_eq!(rows.len(), produced.len(), "every record, once");
            let archived: BTreeMap<Vec<u8>, Vec<u8>> = rows
                .into_values()
                .map(|r| {
                    assert_eq!(r.topic, "events");
                    assert!(r.timestamp.is_some());
                    (r.key.expect("key"), r.value.expect("value"))
                })
                .collect();
            assert_eq!(archived, produced, "bytes as produced");
        }
    }
    // Kafka timestamps are the produce time here, so the hour partitions are today's; each
    // file sits in a dt=/hour= directory.
    let mut stack = vec![out_dir.clone()];
    let mut parquet = 0;
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                let rel = p
                    .strip_prefix(&out_dir)
                    .expect("below")
                    .display()
                    .to_string();
                assert!(rel.starts_with("dt=") && rel.contains("/hour="), "{rel}");
                parquet += 1;
            }
        }
    }
    assert!(parquet > 5, "{parquet} files");
}

/// A dead letter to produce: key, value, and the offset it had in its origin topic.
type Letter = (Option<Vec<u8>>, Vec<u8>, i64);

/// Dead letters as a rill job writes them: original key and value, provenance in headers.
fn produce_dead_letters(brokers: &str, letters: &[Letter]) {
    let producer: BaseProducer = rill::connectors::kafka::client_config(brokers)
        .create()
        .expect("producer");
    for (key, value, offset) in letters {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "rill.dlq.stage",
                value: Some("decode"),
            })
            .insert(Header {
                key: "rill.dlq.error",
                value: Some("value of record orders/0@1 is not the expected JSON"),
            })
            .insert(Header {
                key: "rill.dlq.origin.topic",
                value: Some("orders"),
            })
            .insert(Header {
                key: "rill.dlq.origin.partition",
                value: Some("0"),
            })
            .insert(Header {
                key: "rill.dlq.origin.offset",
                value: Some(&offset.to_string()),
            });
        let mut record = BaseRecord::<Vec<u8>, Vec<u8>>::to("orders-dlq")
            .payload(value)
            .headers(headers);
        if let Some(k) = key {
            record = record.key(k);
        }
        producer.send(record).map_err(|(e, _)| e).expect("send");
    }
    producer.flush(Duration::from_secs(30)).expect("flushed");
}

#[test]
fn dead_letters_round_trip_through_an_s3_archive_byte_for_byte() {
    let mut s3 = S3Server::start();
    s3.create_bucket("dlq-archive");
    common::s3_server::set_test_credentials();
    let kafka = EmbeddedKafka::start().expect("mock cluster");
    let brokers = kafka.bootstrap_servers();
    for topic in ["orders", "orders-dlq", "recovery"] {
        kafka.create_topic(topic, 1).expect("topic");
    }
    // Text, binary (not UTF-8), empty and key-less letters.
    let letters: Vec<Letter> = (0..300i64)
        .map(|i| {
            let key = (i % 5 != 0).then(|| format!("order-{i}").into_bytes());
            let value = match i % 3 {
                0 => format!("{{\"broken\": {i}").into_bytes(),
                1 => vec![0xff, 0xfe, i as u8, 0x00, b'\n', b'"'],
                _ => Vec::new(),
            };
            (key, value, i)
        })
        .collect();
    produce_dead_letters(&brokers, &letters);

    let archive = Command::new(common::example_binary("dlq_archive"))
        .args(["--brokers", &brokers, "--input", "orders-dlq"])
        .args([
            "--to",
            "s3://dlq-archive/prod",
            "--s3-endpoint",
            &s3.endpoint(),
        ])
        // The checkpoints go to the object store too.
        .args(["--checkpoint-interval", "100ms"])
        .args(["--checkpoint-dir", "s3://dlq-archive/checkpoints"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dlq_archive starts");
    // The archive is complete once every letter is in a committed file.
    let location = StoreLocation::parse_with(
        "s3://dlq-archive/prod",
        &s3.settings(Duration::from_secs(10)),
    )
    .expect("location");
    let archived = || {
        let out = CollectSink::default();
        let job = Job::new("count-archive");
        job.source(FileSource::<rill::connectors::kafka::ArchivedRecord>::new(
            location.clone(),
            Format::json_lines(),
        ))
        .sink(out.clone());
        common::finish(job.run(Config::default()).expect("job")).expect("read");
        out.take()
    };
    common::gated::wait_until("every letter archived", || {
        std::thread::sleep(Duration::from_millis(100));
        archived().len() >= letters.len()
    });
    common::stop_with_sigterm(archive);
    let checkpoints = rill::files::ObjectStoreCheckpoints::new(
        StoreLocation::parse_with(
            "s3://dlq-archive/checkpoints",
            &s3.settings(Duration::from_secs(10)),
        )
        .expect("location"),
    );
    let manifests = rill::engine::CheckpointStorage::list(&checkpoints, "")
        .expect("list")
        .into_iter()
        .filter(|n| n.ends_with("/MANIFEST"))
        .count();
    assert!(
        manifests > 0,
        "no checkpoint in s3://dlq-archive/checkpoints"
    );
    let records = archived();
    assert_eq!(records.len(), letters.len(), "exactly once");
    let first = records
        .iter()
        .find(|r| r.header("rill.dlq.origin.offset") == Some("7"))
        .expect("letter 7");
    assert_eq!(first.origin_topic(), Some("orders"));
    assert_eq!(first.header("rill.dlq.stage"), Some("decode"));
    assert!(first.header("rill.dlq.error").is_some());

    // Replay into the original topic (from the origin header), then into another one.
    for (flag, topic) in [(None, "orders"), (Some("recovery"), "recovery")] {
        let mut cmd = Command::new(common::example_binary("dlq_replay"));
        cmd.args(["--from", "s3://dlq-archive/prod", "--brokers", &brokers])
            .args(["--s3-endpoint", &s3.endpoint()]);
        if let Some(t) = flag {
            cmd.args(["--output", t]);
        }
        let out = cmd.output().expect("dlq_replay runs");
        assert!(
            out.status.success(),
            "dlq_replay: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut back: Vec<(Option<Vec<u8>>, Vec<u8>)> =
            common::kafka::read(&brokers, topic, letters.len(), Duration::from_secs(30))
                .into_iter()
                .map(|(k, v, _)| (k, v.unwrap_or_default()))
                .collect();
        let mut sent: Vec<(Option<Vec<u8>>, Vec<u8>)> = letters
            .iter()
            .map(|(k, v, _)| (k.clone(), v.clone()))
            .collect();
        back.sort();
        sent.sort();
        assert_eq!(back, sent, "{topic}: byte for byte");
    }
}
