//! JSON lines: one serde_json document per line, optionally gzip or zstd compressed.

use std::io::{Read, Write};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::FileError;
use crate::format::{Compression, Decoded};

/// An open JSON-lines file, in memory until it is finished.
pub(crate) enum JsonLinesEncoder {
    Plain(Vec<u8>),
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Zstd(zstd::Encoder<'static, Vec<u8>>),
}

impl std::fmt::Debug for JsonLinesEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JsonLinesEncoder({} bytes)", self.size())
    }
}

fn encode_error(e: impl std::fmt::Display) -> FileError {
    FileError::Encode {
        format: "JSON lines",
        detail: e.to_string(),
    }
}

impl JsonLinesEncoder {
    pub(crate) fn new(compression: Compression) -> Result<Self, FileError> {
        Ok(match compression {
            Compression::None | Compression::Snappy => JsonLinesEncoder::Plain(Vec::new()),
            Compression::Gzip => JsonLinesEncoder::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::default(),
            )),
            Compression::Zstd => {
                JsonLinesEncoder::Zstd(zstd::Encoder::new(Vec::new(), 3).map_err(encode_error)?)
            }
        })
    }

    fn sink(&mut self) -> &mut dyn Write {
        match self {
            JsonLinesEncoder::Plain(v) => v,
            JsonLinesEncoder::Gzip(e) => e,
            JsonLinesEncoder::Zstd(e) => e,
        }
    }

    pub(crate) fn write<T: Serialize>(&mut self, item: &T) -> Result<(), FileError> {
        let sink = self.sink();
        serde_json::to_writer(&mut *sink, item).map_err(encode_error)?;
        sink.write_all(b"\n").map_err(encode_error)
    }

    /// Compressed bytes so far (compressors hold back up to a block).
    pub(crate) fn size(&self) -> u64 {
        match self {
            JsonLinesEncoder::Plain(v) => v.len() as u64,
            JsonLinesEncoder::Gzip(e) => e.get_ref().len() as u64,
            JsonLinesEncoder::Zstd(e) => e.get_ref().len() as u64,
        }
    }

    pub(crate) fn finish(self) -> Result<Vec<u8>, FileError> {
        match self {
            JsonLinesEncoder::Plain(v) => Ok(v),
            JsonLinesEncoder::Gzip(e) => e.finish().map_err(encode_error),
            JsonLinesEncoder::Zstd(e) => e.finish().map_err(encode_error),
        }
    }
}

/// Decodes a JSON-lines file; the compression is read from the name (`.gz`, `.zst`).
pub(crate) fn decode<T: DeserializeOwned>(
    url: &str,
    bytes: &[u8],
) -> Result<Vec<Decoded<T>>, FileError> {
    let failed = |e: std::io::Error| FileError::Decode {
        url: url.to_string(),
        detail: format!("decompressing: {e}"),
    };
    let text: Vec<u8> = if url.ends_with(".gz") {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(failed)?;
        out
    } else if url.ends_with(".zst") {
        zstd::decode_all(bytes).map_err(failed)?
    } else {
        bytes.to_vec()
    };
    let mut out = Vec::new();
    for line in text.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        out.push(match serde_json::from_slice::<T>(line) {
            Ok(record) => Decoded::Record(record),
            Err(e) => Decoded::Bad {
                line: line.to_vec(),
                error: e.to_string(),
            },
        });
    }
    Ok(out)
}
