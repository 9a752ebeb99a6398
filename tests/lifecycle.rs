//! Bounded runs end by themselves, stop() drains, metrics count, union merges.

mod common;

use std::time::Duration;

use rill::prelude::*;

#[test]
fn bounded_jobs_terminate_at_every_parallelism_and_idle_strategy() {
    let strategies = [
        IdleStrategy::Spin,
        IdleStrategy::Yield,
        IdleStrategy::Park,
        IdleStrategy::Auto.resolve(false),
        IdleStrategy::default(),
    ];
    for workers in 1..=4 {
        for idle in strategies {
            let job = Job::new("bounded");
            let out = CollectSink::default();
            job.source(MemorySource::from_fn(|w, p| (w as u32..3_000).step_by(p)))
                .key_by(|x: &u32| x % 5)
                .count()
                .sink(out.clone());
            let config = Config::default().with_workers(workers).with_idle(idle);
            common::finish(job.run(config).expect("starts")).expect("succeeds");
            assert_eq!(out.len(), 3_000, "{workers} workers, {idle}");
        }
    }
}

#[test]
fn a_paced_generator_with_parking_workers_wakes_on_time() {
    // 2 000 records at 20 000/s: workers park between records until each due time, so every
    // record must come out no earlier than it was due and soon after.
    let job = Job::new("paced");
    let out = CollectSink::default();
    job.source(Generator::new(20_000.0, |i| i).with_count(2_000))
        .key_by(|g: &Generated<u64>| g.seq % 4)
        .into_stream()
        .map(|(_, g): (u64, Generated<u64>)| {
            let arrived = rill::time::now_nanos();
            (g.seq, arrived as i64 - g.scheduled_nanos as i64)
        })
        .sink(out.clone());
    let config = Config::default()
        .with_workers(2)
        .with_idle(IdleStrategy::Park);
    common::finish(job.run(config).expect("starts")).expect("succeeds");
    let got = out.take();
    let mut seqs: Vec<u64> = got.iter().map(|(seq, _)| *seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..2_000).collect::<Vec<_>>());
    let mut lateness: Vec<i64> = got.iter().map(|(_, late)| *late).collect();
    lateness.sort_unstable();
    assert!(
        lateness[0] >= 0,
        "a record came out {} ns before it was due",
        -lateness[0]
    );
    // A parked worker that slept through due times (woken only by a coarse timeout) would make
    // records late by whole milliseconds; on time, the median is microseconds.
    let median = Duration::from_nanos(lateness[lateness.len() / 2] as u64);
    let p99 = Duration::from_nanos(lateness[lateness.len() * 99 / 100] as u64);
    assert!(
        median < Duration::from_millis(2),
        "median lateness {median:?}"
    );
    assert!(p99 < Duration::from_millis(50), "p99 lateness {p99:?}");
}

#[test]
fn stop_drains_in_flight_records_and_closes_sinks() {
    let job = Job::new("stoppable");
    let latency = LatencySink::new(|x: &(u64, (u64, u64))| (x.1).1);
    job.source(Generator::new(50_000.0, |i| i))
        .key_by(|g: &Generated<u64>| g.seq % 8)
        .aggregate(
            || (0u64, 0u64),
            |acc: &mut (u64, u64), g: Generated<u64>| {
                acc.0 += 1;
                acc.1 = g.scheduled_nanos;
            },
        )
        .sink(latency.clone());
    let mut handle = job.run(Config::default().with_workers(2)).expect("starts");
    std::thread::sleep(Duration::from_millis(100));
    let stopper = handle.stop_handle();
    std::thread::spawn(move || stopper.stop());
    let metrics = handle
        .await_termination_timeout(common::HANG)
        .expect("terminates")
        .expect("a stopped job ends successfully");
    let emitted = metrics
        .get("generator")
        .expect("source metrics")
        .records_out;
    let written = metrics.get("latency").expect("sink metrics").records_in;
    assert!(emitted > 0);
    assert_eq!(
        emitted, written,
        "everything emitted before the stop reached the sink"
    );
    // The sinks closed: their histograms were merged.
    assert_eq!(latency.histogram().len(), written);
}

#[test]
fn metrics_count_records_in_and_out_of_every_node() {
    let job = Job::new("metrics");
    let out = CollectSink::default();
    job.source(MemorySource::new((0..100u32).collect()))
        .filter(|x: &u32| x.is_multiple_of(4))
        .flat_map(|x: u32| [x, x])
        .key_by(|x: &u32| *x)
        .count()
        .sink(out.clone());
    let m = common::finish(job.run(Config::default().with_workers(2)).expect("starts"))
        .expect("succeeds");
    let get = |name: &str| m.get(name).unwrap_or_else(|| panic!("no node {name}: {m}"));
    assert_eq!(get("memory").records_out, 100);
    assert_eq!(
        (get("filter").records_in, get("filter").records_out),
        (100, 25)
    );
    assert_eq!(
        (get("flat_map").records_in, get("flat_map").records_out),
        (25, 50)
    );
    assert_eq!(
        (get("key_by").records_in, get("key_by").records_out),
        (50, 50)
    );
    assert_eq!(
        (get("count").records_in, get("count").records_out),
        (50, 50)
    );
    assert_eq!(get("collect").records_in, 50);
    assert_eq!(out.len(), 50);
}

#[test]
fn live_metrics_grow_while_an_unbounded_job_runs() {
    let job = Job::new("live");
    job.source(Generator::new(20_000.0, |i| i))
        .sink(CollectSink::default());
    let handle = job.run(Config::default().with_workers(1)).expect("starts");
    let mut seen = 0;
    for _ in 0..2_000 {
        seen = handle
            .metrics()
            .get("generator")
            .map_or(0, |m| m.records_out);
        if seen >= 100 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(seen >= 100, "metrics did not advance: {seen}");
    handle.stop();
    common::finish(handle).expect("stops cleanly");
}

#[test]
fn union_merges_differently_shaped_streams() {
    let job = Job::new("union");
    let out = CollectSink::default();
    let web = job
        .source(MemorySource::new(vec![("u1", 3u32), ("u2", 4)]).named("web"))
        .map(|(user, clicks): (&str, u32)| (user.to_string(), clicks as u64));
    let app = job
        .source(MemorySource::new(vec!["u1:10".to_string(), "u3:1".to_string()]).named("app"))
        .map(|line: String| {
            let (user, n) = line.split_once(':').unwrap_or((&line, "0"));
            (user.to_string(), n.parse::<u64>().unwrap_or(0))
        });
    web.union(app)
        .key_by(|(user, _): &(String, u64)| user.clone())
        .reduce(|a: &(String, u64), b: (String, u64)| (b.0, a.1 + b.1))
        .latest_per_key()
        .sink(out.clone());
    common::finish(job.run(Config::default().with_workers(2)).expect("starts")).expect("ok");
    let mut totals: Vec<(String, u64)> = out.take().into_iter().map(|(k, (_, n))| (k, n)).collect();
    totals.sort();
    assert_eq!(
        totals,
        [
            ("u1".to_string(), 13),
            ("u2".to_string(), 4),
            ("u3".to_string(), 1)
        ]
    );
}
