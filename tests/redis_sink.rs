//! The Redis sink against a real `redis-server`: upserts, coalescing, Redis down at start and
//! mid-run, refused writes.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::finish;
use common::redis_server::RedisServer;
use redis::Commands;
use rill::connectors::redis::{RedisSink, RedisUpsert};
use rill::prelude::*;

/// (product, quantity): each worker writes running totals of its own products.
fn totals(
    records: u64,
    keys: u64,
) -> MemorySource<impl rill::connectors::Partition<Iter = impl Iterator<Item = (u64, u64)>>> {
    MemorySource::from_fn(move |w, p| {
        let mut sums = vec![0u64; keys as usize];
        (0..records)
            .filter(move |i| (i % keys) as usize % p == w)
            .map(move |i| {
                let k = i % keys;
                sums[k as usize] += i;
                (k, sums[k as usize])
            })
    })
}

fn expected(records: u64, keys: u64) -> BTreeMap<u64, u64> {
    let mut sums = BTreeMap::new();
    for i in 0..records {
        *sums.entry(i % keys).or_default() += i;
    }
    sums
}

fn upsert((k, total): (u64, u64)) -> RedisUpsert {
    RedisUpsert::hset(format!("stock:{k}"), [("qty", total.to_string())])
}

fn stored(con: &mut redis::Connection, keys: u64) -> BTreeMap<u64, u64> {
    (0..keys)
        .filter_map(|k| {
            let v: Option<u64> = con.hget(format!("stock:{k}"), "qty").expect("HGET");
            v.map(|v| (k, v))
        })
        .collect()
}

