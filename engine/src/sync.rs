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

/// A value replaced as a whole, read by many threads, each of which keeps the version it
/// read until it asks again: a reader never sees half of one version and half of another.
///
/// The writer [`publish`](Self::publish)es a new `Arc<T>`; a [`VersionedReader`] checks one
/// atomic version number per read (a plain load on x86) and takes the lock only when the
/// version changed, to clone the new `Arc`. What a reader holds stays valid and unchanged
/// for as long as it holds it: the atomic swap of a reference table (every record sees one
/// consistent version, every worker shares one copy in memory).
///
/// ```
/// use std::sync::Arc;
/// use rill_engine::sync::Versioned;
///
/// let cell = Arc::new(Versioned::new(vec![1, 2, 3]));
/// let mut reader = Versioned::reader(&cell);
/// assert_eq!(reader.current().len(), 3);
/// let old = cell.publish(Arc::new(vec![4]));
/// assert_eq!(*old, [1, 2, 3]);
/// assert_eq!(**reader.current(), [4]);
/// assert_eq!(cell.version(), 1);
/// ```
#[derive(Debug)]
pub struct Versioned<T> {
    version: AtomicU64,
    current: Mutex<std::sync::Arc<T>>,
}

impl<T> Versioned<T> {
    /// A cell holding `value` as version 0.
    pub fn new(value: T) -> Self {
        Self {
            version: AtomicU64::new(0),
            current: Mutex::new(std::sync::Arc::new(value)),
        }
    }

    /// Replaces the value; returns the previous one (so that the writer, not a reader, can
    /// be the one to drop a large old value, once readers have let go of it).
    pub fn publish(&self, value: std::sync::Arc<T>) -> std::sync::Arc<T> {
        let mut current = self.current.locked();
        let old = std::mem::replace(&mut *current, value);
        // Raised under the lock: a reader that sees the new number and then takes the lock
        // finds the new value (or a newer one).
        self.version.fetch_add(1, Ordering::Release);
        old
    }

    /// The current version number (0 for the first value, one more per publish).
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// The current value and its version.
    pub fn load(&self) -> (u64, std::sync::Arc<T>) {
        let current = self.current.locked();
        (self.version.load(Ordering::Acquire), current.clone())
    }

    /// A reader of `cell`, holding its current value.
    pub fn reader(cell: &std::sync::Arc<Self>) -> VersionedReader<T> {
        let (seen, current) = cell.load();
        VersionedReader {
            cell: cell.clone(),
            seen,
            current,
        }
    }
}

/// One thread's view of a [`Versioned`] cell: the version it read last, kept until
/// [`current`](Self::current) finds a newer one.
#[derive(Debug)]
pub struct VersionedReader<T> {
    cell: std::sync::Arc<Versioned<T>>,
    seen: u64,
    current: std::sync::Arc<T>,
}

impl<T> Clone for VersionedReader<T> {
    fn clone(&self) -> Self {
        Self {
            cell: self.cell.clone(),
            seen: self.seen,
            current: self.current.clone(),
        }
    }
}

impl<T> VersionedReader<T> {
    /// The newest value: the one held, unless the cell has a newer version.
    #[inline]
    pub fn current(&mut self) -> &std::sync::Arc<T> {
        if self.cell.version.load(Ordering::Acquire) != self.seen {
            (self.seen, self.current) = self.cell.load();
        }
        &self.current
    }

    /// The version of the value last returned by [`current`](Self::current).
    pub fn version(&self) -> u64 {
        self.seen
    }

    /// Lets go of the value held (the cell keeps the current one), so that a retired
    /// version is not kept alive by an idle reader.
    pub fn refresh(&mut self) {
        let _ = self.current();
    }
}
