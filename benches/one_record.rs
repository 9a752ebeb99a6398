//! Latency of one record through a three-operator pipeline with one exchange:
//! channel source -> map -> key_by (exchange) -> count -> sink, one worker spinning.
//!
//! The job runs for the whole benchmark; each iteration hands one record to the source and
//! spins until the sink has seen it, so a sample is one record's full trip through the
//! engine: the hand-over from the bench thread to the worker's core, the chain, the exchange
//! ring (to itself at P = 1) and the keyed count.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use crossbeam_channel::{Receiver, Sender};
use rill::prelude::*;
use rill::BoxError;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Reads records handed over by the bench thread (worker 0 only).
#[derive(Clone)]
struct Feed(Receiver<u64>);

struct FeedReader(Option<Receiver<u64>>);

impl Source for Feed {
    type Reader = FeedReader;
    fn create(&self, ctx: &WorkerContext) -> Result<FeedReader, BoxError> {
        Ok(FeedReader((ctx.worker() == 0).then(|| self.0.clone())))
    }
    fn name(&self) -> &str {
        "feed"
    }
}

impl SourceReader for FeedReader {
    type Out = u64;
    fn poll<E: Emit<u64>>(&mut self, out: &mut E, budget: usize) -> Result<Progress, BoxError> {
        let Some(rx) = &self.0 else {
            return Ok(Progress::Done);
        };
        let mut n = 0;
        while n < budget {
            match rx.try_recv() {
                Ok(x) => {
                    out.emit(x);
                    n += 1;
                }
                Err(crossbeam_channel::TryRecvError::Empty) => break,
                Err(crossbeam_channel::TryRecvError::Disconnected) => return Ok(Progress::Done),
            }
        }
        Ok(if n > 0 {
            Progress::Busy
        } else {
            Progress::IDLE
        })
    }
}

/// Publishes the sequence number of the last record it received.
#[derive(Clone)]
struct Seen(Arc<AtomicU64>);

struct SeenWriter(Arc<AtomicU64>);

impl Sink<(u64, u64)> for Seen {
    type Writer = SeenWriter;
    fn create(&self, _: &WorkerContext) -> Result<SeenWriter, BoxError> {
        Ok(SeenWriter(self.0.clone()))
    }
    fn name(&self) -> &str {
        "seen"
    }
}

impl SinkWriter<(u64, u64)> for SeenWriter {
    fn write(&mut self, (seq, _count): (u64, u64)) -> Result<(), BoxError> {
        self.0.store(seq, Ordering::Release);
        Ok(())
    }
}

fn one_record(c: &mut Criterion) {
    let (tx, rx): (Sender<u64>, Receiver<u64>) = crossbeam_channel::unbounded();
    let seen = Arc::new(AtomicU64::new(0));
    let job = Job::new("one-record");
    job.source(Feed(rx))
        .map(|x: u64| x.wrapping_add(0))
        .key_by(|x: &u64| *x)
        .count()
        .sink(Seen(seen.clone()));
    let handle = job
        .run(
            // One worker: with the bench thread that makes two spinning threads on the two
            // cores. A third would leave the result to the scheduler's time slices.
            Config::default()
                .with_workers(1)
                .with_idle(IdleStrategy::Spin),
        )
        .expect("job starts");
    let mut seq = 0u64;
    c.bench_function("one_record/map_keyby_count", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                seq += 1;
                let t0 = Instant::now();
                tx.send(seq).expect("job is running");
                while seen.load(Ordering::Acquire) != seq {
                    std::hint::spin_loop();
                }
                total += t0.elapsed();
            }
            total
        })
    });
    drop(tx);
    handle.stop();
    let _ = handle.await_termination();
}

criterion_group!(benches, one_record);
criterion_main!(benches);
