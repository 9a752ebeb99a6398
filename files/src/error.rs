//! What can go wrong reading and writing object-store files.

/// An error of the file sink or source. Every variant names the location it happened at.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// The store refused or failed an operation (after `object_store`'s own retries).
    #[error("{url}: {action} failed")]
    Store {
        /// The object's full URL.
        url: String,
        /// What was being done ("writing", "listing", ...).
        action: &'static str,
        /// What the store reported.
        #[source]
        source: object_store::Error,
    },
    /// The S3 bucket of the location does not exist.
    #[error(
        "{url}: bucket `{bucket}` does not exist (create it first; rill never creates buckets)"
    )]
    MissingBucket {
        /// The location.
        url: String,
        /// The bucket.
        bucket: String,
    },
    /// The location is not a URL or path rill can open.
    #[error("cannot open location `{url}`: {reason}")]
    Location {
        /// What was given.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// A record could not be encoded in the file format.
    #[error("encoding a record as {format}: {detail}")]
    Encode {
        /// "JSON lines" or "Parquet".
        format: &'static str,
        /// What went wrong.
        detail: String,
    },
    /// A file could not be decoded.
    #[error("{url}: {detail}")]
    Decode {
        /// The file.
        url: String,
        /// What went wrong.
        detail: String,
    },
    /// The record type cannot be described as a Parquet schema.
    #[error("no Parquet schema for this record type: {0}")]
    Schema(String),
    /// The commit log holds an entry that is not one rill wrote.
    #[error("{url}: commit log entry is corrupt: {detail}")]
    CorruptLog {
        /// The entry.
        url: String,
        /// What is wrong with it.
        detail: String,
    },
    /// A file the commit log records as committed is in neither its staged nor its final
    /// place: someone deleted it.
    #[error("{url}: committed in epoch {epoch} but missing (neither staged nor in place)")]
    MissingCommitted {
        /// The file's final URL.
        url: String,
        /// The epoch that committed it.
        epoch: u64,
    },
    /// Another writer committed the same epoch: two jobs write to one location.
    #[error("{url}: epoch {epoch} was committed by someone else: two jobs write to this location")]
    ConcurrentCommit {
        /// The commit log entry.
        url: String,
        /// The epoch.
        epoch: u64,
    },
    /// Records arrived after the final checkpoint of an exactly-once run.
    #[error("{records} records arrived after the final checkpoint and were not committed")]
    Uncommitted {
        /// How many.
        records: u64,
    },
}
