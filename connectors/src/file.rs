//! A bounded source over the lines of files.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;

use rill_engine::state::{decode, encode, RestoredState};
use rill_engine::{
    BoxError, Emit, Failure, Origin, Progress, RawRecord, Source, SourceReader, WorkerContext,
};

use crate::lines::{read_line, Line, LineTooLong, DEFAULT_MAX_LINE_BYTES};

/// One line of a file: where it is, and its bytes (without the line terminator).
///
/// Lines are bytes, not text: decode them with the `decode` operator
/// (`std::str::from_utf8(&line.bytes)`), so that a line that is not valid UTF-8 goes to the
/// dead-letter sink with its path and line number instead of failing the whole run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileLine {
    /// The file.
    pub path: Arc<str>,
    /// 1-based line number.
    pub line: i64,
    /// The line's bytes, without `\n` or `\r\n`.
    pub bytes: Vec<u8>,
}

impl RawRecord for FileLine {
    fn origin(&self) -> Option<Origin> {
        Some(Origin {
            stream: self.path.clone(),
            partition: 0,
            offset: self.line,
        })
    }
    fn raw_key(&self) -> Option<&[u8]> {
        None
    }
    fn raw_value(&self) -> Option<&[u8]> {
        Some(&self.bytes)
    }
}

/// Reads the lines of files and ends when all are read: a bounded run, like Spark's batch
/// read of text files. File i of the list is read by worker i mod P. Reading happens on the
/// worker, `budget` lines per poll: file I/O blocks briefly, which is what a bounded run wants.
///
/// ```
/// use rill_connectors::{CollectSink, FileLines};
/// use rill_engine::{Config, Job};
///
/// let dir = std::env::temp_dir().join(format!("rill-doc-lines-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// std::fs::write(dir.join("a.txt"), "one\ntwo\r\n")?;
/// let job = Job::new("lines");
/// let out = CollectSink::default();
/// job.source(FileLines::new([dir.join("a.txt")])).sink(out.clone());
/// job.run(Config::default().with_workers(2))?.await_termination()?;
/// let lines: Vec<(i64, Vec<u8>)> = out.take().into_iter().map(|l| (l.line, l.bytes)).collect();
/// assert_eq!(lines, [(1, b"one".to_vec()), (2, b"two".to_vec())]);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct FileLines {
    paths: Vec<PathBuf>,
    max_line_bytes: usize,
}

impl FileLines {
    /// A source over the lines of `paths`, in order within each file.
    pub fn new<I, P>(paths: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<PathBuf>,
    {
        Self {
            paths: paths.into_iter().map(Into::into).collect(),
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        }
    }

    /// The longest line handed on, in bytes (default [`DEFAULT_MAX_LINE_BYTES`], 1 MiB). A
    /// longer line is not buffered whole: it is reported as a [`LineTooLong`] failure with
    /// its path, line number and first bytes (a dead letter, or the end of the job without
    /// a dead-letter sink), and reading goes on with the next line.
    pub fn max_line_bytes(mut self, limit: usize) -> Self {
        self.max_line_bytes = limit;
        self
    }
}

impl Source for FileLines {
    type Reader = FileLinesReader;

    fn create(&self, ctx: &WorkerContext) -> Result<FileLinesReader, BoxError> {
        let mine = self
            .paths
            .iter()
            .enumerate()
            .filter(|(i, _)| i % ctx.workers() == ctx.worker())
            .map(|(_, p)| p.clone())
            .rev()
            .collect();
        Ok(FileLinesReader {
            max_line_bytes: self.max_line_bytes,
            pending: mine,
            current: None,
            finished: Vec::new(),
            resume: HashMap::new(),
        })
    }

