//! Back-pressure never deadlocks: tiny rings, every key on one worker, fan-out, two exchanges.

mod common;

use rill::prelude::*;

fn skewed_job(workers: usize, records: u64, ring_capacity: usize, batch: usize) -> Vec<(u8, u64)> {
    let job = Job::new("skewed");
    let out = CollectSink::default();
    job.source(MemorySource::from_fn(move |w, p| {
        (w as u64..records).step_by(p)
    }))
    // Fan-out: one input record becomes three, so one poll overfills any ring.
    .flat_map(|x: u64| [x, x + 1, x + 2])
    // Every record to the same key, hence the same worker.
    .key_by(|_: &u64| 0u8)
    .count()
    .sink(out.clone());
    let config = Config::default()
        .with_workers(workers)
        .with_ring_capacity(ring_capacity)
        .with_poll_budget(batch);
    common::finish(job.run(config).expect("starts")).expect("succeeds");
    out.take()
}

#[test]
fn ring_capacity_one_all_keys_on_one_worker_finishes() {
    for workers in [2, 3, 4] {
        let counts = skewed_job(workers, 20_000, 1, 64);
        assert_eq!(counts.len(), 60_000, "{workers} workers");
        let max = counts.iter().map(|(_, n)| *n).max();
        assert_eq!(max, Some(60_000));
    }
}

#[test]
fn two_chained_exchanges_with_tiny_rings_finish() {
    // Records cross workers twice; every worker is both a sender and a receiver on each edge,
    // with rings of one slot: the shape where a blocking send would deadlock.
    let job = Job::new("two-hops");
    let out = CollectSink::default();
    job.source(MemorySource::from_fn(|w, p| (w as u64..30_000).step_by(p)))
        .key_by(|x: &u64| x % 7)
        .into_stream()
        .map(|(k, x): (u64, u64)| (k * 31 + x) % 1000)
        .rebalance()
        .key_by(|x: &u64| *x % 3)
        .count()
        .sink(out.clone());
    let config = Config::default()
        .with_workers(4)
        .with_ring_capacity(1)
        .with_poll_budget(7);
    common::finish(job.run(config).expect("starts")).expect("succeeds");
    let results = out.take();
    assert_eq!(results.len(), 30_000);
    let mut finals = [0u64; 3];
    for (k, n) in results {
        finals[k as usize] = finals[k as usize].max(n);
    }
    assert_eq!(finals.iter().sum::<u64>(), 30_000);
}

#[test]
fn parking_workers_are_woken_by_backpressured_peers() {
    // With the park strategy an idle receiver sleeps; each push must wake it.
    let job = Job::new("park");
    let out = CollectSink::default();
    job.source(MemorySource::from_fn(|w, p| (w as u64..5_000).step_by(p)))
        .key_by(|_: &u64| 1u8)
        .count()
        .sink(out.clone());
    let config = Config::default()
        .with_workers(2)
        .with_ring_capacity(2)
        .with_idle(IdleStrategy::Park);
    common::finish(job.run(config).expect("starts")).expect("succeeds");
    assert_eq!(out.len(), 5_000);
}
