//! Synchronization: the lock adapter every crate of rill uses, and the one place the engine's
//! hand-written concurrency protocols take their primitives from.
//!
//! [`Lock::locked`] is how rill takes a mutex. A mutex is poisoned when a thread panicked while
//! holding it; rill's mutexes guard values that every critical section leaves valid at each
//! step (a push, an assignment, a counter), and a panic on a worker already fails the job with
//! [`JobError::Panicked`](crate::JobError::Panicked), so the data is still worth reading (to
//! flush, report or close) and the poison carries no information.
//!
//! ```
//! use std::sync::Mutex;
//! use rill_engine::sync::Lock;
//!
//! let seen = Mutex::new(Vec::new());
//! seen.locked().push(1);
//! assert_eq!(*seen.locked(), [1]);
//! ```
//!
//! Under `--cfg loom` the protocol primitives (the worker signal's state, the epoch counters
//! shared by the coordinator and the sources) are loom's model-checked types, so the loom tests
//! in `engine/tests/loom_*.rs` explore every interleaving of the real protocol code rather than
//! of a copy.

/// Takes a mutex's lock, recovering the guard if a panicking holder poisoned it (see the
/// [module](self) docs for why that is sound in rill).
pub trait Lock<T: ?Sized> {
    /// The guard of the lock.
    type Guard<'a>
    where
        Self: 'a;

    /// Locks, whatever a panicking holder left behind.
    fn locked(&self) -> Self::Guard<'_>;
}

impl<T: ?Sized> Lock<T> for std::sync::Mutex<T> {
    type Guard<'a>
        = std::sync::MutexGuard<'a, T>
    where
        Self: 'a;

    #[inline]
    fn locked(&self) -> Self::Guard<'_> {
        self.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(loom)]
impl<T: ?Sized> Lock<T> for loom::sync::Mutex<T> {
    type Guard<'a>
        = loom::sync::MutexGuard<'a, T>
    where
        Self: 'a;

    #[inline]
    fn locked(&self) -> Self::Guard<'_> {
        self.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(not(loom))]
pub(crate) use std::sync::{
    atomic::{fence, AtomicU64, AtomicU8, Ordering},
    Mutex,
};
#[cfg(not(loom))]
pub(crate) use std::thread::{current as current_thread, Thread};

#[cfg(loom)]
pub(crate) use loom::sync::{
    atomic::{fence, AtomicU64, AtomicU8, Ordering},
    Mutex,
};
#[cfg(loom)]
pub(crate) use loom::thread::{current as current_thread, Thread};

/// Parks the current thread until it is unparked, or until `deadline` if one is given.
///
/// loom has no timed park; its models never use deadlines, so the model parks untimed.
#[cfg(not(loom))]
pub(crate) fn park_until(deadline: Option<std::time::Instant>) {
    match deadline {
        None => std::thread::park(),
        Some(at) => {
            let now = std::time::Instant::now();
            if at > now {
                std::thread::park_timeout(at - now);
            }
        }
    }
}

#[cfg(loom)]
pub(crate) fn park_until(_deadline: Option<std::time::Instant>) {
    loom::thread::park();
}
