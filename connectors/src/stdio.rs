//! Lines from standard input, lines to standard output.

use std::fmt::Display;
use std::io::Write;
use std::marker::PhantomData;
use std::sync::Arc;

use crossbeam_channel::{Receiver, TryRecvError};
use rill_engine::{
    BoxError, Emit, Failure, Origin, Progress, RawRecord, Sink, SinkWriter, Source, SourceReader,
    WorkerContext,
};

use crate::lines::{read_line, Line, LineTooLong, DEFAULT_MAX_LINE_BYTES};

/// Errors of the stdio connectors.
#[derive(Debug, thiserror::Error)]
pub enum StdioError {
    /// A line of input is not UTF-8. Its position is given so the input can be fixed;
    /// the line is not dropped silently.
    #[error("stdin line {line} is not valid UTF-8")]
    InvalidUtf8 {
        /// 1-based line number.
        line: u64,
        /// The decoding error.
        source: std::string::FromUtf8Error,
    },
    /// Reading standard input failed.
    #[error("reading stdin failed")]
    Read(#[from] std::io::Error),
}

/// Text lines from standard input, without their line terminators; ends at end of input.
///
/// Worker 0 reads stdin (on a reader thread of its own, so the worker never blocks on the
/// terminal or a pipe); the other workers' shares are empty. Add `rebalance()` after it to
/// spread the work, or `key_by`, which does so anyway.
#[derive(Debug, Clone)]
pub struct StdinLines {
    capacity: usize,
    max_line_bytes: usize,
}

impl Default for StdinLines {
    fn default() -> Self {
        Self {
            capacity: 4096,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        }
    }
}

impl StdinLines {
    /// Reads stdin. At most 4096 lines wait between the reader thread and the worker: a slow
    /// pipeline slows the reader instead of filling memory.
    pub fn new() -> Self {
        Self::default()
    }

    /// The longest line handed on, in bytes (default [`DEFAULT_MAX_LINE_BYTES`], 1 MiB). A
    /// longer line is not buffered whole: it is reported as a [`LineTooLong`] failure with
    /// its line number and first bytes (a dead letter, or the end of the job without a
    /// dead-letter sink), and reading goes on with the next line.
    pub fn max_line_bytes(mut self, limit: usize) -> Self {
        self.max_line_bytes = limit;
        self
    }
}

/// What the stdin thread hands the worker.
#[derive(Debug)]
enum StdinItem {
    Line(String),
    TooLong(LongLine),
    Failed(StdioError),
}

/// An over-long stdin line as a dead letter sees it: `stdin/0@<line>` and its first bytes.
#[derive(Debug)]
struct LongLine {
    error: LineTooLong,
    prefix: Vec<u8>,
}

impl RawRecord for LongLine {
    fn origin(&self) -> Option<Origin> {
        Some(Origin {
            stream: Arc::from("stdin"),
            partition: 0,
            offset: self.error.line,
        })
    }
    fn raw_key(&self) -> Option<&[u8]> {
        None
    }
    fn raw_value(&self) -> Option<&[u8]> {
        Some(&self.prefix)
    }
}

impl Source for StdinLines {
    type Reader = StdinReader;

    fn create(&self, ctx: &WorkerContext) -> Result<StdinReader, BoxError> {
        if ctx.worker() != 0 {
            return Ok(StdinReader { lines: None });
        }
        let (tx, rx) = crossbeam_channel::bounded(self.capacity);
        let waker = ctx.waker();
        let limit = self.max_line_bytes;
        std::thread::Builder::new()
            .name("rill-stdin".into())
            .spawn(move || {
                let stdin = std::io::stdin();
                let mut input = stdin.lock();
                let mut buf = Vec::new();
                let mut line = 0u64;
                loop {
                    let item = match read_line(&mut input, &mut buf, limit) {
                        Ok(Line::End) => break,
                        Ok(Line::Whole { .. }) => {
                            line += 1;
                            match String::from_utf8(std::mem::take(&mut buf)) {
                                Ok(text) => StdinItem::Line(text),
                                Err(source) => {
                                    StdinItem::Failed(StdioError::InvalidUtf8 { line, source })
                                }
                            }
                        }
                        Ok(Line::TooLong { length, .. }) => {
                            line += 1;
                            StdinItem::TooLong(LongLine {
                                error: LineTooLong {
                                    line: line as i64,
                                    length,
                                    limit,
                                },
                                prefix: std::mem::take(&mut buf),
                            })
                        }
                        Err(e) => StdinItem::Failed(StdioError::Read(e)),
                    };
                    let failed = matches!(item, StdinItem::Failed(_));
                    // The job has gone (stopped or failed): stop reading.
                    if tx.send(item).is_err() || failed {
                        break;
                    }
                    waker.wake();
                }
                drop(tx);
                waker.wake();
            })?;
        Ok(StdinReader { lines: Some(rx) })
    }

    fn name(&self) -> &str {
        "stdin"
    }
}

/// One worker's [`StdinLines`].
#[derive(Debug)]
pub struct StdinReader {
    lines: Option<Receiver<StdinItem>>,
}

impl SourceReader for StdinReader {
    type Out = String;

    fn poll<E: Emit<String>>(&mut self, out: &mut E, budget: usize) -> Result<Progress, BoxError> {
        let Some(lines) = &self.lines else {
            return Ok(Progress::Done);
        };
        let mut emitted = 0;
        while emitted < budget && !out.should_yield() {
            match lines.try_recv() {
                Ok(StdinItem::Line(line)) => {
                    out.emit(line);
                    emitted += 1;
                }
                Ok(StdinItem::TooLong(long)) => {
                    out.fail(Failure::new(long.error.clone()).with_record(&long));
                    emitted += 1;
                }
                Ok(StdinItem::Failed(e)) => return Err(e.into()),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Ok(Progress::Done),
            }
        }
        Ok(if emitted > 0 {
            Progress::Busy
        } else {
            Progress::IDLE
        })
    }
}

/// Writes each record's `Display` form as one line on standard output.
///
/// Each worker formats into its own buffer and writes it under the stdout lock once per poll,
/// so lines of different workers never interleave mid-line.
#[derive(Debug)]
pub struct StdoutLines<T> {
    _records: PhantomData<fn(T)>,
}

impl<T> Default for StdoutLines<T> {
    fn default() -> Self {
        Self {
            _records: PhantomData,
        }
    }
}

impl<T> StdoutLines<T> {
    /// A sink writing to standard output.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<T: Display + 'static> Sink<T> for StdoutLines<T> {
    type Writer = StdoutWriter;

    fn create(&self, _ctx: &WorkerContext) -> Result<StdoutWriter, BoxError> {
        Ok(StdoutWriter { buf: Vec::new() })
    }

    fn name(&self) -> &str {
        "stdout"
    }
}

/// One worker's [`StdoutLines`].
#[derive(Debug)]
pub struct StdoutWriter {
    buf: Vec<u8>,
}

impl<T: Display> SinkWriter<T> for StdoutWriter {
    fn write(&mut self, item: T) -> Result<(), BoxError> {
        writeln!(self.buf, "{item}")?;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BoxError> {
        if !self.buf.is_empty() {
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            lock.write_all(&self.buf)?;
            lock.flush()?;
            self.buf.clear();
        }
        Ok(())
    }
}
