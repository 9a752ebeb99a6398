//! Throughput of whole jobs on the in-memory path.
//!
//! - `fused_chain/1_worker`: source -> map -> filter -> sink on one worker: the cost of the
//!   fused, monomorphized chain (target: >= 20 M records/s on this 2-core machine).
//! - `keyed_count/2_workers`: source -> key_by -> count -> sink at P = 2: every record crosses
//!   the SPSC exchange (half of them to the other core) and updates keyed state
//!   (target: >= 5 M records/s).
//!
//! - `modes/{continuous,micro_batch_asap,micro_batch_10ms}`: the keyed count at P = 2 in each
//!   execution mode, on the same operators: what batching costs or buys in throughput.
//!
//! Each iteration runs a complete job over `RECORDS` records, so thread start-up (~100 us)
//! is amortized over ~100 ms of work. `iter_custom` times exactly `run` .. `await_termination`.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rill::prelude::*;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RECORDS: u64 = 2_000_000;

fn run_job(job: Job, workers: usize) -> Duration {
    run_job_in(job, workers, Mode::Continuous)
}

fn run_job_in(job: Job, workers: usize, mode: Mode) -> Duration {
    let config = Config::default()
        .with_workers(workers)
        .with_idle(IdleStrategy::Spin)
        .with_mode(mode);
    let t0 = Instant::now();
    let metrics = job
        .run(config)
        .and_then(|h| h.await_termination())
        .expect("benchmark job succeeds");
    let elapsed = t0.elapsed();
    std::hint::black_box(metrics);
    elapsed
}

fn fused_chain(c: &mut Criterion) {
    let mut group = c.benchmark_group("fused_chain");
    group.throughput(Throughput::Elements(RECORDS));
    group.sample_size(10);
    group.bench_function("1_worker", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let job = Job::new("fused");
                job.source(MemorySource::from_fn(|w, p| (w as u64..RECORDS).step_by(p)))
                    .map(|x: u64| x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 7)
                    .filter(|x: &u64| x & 1 == 0)
                    .sink(DiscardSink::new());
                total += run_job(job, 1);
            }
            total
        })
    });
    group.finish();
}

fn keyed_count(c: &mut Criterion) {
    let mut group = c.benchmark_group("keyed_count");
    group.throughput(Throughput::Elements(RECORDS));
    group.sample_size(10);
    group.bench_function("2_workers", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let job = Job::new("keyed");
                job.source(MemorySource::from_fn(|w, p| (w as u64..RECORDS).step_by(p)))
                    .key_by(|x: &u64| x % 10_000)
                    .count()
                    .sink(DiscardSink::new());
                total += run_job(job, 2);
            }
            total
        })
    });
    group.finish();
}

fn modes(c: &mut Criterion) {
    let mut group = c.benchmark_group("modes");
    group.throughput(Throughput::Elements(RECORDS));
    group.sample_size(10);
    for (name, mode) in [
        ("continuous", Mode::Continuous),
        (
            "micro_batch_asap",
            Mode::MicroBatch(Trigger::AsFastAsPossible),
        ),
        (
            "micro_batch_10ms",
            Mode::MicroBatch(Trigger::ProcessingTime(Duration::from_millis(10))),
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let job = Job::new("modes");
                    job.source(MemorySource::from_fn(|w, p| (w as u64..RECORDS).step_by(p)))
                        .key_by(|x: &u64| x % 10_000)
                        .count()
                        .sink(DiscardSink::new());
                    total += run_job_in(job, 2, mode);
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group!(benches, fused_chain, keyed_count, modes);
criterion_main!(benches);
