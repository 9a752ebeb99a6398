//! Kafka source and sink against librdkafka's mock cluster (EmbeddedKafka), over the wire.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use rill::connectors::kafka::{
    EmbeddedKafka, KafkaRecord, KafkaSink, KafkaSource, SourceStats, StartFrom,
};
use rill::prelude::*;

use common::kafka::{committed_total, produce, read, read_to_end};

/// Every wanted record is in `got` exactly once, and nothing else is; reports counts, not sets.
fn assert_exactly_once(got: &[(Vec<u8>, Vec<u8>)], want: &[(Vec<u8>, Vec<u8>)]) {
    let want_set: HashSet<&(Vec<u8>, Vec<u8>)> = want.iter().collect();
    let mut seen = HashSet::new();
    let duplicated = got.iter().filter(|r| !seen.insert(*r)).count();
    let unexpected = got.iter().filter(|r| !want_set.contains(r)).count();
    let missing = want.iter().filter(|r| !seen.contains(r)).count();
    assert_eq!(
        (duplicated, unexpected, missing),
        (0, 0, 0),
        "(duplicated, unexpected, missing) of {} wanted, {} read",
        want.len(),
        got.len()
    );
}

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
    // Stopped and flushed: the topic holds everything the job wrote, duplicates included.
    let everything = read_to_end(&brokers, "out", Duration::from_secs(60));

    assert_eq!(output.len(), input.len(), "every record relayed");
    let got: Vec<(Vec<u8>, Vec<u8>)> = everything
        .into_iter()
        .map(|(k, v, _)| (k.unwrap_or_default(), v.unwrap_or_default()))
        .collect();
    let want: Vec<(Vec<u8>, Vec<u8>)> = input
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                String::from_utf8_lossy(v).to_uppercase().into_bytes(),
            )
        })
        .collect();
    assert_exactly_once(&got, &want);
    assert_eq!(metrics.get("kafka").map(|m| m.records_out), Some(3000));
    assert!(
        positions.snapshot().is_empty(),
        "partitions released on stop"
    );
}

#[test]
fn stopping_commits_the_positions_of_everything_handed_on() {
    // One member, so no rebalance can refuse the final commit (librdkafka's mock cluster
    // refuses commits while a group is re-forming; real brokers accept them).
    let kafka = EmbeddedKafka::start().expect("mock cluster");
    kafka.create_topic("commit-in", 2).expect("topic");
    let brokers = kafka.bootstrap_servers();
    let input: Vec<(Vec<u8>, Vec<u8>)> = (0..500)
        .map(|i| (format!("k{i}").into_bytes(), b"v".to_vec()))
        .collect();
    produce(&brokers, "commit-in", &input);

    let job = Job::new("committer");
    let source = KafkaSource::new(brokers.clone(), "committer")
        .topics(["commit-in"])
        .start_from(StartFrom::Earliest);
    let stats = source.stats();
    let out = CollectSink::default();
    job.source(source).sink(out.clone());
    let handle = job
        .run(Config::default().with_workers(1))
        .expect("job starts");
    wait_for("all input", || out.len() == input.len());
    handle.stop();
    common::finish(handle).expect("stops cleanly");

    assert_eq!(committed_total(&brokers, "committer", "commit-in"), 500);
    // The final epoch's commit of what the sink acknowledged, and the leaving member's.
    assert!(stats.commits() >= 1, "{}", stats.commits());
    assert_eq!(stats.failed_commits(), 0);
    // A restart of the group continues after what was handed on: nothing is read again.
    let job = Job::new("committer-again");
    let again = CollectSink::<KafkaRecord>::default();
    job.source(KafkaSource::new(brokers.clone(), "committer").topics(["commit-in"]))
        .sink(again.clone());
    let handle = job
        .run(Config::default().with_workers(1))
        .expect("job starts");
    produce(&brokers, "commit-in", &[(b"new".to_vec(), b"v".to_vec())]);
    wait_for("the new record", || !again.is_empty());
    handle.stop();
    common::finish(handle).expect("stops cleanly");
    // The stop committed the position of everything handed on: the whole topic (501 records),
    // so the restart read to the end, and it handed on only the new record.
    assert_eq!(committed_total(&brokers, "committer", "commit-in"), 501);
    let keys: Vec<Vec<u8>> = again.take().into_iter().filter_map(|r| r.key).collect();
    assert_eq!(keys, [b"new".to_vec()]);
}

