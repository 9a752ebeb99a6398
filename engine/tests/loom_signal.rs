//! Model checks of the worker park/unpark handshake (`WorkerSignal`, in `engine/src/runtime/signal.rs`) driven by the real
//! idle state machine (`rill_engine::Idler`), under every interleaving loom can find.
//!
//! Run with: `RUSTFLAGS="--cfg loom" cargo test -p rill-engine --test loom_signal --release`
//! A lost wake-up shows up as loom reporting a deadlock (a parked thread nobody unparks).

#![cfg(loom)]

use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;

use rill_engine::test_support::{Idler, Wait, WorkerSignal};
use rill_engine::IdleStrategy;

/// The worker side: consume `expected` items published in `ring`, idling with the park
/// strategy (the one that can lose a wake-up) between rounds that find nothing.
fn worker_consumes(signal: &WorkerSignal, ring: &AtomicUsize, expected: usize) {
    signal.register_current_thread();
    let mut idler = Idler::new(IdleStrategy::Park);
    let mut seen = 0;
    while seen < expected {
        let available = ring.load(Ordering::Acquire);
        if available > seen {
            seen = available;
            idler.reset(signal);
        } else {
            idler.idle(signal, Wait::Parkable { deadline: None });
        }
    }
}

// Shape of every model: the worker is a spawned thread, and nobody it could be unparked by
// ever blocks in `join` on a thread that unparks: loom's `Thread::unpark` also wakes a thread
// blocked in `join` (it has no separate park token), which std's does not.

fn spawn_worker(
    signal: Arc<WorkerSignal>,
    ring: Arc<AtomicUsize>,
    expected: usize,
) -> thread::JoinHandle<()> {
    thread::spawn(move || worker_consumes(&signal, &ring, expected))
}

#[test]
fn a_push_always_wakes_a_parking_receiver() {
    loom::model(|| {
        let signal = Arc::new(WorkerSignal::new());
        let ring = Arc::new(AtomicUsize::new(0));
        let worker = spawn_worker(signal.clone(), ring.clone(), 2);
        for n in 1..=2 {
            // Publish (the ring's release store of its tail), then notify.
            ring.store(n, Ordering::Release);
            signal.notify();
        }
        worker.join().expect("worker");
    });
}

#[test]
fn two_concurrent_notifiers_never_strand_the_receiver() {
    // Exhaustive search of three threads takes minutes; every known lost-wake-up bug of this
    // kind needs at most two preemptions, so bound at three (loom's recommended practice).
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(3);
    model.check(|| {
        let signal = Arc::new(WorkerSignal::new());
        let ring = Arc::new(AtomicUsize::new(0));
        let worker = spawn_worker(signal.clone(), ring.clone(), 2);
        let (s, r) = (signal.clone(), ring.clone());
        let other = thread::spawn(move || {
            r.fetch_add(1, Ordering::Release);
            s.notify();
        });
        ring.fetch_add(1, Ordering::Release);
        signal.notify();
        worker.join().expect("worker");
        other.join().expect("other notifier");
    });
}

#[test]
fn stop_request_wakes_a_parked_worker() {
    // The shape of `JobHandle::stop` / abort: set a flag, notify; the worker checks the flag at
    // the top of every round and must not sleep through it.
    loom::model(|| {
        let signal = Arc::new(WorkerSignal::new());
        let stop = Arc::new(AtomicBool::new(false));
        let (s, f) = (signal.clone(), stop.clone());
        let worker = thread::spawn(move || {
            s.register_current_thread();
            let mut idler = Idler::new(IdleStrategy::Park);
            while !f.load(Ordering::Relaxed) {
                idler.idle(&s, Wait::Parkable { deadline: None });
            }
        });
        stop.store(true, Ordering::SeqCst);
        signal.notify();
        worker.join().expect("worker");
    });
}
