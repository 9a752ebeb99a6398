//! Lines from standard input, lines to standard output.

use std::fmt::Display;
use std::io::{BufRead, Write};
use std::marker::PhantomData;

use crossbeam_channel::{Receiver, TryRecvError};
use rill_engine::{
    BoxError, Emit, Progress, Sink, SinkWriter, Source, SourceReader, WorkerContext,
};

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
}

impl Default for StdinLines {
    fn default() -> Self {
        Self { capacity: 4096 }
    }
}

impl StdinLines {
    /// Reads stdin. At most 4096 lines wait between the reader thread and the worker: a slow
    /// pipeline slows the reader instead of filling memory.
    pub fn new() -> Self {
        Self::default()
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
        std::thread::Builder::new()
            .name("rill-stdin".into())
            .spawn(move || {
                let stdin = std::io::stdin();
                let mut input = stdin.lock();
                let mut buf = Vec::new();
                let mut line = 0u64;
                loop {
                    buf.clear();
                    let item = match input.read_until(b'\n', &mut buf) {
                        Ok(0) => break,
                        Ok(_) => {
                            line += 1;
                            crate::file::strip_line_end(&mut buf);
                            String::from_utf8(std::mem::take(&mut buf))
                                .map_err(|source| StdioError::InvalidUtf8 { line, source })
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => Err(StdioError::Read(e)),
                    };
                    let failed = item.is_err();
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
    lines: Option<Receiver<Result<String, StdioError>>>,
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
                Ok(Ok(line)) => {
                    out.emit(line);
                    emitted += 1;
                }
                Ok(Err(e)) => return Err(e.into()),
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