/// A relay job of consumer group `group`, reading `rb-in`, writing the same records to `rb-out`.
fn relay(brokers: &str, group: &str) -> (JobHandle, std::sync::Arc<SourceStats>) {
    let job = Job::new(group);
    let source = KafkaSource::new(brokers, group).topics(["rb-in"]);
    let stats = source.stats();
    job.source(source)
        .try_map(
            |r: KafkaRecord| -> Result<(Vec<u8>, Vec<u8>), rill::BoxError> {
                Ok((r.key_bytes()?.to_vec(), r.value_bytes()?.to_vec()))
            },
        )
        .sink(
            KafkaSink::new(brokers)
                .topic("rb-out")
                .set("linger.ms", EmbeddedKafka::PRODUCER_LINGER_MS),
        );
    let handle = job
        .run(Config::default().with_workers(1))
        .expect("job starts");
    (handle, stats)
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_member_leaving_mid_stream_neither_loses_nor_repeats_records() {
    let kafka = EmbeddedKafka::start().expect("mock cluster");
    kafka.create_topic("rb-in", 4).expect("topic");
    kafka.create_topic("rb-out", 4).expect("topic");
    let brokers = kafka.bootstrap_servers();
    let total = 4000usize;
    let input: Vec<(Vec<u8>, Vec<u8>)> = (0..total)
        .map(|i| (format!("k{i}").into_bytes(), format!("v{i}").into_bytes()))
        .collect();

    // Two members share the four partitions.
    let (first, first_stats) = relay(&brokers, "rb");
    let (second, _) = relay(&brokers, "rb");
    let consumed = |h: &JobHandle| h.metrics().get("kafka").map_or(0, |m| m.records_out);

    // Half the input; both members must have worked on it before one leaves.
    produce(&brokers, "rb-in", &input[..total / 2]);
    wait_for("both members to consume", || {
        consumed(&first) + consumed(&second) == (total / 2) as u64
            && consumed(&first) > 0
            && consumed(&second) > 0
    });
    // The second member leaves: it commits what it handed on, the first takes over its
    // partitions (and, eager protocol, gets its own back).
    second.stop();
    let m2 = common::finish(second).expect("leaving member stops cleanly");
    produce(&brokers, "rb-in", &input[total / 2..]);

    let output = read(&brokers, "rb-out", total, Duration::from_secs(60));
    first.stop();
    let m1 = common::finish(first).expect("remaining member stops cleanly");
    // Both stopped and flushed: the topic holds everything written, duplicates included.
    let everything = read_to_end(&brokers, "rb-out", Duration::from_secs(60));

    assert_eq!(output.len(), total, "every record relayed");
    let got: Vec<(Vec<u8>, Vec<u8>)> = everything
        .into_iter()
        .map(|(k, v, _)| (k.unwrap_or_default(), v.unwrap_or_default()))
        .collect();
    assert_exactly_once(&got, &input);
    let read_by = |m: &rill::JobMetrics| m.get("kafka").map_or(0, |n| n.records_out);
    assert_eq!(
        read_by(&m1) + read_by(&m2),
        total as u64,
        "each record consumed once"
    );
    eprintln!(
        "commits by the remaining member: {} ok, {} refused by the broker",
        first_stats.commits(),
        first_stats.failed_commits()
    );
}

/// A bounded run of group `group` over `archive` at `workers` workers: the keys it read.
fn bounded_run(brokers: &str, group: &str, start: StartFrom, workers: usize) -> Vec<Vec<u8>> {
    let job = Job::new("replay");
    let out = CollectSink::default();
    job.source(
        KafkaSource::new(brokers, group)
            .topics(["archive"])
            .start_from(start)
            .bounded(),
    )
    .map(|r: KafkaRecord| r.key.unwrap_or_default())
    .sink(out.clone());
    let handle = job
        .run(Config::default().with_workers(workers))
        .expect("job starts");
    // No stop(): a bounded job ends by itself.
    common::finish(handle).expect("bounded run succeeds");
    out.take()
}

#[test]
fn bounded_runs_read_what_was_there_at_start_and_end_by_themselves() {
    let kafka = EmbeddedKafka::start().expect("mock cluster");
    kafka.create_topic("archive", 3).expect("topic");
    let brokers = kafka.bootstrap_servers();

    assert!(bounded_run(&brokers, "replayer", StartFrom::Earliest, 2).is_empty());

    let first: Vec<(Vec<u8>, Vec<u8>)> = (0..1000)
        .map(|i| (format!("a{i}").into_bytes(), b"v".to_vec()))
        .collect();
    produce(&brokers, "archive", &first);
    let mut got = bounded_run(&brokers, "replayer", StartFrom::Earliest, 2);
    got.sort();
    let mut want: Vec<Vec<u8>> = first.iter().map(|(k, _)| k.clone()).collect();
    want.sort();
    assert_eq!(got, want, "everything that was there, once");

    // The run committed where it ended: the next one reads only what came since.
    let second: Vec<(Vec<u8>, Vec<u8>)> = (0..200)
        .map(|i| (format!("b{i}").into_bytes(), b"v".to_vec()))
        .collect();
    produce(&brokers, "archive", &second);
    let mut got = bounded_run(&brokers, "replayer", StartFrom::Committed, 3);
    got.sort();
    let mut want: Vec<Vec<u8>> = second.iter().map(|(k, _)| k.clone()).collect();
    want.sort();
    assert_eq!(got, want, "only the records added since the last run");
}

#[derive(Debug, serde::Deserialize)]
struct Click {
    user: String,
    n: u32,
}

#[test]
fn bad_records_go_to_the_dead_letter_topic_whole_and_the_job_goes_on() {
    use rill::connectors::kafka::dead_letter_headers as h;

    let kafka = EmbeddedKafka::start().expect("mock cluster");
    for topic in ["clicks", "clicks-out", "clicks-dlq"] {
        kafka.create_topic(topic, 1).expect("topic");
    }
    let brokers = kafka.bootstrap_servers();
    const MAX_VALUE: usize = 64 * 1024;
    let oversized = format!(r#"{{"user":"big","n":1,"pad":"{}"}}"#, "x".repeat(100_000));
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("malformed", br#"{"user": "u1", "n": "#.to_vec()),
        ("not-utf8", b"\xff\xfe{\"user\"".to_vec()),
        ("empty", Vec::new()),
        ("oversized", oversized.into_bytes()),
    ];
    let mut input: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for i in 0..50u32 {
        input.push((
            format!("g{i}").into_bytes(),
            format!(r#"{{"user":"u{i}","n":{i}}}"#).into_bytes(),
        ));
        if let Some((key, value)) = bad.get(i as usize / 12) {
            if i % 12 == 5 {
                input.push((key.as_bytes().to_vec(), value.clone()));
            }
        }
    }
    produce(&brokers, "clicks", &input);

    let job = Job::new("clicks");
    job.dead_letter(KafkaSink::new(brokers.clone()).topic("clicks-dlq"));
    job.source(
        KafkaSource::new(brokers.clone(), "clicks")
            .topics(["clicks"])
            .start_from(StartFrom::Earliest)
            .bounded(),
    )
    .decode(|r: &KafkaRecord| -> Result<Click, rill::BoxError> {
        if r.value.as_ref().map_or(0, Vec::len) > MAX_VALUE {
            return Err(format!("value larger than {MAX_VALUE} bytes").into());
        }
        Ok(r.value_json::<Click>()?)
    })
    .map(|c: Click| (c.user, c.n.to_string()))
    .sink(KafkaSink::new(brokers.clone()).topic("clicks-out"));
    let metrics = common::finish(job.run(Config::default().with_workers(2)).expect("starts"))
        .expect("bad records do not fail the job");

    let out = read(&brokers, "clicks-out", 50, Duration::from_secs(30));
    let dlq = read(&brokers, "clicks-dlq", bad.len(), Duration::from_secs(30));
    assert_eq!(out.len(), 50, "every good record in the output");
    assert_eq!(
        dlq.len(),
        bad.len(),
        "every bad record in the dead-letter topic"
    );
    assert_eq!(
        metrics.get("dead_letter").map(|m| m.records_in),
        Some(bad.len() as u64)
    );
    for (key, value, headers) in &dlq {
        let key = String::from_utf8(key.clone().expect("original key kept")).expect("UTF-8 key");
        let original = bad.iter().find(|(k, _)| *k == key).expect("a bad record");
        assert_eq!(
            value.as_deref().unwrap_or_default(),
            &original.1[..],
            "{key}: original bytes"
        );
        assert_eq!(
            headers.get(h::STAGE).map(Vec::as_slice),
            Some(&b"decode"[..])
        );
        assert_eq!(
            headers.get(h::TOPIC).map(Vec::as_slice),
            Some(&b"clicks"[..])
        );
        assert_eq!(
            headers.get(h::PARTITION).map(Vec::as_slice),
            Some(&b"0"[..])
        );
        let offset: i64 = String::from_utf8_lossy(&headers[h::OFFSET])
            .parse()
            .expect("offset");
        let position = input
            .iter()
            .position(|(k, _)| k == key.as_bytes())
            .expect("produced");
        assert_eq!(offset, position as i64, "{key}: the offset it was read at");
        assert!(!headers[h::ERROR].is_empty(), "{key}: the error is named");
    }

    // Replaying the archived dead letters (a bounded run) writes the original records again.
    kafka.create_topic("clicks-replayed", 1).expect("topic");
    let replay = Job::new("replay");
    replay
        .source(
            KafkaSource::new(brokers.clone(), "replayer")
                .topics(["clicks-dlq"])
                .start_from(StartFrom::Earliest)
                .bounded(),
        )
        .map(|r: KafkaRecord| (r.key.unwrap_or_default(), r.value.unwrap_or_default()))
        .sink(KafkaSink::new(brokers.clone()).topic("clicks-replayed"));
    common::finish(
        replay
            .run(Config::default().with_workers(1))
            .expect("starts"),
    )
    .expect("replay ends by itself");
    let replayed = read(
        &brokers,
        "clicks-replayed",
        bad.len(),
        Duration::from_secs(30),
    );
    let mut got: Vec<(Vec<u8>, Vec<u8>)> = replayed
        .into_iter()
        .map(|(k, v, _)| (k.unwrap_or_default(), v.unwrap_or_default()))
        .collect();
    got.sort();
    let mut want: Vec<(Vec<u8>, Vec<u8>)> = bad
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.clone()))
        .collect();
    want.sort();
    assert_eq!(got.len(), want.len());
    assert!(
        got == want,
        "replayed records equal the originals byte for byte"
    );
}

/// A job writing `records` (key, value) to topic `sink-out` through a Kafka sink that
/// dead-letters failed deliveries; with `dead_letters`, the job's dead-letter sink.
fn write_with_rejects(
    brokers: &str,
    records: Vec<(String, Vec<u8>)>,
    dead_letters: Option<CollectSink<DeadLetter>>,
) -> Result<rill::JobMetrics, rill::JobError> {
    let job = Job::new("rejects");
    if let Some(dl) = dead_letters {
        job.dead_letter(dl);
    }
    job.source(MemorySource::new(records)).sink(
        KafkaSink::new(brokers)
            .topic("sink-out")
            .dead_letter_failed_deliveries(),
    );
    common::finish(job.run(Config::default().with_workers(2)).expect("starts"))
}

#[test]
fn records_the_broker_rejects_become_dead_letters_where_configured() {
    let kafka = EmbeddedKafka::start().expect("mock cluster");
    kafka.create_topic("sink-out", 1).expect("topic");
    let brokers = kafka.bootstrap_servers();
    // Larger than the producer's `message.max.bytes` (1 MB by default): rejected.
    let huge = vec![b'x'; 2_000_000];
    let mut records: Vec<(String, Vec<u8>)> = (0..20)
        .map(|i| (format!("k{i}"), b"small".to_vec()))
        .collect();
    records.push(("huge".to_string(), huge.clone()));

    let letters = CollectSink::default();
    let metrics = write_with_rejects(&brokers, records.clone(), Some(letters.clone()))
        .expect("a rejected record does not fail the job");
    assert_eq!(metrics.get("dead_letter").map(|m| m.records_in), Some(1));
    let letters = letters.take();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].key.as_deref(), Some(&b"huge"[..]));
    assert_eq!(
        letters[0].value.as_deref(),
        Some(&huge[..]),
        "the whole value is kept"
    );
    assert!(
        letters[0].error.contains("sink-out"),
        "{}",
        letters[0].error
    );
    let written = read(&brokers, "sink-out", 21, Duration::from_secs(5));
    assert_eq!(written.len(), 20, "every other record delivered");

    // Without a dead-letter sink the same rejection fails the job.
    let err = write_with_rejects(&brokers, records, None).expect_err("fails");
    assert!(
        matches!(&err, rill::JobError::Sink { sink, .. } if &**sink == "kafka"),
        "{err}"
    );
}

