//! A transactional sink in memory, for checking what a job's commits published.

use std::sync::{Arc, Mutex};

use rill::prelude::*;
use rill::BoxError;

/// A transactional sink in memory: writers stage each epoch's records at its barrier; the
/// committer publishes everything staged up to an epoch, with that epoch's number, at once.
pub(crate) struct Published<T>(pub(crate) Arc<Mutex<Store<T>>>);

impl<T> Clone for Published<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Default for Published<T> {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(Store {
            staged: Vec::new(),
            published: Vec::new(),
            committed: None,
        })))
    }
}

/// What the sink holds: staged records with their epochs, published ones, the last commit.
pub(crate) struct Store<T> {
    pub(crate) staged: Vec<(Epoch, T)>,
    pub(crate) published: Vec<T>,
    pub(crate) committed: Option<Epoch>,
}

impl<T> Published<T> {
    /// Everything published so far.
    pub(crate) fn published(&self) -> Vec<T>
    where
        T: Clone,
    {
        self.0.lock().expect("store").published.clone()
    }
}

/// One worker's writer: the records of the current epoch.
pub(crate) struct StagingWriter<T>(Arc<Mutex<Store<T>>>, Vec<T>);

impl<T: Send + 'static> Committer for Published<T> {
    fn recover(&self) -> Result<Option<Epoch>, BoxError> {
        let mut store = self.0.lock().map_err(|_| "poisoned")?;
        store.staged.clear();
        Ok(store.committed)
    }
    fn begin(&self, _after: Epoch) -> Result<(), BoxError> {
        Ok(())
    }
    fn commit(&self, epoch: Epoch) -> Result<(), BoxError> {
        let mut store = self.0.lock().map_err(|_| "poisoned")?;
        let (now, later): (Vec<_>, Vec<_>) = store.staged.drain(..).partition(|(e, _)| *e <= epoch);
        store.staged = later;
        store.published.extend(now.into_iter().map(|(_, r)| r));
        store.committed = Some(epoch);
        Ok(())
    }
    fn name(&self) -> &str {
        "published"
    }
}

impl<T: Send + 'static> SinkWriter<T> for StagingWriter<T> {
    fn write(&mut self, item: T) -> Result<(), BoxError> {
        self.1.push(item);
        Ok(())
    }
    fn on_barrier(&mut self, epoch: Epoch) -> Result<(), BoxError> {
        let staged: Vec<_> = self.1.drain(..).map(|r| (epoch, r)).collect();
        self.0.lock().map_err(|_| "poisoned")?.staged.extend(staged);
        Ok(())
    }
}

impl<T: Send + 'static> Sink<T> for Published<T> {
    type Writer = StagingWriter<T>;
    fn create(&self, _ctx: &WorkerContext) -> Result<StagingWriter<T>, BoxError> {
        Ok(StagingWriter(self.0.clone(), Vec::new()))
    }
    fn name(&self) -> &str {
        "published"
    }
    fn committer(&self) -> Option<Arc<dyn Committer>> {
        Some(Arc::new(self.clone()))
    }
}
