//! Exactly-once word count on a real broker (noida-db, which implements Kafka transactions
//! and `read_committed` isolation): in process across a restart, and as the `wordcount`
//! example killed with SIGKILL at pseudo-random moments while input is being produced.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::broker::Broker;
use common::{example_binary, finish};
use rill::connectors::kafka::{KafkaRecord, KafkaSink, KafkaSource};
use rill::prelude::*;
use rill::ErrorChain;

/// Line `i` of the input: a few words from a small vocabulary, so counts grow large.
fn line(i: u64) -> String {
    let vocab = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta"];
    let n = 1 + (i % 4) as usize;
    (0..n)
        .map(|j| vocab[((i * 7 + j as u64 * 3) % vocab.len() as u64) as usize])
        .collect::<Vec<_>>()
        .join(" ")
}

fn lines(range: std::ops::Range<u64>) -> Vec<(Vec<u8>, Vec<u8>)> {
    range
        .map(|i| (i.to_string().into_bytes(), line(i).into_bytes()))
        .collect()
}

/// Word -> true count over lines `0..n`.
fn truth(n: u64) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for i in 0..n {
        for w in line(i).split_whitespace() {
            *m.entry(w.to_string()).or_default() += 1;
        }
    }
    m
}

use common::kafka::{poke, POKE};

/// The updates (records other than pokes) a `read_committed` reader sees in `topic`, waiting
/// up to 90 s for at least `total` of them.
fn committed_updates(brokers: &str, topic: &str, total: u64) -> Vec<common::kafka::Read> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        // Everything readable within 3 s: more than `total` would be duplicates.
        let mut records = common::kafka::read(brokers, topic, usize::MAX, Duration::from_secs(3));
        records.retain(|(k, _, _)| k.as_deref() != Some(POKE));
        if records.len() as u64 >= total || Instant::now() >= deadline {
            return records;
        }
        poke(brokers, topic);
    }
}

fn read_committed_updates(brokers: &str, topic: &str, total: u64) -> u64 {
    committed_updates(brokers, topic, total).len() as u64
}

/// Reads the committed output until `expected` updates arrived (or a timeout), and checks
/// that every word's updates are exactly 1, 2, ..., n, once each, in order.
fn check_output(brokers: &str, topic: &str, expected: &BTreeMap<String, u64>) {
    let total: u64 = expected.values().sum();
    let all = committed_updates(brokers, topic, total);
    let mut per_word: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (k, v, _) in &all {
        let word = String::from_utf8(k.clone().unwrap_or_default()).expect("UTF-8 key");
        let n: u64 = String::from_utf8(v.clone().unwrap_or_default())
            .expect("UTF-8 value")
            .parse()
            .expect("a count");
        per_word.entry(word).or_default().push(n);
    }
    for (word, n) in expected {
        let want: Vec<u64> = (1..=*n).collect();
        let got = per_word.remove(word).unwrap_or_default();
        assert!(
            got == want,
            "word `{word}`: expected the counts 1..={n} once each, got {} updates: first {:?}, last {:?}",
            got.len(),
            &got[..got.len().min(5)],
            &got[got.len().saturating_sub(5)..]
        );
    }
    assert!(per_word.is_empty(), "unexpected words: {per_word:?}");
}