#[test]
fn a_pattern_subscribes_to_every_matching_topic() {
    let kafka = EmbeddedKafka::start().expect("mock cluster");
    for topic in ["pat-web", "pat-app", "other"] {
        kafka.create_topic(topic, 1).expect("topic");
    }
    let brokers = kafka.bootstrap_servers();
    for topic in ["pat-web", "pat-app", "other"] {
        produce(
            &brokers,
            topic,
            &[(topic.as_bytes().to_vec(), b"v".to_vec())],
        );
    }
    let job = Job::new("pattern");
    let out = CollectSink::default();
    job.source(
        KafkaSource::new(brokers.clone(), "pattern")
            .topics(["^pat-.*"])
            .start_from(StartFrom::Earliest),
    )
    .map(|r: KafkaRecord| r.topic.to_string())
    .sink(out.clone());
    let handle = job.run(Config::default().with_workers(1)).expect("starts");
    wait_for("both matching topics", || out.len() >= 2);
    handle.stop();
    common::finish(handle).expect("stops cleanly");
    // Read to the end of both matching topics (the stop commits what was handed on), and of
    // nothing else.
    for (topic, handed_on) in [("pat-web", 1), ("pat-app", 1), ("other", 0)] {
        assert_eq!(
            committed_total(&brokers, "pattern", topic),
            handed_on,
            "{topic}"
        );
    }
    let mut topics = out.take();
    topics.sort();
    assert_eq!(
        topics,
        ["pat-app", "pat-web"],
        "matching topics only, once each"
    );
}

