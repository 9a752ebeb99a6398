//! One worker's part of a [`FileSink`](crate::FileSink).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rill_engine::{BoxError, Epoch, SinkWriter, WorkerContext};
use serde::Serialize;

use crate::error::FileError;
use crate::format::{Encoder, Format};
use crate::sink::commit_log::{Shared, StagedFile, STAGING};
use crate::sink::PartitionFn;

struct OpenFile<T> {
    encoder: Encoder<T>,
    records: u64,
    opened: Instant,
}

/// The per-worker writer of a [`FileSink`](crate::FileSink): one open file per partition.
pub struct FileWriter<T> {
    shared: Arc<Shared>,
    format: Format,
    partition: Option<PartitionFn<T>>,
    roll_bytes: u64,
    roll_interval: Duration,
    worker: usize,
    exactly_once: bool,
    open: HashMap<String, OpenFile<T>>,
    /// Files staged since the last barrier (exactly-once runs).
    staged: Vec<StagedFile>,
    seq: u64,
    /// When open files were last checked for their age.
    checked: Instant,
}

impl<T> std::fmt::Debug for FileWriter<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileWriter")
            .field("location", &self.shared.location.url())
            .field("worker", &self.worker)
            .field("open_files", &self.open.len())
            .field("staged", &self.staged.len())
            .finish()
    }
}

impl<T: Serialize> FileWriter<T> {
    pub(crate) fn new(
        shared: Arc<Shared>,
        format: Format,
        partition: Option<PartitionFn<T>>,
        (roll_bytes, roll_interval): (u64, Duration),
        ctx: &WorkerContext,
    ) -> Self {
        FileWriter {
            worker: ctx.worker(),
            exactly_once: shared.committing(),
            shared,
            format,
            partition,
            roll_bytes,
            roll_interval,
            open: HashMap::new(),
            staged: Vec::new(),
            seq: 0,
            checked: Instant::now(),
        }
    }

    /// Finishes the open file of `partition` and stages it (exactly once) or writes it in
    /// place (at least once).
    fn roll(&mut self, partition: &str) -> Result<(), FileError> {
        let Some(file) = self.open.remove(partition) else {
            return Ok(());
        };
        let bytes = file.encoder.finish()?;
        self.seq += 1;
        let ext = self.format.extension();
        let name = format!(
            "part-{}-w{:03}-{:06}.{ext}",
            self.shared.run, self.worker, self.seq
        );
        let loc = &self.shared.location;
        let target = if partition.is_empty() {
            loc.child(&name)
        } else {
            loc.child(&format!("{partition}/{name}"))
        };
        let len = bytes.len() as u64;
        if self.exactly_once {
            let staging = loc.child(&format!(
                "{STAGING}/{}/w{:03}-{:06}.{ext}",
                self.shared.run, self.worker, self.seq
            ));
            loc.put(&staging, bytes)?;
            self.staged.push(StagedFile {
                staging: staging.to_string(),
                target: target.to_string(),
                records: file.records,
                bytes: len,
            });
        } else {
            loc.put(&target, bytes)?;
            self.shared.published(file.records, len);
        }
        Ok(())
    }

    fn roll_all(&mut self) -> Result<(), FileError> {
        let partitions: Vec<String> = self.open.keys().cloned().collect();
        for p in partitions {
            self.roll(&p)?;
        }
        Ok(())
    }
}

impl<T: Serialize> SinkWriter<T> for FileWriter<T> {
    fn write(&mut self, item: T) -> Result<(), BoxError> {
        let partition = match &self.partition {
            Some(f) => f(&item),
            None => String::new(),
        };
        let file = match self.open.get_mut(&partition) {
            Some(f) => f,
            None => {
                let file = OpenFile {
                    encoder: self.format.encoder()?,
                    records: 0,
                    opened: Instant::now(),
                };
                self.open.entry(partition.clone()).or_insert(file)
            }
        };
        file.encoder.write(item)?;
        file.records += 1;
        if file.encoder.size() >= self.roll_bytes {
            self.roll(&partition)?;
        }
        Ok(())
    }

    /// Rolls files open longer than the roll interval (checked at most every 100 ms).
    fn flush(&mut self) -> Result<(), BoxError> {
        if self.open.is_empty() || self.checked.elapsed() < Duration::from_millis(100) {
            return Ok(());
        }
        self.checked = Instant::now();
        let old: Vec<String> = self
            .open
            .iter()
            .filter(|(_, f)| f.opened.elapsed() >= self.roll_interval)
            .map(|(p, _)| p.clone())
            .collect();
        for p in old {
            self.roll(&p)?;
        }
        Ok(())
    }

    /// Pre-commit: every open file is finished and staged for checkpoint `epoch` (or, at
    /// least once, written in place).
    fn on_barrier(&mut self, epoch: Epoch) -> Result<(), BoxError> {
        self.roll_all()?;
        if self.exactly_once {
            self.shared.stage(epoch, self.staged.drain(..));
        }
        Ok(())
    }

    fn close(&mut self) -> Result<(), BoxError> {
        if self.exactly_once {
            // The final checkpoint staged everything before it; anything else was never
            // covered by a checkpoint and must not be published.
            let records: u64 = self.open.values().map(|f| f.records).sum::<u64>()
                + self.staged.iter().map(|f| f.records).sum::<u64>();
            if records > 0 {
                return Err(FileError::Uncommitted { records }.into());
            }
            return Ok(());
        }
        Ok(self.roll_all()?)
    }
}
