//! Checkpoints on an object store: a job's checkpoint location as `s3://bucket/prefix`.

use std::io;
use std::sync::Arc;

use rill_engine::{CheckpointConfig, CheckpointStorage};

use crate::error::FileError;
use crate::location::StoreLocation;
use crate::store::Created;

/// A [`CheckpointStorage`] under a [`StoreLocation`]: the job's checkpoints (state files,
/// manifests, micro-batch plans) as objects, in the same format and with the same checks as
/// in a directory. The manifest is written last with a conditional put, and a checkpoint
/// counts only when its manifest and every file it lists read back with matching checksums,
/// so a listing never decides alone. Any process of the job can restore from it, at any
/// worker count.
///
/// ```
/// use rill_engine::{Config, Job};
/// use rill_connectors::{CollectSink, MemorySource};
/// use rill_files::{ObjectStoreCheckpoints, StoreLocation};
///
/// let checkpoints = ObjectStoreCheckpoints::config(StoreLocation::parse("memory://")?);
/// let job = Job::new("remote-checkpoints");
/// let out = CollectSink::default();
/// job.source(MemorySource::new(vec![1u32, 2, 3])).sink(out.clone());
/// job.run(Config::default().with_checkpoints(checkpoints))?.await_termination()?;
/// assert_eq!(out.take().len(), 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct ObjectStoreCheckpoints {
    location: StoreLocation,
}

impl ObjectStoreCheckpoints {
    /// Checkpoints under `location`.
    pub fn new(location: StoreLocation) -> Self {
        ObjectStoreCheckpoints { location }
    }

    /// A checkpoint configuration on `location` (every second, keeping three; change them
    /// with `CheckpointConfig`'s setters).
    pub fn config(location: StoreLocation) -> CheckpointConfig {
        CheckpointConfig::on(Arc::new(Self::new(location)))
    }
}

fn io_error(e: FileError) -> io::Error {
    let kind = match &e {
        FileError::Store {
            source: object_store::Error::NotFound { .. },
            ..
        } => io::ErrorKind::NotFound,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e)
}

impl CheckpointStorage for ObjectStoreCheckpoints {
    fn url(&self) -> String {
        self.location.url().to_string()
    }

    fn put(&self, name: &str, bytes: Vec<u8>) -> io::Result<()> {
        self.location
            .put(&self.location.child(name), bytes)
            .map_err(io_error)
    }

    fn put_new(&self, name: &str, bytes: Vec<u8>) -> io::Result<bool> {
        self.location
            .put_new(&self.location.child(name), bytes)
            .map(|c| c == Created::Yes)
            .map_err(io_error)
    }

    fn get(&self, name: &str) -> io::Result<Vec<u8>> {
        self.location
            .get(&self.location.child(name))
            .map(|b| b.to_vec())
            .map_err(io_error)
    }

    fn list(&self, prefix: &str) -> io::Result<Vec<String>> {
        let base = self.location.child(prefix);
        let root: Vec<String> = self
            .location
            .prefix
            .parts()
            .map(|p| p.as_ref().to_string())
            .collect();
        Ok(self
            .location
            .list(&base)
            .map_err(io_error)?
            .into_iter()
            .map(|meta| {
                meta.location
                    .parts()
                    .skip(root.len())
                    .map(|p| p.as_ref().to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .collect())
    }

    fn delete(&self, name: &str) -> io::Result<()> {
        self.location
            .delete(&self.location.child(name))
            .map_err(io_error)
    }
}