#[test]
fn an_aborted_job_does_not_wait_for_a_full_producer_queue() {
    // A broker that never answers (nothing listens on port 1) and a queue of one record: the
    // second write finds the queue full, and nothing will free it for `message.timeout.ms`.
    let job = Job::new("queue-full");
    job.source(Generator::new(10_000.0, |i| format!("v{i}")))
        .map(|g: Generated<String>| g.value)
        .sink(
            KafkaSink::<String>::new("127.0.0.1:1")
                .topic("nowhere")
                .set("queue.buffering.max.messages", "1")
                .set("message.timeout.ms", "300000"),
        );
    let handle = job.run(Config::default().with_workers(1)).expect("starts");
    // Let the sink fill its queue and start waiting for room.
    std::thread::sleep(Duration::from_millis(300));
    let (dropped_tx, dropped) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(handle);
        let _ = dropped_tx.send(());
    });
    dropped
        .recv_timeout(Duration::from_secs(20))
        .expect("the abort ends the write waiting for room: the job stops at once");
}

#[test]
fn a_checkpoint_waits_until_its_dead_letters_are_delivered() {
    // The dead-letter topic is unreachable: a letter is accepted into the producer's queue and
    // fails 0.5 s later, asynchronously. The barrier after it must wait for that verdict, so
    // the job fails before a checkpoint past the bad record completes (a restart would skip
    // the record and the letter would be lost).
    let dir = std::env::temp_dir().join(format!(
        "rill-dlq-barrier-{}-{}",
        std::process::id(),
        rill::time::now_nanos()
    ));
    let job = Job::new("dlq-barrier");
    job.dead_letter(
        KafkaSink::new("127.0.0.1:1")
            .topic("dlq")
            .set("message.timeout.ms", "500"),
    );
    job.source(Generator::new(1_000.0, |i| i))
        .try_map(|g: Generated<u64>| -> Result<u64, rill::BoxError> {
            if g.value == 20 {
                return Err("record 20 is bad".into());
            }
            Ok(g.value)
        })
        .sink(CollectSink::default());
    let config = Config::default()
        .with_workers(1)
        .with_checkpoints(CheckpointConfig::new(&dir).with_interval(Duration::from_millis(50)));
    let mut handle = job.run(config).expect("starts");
    let outcome = handle
        .await_termination_timeout(Duration::from_secs(30))
        .expect("the undelivered dead letter ends the job");
    let err = outcome.expect_err("a lost dead letter is a failure");
    assert!(
        matches!(&err, JobError::Sink { sink, .. } if &**sink == "dead_letter"),
        "{err:?}"
    );
    // Without the barrier's wait the job would run on, checkpoint after checkpoint, and the
    // failure would surface (if ever) at close, after the record's offset was checkpointed.
    let _ = std::fs::remove_dir_all(&dir);
}

