//! A bounded source over the lines of files.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::sync::Arc;

use rill_engine::{
    BoxError, Emit, Origin, Progress, RawRecord, Source, SourceFactory, WorkerContext,
};

/// Removes a trailing `\n` or `\r\n` from a line read with `read_until(b'\n')`.
pub(crate) fn strip_line_end(bytes: &mut Vec<u8>) {
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
}

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
        }
    }
}

impl SourceFactory for FileLines {
    type Source = FileLinesReader;

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
            pending: mine,
            current: None,
        })
    }

    fn name(&self) -> &str {
        "files"
    }
}

/// One worker's [`FileLines`].
#[derive(Debug)]
pub struct FileLinesReader {
    /// Files still to read, last first.
    pending: Vec<PathBuf>,
    current: Option<(Arc<str>, BufReader<File>, i64)>,
}

impl Source for FileLinesReader {
    type Out = FileLine;

    fn poll<E: Emit<FileLine>>(
        &mut self,
        out: &mut E,
        budget: usize,
    ) -> Result<Progress, BoxError> {
        let mut emitted = 0;
        while emitted < budget && !out.should_yield() {
            let (path, reader, line) = match &mut self.current {
                Some(c) => c,
                None => match self.pending.pop() {
                    None => return Ok(Progress::Done),
                    Some(p) => {
                        let file = File::open(&p)
                            .map_err(|e| format!("cannot open {}: {e}", p.display()))?;
                        let name: Arc<str> = Arc::from(p.to_string_lossy().as_ref());
                        self.current.insert((name, BufReader::new(file), 0))
                    }
                },
            };
            let mut bytes = Vec::new();
            let n = reader
                .read_until(b'\n', &mut bytes)
                .map_err(|e| format!("reading {path}: {e}"))?;
            if n == 0 {
                self.current = None;
                continue;
            }
            strip_line_end(&mut bytes);
            *line += 1;
            out.emit(FileLine {
                path: path.clone(),
                line: *line,
                bytes,
            });
            emitted += 1;
        }
        Ok(Progress::Busy)
    }
}
