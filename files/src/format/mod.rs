//! File formats: JSON lines and Parquet, each with a compression option.

mod json_lines;
mod parquet;

use std::sync::Arc;

use arrow_schema::{FieldRef, Schema};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::FileError;

pub(crate) use self::json_lines::JsonLinesEncoder;
pub(crate) use self::parquet::ParquetEncoder;

/// How file contents are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Compression {
    /// None.
    #[default]
    None,
    /// gzip (`.jsonl.gz`; Parquet's GZIP codec).
    Gzip,
    /// Zstandard at level 3 (`.jsonl.zst`; Parquet's ZSTD codec).
    Zstd,
    /// Snappy: Parquet only (Spark's default codec).
    Snappy,
}

/// The format of the files a [`FileSink`](crate::FileSink) writes and a
/// [`FileSource`](crate::FileSource) reads.
///
/// ```
/// use rill_files::{Compression, Format};
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Click { user: String, ts: i64 }
///
/// let json = Format::json_lines().with_compression(Compression::Gzip);
/// assert_eq!(json.extension(), "jsonl.gz");
/// // The Parquet schema comes from the record type (or from `Format::parquet(schema)`).
/// let parquet = Format::parquet_for::<Click>()?;
/// assert_eq!(parquet.extension(), "parquet");
/// # Ok::<(), rill_files::FileError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Format {
    pub(crate) kind: Kind,
    pub(crate) compression: Compression,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    JsonLines,
    Parquet {
        fields: Arc<Vec<FieldRef>>,
        /// Rows converted to Arrow at a time (and the most a row group starts with).
        batch_rows: usize,
    },
}

impl Format {
    /// One JSON document per line (serde_json), uncompressed unless set.
    pub fn json_lines() -> Format {
        Format {
            kind: Kind::JsonLines,
            compression: Compression::None,
        }
    }

    /// Parquet with the schema traced from `T`'s serde shape (serde_arrow), ZSTD-compressed.
    pub fn parquet_for<T: Serialize + DeserializeOwned>() -> Result<Format, FileError> {
        use serde_arrow::schema::{SchemaLike, TracingOptions};
        let fields = Vec::<FieldRef>::from_type::<T>(TracingOptions::default())
            .map_err(|e| FileError::Schema(e.to_string()))?;
        Ok(Self::parquet_fields(fields))
    }

    /// Parquet with a schema the user gives (for types serde cannot describe alone, or to
    /// pick Arrow types: timestamps, decimals, dictionary strings).
    pub fn parquet(schema: &Schema) -> Format {
        Self::parquet_fields(schema.fields().iter().cloned().collect())
    }

    fn parquet_fields(fields: Vec<FieldRef>) -> Format {
        Format {
            kind: Kind::Parquet {
                fields: Arc::new(fields),
                batch_rows: 8192,
            },
            compression: Compression::Zstd,
        }
    }

    /// Sets the compression. Snappy is for Parquet only: JSON lines with Snappy is refused
    /// when the sink or source is built.
    pub fn with_compression(mut self, compression: Compression) -> Format {
        self.compression = compression;
        self
    }

    /// The file name extension: `jsonl`, `jsonl.gz`, `jsonl.zst` or `parquet`.
    pub fn extension(&self) -> &'static str {
        match (&self.kind, self.compression) {
            (Kind::Parquet { .. }, _) => "parquet",
            (Kind::JsonLines, Compression::Gzip) => "jsonl.gz",
            (Kind::JsonLines, Compression::Zstd) => "jsonl.zst",
            (Kind::JsonLines, _) => "jsonl",
        }
    }

    /// The format's name, for messages.
    pub fn name(&self) -> &'static str {
        match self.kind {
            Kind::JsonLines => "JSON lines",
            Kind::Parquet { .. } => "Parquet",
        }
    }

    pub(crate) fn validate(&self) -> Result<(), FileError> {
        if matches!(self.kind, Kind::JsonLines) && self.compression == Compression::Snappy {
            return Err(FileError::Encode {
                format: "JSON lines",
                detail: "Snappy compression is for Parquet; use Gzip or Zstd".into(),
            });
        }
        Ok(())
    }

    pub(crate) fn encoder<T: Serialize>(&self) -> Result<Encoder<T>, FileError> {
        Ok(match &self.kind {
            Kind::JsonLines => Encoder::JsonLines(JsonLinesEncoder::new(self.compression)?),
            Kind::Parquet { fields, batch_rows } => Encoder::Parquet(Box::new(
                ParquetEncoder::new(fields.clone(), *batch_rows, self.compression)?,
            )),
        })
    }

    /// Decodes a whole file into records. `url` names it in errors; the compression of a
    /// JSON-lines file is taken from its name.
    pub(crate) fn decode<T: DeserializeOwned>(
        &self,
        url: &str,
        bytes: bytes::Bytes,
    ) -> Result<Vec<Decoded<T>>, FileError> {
        match self.kind {
            Kind::JsonLines => json_lines::decode(url, &bytes),
            Kind::Parquet { .. } => parquet::decode(url, bytes),
        }
    }
}

/// One record read back from a file, or the line that would not parse.
#[derive(Debug)]
pub(crate) enum Decoded<T> {
    Record(T),
    /// A JSON line that is not a `T`: its bytes and what serde said.
    Bad {
        line: Vec<u8>,
        error: String,
    },
}

/// An open file being encoded.
#[derive(Debug)]
pub(crate) enum Encoder<T> {
    JsonLines(JsonLinesEncoder),
    Parquet(Box<ParquetEncoder<T>>),
}

impl<T: Serialize> Encoder<T> {
    pub(crate) fn write(&mut self, item: T) -> Result<(), FileError> {
        match self {
            Encoder::JsonLines(e) => e.write(&item),
            Encoder::Parquet(e) => e.write(item),
        }
    }

    /// About how large the file is so far, for rolling by size.
    pub(crate) fn size(&self) -> u64 {
        match self {
            Encoder::JsonLines(e) => e.size(),
            Encoder::Parquet(e) => e.size(),
        }
    }

    /// The complete file.
    pub(crate) fn finish(self) -> Result<Vec<u8>, FileError> {
        match self {
            Encoder::JsonLines(e) => e.finish(),
            Encoder::Parquet(e) => (*e).finish(),
        }
    }
}