/// A job reading `topic` from `brokers` in a consumer group, giving up after 2 s of errors.
fn short_fused(brokers: &str, topic: &str) -> (Job, std::sync::Arc<SourceStats>) {
    let source = KafkaSource::new(brokers, "short-fused")
        .topics([topic])
        .unavailable_timeout(Duration::from_secs(2));
    let stats = source.stats();
    let job = Job::new("short-fused");
    job.source(source)
        .map(|r: KafkaRecord| r.offset)
        .sink(CollectSink::default());
    (job, stats)
}

#[test]
fn a_broker_down_at_start_or_a_missing_topic_fails_the_job_after_its_bound() {
    // Nothing listens on this port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .to_string();
    let started = std::time::Instant::now();
    let (job, stats) = short_fused(&closed, "anything");
    let err = common::finish(job.run(Config::default().with_workers(1)).expect("starts"))
        .expect_err("no broker: the job fails");
    let msg = rill::ErrorChain(&err).to_string();
    assert!(msg.contains("Kafka unavailable for"), "{msg}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert!(stats.consumer_errors() > 0);

    let kafka = EmbeddedKafka::start().expect("mock cluster");
    let (job, stats) = short_fused(&kafka.bootstrap_servers(), "never-created");
    let err = common::finish(job.run(Config::default().with_workers(1)).expect("starts"))
        .expect_err("no topic: the job fails");
    let msg = rill::ErrorChain(&err).to_string();
    assert!(msg.contains("Kafka unavailable for"), "{msg}");
    assert!(msg.contains("never-created"), "{msg}");
    assert!(stats.consumer_errors() > 0);
}

/// Values `from..to` as records of a one-partition topic.
fn numbered(from: u64, to: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
    (from..to)
        .map(|i| (format!("k{i}").into_bytes(), i.to_string().into_bytes()))
        .collect()
}

/// Reads every input number of `ack-in` through an exchange (`rebalance`) to `ack-out`, failing on
/// `poison` if given; commits every `commit_interval`.
fn acknowledging_job(brokers: &str, poison: Option<u64>, commit_interval: Duration) -> Job {
    let job = Job::new("acks");
    job.source(
        KafkaSource::new(brokers, "acks")
            .topics(["ack-in"])
            .commit_interval(commit_interval),
    )
    .try_map(|r: KafkaRecord| -> Result<u64, rill::BoxError> { Ok(r.value_str()?.parse()?) })
    .rebalance()
    .try_map(move |n: u64| {
        if Some(n) == poison {
            Err(format!("cannot handle {n}"))
        } else {
            Ok((n.to_string(), n.to_string()))
        }
    })
    .sink(KafkaSink::new(brokers).topic("ack-out"));
    job
}

#[test]
fn a_failed_job_commits_only_what_its_sinks_acknowledged() {
    let kafka = EmbeddedKafka::start().expect("mock cluster");
    kafka.create_topic("ack-in", 1).expect("topic");
    kafka.create_topic("ack-out", 1).expect("topic");
    let brokers = kafka.bootstrap_servers();
    produce(&brokers, "ack-in", &numbered(0, 1_000));
    // Fails on 700 after the exchange, long before its first commit.
    // One worker: the only group member, whose leaving commit the broker accepts.
    let job = acknowledging_job(&brokers, Some(700), Duration::from_secs(3600));
    let err = common::finish(job.run(Config::default().with_workers(1)).expect("starts"))
        .expect_err("the poison record fails the job");
    assert!(matches!(err, JobError::UserFunction { .. }), "{err:?}");
    assert_eq!(
        committed_total(&brokers, "acks", "ack-in"),
        0,
        "nothing was acknowledged, so nothing is committed"
    );
    // The restart reads everything again: every number reaches the output (at least once).
    let handle = acknowledging_job(&brokers, None, Duration::from_millis(100))
        .run(Config::default().with_workers(2))
        .expect("restarts");
    // Once everything is committed, the sink acknowledged everything.
    wait_for("1,000 offsets committed", || {
        committed_total(&brokers, "acks", "ack-in") == 1_000
    });
    let seen: HashSet<String> = read_to_end(&brokers, "ack-out", Duration::from_secs(30))
        .into_iter()
        .map(|(_, v, _)| String::from_utf8(v.unwrap_or_default()).expect("utf-8"))
        .collect();
    handle.stop();
    common::finish(handle).expect("second run");
    assert_eq!(seen.len(), 1_000, "every number written");
}

#[test]
fn a_group_job_commits_acknowledged_offsets_while_it_runs() {
    let kafka = EmbeddedKafka::start().expect("mock cluster");
    kafka.create_topic("ack-in", 1).expect("topic");
    kafka.create_topic("ack-out", 1).expect("topic");
    let brokers = kafka.bootstrap_servers();
    let handle = acknowledging_job(&brokers, None, Duration::from_millis(100))
        .run(Config::default().with_workers(2))
        .expect("starts");
    produce(&brokers, "ack-in", &numbered(0, 500));
    // Committed while running (before any stop or rebalance), after the sink's acks.
    wait_for("500 offsets committed while running", || {
        committed_total(&brokers, "acks", "ack-in") == 500
    });
    assert!(read_to_end(&brokers, "ack-out", Duration::from_secs(30)).len() >= 500);
    handle.stop();
    common::finish(handle).expect("runs");
}

#[test]
fn an_oversized_record_routed_to_a_kafka_dead_letter_topic_arrives_cut_with_its_length() {
    use rill::connectors::kafka::dead_letter_headers as h;
    let kafka = EmbeddedKafka::start().expect("mock cluster");
    kafka.create_topic("big-out", 1).expect("topic");
    kafka.create_topic("big-dlq", 1).expect("topic");
    let brokers = kafka.bootstrap_servers();
    // Larger than `message.max.bytes` (1 MB): refused by the output topic's producer, and as
    // a dead letter by the dead-letter topic's producer too.
    let huge = vec![b'x'; 2_000_000];
    let mut records: Vec<(String, Vec<u8>)> = (0..10)
        .map(|i| (format!("k{i}"), b"small".to_vec()))
        .collect();
    records.push(("huge".to_string(), huge));
    let job = Job::new("big");
    job.dead_letter(KafkaSink::new(&brokers).topic("big-dlq"));
    job.source(MemorySource::new(records)).sink(
        KafkaSink::new(&brokers)
            .topic("big-out")
            .dead_letter_failed_deliveries(),
    );
    common::finish(job.run(Config::default().with_workers(2)).expect("starts"))
        .expect("the oversized letter does not fail the job");
    assert_eq!(
        read(&brokers, "big-out", 11, Duration::from_secs(5)).len(),
        10
    );
    let letters = read_to_end(&brokers, "big-dlq", Duration::from_secs(30));
    assert_eq!(letters.len(), 1);
    let (key, value, headers) = &letters[0];
    assert_eq!(key.as_deref(), Some(&b"huge"[..]));
    assert_eq!(value.as_ref().map(Vec::len), Some(64 * 1024));
    assert_eq!(&headers[h::TRUNCATED][..], b"2000000");
    assert!(String::from_utf8_lossy(&headers[h::ERROR]).contains("big-out"));
}
