//! A bounded source over the files under a location.

use std::collections::{HashMap, HashSet};
use std::marker::PhantomData;
use std::sync::Arc;

use object_store::path::Path;
use rill_engine::state::{decode, encode, RestoredState};
use rill_engine::{
    BoxError, Emit, Failure, Origin, Progress, RawRecord, Source, SourceReader, WorkerContext,
};
use serde::de::DeserializeOwned;

use crate::error::FileError;
use crate::format::{Decoded, Format};
use crate::location::StoreLocation;

/// Reads every file under a location (a file or a prefix, recursively), in name order,
/// and ends: a bounded run, like Spark's batch read of a directory. Names with a segment
/// starting with `_` or `.` are skipped (staging, logs, hidden files), and so are files of
/// another format's extension. File `i` of the sorted list is read by worker `i mod P`.
///
/// Positions are checkpointed per file (finished, or how many records were emitted), and a
/// restore at any worker count skips finished files and resumes partly read ones. A JSON
/// line that is not a `T` goes to the dead-letter sink with its file and line number.
///
/// See [`FileSink`](crate::FileSink) for an example.
pub struct FileSource<T> {
    location: StoreLocation,
    format: Format,
    _records: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for FileSource<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSource")
            .field("location", &self.location.url())
            .field("format", &self.format.name())
            .finish()
    }
}

impl<T: DeserializeOwned + Send + 'static> FileSource<T> {
    /// The files of `format` under `location`.
    pub fn new(location: StoreLocation, format: Format) -> Self {
        FileSource {
            location,
            format,
            _records: PhantomData,
        }
    }

    /// The files this source reads, in order, as paths in the store.
    fn files(&self) -> Result<Vec<Path>, FileError> {
        let loc = &self.location;
        let ext = self.format.extension();
        let json = matches!(self.format.kind, crate::format::Kind::JsonLines);
        let mut files: Vec<Path> = loc
            .list(&loc.prefix)?
            .into_iter()
            .map(|m| m.location)
            .filter(|p| {
                let below = p.prefix_match(&loc.prefix);
                let hidden = below.is_some_and(|mut parts| {
                    parts.any(|s| s.as_ref().starts_with('_') || s.as_ref().starts_with('.'))
                });
                let name = p.filename().unwrap_or("");
                let ours = if json {
                    name.ends_with(".jsonl")
                        || name.ends_with(".jsonl.gz")
                        || name.ends_with(".jsonl.zst")
                        || name.ends_with(".json")
                } else {
                    name.ends_with(ext)
                };
                !hidden && ours
            })
            .collect();
        // A location naming one object lists nothing below it.
        if files.is_empty() && !loc.prefix.as_ref().is_empty() && loc.head(&loc.prefix)?.is_some() {
            files.push(loc.prefix.clone());
        }
        files.sort();
        Ok(files)
    }
}

impl<T: DeserializeOwned + Send + 'static> Source for FileSource<T> {
    type Reader = FileSourceReader<T>;

    fn create(&self, ctx: &WorkerContext) -> Result<FileSourceReader<T>, BoxError> {
        self.format.validate()?;
        let files = self.files()?;
        let mut pending: Vec<Path> = files
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % ctx.workers() == ctx.worker())
            .map(|(_, p)| p)
            .collect();
        pending.reverse();
        Ok(FileSourceReader {
            location: self.location.clone(),
            format: self.format.clone(),
            pending,
            current: None,
            finished: Vec::new(),
            resume: HashMap::new(),
        })
    }

    fn name(&self) -> &str {
        "files"
    }
}

/// A file being read: its URL, its records (decoded at open), and how many were emitted.
struct Current<T> {
    path: String,
    url: Arc<str>,
    records: std::vec::IntoIter<Decoded<T>>,
    emitted: u64,
}

/// One worker's [`FileSource`].
pub struct FileSourceReader<T> {
    location: StoreLocation,
    format: Format,
    /// Files still to read, last first.
    pending: Vec<Path>,
    current: Option<Current<T>>,
    finished: Vec<String>,
    /// Restored counts of records already emitted from partly read files.
    resume: HashMap<String, u64>,
}

