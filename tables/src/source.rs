//! Where a table's rows come from: files (JSON lines or CSV, one file or a directory) or a
//! Kafka topic read to its end; and how to tell that they changed.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::de::DeserializeOwned;

use crate::error::TableError;
use crate::kafka::{end_offsets, read_topic};
use crate::pace::Pacer;

/// Where a [`Table`](crate::Table)'s rows are read from.
///
/// ```
/// use rill_tables::TableSource;
/// let products = TableSource::json_lines("data/products.jsonl");
/// let prices = TableSource::csv("data/prices/"); // every file of the directory
/// let users = TableSource::kafka("localhost:9092", "users"); // a compacted topic
/// # let _ = (products, prices, users);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableSource {
    /// One JSON document per line; a path or a directory of such files.
    JsonLines(PathBuf),
    /// CSV with a header row naming the fields; a path or a directory of such files.
    Csv(PathBuf),
    /// A Kafka topic (typically compacted) read from its beginning to its end: the latest
    /// value per record key, a record with no value (a tombstone) deleting the key.
    Kafka {
        /// Bootstrap servers.
        brokers: String,
        /// The topic.
        topic: String,
    },
}

impl TableSource {
    /// JSON lines at `path` (a file or a directory).
    pub fn json_lines(path: impl Into<PathBuf>) -> Self {
        TableSource::JsonLines(path.into())
    }

    /// CSV at `path` (a file or a directory).
    pub fn csv(path: impl Into<PathBuf>) -> Self {
        TableSource::Csv(path.into())
    }

    /// The Kafka topic `topic` on `brokers`.
    pub fn kafka(brokers: impl Into<String>, topic: impl Into<String>) -> Self {
        TableSource::Kafka {
            brokers: brokers.into(),
            topic: topic.into(),
        }
    }

    /// Every row, in order (files by name, lines in order; Kafka: latest per key). About
    /// `expected` rows (the last version's): room for them is made at once, not by
    /// doubling, which would copy the rows in bursts.
    pub(crate) fn read<R: DeserializeOwned>(
        &self,
        table: &str,
        timeout: Duration,
        pacer: &mut Pacer,
        expected: usize,
    ) -> Result<Vec<R>, TableError> {
        match self {
            TableSource::JsonLines(path) => {
                let mut rows = Vec::with_capacity(expected);
                for file in files(table, path)? {
                    read_json_lines(table, &file, &mut rows, pacer)?;
                }
                Ok(rows)
            }
            TableSource::Csv(path) => {
                let mut rows = Vec::with_capacity(expected);
                for file in files(table, path)? {
                    read_csv(table, &file, &mut rows, pacer)?;
                }
                Ok(rows)
            }
            TableSource::Kafka { brokers, topic } => {
                read_topic(table, brokers, topic, timeout, pacer)
            }
        }
    }

    /// What changes when the rows change: the files' names, sizes and modification times,
    /// or the topic's end offsets.
    pub(crate) fn fingerprint(
        &self,
        table: &str,
        timeout: Duration,
    ) -> Result<Fingerprint, TableError> {
        match self {
            TableSource::JsonLines(path) | TableSource::Csv(path) => {
                let mut stamps = Vec::new();
                for file in files(table, path)? {
                    let meta = std::fs::metadata(&file).map_err(|source| TableError::Read {
                        table: table.to_string(),
                        path: file.clone(),
                        source,
                    })?;
                    stamps.push((file, meta.len(), meta.modified().ok()));
                }
                Ok(Fingerprint::Files(stamps))
            }
            TableSource::Kafka { brokers, topic } => Ok(Fingerprint::Offsets(end_offsets(
                table, brokers, topic, timeout,
            )?)),
        }
    }
}

/// See [`TableSource::fingerprint`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fingerprint {
    Files(Vec<(PathBuf, u64, Option<SystemTime>)>),
    Offsets(Vec<(i32, i64)>),
}

/// The files of `path`: itself, or a directory's regular files by name, leaving out hidden
/// and temporary ones (`.name`, `_name`, `name.tmp`), which writers use before a rename.
fn files(table: &str, path: &Path) -> Result<Vec<PathBuf>, TableError> {
    let read_err = |source| TableError::Read {
        table: table.to_string(),
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(path).map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name.starts_with('_') || name.ends_with(".tmp") {
            continue;
        }
        if entry.file_type().map_err(read_err)?.is_file() {
            out.push(entry.path());
        }
    }
    if out.is_empty() {
        return Err(TableError::Empty {
            table: table.to_string(),
            path: path.to_path_buf(),
        });
    }
    out.sort();
    Ok(out)
}

fn read_json_lines<R: DeserializeOwned>(
    table: &str,
    file: &Path,
    rows: &mut Vec<R>,
    pacer: &mut Pacer,
) -> Result<(), TableError> {
    use std::io::BufRead;
    let read_err = |source| TableError::Read {
        table: table.to_string(),
        path: file.to_path_buf(),
        source,
    };
    // Line by line (not the whole file at once): a paced reload reads in slices too.
    let mut reader = std::io::BufReader::new(std::fs::File::open(file).map_err(read_err)?);
    let mut line = String::new();
    let mut number = 0u64;
    loop {
        line.clear();
        if reader.read_line(&mut line).map_err(read_err)? == 0 {
            return Ok(());
        }
        number += 1;
        if line.trim().is_empty() {
            continue;
        }
        let row = serde_json::from_str(&line).map_err(|e| TableError::Parse {
            table: table.to_string(),
            path: file.to_path_buf(),
            line: number,
            message: e.to_string(),
        })?;
        rows.push(row);
        pacer.step();
    }
}

fn read_csv<R: DeserializeOwned>(
    table: &str,
    file: &Path,
    rows: &mut Vec<R>,
    pacer: &mut Pacer,
) -> Result<(), TableError> {
    let mut reader = csv::Reader::from_path(file).map_err(|e| TableError::Parse {
        table: table.to_string(),
        path: file.to_path_buf(),
        line: 0,
        message: e.to_string(),
    })?;
    for (i, row) in reader.deserialize().enumerate() {
        let row = row.map_err(|e: csv::Error| TableError::Parse {
            table: table.to_string(),
            path: file.to_path_buf(),
            line: e.position().map_or(i as u64 + 2, |p| p.line()),
            message: e.to_string(),
        })?;
        rows.push(row);
        pacer.step();
    }
    Ok(())
}
