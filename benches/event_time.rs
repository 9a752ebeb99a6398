//! Throughput of event-time and keyed-state jobs on the in-memory path, at P = 2, against
//! today's running count.
//!
//! - `event_time/running_count`: source -> key_by -> count -> sink: the baseline (update mode,
//!   no event time).
//! - `event_time/window_count_{append,update}`: source -> with_watermark -> key_by -> 10 s
//!   tumbling window count -> sink, in each output mode (target: within 1.5x of the baseline).
//! - `event_time/interval_join`: two sources of half the records each, watermarked and keyed,
//!   joined within 1 s (inner): buffering, matching and cleanup by the watermark.
//! - `event_time/state_function_count`: the running count as a state function
//!   (`map_groups_with_state`; target: within 2x of the baseline), and `_ttl` with a 1 h
//!   processing-time state TTL on top.
//! - `event_time/table_join_1m`: source -> join with a 1,000,000-row table (left) -> sink,
//!   each record looking up a row spread over the table.
//!
//! Records carry event time `i / 10` ms (ten per millisecond, 200 s in all) over 10,000 keys.
//! Each iteration runs a complete job; `iter_custom` times `run` .. `await_termination`.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rill::prelude::*;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RECORDS: u64 = 2_000_000;

/// (key, event time in ms) of record `i`.
fn record(i: u64) -> (u64, i64) {
    (
        i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % 10_000,
        (i / 10) as i64,
    )
}

fn source(
    from: u64,
    step: u64,
) -> MemorySource<impl rill::connectors::Partition<Iter = impl Iterator<Item = (u64, i64)>>> {
    MemorySource::from_fn(move |w, p| {
        (from + w as u64 * step..RECORDS)
            .step_by(p * step as usize)
            .map(record)
    })
}

fn run(job: Job) -> Duration {
    let config = Config::default()
        .with_workers(2)
        .with_idle(IdleStrategy::Spin);
    let t0 = Instant::now();
    let metrics = job
        .run(config)
        .and_then(|h| h.await_termination())
        .expect("benchmark job succeeds");
    let elapsed = t0.elapsed();
    std::hint::black_box(metrics);
    elapsed
}

fn strategy() -> WatermarkStrategy {
    WatermarkStrategy::bounded_out_of_orderness(Duration::from_secs(1))
}

fn timed(iters: u64, make: impl Fn() -> Job) -> Duration {
    (0..iters).map(|_| run(make())).sum()
}

fn event_time(c: &mut Criterion) {
    let mut group = c.benchmark_group("event_time");
    group.throughput(Throughput::Elements(RECORDS));
    group.sample_size(10);
    group.bench_function("running_count", |b| {
        b.iter_custom(|iters| {
            timed(iters, || {
                let job = Job::new("running-count");
                job.source(source(0, 1))
                    .key_by(|r: &(u64, i64)| r.0)
                    .count()
                    .sink(DiscardSink::new());
                job
            })
        })
    });
    for (name, mode) in [
        ("window_count_append", OutputMode::Append),
        ("window_count_update", OutputMode::Update),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                timed(iters, || {
                    let job = Job::new("window-count");
                    let (counts, late) = job
                        .source(source(0, 1))
                        .with_watermark(|r: &(u64, i64)| r.1, strategy())
                        .key_by(|r: &(u64, i64)| r.0)
                        .window(
                            Windows::tumbling(Duration::from_secs(10)),
                            |r: &(u64, i64)| r.1,
                        )
                        .output_mode(mode)
                        .count();
                    counts.sink(DiscardSink::new());
                    late.sink(DiscardSink::new());
                    job
                })
            })
        });
    }
    group.bench_function("interval_join", |b| {
        b.iter_custom(|iters| {
            timed(iters, || {
                let job = Job::new("interval-join");
                let side = |from: u64| {
                    job.source(source(from, 2))
                        .with_watermark(|r: &(u64, i64)| r.1, strategy())
                        .key_by(|r: &(u64, i64)| r.0)
                };
                let (left, right) = (side(0), side(1));
                let time = |r: &(u64, i64)| r.1;
                let (pairs, late) = left
                    .interval_join(right, Interval::within(Duration::from_secs(1)), time, time)
                    .inner();
                pairs.sink(DiscardSink::new());
                late.sink(DiscardSink::new());
                job
            })
        })
    });
    for ttl in [false, true] {
        let name = if ttl {
            "state_function_count_ttl"
        } else {
            "state_function_count"
        };
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                timed(iters, || {
                    let job = Job::new("state-function");
                    let mut keyed = job.source(source(0, 1)).key_by(|r: &(u64, i64)| r.0);
                    if ttl {
                        keyed =
                            keyed.state_ttl(StateTtl::processing_time(Duration::from_secs(3_600)));
                    }
                    keyed
                        .map_groups_with_state(
                            |key: &u64,
                             values: Values<'_, (u64, i64)>,
                             n: &mut GroupState<'_, u64>| {
                                let count = n.get().copied().unwrap_or(0) + values.len() as u64;
                                n.update(count);
                                (*key, count)
                            },
                        )
                        .sink(DiscardSink::new());
                    job
                })
            })
        });
    }
    let rows = 1_000_000u64;
    let path = std::env::temp_dir().join(format!("rill-bench-table-{}.jsonl", std::process::id()));
    let text: String = (0..rows).map(|i| format!("[{i},{}]\n", i * 3)).collect();
    std::fs::write(&path, text).expect("table file");
    let table: Table<u64, (u64, u64)> = TableBuilder::new("bench", TableSource::json_lines(&path))
        .load(|r: &(u64, u64)| r.0)
        .expect("table loads");
    let _ = std::fs::remove_file(&path);
    group.bench_function("table_join_1m", |b| {
        b.iter_custom(|iters| {
            timed(iters, || {
                let job = Job::new("table-join");
                job.source(source(0, 1))
                    .map(move |r: (u64, i64)| {
                        (r.0, (r.1 as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) % rows)
                    })
                    .join_table(&table, |r: &(u64, u64)| &r.1)
                    .left()
                    .sink(DiscardSink::new());
                job
            })
        })
    });
    group.finish();
}

criterion_group!(benches, event_time);
criterion_main!(benches);
