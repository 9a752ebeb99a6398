//! What can go wrong loading a table.

use std::path::PathBuf;

/// A table could not be loaded (at start: the job does not start; on a reload: the previous
/// version stays, the error is reported in [`TableStats`](crate::TableStats) and logged, and
/// the reload is tried again at the next check).
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// A file or directory could not be read.
    #[error("table `{table}`: cannot read {}: {source}", path.display())]
    Read {
        /// The table.
        table: String,
        /// What was being read.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A row could not be parsed.
    #[error("table `{table}`: {}:{line}: {message}", path.display())]
    Parse {
        /// The table.
        table: String,
        /// The file (for a Kafka table: `topic/partition`).
        path: PathBuf,
        /// The line (for CSV: the record; for Kafka: the offset).
        line: u64,
        /// What is wrong with it.
        message: String,
    },
    /// A path holds no rows file.
    #[error("table `{table}`: no files in {}", path.display())]
    Empty {
        /// The table.
        table: String,
        /// The directory.
        path: PathBuf,
    },
    /// The Kafka topic could not be read to its end.
    #[error("table `{table}`: Kafka topic `{topic}`: {message}")]
    Kafka {
        /// The table.
        table: String,
        /// The topic.
        topic: String,
        /// What went wrong.
        message: String,
    },
}
