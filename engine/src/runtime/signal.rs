//! Waking a parked worker without a lost wake-up, and without a syscall on the hot path.
//!
//! A worker that found nothing to do for a while *arms* its signal, polls everything once more,
//! and parks only if that last round found nothing either. Anyone who makes work for it (a
//! peer pushing into one of its rings, a source thread, `stop()`) publishes the work first and
//! then calls [`WorkerSignal::notify`], which unparks the worker only if it is armed.
//!
//! Why this cannot lose a wake-up: both sides follow "write, `SeqCst` fence, read". The worker
//! writes `ARMED` then reads its inputs; the notifier writes the input (the ring's tail, a flag)
//! then reads the state. The two fences are totally ordered, so at least one side sees the
//! other's write: either the worker's last round sees the work and does not park, or the
//! notifier sees `ARMED` and unparks (an unpark that precedes the park makes the park return at
//! once: the thread's park token). `engine/tests/loom_signal.rs` checks this under loom.
//!
//! Cost: a running worker's state is `RUNNING`, so `notify` is a fence plus one load of a
//! line that is only written when the worker parks.

use crate::sync::{current_thread, fence, park_until, AtomicU8, Lock, Mutex, Ordering, Thread};

const RUNNING: u8 = 0;
const ARMED: u8 = 1;
const NOTIFIED: u8 = 2;

/// The park/unpark handshake of one worker thread.
///
/// # Examples
///
/// ```
/// use std::sync::{Arc, atomic::{AtomicBool, Ordering}};
/// use rill_engine::test_support::WorkerSignal;
///
/// let signal = Arc::new(WorkerSignal::new());
/// let work = Arc::new(AtomicBool::new(false));
/// let (s, w) = (signal.clone(), work.clone());
/// let worker = std::thread::spawn(move || {
///     s.register_current_thread();
///     loop {
///         s.arm();
///         if w.load(Ordering::Acquire) { s.disarm(); return; }
///         s.park(None);
///     }
/// });
/// work.store(true, Ordering::Release);
/// signal.notify();
/// worker.join().unwrap();
/// ```
#[derive(Debug)]
pub struct WorkerSignal {
    state: AtomicU8,
    // Locked only to register the thread and to unpark a parked worker: never by a running one.
    thread: Mutex<Option<Thread>>,
}

impl Default for WorkerSignal {
    fn default() -> Self {
        Self::new()
    }
}

impl WorkerSignal {
    /// A signal for a worker that is running and has not registered its thread yet.
    pub fn new() -> Self {
        Self {
            state: AtomicU8::new(RUNNING),
            thread: Mutex::new(None),
        }
    }

    /// Records the calling thread as the one [`notify`](Self::notify) unparks.
    ///
    /// Call it on the worker thread before its first [`arm`](Self::arm).
    pub fn register_current_thread(&self) {
        let mut slot = self.thread.locked();
        *slot = Some(current_thread());
    }

    /// Announces that the worker may park after one more round of polling.
    ///
    /// Everything the worker reads after this call (rings, flags) is ordered after the store,
    /// so a notifier either sees the worker armed or its work is seen by that round.
    pub fn arm(&self) {
        self.state.store(ARMED, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// Cancels [`arm`](Self::arm): the last round found work.
    pub fn disarm(&self) {
        self.state.store(RUNNING, Ordering::Relaxed);
    }

    /// Whether the worker has armed and not yet disarmed or been notified.
    pub fn is_armed(&self) -> bool {
        self.state.load(Ordering::Relaxed) == ARMED
    }

    /// Parks the armed worker until notified (or until `deadline`), then marks it running.
    ///
    /// May return early (a stale unpark token): callers poll and re-arm in a loop.
    pub fn park(&self, deadline: Option<std::time::Instant>) {
        if self.state.load(Ordering::SeqCst) == ARMED {
            park_until(deadline);
        }
        self.state.store(RUNNING, Ordering::SeqCst);
    }

    /// Wakes the worker if it is armed or parked. Call after publishing the work.
    pub fn notify(&self) {
        fence(Ordering::SeqCst);
        if self.state.load(Ordering::Relaxed) == ARMED
            && self
                .state
                .compare_exchange(ARMED, NOTIFIED, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
        {
            let slot = self.thread.locked();
            if let Some(thread) = slot.as_ref() {
                thread.unpark();
            }
        }
    }
}
