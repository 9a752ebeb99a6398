//! rill's files on object stores: a [`FileSink`] that writes JSON lines or Parquet,
//! partitioned and rolled, exactly once with checkpoints, and a bounded [`FileSource`] that
//! reads them back, on the local file system, S3 (or an S3-compatible server) or any
//! [`object_store`] backend.
//!
//! Built on `object_store` (one API for local disk, S3, GCS, Azure), `parquet`/`arrow` and
//! `serde_arrow` (Parquet schemas from serde types).

mod checkpoints;
mod error;
mod format;
mod location;
mod partition;
mod sink;
mod source;
mod store;

pub use checkpoints::ObjectStoreCheckpoints;
pub use error::FileError;
pub use format::{Compression, Format};
pub use location::{S3Settings, StoreLocation};
pub use partition::{daily, hive, hourly};
pub use sink::{FileSink, FileSinkStats, FileWriter};
pub use source::{FileSource, FileSourceReader};

/// The `arrow_schema` crate, for a schema given to [`Format::parquet`].
pub use arrow_schema;
/// The `object_store` crate this one is built on, for [`StoreLocation::from_store`].
pub use object_store;