fn job(brokers: &str, input: &str, output: &str, txn: &str) -> Job {
    let job = Job::new("eo-wordcount");
    job.source(KafkaSource::new(brokers, format!("{txn}-group")).topics([input]))
        .try_map(|r: KafkaRecord| {
            r.value_str()
                .map(|s| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        })
        .flat_map(|ws: Vec<String>| ws)
        .key_by(|w: &String| w.clone())
        .count()
        .map(|(w, n): (String, u64)| (w, n.to_string()))
        .sink(KafkaSink::new(brokers).topic(output).exactly_once(txn));
    job
}

#[test]
fn exactly_once_output_continues_across_a_restart_in_process() {
    let broker = Broker::start();
    let brokers = broker.bootstrap.clone();
    broker.create_topic("eo1-in", 2);
    broker.create_topic("eo1-out", 2);
    let dir = std::env::temp_dir().join(format!("rill-eo1-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = || {
        Config::default()
            .with_workers(2)
            .with_checkpoints(CheckpointConfig::new(&dir).with_interval(Duration::from_millis(100)))
    };

    common::kafka::produce(&brokers, "eo1-in", &lines(0..300));
    let handle = job(&brokers, "eo1-in", "eo1-out", "eo1-txn")
        .run(config())
        .expect("starts");
    let expected = truth(300);
    let total: u64 = expected.values().sum();
    assert_eq!(read_committed_updates(&brokers, "eo1-out", total), total);
    handle.stop();
    let metrics = finish(handle).expect("first run");
    assert!(metrics.get("kafka").is_some());
    check_output(&brokers, "eo1-out", &expected);

    common::kafka::produce(&brokers, "eo1-in", &lines(300..500));
    let handle = job(&brokers, "eo1-in", "eo1-out", "eo1-txn")
        .run(config())
        .expect("restarts");
    assert!(handle.checkpoints().unwrap().restored_from.is_some());
    let expected = truth(500);
    let total: u64 = expected.values().sum();
    assert_eq!(read_committed_updates(&brokers, "eo1-out", total), total);
    handle.stop();
    finish(handle).expect("second run");
    check_output(&brokers, "eo1-out", &expected);

    // A changed transactional id finds no commit marker: the job refuses to guess, names
    // the marker's group, and keeps the checkpoints.
    let err = job(&brokers, "eo1-in", "eo1-out", "eo1-renamed")
        .run(config())
        .expect_err("no marker: refused");
    let msg = ErrorChain(&err).to_string();
    assert!(
        msg.contains("consumer group `eo1-renamed.rill-commits`"),
        "{msg}"
    );
    assert!(msg.contains("assume_committed"), "{msg}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A tiny deterministic generator for the kill schedule (xorshift).
struct Schedule(u64);

impl Schedule {
    fn next_ms(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        lo + self.0 % (hi - lo)
    }
}

fn spawn_wordcount(brokers: &str, dir: &std::path::Path) -> Child {
    Command::new(example_binary("wordcount"))
        .args(["--brokers", brokers, "--workers", "2"])
        .args(["--input", "eo2-in", "--output", "eo2-out", "--group", "eo2"])
        .args(["--checkpoint-interval", "200ms", "--exactly-once"])
        .arg("--checkpoint-dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wordcount starts")
}

#[test]
fn wordcount_killed_with_sigkill_at_least_five_times_outputs_every_count_exactly_once() {
    let broker = Broker::start();
    let brokers = broker.bootstrap.clone();
    broker.create_topic("eo2-in", 2);
    broker.create_topic("eo2-out", 2);
    let dir = std::env::temp_dir().join(format!("rill-eo2-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);

    // Input is produced throughout: 40 lines every 120 ms, 2,400 lines in about 8 s.
    const LINES: u64 = 2_400;
    let feeder = {
        let brokers = brokers.clone();
        std::thread::spawn(move || {
            for chunk in (0..LINES).step_by(40) {
                common::kafka::produce(&brokers, "eo2-in", &lines(chunk..chunk + 40));
                std::thread::sleep(Duration::from_millis(120));
            }
        })
    };

    let mut schedule = Schedule(0x5eed_cafe_f00d_1234);
    let mut kills = 0;
    let started = Instant::now();
    let mut child = spawn_wordcount(&brokers, &dir);
    // Kill at pseudo-random moments for as long as input is being produced.
    while !feeder.is_finished() {
        std::thread::sleep(Duration::from_millis(schedule.next_ms(150, 900)));
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            use std::io::Read;
            let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
            panic!("wordcount exited on its own ({status}): {err}");
        }
        child.kill().expect("SIGKILL"); // std's kill sends SIGKILL on Unix
        child.wait().expect("reaped");
        kills += 1;
        child = spawn_wordcount(&brokers, &dir);
    }
    feeder.join().expect("feeder");
    eprintln!("{kills} kills in {:.1} s", started.elapsed().as_secs_f64());

    let expected = truth(LINES);
    let total: u64 = expected.values().sum();
    let seen = read_committed_updates(&brokers, "eo2-out", total);
    if seen != total {
        let _ = child.kill();
        let out = child.wait_with_output().expect("exits");
        panic!(
            "the last run did not catch up: {seen} of {total} updates; input offsets committed: \
             {} of {LINES}; its stderr: {}",
            common::kafka::committed_total(&brokers, "eo2", "eo2-in"),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A polite stop: final checkpoint, exit 0.
    common::stop_with_sigterm(child);
    check_output(&brokers, "eo2-out", &expected);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn end_of_input_output_of_a_bounded_exactly_once_run_is_committed() {
    let broker = Broker::start();
    let brokers = broker.bootstrap.clone();
    broker.create_topic("eo3-in", 2);
    broker.create_topic("eo3-out", 2);
    let dir = std::env::temp_dir().join(format!("rill-eo3-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    common::kafka::produce(&brokers, "eo3-in", &lines(0..200));
    let job = Job::new("eo-final-counts");
    job.source(
        KafkaSource::new(&brokers, "eo3-group")
            .topics(["eo3-in"])
            .bounded(),
    )
    .try_map(|r: KafkaRecord| {
        r.value_str()
            .map(|s| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
    })
    .flat_map(|ws: Vec<String>| ws)
    .key_by(|w: &String| w.clone())
    .count()
    .latest_per_key()
    .map(|(w, n): (String, u64)| (w, n.to_string()))
    .sink(
        KafkaSink::new(&brokers)
            .topic("eo3-out")
            .exactly_once("eo3-txn"),
    );
    let config = Config::default()
        .with_workers(2)
        .with_checkpoints(CheckpointConfig::new(&dir).with_interval(Duration::from_millis(100)));
    finish(job.run(config).expect("starts")).expect("a bounded run ends cleanly");
    let expected = truth(200);
    // Every word's final count once, visible to read_committed readers.
    poke(&brokers, "eo3-out");
    let got = common::kafka::read(
        &brokers,
        "eo3-out",
        expected.len() + 2,
        Duration::from_secs(30),
    );
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for (k, v, _) in got {
        if k.as_deref() == Some(POKE) {
            continue;
        }
        let word = String::from_utf8(k.expect("key")).expect("utf-8");
        let n: u64 = String::from_utf8(v.expect("value"))
            .expect("utf-8")
            .parse()
            .expect("count");
        assert!(counts.insert(word.clone(), n).is_none(), "{word} twice");
    }
    assert_eq!(counts, expected);
    let _ = std::fs::remove_dir_all(&dir);
}
