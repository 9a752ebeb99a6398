//! Model checks of the epoch handshake between the checkpoint coordinator and a source (the
//! real counters of `engine/src/checkpoint/epoch.rs`, woken through the real worker signal and
//! idle state machine), under every interleaving loom can find.
//!
//! Run with: `RUSTFLAGS="--cfg loom" cargo test -p rill-engine --test loom_epoch --release`
//!
//! The properties: a source injects every requested epoch once, in order, and ends right after
//! the last one; whoever sees an epoch completed also sees what the coordinator did before
//! completing it (the commit); a micro-batch source reads only once its batch's plan is
//! durable; and a parked source is never stranded (loom reports that as a deadlock).

#![cfg(loom)]

use std::sync::Arc;

use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use loom::thread;

use rill_engine::test_support::{EpochHandshake, Idler, Wait, WorkerSignal};
use rill_engine::IdleStrategy;

/// One source worker: polls the counters as `SourceFlow::poll` does in continuous mode (inject
/// a newly requested epoch, else end after the final one, else idle with the parking strategy
/// that could lose a wake-up), acknowledging each barrier. Returns the epochs it injected.
fn source(
    handshake: &EpochHandshake,
    signal: &WorkerSignal,
    acked: &AtomicU64,
    committed: &AtomicBool,
) -> Vec<u64> {
    signal.register_current_thread();
    let mut idler = Idler::new(IdleStrategy::Park);
    let mut epoch = 0;
    let mut injected = Vec::new();
    loop {
        if handshake.completed() >= 1 {
            // The coordinator committed before it completed the epoch.
            assert!(
                committed.load(Ordering::Relaxed),
                "epoch 1 seen completed before its commit"
            );
        }
        let requested = handshake.requested();
        if requested > epoch {
            epoch = requested;
            injected.push(epoch);
            acked.store(epoch, Ordering::Release);
            idler.reset(signal);
            continue;
        }
        if handshake.ends_after(epoch) {
            return injected;
        }
        idler.idle(signal, Wait::Parkable { deadline: None });
    }
}

/// Three preemptions: every lost-wake-up or ordering bug of this shape needs at most two, and
/// the exhaustive search of the coordinator's waiting loops takes far too long (loom's
/// recommended practice, as in `loom_signal.rs`).
fn bounded() -> loom::model::Builder {
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(3);
    model
}

#[test]
fn a_source_injects_every_epoch_once_and_ends_after_the_last() {
    bounded().check(|| {
        let signal = Arc::new(WorkerSignal::new());
        let handshake = Arc::new(EpochHandshake::new(
            0,
            Arc::from([signal.clone()]) as Arc<[Arc<WorkerSignal>]>,
            false,
        ));
        let acked = Arc::new(AtomicU64::new(0));
        let committed = Arc::new(AtomicBool::new(false));
        let worker = {
            let (h, s, a, c) = (
                handshake.clone(),
                signal.clone(),
                acked.clone(),
                committed.clone(),
            );
            thread::spawn(move || source(&h, &s, &a, &c))
        };
        // The coordinator: epoch 1, wait for its acknowledgement, commit, complete it, then
        // start the final epoch 2 (a graceful stop).
        handshake.start(1, false);
        while acked.load(Ordering::Acquire) < 1 {
            thread::yield_now();
        }
        committed.store(true, Ordering::Relaxed);
        handshake.complete(1);
        handshake.start(2, true);
        let injected = worker.join().expect("source");
        assert_eq!(injected, [1, 2]);
    });
}

#[test]
fn a_batch_reads_only_once_its_plan_is_durable() {
    bounded().check(|| {
        let signal = Arc::new(WorkerSignal::new());
        let handshake = Arc::new(EpochHandshake::new(
            0,
            Arc::from([signal.clone()]) as Arc<[Arc<WorkerSignal>]>,
            true,
        ));
        let plan_sent = Arc::new(AtomicBool::new(false));
        let plan_on_disk = Arc::new(AtomicBool::new(false));
        let worker = {
            let (h, s, sent, disk) = (
                handshake.clone(),
                signal.clone(),
                plan_sent.clone(),
                plan_on_disk.clone(),
            );
            thread::spawn(move || {
                s.register_current_thread();
                let mut idler = Idler::new(IdleStrategy::Park);
                // The batch starts: plan it, as `SourceFlow::poll_batch` does.
                while h.requested() < 1 {
                    idler.idle(&s, Wait::Parkable { deadline: None });
                }
                idler.reset(&s);
                sent.store(true, Ordering::Release);
                // Read only once the plan is logged.
                while !h.plan_logged(1) {
                    idler.idle(&s, Wait::Parkable { deadline: None });
                }
                assert!(
                    disk.load(Ordering::Relaxed),
                    "the batch read before its plan was written"
                );
            })
        };
        handshake.start(1, false);
        while !plan_sent.load(Ordering::Acquire) {
            thread::yield_now();
        }
        plan_on_disk.store(true, Ordering::Relaxed);
        handshake.plan_written(1);
        worker.join().expect("source");
    });
}
