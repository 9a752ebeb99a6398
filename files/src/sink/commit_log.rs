//! The file sink's commit log and committer: which staged files each checkpoint published.
//!
//! Layout under the sink's location:
//!
//! ```text
//! _rill_staging/<run>/w000-000001.parquet    files of epochs not yet committed
//! _rill_log/00000000000000000007.json        epoch 7's commit: every file it published
//! dt=2026-11-30/hour=18/part-<run>-w000-000001.parquet   committed files
//! ```
//!
//! Committing epoch `n` writes its log entry first, with a conditional put (never
//! overwriting: a second job on the same location is caught), then moves each staged file to
//! its place. The entry is the commit point (Spark's file sink log): a crash after it and a
//! restart finish the moves; a crash before it leaves epoch `n` uncommitted, and the restart
//! deletes its staged files and replays it from checkpoint `n - 1`. Readers skip names that
//! start with `_` or `.`, as Spark, Hive and the [`FileSource`](crate::FileSource) do.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use object_store::path::Path;
use rill_engine::sync::Lock;
use rill_engine::{BoxError, Committer, Epoch};
use serde::{Deserialize, Serialize};

use crate::error::FileError;
use crate::location::StoreLocation;
use crate::store::Created;

pub(crate) const STAGING: &str = "_rill_staging";
const LOG: &str = "_rill_log";
const LOG_FORMAT: u32 = 1;
/// Log entries kept besides the newest: a reader may still be reading them.
const LOG_KEPT: usize = 16;

/// A finished file waiting for its epoch's commit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct StagedFile {
    /// Where it is now, below `_rill_staging/`.
    pub(crate) staging: String,
    /// Where the commit moves it.
    pub(crate) target: String,
    pub(crate) records: u64,
    pub(crate) bytes: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct LogEntry {
    format: u32,
    epoch: Epoch,
    /// The run that wrote it (its files carry this in their names).
    run: String,
    files: Vec<StagedFile>,
}

/// Counters of what the sink has published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileSinkStats {
    /// Files now visible to readers.
    pub files: u64,
    /// Records in them.
    pub records: u64,
    /// Bytes in them.
    pub bytes: u64,
    /// The newest committed epoch (exactly-once runs).
    pub committed_epoch: Option<Epoch>,
}

/// State shared by a sink's writers and its committer.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) location: StoreLocation,
    /// Unique per process run: in file names, so a rerun never overwrites a committed file.
    pub(crate) run: String,
    pub(crate) name: String,
    /// Files staged at a barrier, with the barrier's epoch.
    pending: Mutex<Vec<(Epoch, StagedFile)>>,
    stats: Mutex<FileSinkStats>,
    /// Log entries this run wrote, oldest first, for retention.
    written: Mutex<VecDeque<Path>>,
    /// Whether the job drives the committer: set by its recovery, before any writer starts.
    /// Without it (no checkpoints, or micro-batches without a checkpoint location) nothing
    /// would ever commit staged files, so writers publish in place.
    committing: AtomicBool,
}

impl Shared {
    pub(crate) fn new(location: StoreLocation, name: String) -> Shared {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Shared {
            location,
            run: format!("{:016x}", nanos ^ (u64::from(std::process::id()) << 40)),
            name,
            pending: Mutex::new(Vec::new()),
            stats: Mutex::new(FileSinkStats::default()),
            written: Mutex::new(VecDeque::new()),
            committing: AtomicBool::new(false),
        }
    }

    /// A writer's pre-commit at barrier `epoch`: its files wait for that checkpoint.
    pub(crate) fn stage(&self, epoch: Epoch, files: impl IntoIterator<Item = StagedFile>) {
        self.pending
            .locked()
            .extend(files.into_iter().map(|f| (epoch, f)));
    }

    /// A file published directly (at-least-once runs).
    pub(crate) fn published(&self, records: u64, bytes: u64) {
        let mut stats = self.stats.locked();
        stats.files += 1;
        stats.records += records;
        stats.bytes += bytes;
    }

    /// Whether staged files will be committed (the job called `recover`).
    pub(crate) fn committing(&self) -> bool {
        self.committing.load(Ordering::Acquire)
    }

    pub(crate) fn stats(&self) -> FileSinkStats {
        *self.stats.locked()
    }

    fn log_path(&self, epoch: Epoch) -> Path {
        self.location.child(&format!("{LOG}/{epoch:020}.json"))
    }

