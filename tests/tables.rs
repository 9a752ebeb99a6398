//! Reference tables and stream-static joins: atomic reloads under concurrent reads, failed
//! reloads, load errors at start, a Kafka topic as a table, misses to the dead-letter sink.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use common::finish;
use common::gated::{temp_dir, wait_until};
use rill::connectors::kafka::EmbeddedKafka;
use rill::connectors::FileLine;
use rill::prelude::*;
use rill::tables::{Pacing, TableError};

/// A row: its key, and the version of the file it was written in.
#[derive(Debug, Clone, PartialEq, Deserialize)]
struct Row {
    id: u32,
    v: u64,
}

/// Writes `rows` rows of version `v` to `path` the way a batch export should: to a temporary
/// file, then renamed over the old one.
fn write_version(path: &Path, rows: u32, v: u64) {
    let mut text = String::with_capacity(rows as usize * 20);
    for id in 0..rows {
        text.push_str(&format!("{{\"id\":{id},\"v\":{v}}}\n"));
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

fn table_dir(name: &str) -> PathBuf {
    let dir = temp_dir(name);
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

#[test]
fn every_record_sees_one_whole_version_while_the_table_reloads_under_it() {
    const ROWS: u32 = 5_000;
    let dir = table_dir("atomic");
    let path = dir.join("rows.jsonl");
    write_version(&path, ROWS, 1);
    let table: Table<u32, Row> = TableBuilder::new("rows", TableSource::json_lines(&path))
        .refresh(Refresh::OnChange(Duration::from_millis(1)))
        // As many versions as it can while the job runs (the swap is the same paced).
        .reload_pacing(Pacing::Unpaced)
        .load(|r: &Row| r.id)
        .expect("loads");
    // A writer publishes versions 2, 3, ... while two workers join a stream that walks
    // every key in turn.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, path) = (stop.clone(), path.clone());
        std::thread::spawn(move || {
            let mut v = 1;
            while !stop.load(Ordering::Acquire) {
                v += 1;
                write_version(&path, ROWS, v);
                std::thread::sleep(Duration::from_millis(15));
            }
            v
        })
    };
    let job = Job::new("atomic");
    let out = CollectSink::default();
    job.source(MemorySource::from_fn(|w, _| {
        (0..600_000u32).map(move |i| (w, i, i % ROWS))
    }))
    .join_table(&table, |r: &(usize, u32, u32)| &r.2)
    .left()
    .map(|((w, i, _), row): ((usize, u32, u32), Option<Row>)| (w, i, row.map(|r| r.v)))
    .sink(out.clone());
    finish(job.run(Config::default().with_workers(2)).expect("starts")).expect("runs");
    stop.store(true, Ordering::Release);
    let last = writer.join().expect("writer");
    // In processing order per worker, the version never goes back: a table updated in
    // place, row by row, would show a record the new row for one key and the next one the
    // old row for another.
    let mut per_worker: BTreeMap<usize, Vec<(u32, Option<u64>)>> = BTreeMap::new();
    for (w, i, v) in out.take() {
        per_worker.entry(w).or_default().push((i, v));
    }
    let mut versions = std::collections::BTreeSet::new();
    for (w, mut seen) in per_worker {
        seen.sort();
        assert_eq!(seen.len(), 600_000);
        let mut highest = 0;
        for (i, v) in seen {
            let v = v.unwrap_or_else(|| panic!("worker {w}, record {i}: no row"));
            assert!(
                v >= highest,
                "worker {w}, record {i}: version {v} after {highest}"
            );
            highest = v;
            versions.insert(v);
        }
    }
    let stats = table.stats();
    eprintln!(
        "versions seen by records: {}, written: {last}, loaded: {}, failures: {}",
        versions.len(),
        stats.loads,
        stats.failures
    );
    assert!(
        versions.len() >= 3,
        "too few reloads to judge: {versions:?}"
    );
    assert_eq!(stats.failures, 0, "{:?}", stats.last_error);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_broken_reload_keeps_the_previous_version_reports_it_and_is_retried() {
    let dir = table_dir("broken");
    let path = dir.join("rows.jsonl");
    write_version(&path, 10, 1);
    let table: Table<u32, Row> = TableBuilder::new("rows", TableSource::json_lines(&path))
        .refresh(Refresh::OnChange(Duration::from_millis(5)))
        .load(|r: &Row| r.id)
        .expect("loads");
    std::fs::write(&path, "{\"id\":1,\"v\":2}\n{\"id\":2,\"v\":\n").expect("write");
    wait_until("a failed reload", || table.stats().failures >= 1);
    let stats = table.stats();
    let error = stats.last_error.clone().unwrap_or_default();
    assert!(error.contains("rows.jsonl:2"), "{error}");
    assert_eq!((stats.version, stats.rows), (1, 10));
    assert_eq!(
        table.current().get(&3).map(|r| r.v),
        Some(1),
        "the old rows"
    );
    write_version(&path, 4, 3);
    wait_until("the fixed file loaded", || table.stats().version == 2);
    let stats = table.stats();
    assert_eq!((stats.rows, stats.last_error.as_deref()), (4, None));
    assert_eq!(table.current().get(&3).map(|r| r.v), Some(3));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_table_that_cannot_be_loaded_at_start_is_a_clear_error() {
    let dir = table_dir("missing");
    let missing = TableBuilder::new("products", TableSource::json_lines(dir.join("nope.jsonl")))
        .load(|r: &Row| r.id)
        .expect_err("no file");
    assert!(matches!(missing, TableError::Read { .. }), "{missing}");
    assert!(missing.to_string().contains("nope.jsonl"), "{missing}");
    std::fs::write(dir.join("bad.csv"), "id,v\n1,2\nx,3\n").expect("write");
    let bad = TableBuilder::new("products", TableSource::csv(dir.join("bad.csv")))
        .load(|r: &Row| r.id)
        .expect_err("bad row");
    assert!(bad.to_string().contains("bad.csv:3"), "{bad}");
    // A directory: every file, in name order, the later row winning; hidden and temporary
    // files are left out.
    let rows = dir.join("rows");
    std::fs::create_dir_all(&rows).expect("dir");
    std::fs::write(rows.join("a.csv"), "id,v\n1,1\n2,1\n").expect("write");
    std::fs::write(rows.join("b.csv"), "id,v\n2,2\n").expect("write");
    std::fs::write(rows.join("c.tmp"), "garbage").expect("write");
    std::fs::write(rows.join(".hidden"), "garbage").expect("write");
    let table: Table<u32, Row> = TableBuilder::new("rows", TableSource::csv(&rows))
        .load(|r: &Row| r.id)
        .expect("loads");
    let current = table.current();
    assert_eq!((current.len(), current.get(&2).map(|r| r.v)), (2, Some(2)));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_kafka_topic_is_a_table_of_its_latest_values_and_reloads_when_it_grows() {
    let kafka = EmbeddedKafka::start().expect("mock cluster");
    let brokers = kafka.bootstrap_servers();
    kafka.create_topic("products", 3).expect("topic");
    let row = |id: u32, v: u64| format!("{{\"id\":{id},\"v\":{v}}}").into_bytes();
    let key = |id: u32| id.to_string().into_bytes();
    common::kafka::produce(
        &brokers,
        "products",
        &[
            (key(1), row(1, 1)),
            (key(2), row(2, 1)),
            (key(1), row(1, 2)),
            (key(3), row(3, 1)),
        ],
    );
    // A tombstone deletes key 3 (rdkafka's producer: no payload).
    {
        use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
        let producer: BaseProducer = rill::connectors::kafka::client_config(&brokers)
            .create()
            .expect("producer");
        producer
            .send(BaseRecord::<[u8], [u8]>::to("products").key(&key(3)[..]))
            .map_err(|(e, _)| e)
            .expect("send");
        producer.flush(Duration::from_secs(10)).expect("flush");
    }
    let table: Table<u32, Row> =
        TableBuilder::new("products", TableSource::kafka(&brokers, "products"))
            .refresh(Refresh::OnChange(Duration::from_millis(50)))
            .load(|r: &Row| r.id)
            .expect("loads");
    let current = table.current();
    let mut rows: Vec<(u32, u64)> = current.iter().map(|(k, r)| (*k, r.v)).collect();
    rows.sort();
    assert_eq!(rows, [(1, 2), (2, 1)]);
    common::kafka::produce(&brokers, "products", &[(key(4), row(4, 1))]);
    let start = Instant::now();
    wait_until("the new row", || table.current().get(&4).is_some());
    eprintln!("reloaded in {:?}", start.elapsed());
    let missing = TableBuilder::new("nothing", TableSource::kafka(&brokers, "no-such-topic"))
        .timeout(Duration::from_secs(3))
        .load(|r: &Row| r.id)
        .expect_err("no topic");
    assert!(missing.to_string().contains("no-such-topic"), "{missing}");
}

#[test]
fn inner_join_misses_are_counted_or_sent_to_the_dead_letter_sink() {
    let dir = table_dir("misses");
    let path = dir.join("rows.jsonl");
    write_version(&path, 5, 1);
    let table: Table<u32, Row> = TableBuilder::new("rows", TableSource::json_lines(&path))
        .load(|r: &Row| r.id)
        .expect("loads");
    let ids: Vec<u32> = (0..10).collect();
    let job = Job::new("inner");
    let joined = CollectSink::default();
    job.source(MemorySource::new(ids.clone()))
        .join_table(&table, |id: &u32| id)
        .inner()
        .sink(joined.clone());
    finish(job.run(Config::default().with_workers(2)).expect("starts")).expect("runs");
    assert_eq!(joined.take().len(), 5);
    assert_eq!(table.stats().misses, 5);

    let job = Job::new("inner-dlq");
    let (joined, letters) = (CollectSink::default(), CollectSink::<DeadLetter>::default());
    job.dead_letter(letters.clone());
    let (hits, misses) = job
        .source(MemorySource::new(ids))
        .join_table(&table, |id: &u32| id)
        .inner_with_misses();
    hits.sink(joined.clone());
    misses
        .dead_letters("enrich", "no row for the key", |id: u32| FileLine {
            path: "ids".into(),
            line: i64::from(id),
            bytes: id.to_string().into(),
        })
        .sink(DiscardSink::new());
    finish(job.run(Config::default().with_workers(2)).expect("starts")).expect("runs");
    assert_eq!(joined.take().len(), 5);
    let mut missing: Vec<String> = letters
        .take()
        .into_iter()
        .map(|l| String::from_utf8_lossy(l.value.as_deref().unwrap_or_default()).into_owned())
        .collect();
    missing.sort();
    assert_eq!(missing, ["5", "6", "7", "8", "9"]);
    let _ = std::fs::remove_dir_all(&dir);
}
