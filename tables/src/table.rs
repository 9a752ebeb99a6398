//! A reference table: one shared, versioned copy in memory, reloaded in the background.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use rill_engine::sync::{Lock, Versioned, VersionedReader};
use serde::de::DeserializeOwned;

use crate::error::TableError;
use crate::pace::{Pacer, Pacing};
use crate::source::TableSource;

/// One loaded version of a table: its rows by key.
#[derive(Debug)]
pub struct TableVersion<K, V> {
    rows: HashMap<K, V>,
    version: u64,
    loaded_at: SystemTime,
}

impl<K: Hash + Eq, V> TableVersion<K, V> {
    /// The row of `key`.
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.rows.get(key)
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True if the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// 1 for the version loaded at start, one more per successful reload.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// When this version finished loading.
    pub fn loaded_at(&self) -> SystemTime {
        self.loaded_at
    }

    /// Every (key, row), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.rows.iter()
    }
}

/// How a table is kept fresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// Loaded once, at start.
    Never,
    /// Reloaded every interval (a daily reload of a batch export).
    Every(Duration),
    /// Checked every interval (files: names, sizes, modification times; Kafka: end
    /// offsets) and reloaded when it changed.
    OnChange(Duration),
}

/// A table's loads and lookups so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableStats {
    /// The version readers get now.
    pub version: u64,
    /// Its rows.
    pub rows: usize,
    /// Successful loads (the first one included).
    pub loads: u64,
    /// Failed reloads (each kept the previous version).
    pub failures: u64,
    /// The last failure, until a load succeeds again.
    pub last_error: Option<String>,
    /// How long the last successful load took (read, parse, index).
    pub last_load: Duration,
    /// Inner-join records dropped because their key had no row.
    pub misses: u64,
}

/// The shared part of a table: the versioned rows, the statistics, the reloader to wake.
#[derive(Debug)]
struct Inner<K, V> {
    name: String,
    rows: Arc<Versioned<TableVersion<K, V>>>,
    stats: Mutex<TableStats>,
    misses: AtomicU64,
    reloader: Mutex<Option<std::thread::Thread>>,
}

impl<K, V> Drop for Inner<K, V> {
    fn drop(&mut self) {
        // The last handle is gone: the reloader wakes, finds it gone, and ends.
        if let Some(t) = self.reloader.locked().take() {
            t.unpark();
        }
    }
}

/// A reference table joined to streams (see
/// [`JoinTableExt::join_table`](crate::JoinTableExt::join_table)): rows loaded from files or
/// a Kafka topic, keyed by a function of the row, held once in memory and shared by every
/// worker, and reloaded in the background without stopping the stream.
///
/// A reload builds the new version apart and swaps it in atomically: a record is joined
/// against one whole version, never a half-loaded one. A failed reload keeps the previous
/// version, counts the failure in [`stats`](Self::stats), logs it, and is tried again at
/// the next check. The old version is freed on the reloader's thread once no worker holds
/// it, so a large table's deallocation never lands on a worker.
///
/// Cloning a `Table` clones a handle; the reloader ends when the last handle is dropped.
#[derive(Debug)]
pub struct Table<K, V> {
    inner: Arc<Inner<K, V>>,
}

impl<K, V> Clone for Table<K, V> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<K, V> Table<K, V> {
    /// The table's name (in errors and logs).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Loads, reloads and lookups so far.
    pub fn stats(&self) -> TableStats {
        let mut stats = self.inner.stats.locked().clone();
        stats.misses = self.inner.misses.load(Ordering::Relaxed);
        stats
    }

    /// The current version, for a lookup outside a job.
    pub fn current(&self) -> Arc<TableVersion<K, V>> {
        self.inner.rows.load().1
    }

    /// A reader for one worker: one atomic load per record, a lock only when a new version
    /// was published.
    pub(crate) fn reader(&self) -> VersionedReader<TableVersion<K, V>> {
        Versioned::reader(&self.inner.rows)
    }

    /// Counts an inner-join record whose key had no row.
    pub(crate) fn miss(&self) {
        self.inner.misses.fetch_add(1, Ordering::Relaxed);
    }
}

