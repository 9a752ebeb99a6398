//! Checkpoints somewhere other than a local directory: an object store, for jobs whose
//! processes do not share a disk.

use std::io;

/// Where checkpoint objects live when the location is not a local directory (an S3 bucket
/// through `rill_files::ObjectStoreCheckpoints`, say). Names are `/`-separated paths below
/// the location, such as `chk-00000000000000000007/MANIFEST`.
///
/// The checkpoint format is the same as on disk: every state file is listed in the
/// manifest with its length and CRC-32, and the manifest, with a CRC of its own, is written
/// last with [`put_new`](Self::put_new). A listing only names candidates: a checkpoint is
/// complete when its manifest reads back whole and every file matches it, so a store whose
/// listings lag behind its writes can make rill use an older checkpoint, never a torn one.
///
/// Unlike a directory, a remote location is not locked against a second instance of the
/// job: the manifest's conditional put refuses a second writer of the same epoch.
pub trait CheckpointStorage: Send + Sync + std::fmt::Debug + 'static {
    /// The location as a URL, for messages (`s3://bucket/checkpoints/job`).
    fn url(&self) -> String;

    /// Writes object `name` whole (readers see all of it or none), replacing any, and
    /// returns once it is durable.
    fn put(&self, name: &str, bytes: Vec<u8>) -> io::Result<()>;

    /// Writes object `name` only if there is none; `Ok(false)` if there was one.
    fn put_new(&self, name: &str, bytes: Vec<u8>) -> io::Result<bool>;

    /// Reads object `name`; an error of kind [`io::ErrorKind::NotFound`] if there is none.
    fn get(&self, name: &str) -> io::Result<Vec<u8>>;

    /// The names of every object below `prefix` (recursively), in no particular order.
    fn list(&self, prefix: &str) -> io::Result<Vec<String>>;

    /// Deletes object `name`; one that is already gone is not an error.
    fn delete(&self, name: &str) -> io::Result<()>;
}
