//! The cost of handing a `Message` from one thread to another through an rtrb SPSC ring, the
//! building block of every exchange.
//!
//! - `stream`: one thread pushes N messages, the other pops them (throughput). `large` ring
//!   (1024 slots, rarely full) versus `small` (2 slots, constant contention): best and worst case.
//! - `round_trip`: ping-pong through two rings; half of it is the one-way handoff latency.
//!
//! Two threads, so `iter_custom` with a start barrier: the clock runs only while both work.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rill::engine::test_support::Message;
use rtrb::RingBuffer;

fn stream(c: &mut Criterion) {
    let mut group = c.benchmark_group("ring_handoff/stream");
    group.throughput(Throughput::Elements(1));
    for capacity in [1024usize, 2] {
        let label = if capacity > 2 { "large" } else { "small" };
        group.bench_function(BenchmarkId::new(label, capacity), |b| {
            b.iter_custom(|iters| {
                let (mut tx, mut rx) = RingBuffer::<Message<u64>>::new(capacity);
                let barrier = Arc::new(Barrier::new(2));
                let start = barrier.clone();
                let consumer = thread::spawn(move || {
                    start.wait();
                    let mut got = 0u64;
                    while got < iters {
                        if let Ok(Message::Record(x)) = rx.pop() {
                            std::hint::black_box(x);
                            got += 1;
                        } else {
                            std::hint::spin_loop();
                        }
                    }
                });
                barrier.wait();
                let t0 = Instant::now();
                for i in 0..iters {
                    let mut msg = Message::Record(i);
                    while let Err(rtrb::PushError::Full(m)) = tx.push(msg) {
                        msg = m;
                        std::hint::spin_loop();
                    }
                }
                consumer.join().expect("consumer");
                t0.elapsed()
            })
        });
    }
    group.finish();
}

fn round_trip(c: &mut Criterion) {
    let mut group = c.benchmark_group("ring_handoff");
    group.bench_function("round_trip", |b| {
        b.iter_custom(|iters| {
            let (mut ping_tx, mut ping_rx) = RingBuffer::<Message<u64>>::new(16);
            let (mut pong_tx, mut pong_rx) = RingBuffer::<Message<u64>>::new(16);
            let barrier = Arc::new(Barrier::new(2));
            let start = barrier.clone();
            let echo = thread::spawn(move || {
                start.wait();
                let mut n = 0;
                while n < iters {
                    if let Ok(msg) = ping_rx.pop() {
                        while pong_tx.push(msg.clone()).is_err() {
                            std::hint::spin_loop();
                        }
                        n += 1;
                    } else {
                        std::hint::spin_loop();
                    }
                }
            });
            barrier.wait();
            let t0 = Instant::now();
            for i in 0..iters {
                while ping_tx.push(Message::Record(i)).is_err() {
                    std::hint::spin_loop();
                }
                loop {
                    if let Ok(msg) = pong_rx.pop() {
                        std::hint::black_box(msg);
                        break;
                    }
                    std::hint::spin_loop();
                }
            }
            let elapsed = t0.elapsed();
            echo.join().expect("echo");
            elapsed
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = stream, round_trip
}
criterion_main!(benches);
