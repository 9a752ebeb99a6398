//! Parquet through Arrow: records become Arrow batches with serde_arrow, and batches become
//! row groups with the `parquet` crate's `ArrowWriter`.

use std::sync::Arc;

use arrow_schema::{FieldRef, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{GzipLevel, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::FileError;
use crate::format::{Compression, Decoded};

/// An open Parquet file: rows wait in `rows` until a batch is full, then go to the writer.
pub(crate) struct ParquetEncoder<T> {
    fields: Arc<Vec<FieldRef>>,
    batch_rows: usize,
    rows: Vec<T>,
    writer: ArrowWriter<Vec<u8>>,
}

impl<T> std::fmt::Debug for ParquetEncoder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ParquetEncoder({} buffered rows, {} bytes)",
            self.rows.len(),
            self.writer.bytes_written()
        )
    }
}

fn encode_error(e: impl std::fmt::Display) -> FileError {
    FileError::Encode {
        format: "Parquet",
        detail: e.to_string(),
    }
}

impl<T: Serialize> ParquetEncoder<T> {
    pub(crate) fn new(
        fields: Arc<Vec<FieldRef>>,
        batch_rows: usize,
        compression: Compression,
    ) -> Result<Self, FileError> {
        let codec = match compression {
            Compression::None => parquet::basic::Compression::UNCOMPRESSED,
            Compression::Snappy => parquet::basic::Compression::SNAPPY,
            Compression::Gzip => parquet::basic::Compression::GZIP(GzipLevel::default()),
            Compression::Zstd => parquet::basic::Compression::ZSTD(ZstdLevel::default()),
        };
        let props = WriterProperties::builder().set_compression(codec).build();
        let schema = Arc::new(Schema::new(fields.as_ref().clone()));
        let writer = ArrowWriter::try_new(Vec::new(), schema, Some(props)).map_err(encode_error)?;
        Ok(ParquetEncoder {
            fields,
            batch_rows,
            rows: Vec::with_capacity(batch_rows.min(1024)),
            writer,
        })
    }

    pub(crate) fn write(&mut self, item: T) -> Result<(), FileError> {
        self.rows.push(item);
        if self.rows.len() >= self.batch_rows {
            self.write_batch()?;
        }
        Ok(())
    }

    fn write_batch(&mut self) -> Result<(), FileError> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let batch =
            serde_arrow::to_record_batch(self.fields.as_ref(), &self.rows).map_err(encode_error)?;
        self.rows.clear();
        self.writer.write(&batch).map_err(encode_error)
    }

    /// Bytes written plus the row group being built, plus a rough size of waiting rows.
    pub(crate) fn size(&self) -> u64 {
        (self.writer.bytes_written() + self.writer.in_progress_size()) as u64
            + self.rows.len() as u64 * 16
    }

    pub(crate) fn finish(mut self) -> Result<Vec<u8>, FileError> {
        self.write_batch()?;
        self.writer.into_inner().map_err(encode_error)
    }
}

/// Decodes a whole Parquet file into records.
pub(crate) fn decode<T: DeserializeOwned>(
    url: &str,
    bytes: bytes::Bytes,
) -> Result<Vec<Decoded<T>>, FileError> {
    let failed = |e: &dyn std::fmt::Display| FileError::Decode {
        url: url.to_string(),
        detail: e.to_string(),
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(|b| b.build())
        .map_err(|e| failed(&e))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| failed(&e))?;
        let rows: Vec<T> = serde_arrow::from_record_batch(&batch).map_err(|e| failed(&e))?;
        out.extend(rows.into_iter().map(Decoded::Record));
    }
    Ok(out)
}