impl<T> std::fmt::Debug for FileSourceReader<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSourceReader")
            .field("pending", &self.pending.len())
            .field("finished", &self.finished.len())
            .finish()
    }
}

/// A line of a file that would not decode, as a dead letter sees it.
struct BadLine<'a> {
    url: &'a Arc<str>,
    line: i64,
    bytes: &'a [u8],
}

impl RawRecord for BadLine<'_> {
    fn origin(&self) -> Option<Origin> {
        Some(Origin {
            stream: self.url.clone(),
            partition: 0,
            offset: self.line,
        })
    }
    fn raw_key(&self) -> Option<&[u8]> {
        None
    }
    fn raw_value(&self) -> Option<&[u8]> {
        Some(self.bytes)
    }
}

/// The error of a line that is not a record of the expected type.
#[derive(Debug, thiserror::Error)]
#[error("{url} line {line}: not the expected record: {error}")]
struct NotARecord {
    url: Arc<str>,
    line: i64,
    error: String,
}

/// One file's position in a checkpoint: path, read to its end, records emitted.
type FilePosition = (String, bool, u64);

impl<T: DeserializeOwned> SourceReader for FileSourceReader<T> {
    type Out = T;

    fn poll<E: Emit<T>>(&mut self, out: &mut E, budget: usize) -> Result<Progress, BoxError> {
        let mut emitted = 0;
        while emitted < budget && !out.should_yield() {
            let current = match &mut self.current {
                Some(c) => c,
                None => match self.pending.pop() {
                    None => return Ok(Progress::Done),
                    Some(path) => {
                        let url: Arc<str> = Arc::from(self.location.url_of(&path));
                        let bytes = self.location.get(&path)?;
                        let mut records = self.format.decode::<T>(&url, bytes)?.into_iter();
                        let key = path.to_string();
                        let skip = self.resume.remove(&key).unwrap_or(0);
                        for _ in 0..skip {
                            records.next();
                        }
                        self.current.insert(Current {
                            path: key,
                            url,
                            records,
                            emitted: skip,
                        })
                    }
                },
            };
            match current.records.next() {
                None => {
                    self.finished.push(std::mem::take(&mut current.path));
                    self.current = None;
                }
                Some(record) => {
                    current.emitted += 1;
                    match record {
                        Decoded::Record(r) => out.emit(r),
                        Decoded::Bad { line, error } => {
                            let n = current.emitted as i64;
                            let bad = BadLine {
                                url: &current.url,
                                line: n,
                                bytes: &line,
                            };
                            let error = NotARecord {
                                url: current.url.clone(),
                                line: n,
                                error,
                            };
                            out.fail(Failure::new(error).with_record(&bad));
                        }
                    }
                    emitted += 1;
                }
            }
        }
        Ok(Progress::Busy)
    }

    fn position(&mut self) -> Result<Option<Vec<u8>>, BoxError> {
        let mut files: Vec<FilePosition> =
            self.finished.iter().map(|p| (p.clone(), true, 0)).collect();
        if let Some(c) = &self.current {
            files.push((c.path.clone(), false, c.emitted));
        }
        for (path, emitted) in &self.resume {
            files.push((path.clone(), false, *emitted));
        }
        Ok(Some(encode(&files)?))
    }

    /// Skips the files a checkpoint had finished and resumes partly read ones after the
    /// records already emitted, whichever worker read them before.
    fn restore(&mut self, state: &RestoredState<'_>) -> Result<(), BoxError> {
        let mut done = HashSet::new();
        for blob in state.worker_blobs().iter().flatten() {
            for (path, finished, emitted) in decode::<Vec<FilePosition>>(blob, state.node())? {
                if finished {
                    done.insert(path);
                } else {
                    self.resume.insert(path, emitted);
                }
            }
        }
        self.pending.retain(|p| !done.contains(p.as_ref()));
        let mine: HashSet<String> = self.pending.iter().map(|p| p.to_string()).collect();
        self.resume.retain(|path, _| mine.contains(path));
        self.finished = done.into_iter().collect();
        Ok(())
    }
}
