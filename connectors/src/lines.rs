//! Reading newline-delimited input with a length limit: what the file and stdin sources share.
//!
//! A file without newlines (a binary file passed by mistake, a runaway log line) must not make
//! a source buffer it whole: a line longer than the limit is consumed to its end without being
//! kept, and reported with its first bytes, so that it can go to the dead-letter sink.

use std::io::{self, BufRead};

/// The default longest line a line source hands on: 1 MiB (Kafka's default largest message).
pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;

/// How many bytes of an over-long line are kept for its dead letter.
const KEPT_OF_LONG_LINE: usize = 1024;

/// A line longer than a source's limit. It goes to the dead-letter sink with its first bytes
/// and position (or fails the job without one); the next line is read normally.
#[derive(Debug, Clone, thiserror::Error)]
#[error("line {line} is {length} bytes, longer than the limit of {limit} bytes")]
pub struct LineTooLong {
    /// 1-based line number.
    pub line: i64,
    /// The line's length without its terminator.
    pub length: u64,
    /// The source's limit.
    pub limit: usize,
}

/// One line read by [`read_line`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// The input has ended.
    End,
    /// A line within the limit, in the buffer, without its terminator; `consumed` bytes of
    /// input (terminator included).
    Whole { consumed: u64 },
    /// A line over the limit: the buffer holds its first bytes; `length` is its length
    /// without the terminator.
    TooLong { consumed: u64, length: u64 },
}

/// Reads one line into `buf` (cleared first), keeping at most `limit` bytes of it.
pub(crate) fn read_line(
    input: &mut impl BufRead,
    buf: &mut Vec<u8>,
    limit: usize,
) -> io::Result<Line> {
    buf.clear();
    let mut consumed = 0u64;
    let mut length = 0u64;
    let mut last = None;
    let mut newline = false;
    while !newline {
        let chunk = match input.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            break;
        }
        let (part, used) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => {
                newline = true;
                (&chunk[..i], i + 1)
            }
            None => (chunk, chunk.len()),
        };
        // One byte over the limit is kept for a `\r` before the newline.
        let room = (limit + 1).saturating_sub(buf.len());
        buf.extend_from_slice(&part[..part.len().min(room)]);
        length += part.len() as u64;
        last = part.last().copied().or(last);
        consumed += used as u64;
        input.consume(used);
    }
    if consumed == 0 {
        return Ok(Line::End);
    }
    if newline && last == Some(b'\r') {
        length -= 1;
        if buf.len() as u64 > length {
            buf.pop();
        }
    }
    if length > limit as u64 {
        buf.truncate(KEPT_OF_LONG_LINE.min(limit));
        return Ok(Line::TooLong { consumed, length });
    }
    Ok(Line::Whole { consumed })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], limit: usize) -> Vec<(Line, Vec<u8>)> {
        let mut reader = io::BufReader::with_capacity(3, input);
        let mut out = Vec::new();
        let mut buf = Vec::new();
        loop {
            let line = read_line(&mut reader, &mut buf, limit).unwrap();
            if line == Line::End {
                return out;
            }
            out.push((line, buf.clone()));
        }
    }

    #[test]
    fn lines_within_the_limit_are_whole_and_long_ones_are_cut_and_skipped() {
        let got = lines(b"ab\r\nabcdefgh\nabcd\n\nxyz", 4);
        assert_eq!(
            got,
            vec![
                (Line::Whole { consumed: 4 }, b"ab".to_vec()),
                (
                    Line::TooLong {
                        consumed: 9,
                        length: 8
                    },
                    b"abcd".to_vec()
                ),
                (Line::Whole { consumed: 5 }, b"abcd".to_vec()),
                (Line::Whole { consumed: 1 }, b"".to_vec()),
                (Line::Whole { consumed: 3 }, b"xyz".to_vec()),
            ]
        );
    }

    #[test]
    fn a_line_exactly_at_the_limit_with_a_carriage_return_is_whole() {
        assert_eq!(
            lines(b"abcd\r\nabcde\r\n", 4),
            vec![
                (Line::Whole { consumed: 6 }, b"abcd".to_vec()),
                (
                    Line::TooLong {
                        consumed: 7,
                        length: 5
                    },
                    b"abcd".to_vec()
                ),
            ]
        );
    }
}
