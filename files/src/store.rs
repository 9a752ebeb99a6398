//! Blocking access to an object store from rill's worker threads.
//!
//! `object_store` is asynchronous; rill's workers are plain threads. One small Tokio runtime
//! per process (one I/O thread) runs the requests, and the worker waits for its own: a file
//! sink writes whole files at a roll or a barrier, so the wait is per file, not per record.

use std::sync::OnceLock;

use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use tokio::runtime::Runtime;

use crate::error::FileError;
use crate::location::StoreLocation;

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("rill-object-store")
            .enable_all()
            .build()
            // Only fails when the OS refuses a thread: nothing else could run either.
            .expect("starting the object-store I/O thread")
    })
}

/// The outcome of a put that must not overwrite.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Created {
    /// Written.
    Yes,
    /// Something was already there.
    AlreadyExists,
}

impl StoreLocation {
    fn failed(&self, path: &Path, action: &'static str, source: object_store::Error) -> FileError {
        let text = source.to_string();
        if let Some(bucket) = self.bucket() {
            if text.contains("NoSuchBucket") {
                return FileError::MissingBucket {
                    url: self.url().to_string(),
                    bucket: bucket.to_string(),
                };
            }
        }
        FileError::Store {
            url: self.url_of(path),
            action,
            source,
        }
    }

    /// Writes a whole object, replacing any (atomic: readers see all of it or none).
    pub(crate) fn put(&self, path: &Path, bytes: Vec<u8>) -> Result<(), FileError> {
        runtime()
            .block_on(self.store.put(path, PutPayload::from(bytes)))
            .map(|_| ())
            .map_err(|e| self.failed(path, "writing", e))
    }

    /// Writes an object only if none is there (a conditional put). Stores without
    /// conditional puts fall back to a check then a write.
    pub(crate) fn put_new(&self, path: &Path, bytes: Vec<u8>) -> Result<Created, FileError> {
        let payload = PutPayload::from(bytes);
        let options = PutOptions::from(PutMode::Create);
        match runtime().block_on(self.store.put_opts(path, payload.clone(), options)) {
            Ok(_) => Ok(Created::Yes),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(Created::AlreadyExists),
            Err(object_store::Error::NotImplemented { .. }) => {
                if self.head(path)?.is_some() {
                    return Ok(Created::AlreadyExists);
                }
                runtime()
                    .block_on(self.store.put(path, payload))
                    .map(|_| Created::Yes)
                    .map_err(|e| self.failed(path, "writing", e))
            }
            Err(e) => Err(self.failed(path, "writing", e)),
        }
    }

    /// Reads a whole object.
    pub(crate) fn get(&self, path: &Path) -> Result<Bytes, FileError> {
        runtime()
            .block_on(async {
                let got = self.store.get(path).await?;
                got.bytes().await
            })
            .map_err(|e| self.failed(path, "reading", e))
    }

    /// The object's metadata, or `None` if there is none.
    pub(crate) fn head(&self, path: &Path) -> Result<Option<ObjectMeta>, FileError> {
        match runtime().block_on(self.store.head(path)) {
            Ok(meta) => Ok(Some(meta)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.failed(path, "reading metadata of", e)),
        }
    }

    /// Every object below `prefix`, recursively, in no particular order.
    pub(crate) fn list(&self, prefix: &Path) -> Result<Vec<ObjectMeta>, FileError> {
        runtime()
            .block_on(self.store.list(Some(prefix)).try_collect())
            .map_err(|e| self.failed(prefix, "listing", e))
    }

    /// Moves an object (a rename on a file system; a copy and a delete on S3).
    pub(crate) fn rename(&self, from: &Path, to: &Path) -> Result<(), FileError> {
        runtime()
            .block_on(self.store.rename(from, to))
            .map_err(|e| self.failed(from, "moving", e))
    }

    /// Deletes an object; one that is already gone is not an error.
    pub(crate) fn delete(&self, path: &Path) -> Result<(), FileError> {
        match runtime().block_on(self.store.delete(path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.failed(path, "deleting", e)),
        }
    }

    /// Fails with a clear error if the location cannot be listed (a missing bucket, wrong
    /// credentials, an unreachable server), before any record is read.
    pub fn check(&self) -> Result<(), FileError> {
        runtime()
            .block_on(self.store.list_with_delimiter(Some(&self.prefix)))
            .map(|_| ())
            .map_err(|e| self.failed(&self.prefix, "listing", e))
    }
}