    fn name(&self) -> &str {
        "files"
    }
}

/// One worker's [`FileLines`].
#[derive(Debug)]
pub struct FileLinesReader {
    max_line_bytes: usize,
    /// Files still to read, last first.
    pending: Vec<PathBuf>,
    /// The file being read: name, reader, lines read, bytes read.
    current: Option<(Arc<str>, BufReader<File>, i64, u64)>,
    /// Files read to their end.
    finished: Vec<Arc<str>>,
    /// Restored positions (bytes, lines) of files read partly before a checkpoint.
    resume: HashMap<String, (u64, i64)>,
}

/// One file's position in a checkpoint: path, read to the end, bytes read, lines read.
type FilePosition = (String, bool, u64, i64);

impl SourceReader for FileLinesReader {
    type Out = FileLine;

    fn poll<E: Emit<FileLine>>(
        &mut self,
        out: &mut E,
        budget: usize,
    ) -> Result<Progress, BoxError> {
        let mut emitted = 0;
        while emitted < budget && !out.should_yield() {
            let (path, reader, line, offset) = match &mut self.current {
                Some(c) => c,
                None => match self.pending.pop() {
                    None => return Ok(Progress::Done),
                    Some(p) => {
                        let mut file = File::open(&p)
                            .map_err(|e| format!("cannot open {}: {e}", p.display()))?;
                        let name: Arc<str> = Arc::from(p.to_string_lossy().as_ref());
                        let (offset, line) = self.resume.remove(&*name).unwrap_or((0, 0));
                        if offset > 0 {
                            file.seek(SeekFrom::Start(offset))
                                .map_err(|e| format!("cannot seek in {name}: {e}"))?;
                        }
                        self.current
                            .insert((name, BufReader::new(file), line, offset))
                    }
                },
            };
            let mut bytes = Vec::new();
            let read = read_line(reader, &mut bytes, self.max_line_bytes)
                .map_err(|e| format!("reading {path}: {e}"))?;
            let (consumed, too_long) = match read {
                Line::End => {
                    let name = path.clone();
                    self.finished.push(name);
                    self.current = None;
                    continue;
                }
                Line::Whole { consumed } => (consumed, None),
                Line::TooLong { consumed, length } => (consumed, Some(length)),
            };
            *line += 1;
            *offset += consumed;
            let record = FileLine {
                path: path.clone(),
                line: *line,
                bytes,
            };
            match too_long {
                None => out.emit(record),
                Some(length) => {
                    let error = LineTooLong {
                        line: *line,
                        length,
                        limit: self.max_line_bytes,
                    };
                    out.fail(Failure::new(error).with_record(&record));
                }
            }
            emitted += 1;
        }
        Ok(Progress::Busy)
    }

    /// The files read to their end, and the byte and line position in the current one.
    fn position(&mut self) -> Result<Option<Vec<u8>>, BoxError> {
        let mut files: Vec<FilePosition> = self
            .finished
            .iter()
            .map(|p| (p.to_string(), true, 0, 0))
            .collect();
        if let Some((path, _, line, offset)) = &self.current {
            files.push((path.to_string(), false, *offset, *line));
        }
        // Partly read files restored but not reopened yet keep their position.
        for (path, (offset, line)) in &self.resume {
            files.push((path.clone(), false, *offset, *line));
        }
        Ok(Some(encode(&files)?))
    }

    /// Skips the files a checkpoint had finished and resumes partly read ones at their byte
    /// position, whichever worker read them before: files are assigned by path.
    fn restore(&mut self, state: &RestoredState<'_>) -> Result<(), BoxError> {
        let mut done = std::collections::HashSet::new();
        for blob in state.worker_blobs().iter().flatten() {
            for (path, finished, offset, line) in decode::<Vec<FilePosition>>(blob, state.node())? {
                if finished {
                    done.insert(path);
                } else {
                    self.resume.insert(path, (offset, line));
                }
            }
        }
        self.pending
            .retain(|p| !done.contains(p.to_string_lossy().as_ref()));
        // Keep only the partly read files this worker reads now; their owners keep the rest.
        let mine: std::collections::HashSet<String> = self
            .pending
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        self.resume.retain(|path, _| mine.contains(path));
        // Every worker keeps the finished files of the checkpoint: a later checkpoint must
        // still say they are done, whoever reads the rest.
        self.finished = done.into_iter().map(Arc::from).collect();
        Ok(())
    }
}