/// How to load a table: its name, where its rows are, how it is refreshed.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use serde::Deserialize;
/// use rill_tables::{Refresh, TableBuilder, TableSource};
///
/// #[derive(Debug, Clone, Deserialize)]
/// struct Product { product_id: String, name: String, price: f64 }
///
/// let dir = std::env::temp_dir().join(format!("rill-doc-products-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let path = dir.join("products.jsonl");
/// std::fs::write(&path, "{\"product_id\":\"p1\",\"name\":\"kettle\",\"price\":25.0}\n")?;
/// let products = TableBuilder::new("products", TableSource::json_lines(&path))
///     .refresh(Refresh::OnChange(Duration::from_secs(1)))
///     .load(|p: &Product| p.product_id.clone())?;
/// assert_eq!(products.current().get("p1").map(|p| p.price), Some(25.0));
/// assert_eq!(products.stats().rows, 1);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct TableBuilder {
    name: String,
    source: TableSource,
    refresh: Refresh,
    timeout: Duration,
    pacing: Pacing,
}

impl TableBuilder {
    /// A table called `name` read from `source`, loaded once (see
    /// [`refresh`](Self::refresh)).
    pub fn new(name: impl Into<String>, source: TableSource) -> Self {
        Self {
            name: name.into(),
            source,
            refresh: Refresh::Never,
            timeout: Duration::from_secs(30),
            pacing: Pacing::default(),
        }
    }

    /// How the table is kept fresh.
    pub fn refresh(mut self, refresh: Refresh) -> Self {
        self.refresh = refresh;
        self
    }

    /// How reloads share the machine with the workers: by default in slices of 50 µs of
    /// work and 450 µs of pause (see [`Pacing::default`]), so that where every core runs a
    /// spinning worker a reload delays a worker by a slice at a time instead of for the
    /// whole reload, which then takes about ten times as long. [`Pacing::Unpaced`] when a
    /// core is free for it. The load at start, before any record, is never paced.
    pub fn reload_pacing(mut self, pacing: Pacing) -> Self {
        self.pacing = pacing;
        self
    }

    /// How long one read of a Kafka topic (or its metadata) may take. Default 30 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Loads the table now, keying each row by `key` (a later row with the same key
    /// replaces an earlier one), and starts its reloader. An error here means the table
    /// could not be loaded at all: the job should not start.
    pub fn load<K, V, F>(self, key: F) -> Result<Table<K, V>, TableError>
    where
        K: Hash + Eq + Send + Sync + 'static,
        V: DeserializeOwned + Send + Sync + 'static,
        F: Fn(&V) -> K + Send + 'static,
    {
        let fingerprint = match self.refresh {
            Refresh::OnChange(_) => Some(self.source.fingerprint(&self.name, self.timeout)?),
            _ => None,
        };
        let start = Instant::now();
        let mut unpaced = Pacer::new(Pacing::Unpaced);
        let rows = index(
            self.source
                .read(&self.name, self.timeout, &mut unpaced, 0)?,
            &key,
            &mut unpaced,
        );
        let stats = TableStats {
            version: 1,
            rows: rows.len(),
            loads: 1,
            last_load: start.elapsed(),
            ..TableStats::default()
        };
        let inner = Arc::new(Inner {
            name: self.name.clone(),
            rows: Arc::new(Versioned::new(TableVersion {
                rows,
                version: 1,
                loaded_at: SystemTime::now(),
            })),
            stats: Mutex::new(stats),
            misses: AtomicU64::new(0),
            reloader: Mutex::new(None),
        });
        let interval = match self.refresh {
            Refresh::Never => None,
            Refresh::Every(d) | Refresh::OnChange(d) => Some(d),
        };
        if let Some(interval) = interval {
            let weak = Arc::downgrade(&inner);
            let reloader = Reloader {
                builder: self,
                key,
                fingerprint,
                interval,
            };
            let thread = std::thread::Builder::new()
                .name(format!("rill-table-{}", inner.name))
                .spawn(move || reloader.run(weak))
                .map_err(|source| TableError::Read {
                    table: inner.name.clone(),
                    path: "<reloader thread>".into(),
                    source,
                })?;
            *inner.reloader.locked() = Some(thread.thread().clone());
        }
        Ok(Table { inner })
    }
}