    /// Moves a committed epoch's files into place; idempotent, so a restart can finish
    /// what a crash interrupted.
    fn publish(&self, entry: &LogEntry) -> Result<(), FileError> {
        let loc = &self.location;
        for file in &entry.files {
            let staging = Path::from(file.staging.as_str());
            let target = Path::from(file.target.as_str());
            match loc.rename(&staging, &target) {
                Ok(()) => self.published(file.records, file.bytes),
                // Moved before the crash: fine if it is in place.
                Err(e) => match loc.head(&target)? {
                    Some(_) if loc.head(&staging)?.is_none() => {}
                    Some(_) => return Err(e),
                    None if loc.head(&staging)?.is_none() => {
                        return Err(FileError::MissingCommitted {
                            url: loc.url_of(&target),
                            epoch: entry.epoch,
                        })
                    }
                    None => return Err(e),
                },
            }
        }
        self.stats.locked().committed_epoch = Some(entry.epoch);
        Ok(())
    }

    fn read_entry(&self, path: &Path) -> Result<LogEntry, FileError> {
        let bytes = self.location.get(path)?;
        let corrupt = |detail: String| FileError::CorruptLog {
            url: self.location.url_of(path),
            detail,
        };
        let entry: LogEntry = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if entry.format != LOG_FORMAT {
            return Err(corrupt(format!(
                "format {} (this build writes {LOG_FORMAT})",
                entry.format
            )));
        }
        Ok(entry)
    }

    fn recover(&self) -> Result<Option<Epoch>, FileError> {
        self.committing.store(true, Ordering::Release);
        let loc = &self.location;
        loc.check()?;
        let mut entries: Vec<(Epoch, Path)> = loc
            .list(&loc.child(LOG))?
            .into_iter()
            .filter_map(|meta| {
                let name = meta.location.filename()?.to_string();
                let epoch = name.strip_suffix(".json")?.parse::<Epoch>().ok()?;
                Some((epoch, meta.location))
            })
            .collect();
        entries.sort();
        let newest = match entries.last() {
            Some((epoch, path)) => {
                // The listing only names candidates: the entry itself must read back whole
                // and say the same epoch.
                let entry = self.read_entry(path)?;
                if entry.epoch != *epoch {
                    return Err(FileError::CorruptLog {
                        url: loc.url_of(path),
                        detail: format!("it records epoch {}", entry.epoch),
                    });
                }
                self.publish(&entry)?;
                Some(entry.epoch)
            }
            None => None,
        };
        // What a crash left staged belongs to epochs never committed: their records are
        // replayed from the checkpoint, so the files go.
        for meta in loc.list(&loc.child(STAGING))? {
            loc.delete(&meta.location)?;
        }
        let keep_from = entries.len().saturating_sub(LOG_KEPT + 1);
        let mut written = self.written.locked();
        for (i, (_, path)) in entries.into_iter().enumerate() {
            if i < keep_from {
                loc.delete(&path)?;
            } else {
                written.push_back(path);
            }
        }
        Ok(newest)
    }

    fn commit(&self, epoch: Epoch) -> Result<(), FileError> {
        let files: Vec<StagedFile> = {
            let mut pending = self.pending.locked();
            let (now, later): (Vec<_>, Vec<_>) = pending.drain(..).partition(|(e, _)| *e <= epoch);
            *pending = later;
            now.into_iter().map(|(_, f)| f).collect()
        };
        let entry = LogEntry {
            format: LOG_FORMAT,
            epoch,
            run: self.run.clone(),
            files,
        };
        let path = self.log_path(epoch);
        let bytes = serde_json::to_vec(&entry).map_err(|e| FileError::Encode {
            format: "JSON",
            detail: e.to_string(),
        })?;
        if self.location.put_new(&path, bytes)? == Created::AlreadyExists {
            // Ours if a retried put had landed; anyone else's is a second job.
            if self.read_entry(&path)?.run != self.run {
                return Err(FileError::ConcurrentCommit {
                    url: self.location.url_of(&path),
                    epoch,
                });
            }
        }
        self.publish(&entry)?;
        let mut written = self.written.locked();
        written.push_back(path);
        while written.len() > LOG_KEPT + 1 {
            if let Some(old) = written.pop_front() {
                self.location.delete(&old)?;
            }
        }
        Ok(())
    }
}

/// The [`Committer`] of a [`FileSink`](crate::FileSink).
#[derive(Debug, Clone)]
pub(crate) struct FileCommitter(pub(crate) Arc<Shared>);

impl Committer for FileCommitter {
    fn recover(&self) -> Result<Option<Epoch>, BoxError> {
        Ok(self.0.recover()?)
    }

    fn commit_record(&self) -> String {
        format!("the commit log {}/{LOG}", self.0.location.url())
    }

    fn begin(&self, _after: Epoch) -> Result<(), BoxError> {
        Ok(())
    }

    fn commit(&self, epoch: Epoch) -> Result<(), BoxError> {
        Ok(self.0.commit(epoch)?)
    }

    fn name(&self) -> &str {
        &self.0.name
    }

    fn needs_checkpoints(&self) -> bool {
        false
    }
}
