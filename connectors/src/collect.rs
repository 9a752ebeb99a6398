//! A sink that collects records in memory, for tests and embedding.

use rill_engine::sync::Lock;
use std::sync::{Arc, Mutex, MutexGuard};

use rill_engine::{BoxError, Sink, SinkWriter, WorkerContext};

/// Collects every record it receives; clones share the same collection, so keep one clone to
/// read the results while (or after) the job runs.
///
/// Each worker appends to a private buffer and moves it into the shared collection once per
/// poll, so the lock is taken per batch, not per record. Records of one worker keep their
/// order; records of different workers interleave.
///
/// ```
/// use rill_connectors::{CollectSink, MemorySource};
/// use rill_engine::{Config, Job};
///
/// let job = Job::new("collect");
/// let out = CollectSink::default();
/// job.source(MemorySource::new(vec![3, 1, 2])).sink(out.clone());
/// job.run(Config::default().with_workers(1))?.await_termination()?;
/// assert_eq!(out.take(), vec![3, 1, 2]);
/// # Ok::<(), rill_engine::JobError>(())
/// ```
#[derive(Debug)]
pub struct CollectSink<T> {
    shared: Arc<Mutex<Vec<T>>>,
}

impl<T> Default for CollectSink<T> {
    fn default() -> Self {
        Self {
            shared: Arc::new(Mutex::new(Vec::new())),
        }
    }
}

impl<T> Clone for CollectSink<T> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<T> CollectSink<T> {
    fn lock(&self) -> MutexGuard<'_, Vec<T>> {
        // A panicking worker cannot leave the Vec half-modified (push/append are atomic with
        // respect to unwinding), so a poisoned lock still guards valid data.
        self.shared.locked()
    }

    /// Removes and returns everything collected so far.
    pub fn take(&self) -> Vec<T> {
        std::mem::take(&mut *self.lock())
    }

    /// How many records have been collected (and not taken).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing has been collected (or everything was taken).
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

impl<T: Clone> CollectSink<T> {
    /// A copy of everything collected so far.
    pub fn snapshot(&self) -> Vec<T> {
        self.lock().clone()
    }
}

impl<T: Send + 'static> Sink<T> for CollectSink<T> {
    type Writer = CollectWriter<T>;

    fn create(&self, _ctx: &WorkerContext) -> Result<CollectWriter<T>, BoxError> {
        Ok(CollectWriter {
            local: Vec::new(),
            shared: self.shared.clone(),
        })
    }

    fn name(&self) -> &str {
        "collect"
    }
}

/// One worker's [`CollectSink`].
#[derive(Debug)]
pub struct CollectWriter<T> {
    local: Vec<T>,
    shared: Arc<Mutex<Vec<T>>>,
}

impl<T> SinkWriter<T> for CollectWriter<T> {
    #[inline]
    fn write(&mut self, item: T) -> Result<(), BoxError> {
        self.local.push(item);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BoxError> {
        if !self.local.is_empty() {
            let mut shared = self.shared.locked();
            shared.append(&mut self.local);
        }
        Ok(())
    }
}
