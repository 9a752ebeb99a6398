//! The file sink: records into files on an object store, exactly once with checkpoints.

mod commit_log;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use rill_engine::{BoxError, Committer, Sink, WorkerContext};
use serde::Serialize;

use crate::format::Format;
use crate::location::StoreLocation;

pub use self::commit_log::FileSinkStats;
pub use self::writer::FileWriter;

use self::commit_log::{FileCommitter, Shared};

type PartitionFn<T> = Arc<dyn Fn(&T) -> String + Send + Sync>;

/// Writes records into files under a [`StoreLocation`]: JSON lines or Parquet, partitioned
/// by a path the record chooses (Hive style, `dt=2026-11-30/hour=18`), rolled by size and by
/// time (Flink's `FileSink`, Spark's file sink).
///
/// **Exactly once with checkpoints.** Each worker writes its own files. A file that rolls,
/// and every open file at a checkpoint barrier, is uploaded under `_rill_staging/` (the
/// pre-commit); when the checkpoint completes, the sink's committer writes the epoch's entry
/// in the commit log `_rill_log/` and moves the files into place. A restart finishes the
/// moves of a logged epoch and deletes whatever else was staged, whose records the job then
/// reads again from its checkpoint: a reader of the committed files (names not starting with
/// `_` or `.`) sees every record once. Files therefore roll at least at every checkpoint,
/// and become visible at its completion.
///
/// **At least once without checkpoints.** Files are written in place when they roll, at a
/// Kafka source's acknowledgement epochs, and at the end of input; a crash loses the open
/// files, and the records the source had not acknowledged are read again.
///
/// One job writes to one location: a second committer of the same epoch fails with
/// [`FileError::ConcurrentCommit`](crate::FileError::ConcurrentCommit).
///
/// ```
/// use rill_engine::{CheckpointConfig, Config, Job};
/// use rill_connectors::MemorySource;
/// use rill_files::{FileSink, FileSource, Format, StoreLocation};
///
/// #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
/// struct Reading { sensor: String, celsius: f64 }
///
/// let base = std::env::temp_dir().join(format!("rill-doc-file-sink-{}", std::process::id()));
/// let out = StoreLocation::parse(base.join("out").to_str().unwrap())?;
/// let readings: Vec<Reading> = (0..100)
///     .map(|i| Reading { sensor: format!("s{}", i % 3), celsius: i as f64 / 10.0 })
///     .collect();
///
/// let job = Job::new("to-parquet");
/// let sink = FileSink::new(out.clone(), Format::parquet_for::<Reading>()?)
///     .partition_by(|r: &Reading| rill_files::hive([("sensor", &r.sensor)]));
/// job.source(MemorySource::new(readings.clone())).sink(sink.clone());
/// let checkpoints = CheckpointConfig::new(base.join("checkpoints"));
/// job.run(Config::default().with_workers(2).with_checkpoints(checkpoints))?
///     .await_termination()?;
/// assert_eq!(sink.stats().records, 100);
///
/// // Read the committed files back.
/// let back = rill_connectors::CollectSink::default();
/// let job = Job::new("read-back");
/// job.source(FileSource::<Reading>::new(out, Format::parquet_for::<Reading>()?)).sink(back.clone());
/// job.run(Config::default())?.await_termination()?;
/// let mut got = back.take();
/// got.sort_by(|a, b| a.celsius.total_cmp(&b.celsius));
/// assert_eq!(got, readings);
/// # std::fs::remove_dir_all(&base).ok();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct FileSink<T> {
    shared: Arc<Shared>,
    format: Format,
    partition: Option<PartitionFn<T>>,
    roll_bytes: u64,
    roll_interval: Duration,
}

impl<T> Clone for FileSink<T> {
    fn clone(&self) -> Self {
        FileSink {
            shared: self.shared.clone(),
            format: self.format.clone(),
            partition: self.partition.clone(),
            roll_bytes: self.roll_bytes,
            roll_interval: self.roll_interval,
        }
    }
}

impl<T> std::fmt::Debug for FileSink<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSink")
            .field("location", &self.shared.location.url())
            .field("format", &self.format.name())
            .field("roll_bytes", &self.roll_bytes)
            .field("roll_interval", &self.roll_interval)
            .finish()
    }
}

impl<T: Serialize + Send + 'static> FileSink<T> {
    /// Files of `format` under `location`, unpartitioned, rolled at 128 MiB or 15 minutes
    /// (and at every checkpoint).
    pub fn new(location: StoreLocation, format: Format) -> FileSink<T> {
        let name = format!("files {}", location.url());
        FileSink {
            shared: Arc::new(Shared::new(location, name)),
            format,
            partition: None,
            roll_bytes: 128 << 20,
            roll_interval: Duration::from_secs(15 * 60),
        }
    }

    /// The partition path of each record, relative to the location (see [`hive`](crate::hive),
    /// [`hourly`](crate::hourly)); empty for the top level.
    pub fn partition_by(mut self, f: impl Fn(&T) -> String + Send + Sync + 'static) -> Self {
        self.partition = Some(Arc::new(f));
        self
    }

    /// Rolls a file once it holds about this many (compressed) bytes.
    pub fn roll_size(mut self, bytes: u64) -> Self {
        self.roll_bytes = bytes.max(1);
        self
    }

    /// Rolls a file once it has been open this long.
    pub fn roll_interval(mut self, interval: Duration) -> Self {
        self.roll_interval = interval;
        self
    }

    /// What the sink has published so far.
    pub fn stats(&self) -> FileSinkStats {
        self.shared.stats()
    }
}

impl<T: Serialize + Send + 'static> Sink<T> for FileSink<T> {
    type Writer = FileWriter<T>;

    fn create(&self, ctx: &WorkerContext) -> Result<FileWriter<T>, BoxError> {
        self.format.validate()?;
        self.shared.location.check()?;
        Ok(FileWriter::new(
            self.shared.clone(),
            self.format.clone(),
            self.partition.clone(),
            (self.roll_bytes, self.roll_interval),
            ctx,
        ))
    }

    fn name(&self) -> &str {
        &self.shared.name
    }

    fn committer(&self) -> Option<Arc<dyn Committer>> {
        Some(Arc::new(FileCommitter(self.shared.clone())))
    }
}
