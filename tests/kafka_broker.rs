//! Kafka source and sink against a separate broker process (noida-db), over the wire.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use rill::connectors::kafka::{KafkaRecord, KafkaSink, KafkaSource, SourceStats, StartFrom};
use rill::prelude::*;

use common::broker::Broker;
use common::kafka::{produce, read, read_to_end};

fn relay(brokers: &str, group: &str, workers: usize) -> (JobHandle, std::sync::Arc<SourceStats>) {
    let job = Job::new(group);
    let source = KafkaSource::new(brokers, group).topics(["in"]);
    let stats = source.stats();
    job.source(source)
        .try_map(
            |r: KafkaRecord| -> Result<(Vec<u8>, Vec<u8>), rill::BoxError> {
                Ok((r.key_bytes()?.to_vec(), r.value_bytes()?.to_vec()))
            },
        )
        .sink(KafkaSink::new(brokers).topic("out"));
    let handle = job
        .run(Config::default().with_workers(workers))
        .expect("job starts");
    (handle, stats)
}

#[test]
fn a_member_joining_mid_stream_neither_loses_nor_repeats_records() {
    let broker = Broker::start();
    broker.create_topic("in", 4);
    broker.create_topic("out", 4);
    let brokers = broker.bootstrap.clone();
    let total = 3000usize;
    let input: Vec<(Vec<u8>, Vec<u8>)> = (0..total)
        .map(|i| (format!("k{i}").into_bytes(), format!("v{i}").into_bytes()))
        .collect();

    let (first, first_stats) = relay(&brokers, "relay", 2);
    produce(&brokers, "in", &input[..total / 2]);
    let consumed = |h: &JobHandle| h.metrics().get("kafka").map_or(0, |m| m.records_out);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while consumed(&first) < (total / 2) as u64 {
        assert!(
            std::time::Instant::now() < deadline,
            "first half not consumed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A second job joins the group: the first job's partitions are revoked (it commits what
    // it handed on) and spread over both.
    let (second, _) = relay(&brokers, "relay", 1);
    // The revocation commits what the first job handed on (cooperative rebalancing: the group
    // is stable when partitions move, so the broker accepts it).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while first_stats.commits() < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "no revoke-time commit was accepted ({} refused)",
            first_stats.failed_commits()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    produce(&brokers, "in", &input[total / 2..]);

    // noida-db may hold the second step of the cooperative rebalance (handing the joining job
    // its partitions) for about a minute (see the README's Guarantees): once in 32 runs here.
    let output = read(&brokers, "out", total, Duration::from_secs(150));
    second.stop();
    first.stop();
    let m2 = common::finish(second).expect("second job stops cleanly");
    let m1 = common::finish(first).expect("first job stops cleanly");
    // Both stopped and flushed: the topic holds everything written, duplicates included.
    let everything = read_to_end(&brokers, "out", Duration::from_secs(60));

    let read_by = |m: &rill::JobMetrics| m.get("kafka").map_or(0, |n| n.records_out);
    assert_eq!(
        output.len(),
        total,
        "every record relayed (the jobs read {} + {}, the topic holds {})",
        read_by(&m1),
        read_by(&m2),
        everything.len()
    );
    assert_eq!(everything.len(), total, "no record relayed twice");
    let keys: HashSet<Vec<u8>> = everything.into_iter().filter_map(|(k, _, _)| k).collect();
    assert_eq!(keys.len(), total);
    assert_eq!(
        read_by(&m1) + read_by(&m2),
        total as u64,
        "each record consumed once"
    );
    // Commits at stop, with several members leaving at once, may be refused while the group
    // re-forms: then a restart re-reads what was handed on since the last commit
    // (at-least-once); checkpointing jobs own their offsets instead.
    assert!(read_by(&m2) > 0, "the joining job took over partitions");
}

/// A bounded, checkpointed run over `aged` (one partition) that starts from `start`: the keys
/// it read.
fn checkpointed_run(brokers: &str, dir: &std::path::Path, start: StartFrom) -> Vec<Vec<u8>> {
    let job = Job::new("aged");
    let out = CollectSink::default();
    job.source(
        KafkaSource::new(brokers, "aged-reader")
            .topics(["aged"])
            .start_from(start)
            .bounded(),
    )
    .map(|r: KafkaRecord| r.key.unwrap_or_default())
    .sink(out.clone());
    let config = Config::default()
        .with_workers(1)
        .with_checkpoints(CheckpointConfig::new(dir));
    common::finish(job.run(config).expect("job starts")).expect("bounded run succeeds");
    out.take()
}

#[test]
fn a_restored_position_below_retention_resumes_at_the_earliest_retained_record() {
    let broker = Broker::start();
    broker.create_topic("aged", 1);
    let brokers = broker.bootstrap.clone();
    let dir = std::env::temp_dir().join(format!("rill-aged-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let records = |range: std::ops::Range<u32>| -> Vec<(Vec<u8>, Vec<u8>)> {
        range
            .map(|i| (format!("k{i}").into_bytes(), b"v".to_vec()))
            .collect()
    };
    produce(&brokers, "aged", &records(0..10));
    assert_eq!(
        checkpointed_run(&brokers, &dir, StartFrom::Earliest).len(),
        10
    );

    // While the job is down, 10 more arrive and retention deletes offsets below 15: the
    // checkpoint's position (10) is out of range.
    produce(&brokers, "aged", &records(10..20));
    assert_eq!(common::kafka::delete_records(&brokers, "aged", 0, 15), 15);

    // Restored with `Latest` (which applies only to partitions the job never read): the
    // retained backlog after the lost range is read, not skipped to the end.
    let mut got = checkpointed_run(&brokers, &dir, StartFrom::Latest);
    got.sort();
    let want: Vec<Vec<u8>> = (15..20).map(|i| format!("k{i}").into_bytes()).collect();
    assert_eq!(got, want);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_header_key_that_is_not_utf8_makes_a_dead_letter_and_its_offset_advances() {
    use rill::connectors::kafka::dead_letter_headers as h;
    let broker = Broker::start();
    for topic in ["poison-in", "poison-out", "poison-dlq"] {
        broker.create_topic(topic, 1);
    }
    let brokers = broker.bootstrap.clone();
    let plain = |range: std::ops::Range<u32>| -> Vec<(Vec<u8>, Vec<u8>)> {
        range
            .map(|i| (format!("k{i}").into_bytes(), format!("v{i}").into_bytes()))
            .collect()
    };
    produce(&brokers, "poison-in", &plain(0..3));
    common::kafka::produce_with_raw_header(
        &brokers,
        "poison-in",
        0,
        b"poisoned",
        b"\xff\xfekey",
        b"hv",
    );
    produce(&brokers, "poison-in", &plain(3..5));

    let run = || {
        let job = Job::new("poison");
        job.dead_letter(KafkaSink::new(brokers.clone()).topic("poison-dlq"));
        job.source(
            KafkaSource::new(brokers.clone(), "poison")
                .topics(["poison-in"])
                .bounded(),
        )
        .map(|r: KafkaRecord| (r.key.unwrap_or_default(), r.value.unwrap_or_default()))
        .sink(KafkaSink::new(brokers.clone()).topic("poison-out"));
        common::finish(job.run(Config::default().with_workers(1)).expect("starts"))
    };
    run().expect("the record with the bad header does not fail the job");
    let out = read_to_end(&brokers, "poison-out", Duration::from_secs(30));
    let mut values: Vec<Vec<u8>> = out.into_iter().filter_map(|(_, v, _)| v).collect();
    values.sort();
    let want: Vec<Vec<u8>> = (0..5).map(|i| format!("v{i}").into_bytes()).collect();
    assert_eq!(values, want);
    let letters = read_to_end(&brokers, "poison-dlq", Duration::from_secs(30));
    assert_eq!(letters.len(), 1, "one dead letter");
    let (_, value, headers) = &letters[0];
    assert_eq!(value.as_deref(), Some(&b"poisoned"[..]));
    let error = String::from_utf8_lossy(&headers[h::ERROR]).to_string();
    assert!(
        error.contains("header 0 of the record has a key that is not UTF-8"),
        "{error}"
    );
    assert_eq!(&headers[h::STAGE][..], b"kafka");
    assert_eq!(&headers[h::OFFSET][..], b"3");
    // Its offset was committed with the others: the next run does not read it again.
    run().expect("second run");
    assert_eq!(
        read_to_end(&brokers, "poison-dlq", Duration::from_secs(30)).len(),
        1
    );
}