fn index<K: Hash + Eq, V>(
    rows: Vec<V>,
    key: &impl Fn(&V) -> K,
    pacer: &mut Pacer,
) -> HashMap<K, V> {
    let mut map = HashMap::with_capacity(rows.len());
    for row in rows {
        map.insert(key(&row), row);
        pacer.step();
    }
    map
}

/// Frees a retired version row by row, paced: dropping a million rows at once is a burst
/// of work as long as a slice of the reload.
fn free<K, V>(version: TableVersion<K, V>, pacer: &mut Pacer) {
    for row in version.rows {
        drop(row);
        pacer.step();
    }
}

/// The background thread of a refreshed table.
struct Reloader<F> {
    builder: TableBuilder,
    key: F,
    fingerprint: Option<crate::source::Fingerprint>,
    interval: Duration,
}

impl<F> Reloader<F> {
    fn run<K, V>(mut self, table: Weak<Inner<K, V>>)
    where
        K: Hash + Eq,
        V: DeserializeOwned,
        F: Fn(&V) -> K,
    {
        // Versions replaced but still held by a worker: freed here once none does.
        let mut retired: Vec<Arc<TableVersion<K, V>>> = Vec::new();
        let mut next = Instant::now() + self.interval;
        loop {
            let now = Instant::now();
            let wake = if retired.is_empty() {
                next
            } else {
                next.min(now + Duration::from_millis(20))
            };
            if wake > now {
                std::thread::park_timeout(wake - now);
            }
            let Some(inner) = table.upgrade() else {
                return;
            };
            let (free_now, keep): (Vec<_>, Vec<_>) =
                retired.into_iter().partition(|v| Arc::strong_count(v) == 1);
            retired = keep;
            for version in free_now {
                if let Ok(version) = Arc::try_unwrap(version) {
                    free(version, &mut Pacer::new(self.builder.pacing));
                }
            }
            if Instant::now() < next {
                continue;
            }
            next = Instant::now() + self.interval;
            if let Some(old) = self.check(&inner) {
                retired.push(old);
            }
        }
    }

    /// One scheduled check: reloads if due (or changed); returns the replaced version.
    fn check<K, V>(&mut self, inner: &Inner<K, V>) -> Option<Arc<TableVersion<K, V>>>
    where
        K: Hash + Eq,
        V: DeserializeOwned,
        F: Fn(&V) -> K,
    {
        let (name, timeout) = (&self.builder.name, self.builder.timeout);
        let start = Instant::now();
        let loaded = (|| {
            let fingerprint = match self.fingerprint {
                Some(_) => {
                    let now = self.builder.source.fingerprint(name, timeout)?;
                    if Some(&now) == self.fingerprint.as_ref() {
                        return Ok(None);
                    }
                    // A writer may still be at it (a file rewritten in place): load only
                    // what has stopped changing, or try again at the next check.
                    std::thread::sleep(self.interval.min(Duration::from_millis(50)) / 2);
                    if self.builder.source.fingerprint(name, timeout)? != now {
                        return Ok(None);
                    }
                    Some(now)
                }
                None => None,
            };
            let mut pacer = Pacer::new(self.builder.pacing);
            let expected = inner.stats.locked().rows;
            let rows = self
                .builder
                .source
                .read(name, timeout, &mut pacer, expected)?;
            let rows = index(rows, &self.key, &mut pacer);
            Ok::<_, TableError>(Some((rows, fingerprint)))
        })();
        let mut stats = inner.stats.locked();
        match loaded {
            Ok(None) => None,
            Ok(Some((rows, fingerprint))) => {
                if fingerprint.is_some() {
                    self.fingerprint = fingerprint;
                }
                let version = stats.version + 1;
                stats.version = version;
                stats.rows = rows.len();
                stats.loads += 1;
                stats.last_load = start.elapsed();
                stats.last_error = None;
                Some(inner.rows.publish(Arc::new(TableVersion {
                    rows,
                    version,
                    loaded_at: SystemTime::now(),
                })))
            }
            Err(e) => {
                stats.failures += 1;
                stats.last_error = Some(e.to_string());
                eprintln!(
                    "rill: warning: table `{name}`: reload failed, keeping version {}: {e}",
                    stats.version
                );
                None
            }
        }
    }
}