/// `HSET` calls the server has answered so far.
fn hset_calls(con: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(con)
        .expect("INFO");
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_hset:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn upserts_land_and_a_hot_key_costs_one_write_per_flush() {
    let server = RedisServer::start();
    let mut con = server.connection();
    let (records, keys) = (50_000, 10);
    for coalesce in [true, false] {
        let _: () = redis::cmd("FLUSHALL").query(&mut con).expect("FLUSHALL");
        let _: () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query(&mut con)
            .expect("RESETSTAT");
        let job = Job::new("totals");
        job.source(totals(records, keys))
            .sink(RedisSink::new(server.url(), upsert).coalesce(coalesce));
        finish(job.run(Config::default().with_workers(2)).expect("starts")).expect("runs");
        assert_eq!(stored(&mut con, keys), expected(records, keys));
        let calls = hset_calls(&mut con);
        eprintln!("coalesce {coalesce}: {calls} HSETs for {records} records");
        if coalesce {
            assert!(calls < records / 10, "{calls} writes for {records} records");
        } else {
            assert_eq!(calls, records);
        }
    }
}

#[test]
fn redis_down_at_start_fails_the_job_after_the_bound_with_a_clear_error() {
    let port = common::broker::free_port();
    let job = Job::new("nowhere");
    job.source(totals(100, 10)).sink(
        RedisSink::new(format!("redis://127.0.0.1:{port}"), upsert)
            .unavailable_timeout(Duration::from_secs(2)),
    );
    let start = Instant::now();
    let err =
        finish(job.run(Config::default().with_workers(1)).expect("starts")).expect_err("no Redis");
    let text = rill::ErrorChain(&err).to_string();
    assert!(
        text.contains(&format!("127.0.0.1:{port}")) && text.contains("unreachable"),
        "{text}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn redis_down_mid_run_loses_nothing_once_it_is_back() {
    let mut server = RedisServer::start();
    let port = server.port();
    let (records, keys) = (3_000u64, 30u64);
    let job = Job::new("outage");
    // About 1 s of input per worker; Redis is down from 0.3 s to 2 s, so the input ends
    // during the outage and the last totals wait in the sink. Redis keeps nothing across
    // its restart (no persistence): what a dropped write would lose is exactly what counts.
    job.source(MemorySource::from_fn(move |w, p| {
        (0..records)
            .filter(move |i| (i % keys) as usize % p == w)
            .enumerate()
            .map(|(n, i)| {
                if n % 15 == 0 {
                    std::thread::sleep(Duration::from_millis(10));
                }
                i
            })
            .scan(vec![0u64; keys as usize], move |sums, i| {
                let k = i % keys;
                sums[k as usize] += i;
                Some((k, sums[k as usize]))
            })
    }))
    .sink(RedisSink::new(server.url(), upsert).unavailable_timeout(Duration::from_secs(30)));
    let handle = job.run(Config::default().with_workers(2)).expect("starts");
    std::thread::sleep(Duration::from_millis(300));
    server.kill();
    std::thread::sleep(Duration::from_millis(1_700));
    let server = RedisServer::start_on(port);
    finish(handle).expect("the job rides out the outage");
    assert_eq!(
        stored(&mut server.connection(), keys),
        expected(records, keys)
    );
}

#[test]
fn a_write_redis_refuses_goes_to_the_dead_letter_sink() {
    let server = RedisServer::start();
    let mut con = server.connection();
    // stock:3 is a string: an HSET on it is refused with WRONGTYPE.
    let _: () = con.set("stock:3", "not a hash").expect("SET");
    let job = Job::new("refused");
    let letters = CollectSink::<DeadLetter>::default();
    job.dead_letter(letters.clone());
    job.source(totals(100, 10))
        .sink(RedisSink::new(server.url(), upsert));
    finish(job.run(Config::default().with_workers(2)).expect("starts")).expect("runs");
    let letters = letters.take();
    assert!(!letters.is_empty());
    for l in &letters {
        assert_eq!(l.key.as_deref(), Some(&b"stock:3"[..]));
        assert!(l.error.contains("WRONGTYPE"), "{}", l.error);
    }
    let mut want = expected(100, 10);
    want.remove(&3);
    let _: () = con.del("stock:3").expect("DEL");
    assert_eq!(stored(&mut con, 10), want);
}

/// Kills `child` at once (a crash: no final checkpoint, no flush).
fn sigkill(mut child: std::process::Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn inventory_killed_five_times_converges_to_the_uninterrupted_values() {
    use std::process::{Command, Stdio};
    let server = RedisServer::start();
    let kafka = rill::connectors::kafka::EmbeddedKafka::start().expect("mock cluster");
    let brokers = kafka.bootstrap_servers();
    for topic in ["stock-changes", "stock-changes-dlq"] {
        kafka.create_topic(topic, 2).expect("topic");
    }
    let dir = common::gated::temp_dir("inventory");
    let start = || {
        Command::new(common::example_binary("inventory"))
            .args(["--brokers", &brokers, "--input", "stock-changes"])
            .args(["--redis", &server.url(), "--workers", "2"])
            .args(["--checkpoint-interval", "100ms", "--checkpoint-dir"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("inventory starts")
    };
    // 6 rounds of 2,000 changes over 40 products, each produced over about 1 s while the job
    // runs; the first 5 runs are killed 0.6 s into their round, after several checkpoints
    // and offset commits, with records still to come.
    let mut reference: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut con = server.connection();
    for round in 0..6i64 {
        let changes: Vec<(Vec<u8>, Vec<u8>)> = (0..2_000i64)
            .map(|i| {
                let n = round * 2_000 + i;
                let product = format!("p{}", n % 40);
                let delta = (n * 7919) % 21 - 10;
                let ts = 1_700_000_000_000 + n;
                let e = reference.entry(product.clone()).or_insert((0, i64::MIN));
                e.0 += delta;
                e.1 = e.1.max(ts);
                (
                    product.clone().into_bytes(),
                    format!(r#"{{"product_id":"{product}","delta":{delta},"ts":{ts}}}"#)
                        .into_bytes(),
                )
            })
            .collect();
        let child = start();
        let producer = {
            let brokers = brokers.clone();
            std::thread::spawn(move || {
                for chunk in changes.chunks(100) {
                    common::kafka::produce(&brokers, "stock-changes", chunk);
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        if round < 5 {
            std::thread::sleep(Duration::from_millis(600));
            sigkill(child);
            producer.join().expect("producer");
            // The next run restores from a checkpoint of this one (sums and offsets), not
            // from the beginning of the topic.
            let completed = std::fs::read_dir(&dir)
                .map(|d| {
                    d.flatten()
                        .filter(|e| e.path().join("MANIFEST").exists())
                        .count()
                })
                .unwrap_or(0);
            assert!(
                completed > 0,
                "round {round}: no checkpoint completed before the kill"
            );
        } else {
            let deadline = Instant::now() + Duration::from_secs(90);
            let current = |con: &mut redis::Connection| -> BTreeMap<String, (i64, i64)> {
                (0..40)
                    .filter_map(|p| {
                        let key = format!("stock:p{p}");
                        let qty: Option<i64> = con.hget(&key, "qty").expect("HGET");
                        let ts: Option<i64> = con.hget(&key, "updated_ts").expect("HGET");
                        Some((format!("p{p}"), (qty?, ts?)))
                    })
                    .collect()
            };
            while current(&mut con) != reference && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            assert_eq!(
                current(&mut con),
                reference,
                "after 5 SIGKILLs and a last run"
            );
            common::stop_with_sigterm(child);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
