//! Throughput of the file sink on local disk, at P = 2, exactly once (checkpoints every
//! 100 ms, so files are staged and committed through the commit log as in production).
//!
//! - `files/parquet_zstd`: 1,000,000 small records into ZSTD Parquet.
//! - `files/json_lines`: the same records as uncompressed JSON lines.
//!
//! Each iteration runs a complete job into a fresh directory; `iter_custom` times `run` ..
//! `await_termination`.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rill::files::{FileSink, Format, StoreLocation};
use rill::prelude::*;
use serde::{Deserialize, Serialize};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RECORDS: u64 = 1_000_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Event {
    id: u64,
    user: u32,
    kind: String,
    amount: f64,
}

fn source() -> MemorySource<impl rill::connectors::Partition<Iter = impl Iterator<Item = Event>>> {
    MemorySource::from_fn(move |w, p| {
        (w as u64..RECORDS).step_by(p).map(|id| Event {
            id,
            user: (id % 10_000) as u32,
            kind: if id % 3 == 0 { "click" } else { "view" }.to_string(),
            amount: id as f64 * 0.01,
        })
    })
}

fn run(format: &Format) -> Duration {
    let dir = std::env::temp_dir().join(format!(
        "rill-bench-files-{}-{}",
        std::process::id(),
        rill::time::now_nanos()
    ));
    let out = StoreLocation::parse(dir.join("out").to_str().expect("utf-8 path"))
        .expect("bench directory");
    let job = Job::new("files-bench");
    job.source(source())
        .sink(FileSink::new(out, format.clone()));
    let config = Config::default().with_workers(2).with_checkpoints(
        CheckpointConfig::new(dir.join("checkpoints")).with_interval(Duration::from_millis(100)),
    );
    let t0 = Instant::now();
    job.run(config)
        .and_then(|h| h.await_termination())
        .expect("benchmark job succeeds");
    let elapsed = t0.elapsed();
    std::fs::remove_dir_all(&dir).ok();
    elapsed
}

fn files(c: &mut Criterion) {
    let mut group = c.benchmark_group("files");
    group.throughput(Throughput::Elements(RECORDS));
    group.sample_size(10);
    let formats = [
        (
            "parquet_zstd",
            Format::parquet_for::<Event>().expect("schema"),
        ),
        ("json_lines", Format::json_lines()),
    ];
    for (name, format) in formats {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| (0..iters).map(|_| run(&format)).sum())
        });
    }
    group.finish();
}

criterion_group!(benches, files);
criterion_main!(benches);
