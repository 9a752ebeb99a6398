//! The object-store file sink and source: formats, partitions, rolling, exactly once through
//! failures, on local disk and on a real S3-compatible server (moto, installed by the tests).

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::s3_server::S3Server;
use rill::connectors::{CollectSink, MemorySource};
use rill::files::object_store::{self, ObjectStore};
use rill::files::{Compression, FileSink, FileSource, Format, StoreLocation};
use rill::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Event {
    id: u64,
    user: String,
    amount: f64,
    note: Option<String>,
}

fn events(n: u64) -> Vec<Event> {
    (0..n)
        .map(|id| Event {
            id,
            user: format!("u{}", id % 7),
            amount: id as f64 * 0.5,
            note: (id % 3 == 0).then(|| format!("note \"{id}\"\n")),
        })
        .collect()
}

/// Every committed record under `location`, by id (a duplicate fails the test).
fn read_back(location: StoreLocation, format: Format) -> BTreeMap<u64, Event> {
    let out = CollectSink::default();
    let job = Job::new("read-back");
    job.source(FileSource::<Event>::new(location, format))
        .sink(out.clone());
    common::finish(
        job.run(Config::default().with_workers(2))
            .expect("read job"),
    )
    .expect("read");
    let mut by_id = BTreeMap::new();
    for e in out.take() {
        let id = e.id;
        assert!(by_id.insert(id, e).is_none(), "record {id} committed twice");
    }
    by_id
}

fn expected(n: u64) -> BTreeMap<u64, Event> {
    events(n).into_iter().map(|e| (e.id, e)).collect()
}

/// Files below `dir` (recursively), relative.
fn files_below(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(rel) = p.strip_prefix(dir) {
                out.push(rel.display().to_string());
            }
        }
    }
    out.sort();
    out
}

fn checkpointed(dir: &std::path::Path) -> Config {
    Config::default().with_workers(2).with_checkpoints(
        CheckpointConfig::new(dir.join("checkpoints")).with_interval(Duration::from_millis(20)),
    )
}

#[test]
fn json_lines_are_partitioned_rolled_compressed_and_read_back_exactly_once() {
    let dir = common::gated::temp_dir("files-json");
    let out = StoreLocation::parse(dir.join("out").to_str().expect("utf-8 path")).expect("dir");
    let format = Format::json_lines().with_compression(Compression::Gzip);
    let sink = FileSink::new(out.clone(), format.clone())
        .partition_by(|e: &Event| rill::files::hive([("user", &e.user)]))
        .roll_size(2_000);
    let job = Job::new("json-files");
    job.source(MemorySource::new(events(20_000)))
        .sink(sink.clone());
    common::finish(job.run(checkpointed(&dir)).expect("job")).expect("run");

    let files = files_below(&dir.join("out"));
    let data: Vec<&String> = files.iter().filter(|f| f.ends_with(".jsonl.gz")).collect();
    // Seven users, each partition rolled by size into several files.
    for u in 0..7 {
        let n = data
            .iter()
            .filter(|f| f.starts_with(&format!("user=u{u}/part-")))
            .count();
        assert!(n > 1, "partition user=u{u} has {n} files: {files:?}");
    }
    assert!(
        !files.iter().any(|f| f.starts_with("_rill_staging")),
        "staged files left behind: {files:?}"
    );
    assert!(files.iter().any(|f| f.starts_with("_rill_log/")));
    assert_eq!(sink.stats().records, 20_000);
    assert_eq!(sink.stats().files as usize, data.len());
    assert_eq!(read_back(out, format), expected(20_000));
}

#[test]
fn without_checkpoints_files_are_written_in_place_at_least_once() {
    let dir = common::gated::temp_dir("files-plain");
    let out = StoreLocation::parse(dir.to_str().expect("utf-8 path")).expect("dir");
    let format = Format::parquet_for::<Event>()
        .expect("schema")
        .with_compression(Compression::Snappy);
    let sink = FileSink::new(out.clone(), format.clone()).roll_size(20_000);
    let job = Job::new("plain-files");
    job.source(MemorySource::new(events(30_000)))
        .sink(sink.clone());
    common::finish(job.run(Config::default().with_workers(2)).expect("job")).expect("run");
    let files = files_below(&dir);
    assert!(files.iter().all(|f| f.ends_with(".parquet")), "{files:?}");
    assert!(files.len() > 2, "rolled by size: {files:?}");
    assert_eq!(read_back(out, format), expected(30_000));
}

#[test]
fn parquet_on_s3_is_exactly_once_with_checkpoints() {
    let mut s3 = S3Server::start();
    s3.create_bucket("lake");
    let settings = s3.settings(Duration::from_secs(10));
    let out = StoreLocation::parse_with("s3://lake/events/v1", &settings).expect("s3 location");
    let format = Format::parquet_for::<Event>().expect("schema");
    let sink = FileSink::new(out.clone(), format.clone())
        .partition_by(|e: &Event| rill::files::hourly(1_796_061_900_000 + e.id as i64 * 1_000));
    let dir = common::gated::temp_dir("files-s3");
    let job = Job::new("s3-files");
    job.source(MemorySource::new(events(10_000)))
        .sink(sink.clone());
    common::finish(job.run(checkpointed(&dir)).expect("job")).expect("run");
    assert_eq!(sink.stats().records, 10_000);
    // 10,000 seconds span 2026-11-30 18:05 to 20:51: three hour partitions.
    let got = read_back(out, format.clone());
    assert_eq!(got, expected(10_000));
    for hour in ["18", "19", "20"] {
        let part = StoreLocation::parse_with(
            &format!("s3://lake/events/v1/dt=2026-11-30/hour={hour}"),
            &settings,
        )
        .expect("partition");
        assert!(!read_back(part, format.clone()).is_empty(), "hour {hour}");
    }
}

#[test]
fn a_missing_bucket_is_a_clear_error_before_any_record() {
    let s3 = S3Server::start();
    let settings = s3.settings(Duration::from_secs(5));
    let out = StoreLocation::parse_with("s3://no-such-bucket/x", &settings).expect("location");
    let err = out.check().expect_err("no bucket");
    assert!(
        err.to_string()
            .contains("bucket `no-such-bucket` does not exist"),
        "{err}"
    );
    // A job fails at start with the same words, with or without checkpoints.
    for checkpoints in [false, true] {
        let dir = common::gated::temp_dir("files-nobucket");
        let job = Job::new("no-bucket");
        job.source(MemorySource::new(events(10)))
            .sink(FileSink::new(out.clone(), Format::json_lines()));
        let config = if checkpoints {
            checkpointed(&dir)
        } else {
            Config::default()
        };
        let err = match job.run(config) {
            Err(e) => rill::ErrorChain(&e).to_string(),
            Ok(h) => rill::ErrorChain(&common::finish(h).expect_err("fails")).to_string(),
        };
        assert!(
            err.contains("bucket `no-such-bucket` does not exist"),
            "{err}"
        );
    }
}

/// A store that works until told to fail, then refuses every write as a full disk would.
#[derive(Debug)]
struct FullDisk {
    inner: Arc<dyn ObjectStore>,
    full: Arc<AtomicBool>,
    puts: Arc<AtomicUsize>,
}

impl std::fmt::Display for FullDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FullDisk({})", self.inner)
    }
}

impl FullDisk {
    fn refuse(&self) -> object_store::Result<()> {
        if self.full.load(Ordering::SeqCst) {
            return Err(object_store::Error::Generic {
                store: "FullDisk",
                source: Box::new(std::io::Error::from_raw_os_error(28)),
            });
        }
        self.puts.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[async_trait::async_trait]
impl ObjectStore for FullDisk {
    async fn put_opts(
        &self,
        location: &object_store::path::Path,
        payload: object_store::PutPayload,
        opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        self.refuse()?;
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &object_store::path::Path,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.refuse()?;
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &object_store::path::Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        self.inner.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: futures_util::stream::BoxStream<
            'static,
            object_store::Result<object_store::path::Path>,
        >,
    ) -> futures_util::stream::BoxStream<'static, object_store::Result<object_store::path::Path>>
    {
        self.inner.delete_stream(locations)
    }
    fn list(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> futures_util::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>>
    {
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> object_store::Result<object_store::ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &object_store::path::Path,
        to: &object_store::path::Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.refuse()?;
        self.inner.copy_opts(from, to, options).await
    }
    async fn rename_opts(
        &self,
        from: &object_store::path::Path,
        to: &object_store::path::Path,
        options: object_store::RenameOptions,
    ) -> object_store::Result<()> {
        self.refuse()?;
        self.inner.rename_opts(from, to, options).await
    }
}

#[test]
fn a_full_disk_fails_the_job_clearly_and_the_restart_loses_nothing() {
    let dir = common::gated::temp_dir("files-full");
    std::fs::create_dir_all(dir.join("out")).expect("dir");
    let local = object_store::local::LocalFileSystem::new_with_prefix(dir.join("out"))
        .expect("local store");
    let full = Arc::new(AtomicBool::new(false));
    let puts = Arc::new(AtomicUsize::new(0));
    let store = Arc::new(FullDisk {
        inner: Arc::new(local),
        full: full.clone(),
        puts: puts.clone(),
    });
    let out = StoreLocation::from_store(store, "", "full-disk://out");
    let format = Format::json_lines().with_compression(Compression::Zstd);
    let input = events(200_000);

    // The disk fills up after some files were committed: the job fails with the store's
    // error and names where it was writing.
    let filler = {
        let (full, puts) = (full.clone(), puts.clone());
        std::thread::spawn(move || {
            while puts.load(Ordering::SeqCst) < 20 {
                std::thread::sleep(Duration::from_millis(1));
            }
            full.store(true, Ordering::SeqCst);
        })
    };
    let slow = Arc::new(AtomicBool::new(true));
    let run = |input: Vec<Event>| {
        let slow = slow.clone();
        let job = Job::new("full-disk");
        job.source(MemorySource::new(input))
            .map(move |e: Event| {
                // The first run is slow enough that the disk fills up before its input ends.
                if slow.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_micros(20));
                }
                e
            })
            .sink(FileSink::new(out.clone(), format.clone()).roll_size(4_000));
        job.run(checkpointed(&dir)).expect("job")
    };
    let err = common::finish(run(input.clone())).expect_err("disk full");
    filler.join().expect("filler");
    let text = rill::ErrorChain(&err).to_string();
    assert!(
        text.contains("full-disk://out/") && text.contains("No space left on device"),
        "{text}"
    );

    // Space again: the restart restores the last checkpoint, discards what was staged after
    // it, and the committed files hold every record once.
    full.store(false, Ordering::SeqCst);
    slow.store(false, Ordering::Relaxed);
    common::finish(run(input)).expect("restart");
    assert_eq!(read_back(out, format), expected(200_000));
    let staged = files_below(&dir.join("out"))
        .into_iter()
        .filter(|f| f.starts_with("_rill_staging"))
        .count();
    assert_eq!(staged, 0);
}

#[test]
fn a_bad_json_line_goes_to_the_dead_letter_sink_with_its_file_and_line() {
    let dir = common::gated::temp_dir("files-bad-line");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(
        dir.join("a.jsonl"),
        "{\"id\":1,\"user\":\"u\",\"amount\":1.0,\"note\":null}\nnot json\n",
    )
    .expect("file");
    let out = CollectSink::default();
    let dead = CollectSink::default();
    let job = Job::new("bad-line");
    job.dead_letter(dead.clone());
    job.source(FileSource::<Event>::new(
        StoreLocation::parse(dir.to_str().expect("utf-8")).expect("dir"),
        Format::json_lines(),
    ))
    .sink(out.clone());
    common::finish(job.run(Config::default()).expect("job")).expect("run");
    assert_eq!(out.take().len(), 1);
    let letters: Vec<DeadLetter> = dead.take();
    assert_eq!(letters.len(), 1);
    let origin = letters[0].origin.as_ref().expect("origin");
    assert!(origin.stream.ends_with("/a.jsonl"), "{origin:?}");
    assert_eq!(origin.offset, 2);
    assert_eq!(letters[0].value.as_deref(), Some(&b"not json"[..]));
}

#[test]
fn checkpoints_on_s3_restore_at_another_worker_count_and_skip_a_corrupt_newest() {
    use common::gated::{interrupt_and_restore, Click, GatedClicks};
    use rill::engine::CheckpointStorage;
    use rill::files::ObjectStoreCheckpoints;
    use std::sync::atomic::AtomicU64;

    let mut s3 = S3Server::start();
    s3.create_bucket("checkpoints");
    let location = StoreLocation::parse_with(
        "s3://checkpoints/jobs/count",
        &s3.settings(Duration::from_secs(10)),
    )
    .expect("location");
    let storage = ObjectStoreCheckpoints::new(location.clone());
    let clicks: Vec<Click> = (0..3_000i64)
        .map(|i| ((i * 7 % 11) as u8, i * 10))
        .collect();
    let mut expected: BTreeMap<u8, u64> = BTreeMap::new();
    for (k, _) in &clicks {
        *expected.entry(*k).or_default() += 1;
    }
    let clicks = Arc::new(clicks);
    let limit = Arc::new(AtomicU64::new(1_000));
    let out = CollectSink::default();
    let corrupted = Arc::new(std::sync::Mutex::new(None));
    let run = |workers: usize| {
        if workers == 3 {
            // The newest checkpoint's manifest is torn: the restore must skip it.
            let newest = storage
                .list("")
                .expect("list")
                .iter()
                .filter(|n| n.ends_with("/MANIFEST"))
                .filter_map(|n| {
                    n.strip_prefix("chk-")?
                        .split('/')
                        .next()?
                        .parse::<u64>()
                        .ok()
                })
                .max()
                .expect("a checkpoint");
            let name = format!("chk-{newest:020}/MANIFEST");
            let bytes = storage.get(&name).expect("manifest");
            storage
                .put(&name, bytes[..bytes.len() / 2].to_vec())
                .expect("tear it");
            *corrupted.lock().expect("lock") = Some(newest);
        }
        let job = Job::new("count-on-s3");
        job.source(GatedClicks {
            clicks: clicks.clone(),
            limit: limit.clone(),
            ends: true,
        })
        .key_by(|c: &Click| c.0)
        .count()
        .sink(out.clone());
        let checkpoints = ObjectStoreCheckpoints::config(location.clone())
            .with_interval(Duration::from_millis(50));
        let handle = job
            .run(
                Config::default()
                    .with_workers(workers)
                    .with_checkpoints(checkpoints),
            )
            .expect("starts");
        if workers == 3 {
            let log = handle.checkpoints().expect("log");
            let torn = corrupted.lock().expect("lock").expect("corrupted");
            assert!(
                log.restored_from.is_some_and(|e| e < torn),
                "restored from {:?}, torn {torn}",
                log.restored_from
            );
        }
        handle
    };
    interrupt_and_restore(&limit, || out.len(), 300, false, run);
    // The restored counts went on from the checkpoint's: each key's largest count is its
    // total (a lost state would start again from zero and end lower).
    let mut last: BTreeMap<u8, u64> = BTreeMap::new();
    for (k, n) in out.take() {
        let e = last.entry(k).or_default();
        *e = (*e).max(n);
    }
    assert_eq!(last, expected);
}

#[test]
fn files_roll_by_time_while_records_trickle_in() {
    let dir = common::gated::temp_dir("files-roll-time");
    let out = StoreLocation::parse(dir.to_str().expect("utf-8 path")).expect("dir");
    let sink =
        FileSink::new(out.clone(), Format::json_lines()).roll_interval(Duration::from_millis(150));
    let job = Job::new("roll-by-time");
    // 40 records over about 1.2 s, no checkpoints: only the clock rolls files.
    job.source(
        Generator::new(33.0, |seq| Event {
            id: seq,
            user: "u".into(),
            amount: 0.0,
            note: None,
        })
        .with_count(40)
        .with_pacing(Pacing::Sleep),
    )
    .map(|g: Generated<Event>| g.value)
    .sink(sink.clone());
    common::finish(job.run(Config::default().with_workers(1)).expect("job")).expect("run");
    let files = files_below(&dir);
    assert!(files.len() >= 4, "rolled every 150 ms: {files:?}");
    assert_eq!(read_back(out, Format::json_lines()), expected_like(40));
}

/// What `files_roll_by_time_while_records_trickle_in` writes.
fn expected_like(n: u64) -> BTreeMap<u64, Event> {
    (0..n)
        .map(|id| {
            (
                id,
                Event {
                    id,
                    user: "u".into(),
                    amount: 0.0,
                    note: None,
                },
            )
        })
        .collect()
}

#[test]
fn the_file_source_restores_its_positions_at_another_worker_count() {
    use common::published::Published;
    use std::sync::atomic::AtomicU64;

    let dir = common::gated::temp_dir("files-source-restore");
    let input = StoreLocation::parse(dir.join("in").to_str().expect("utf-8")).expect("dir");
    // Nine files of 2,000 records.
    let job = Job::new("write-input");
    job.source(MemorySource::new(events(18_000)))
        .sink(FileSink::new(input.clone(), Format::json_lines()).roll_size(150_000));
    common::finish(job.run(Config::default().with_workers(3)).expect("job")).expect("run");

    let out: Published<u64> = Published::default();
    let slow = Arc::new(AtomicU64::new(1));
    let run = |workers: usize| {
        let slow = slow.clone();
        let job = Job::new("read-restored");
        job.source(FileSource::<Event>::new(
            input.clone(),
            Format::json_lines(),
        ))
        .map(move |e: Event| {
            if slow.load(Ordering::Relaxed) == 1 {
                std::thread::sleep(Duration::from_micros(100));
            }
            e.id
        })
        .sink(out.clone());
        let config = Config::default().with_workers(workers).with_checkpoints(
            CheckpointConfig::new(dir.join("checkpoints")).with_interval(Duration::from_millis(10)),
        );
        job.run(config).expect("starts")
    };
    let handle = run(2);
    common::gated::wait_until("some output committed", || out.published().len() >= 3_000);
    drop(handle); // abort mid-file
    let before = out.published().len();
    assert!(before < 18_000, "the first run was not interrupted");
    slow.store(0, Ordering::Relaxed);
    let handle = run(3);
    assert!(handle.checkpoints().expect("log").restored_from.is_some());
    common::finish(handle).expect("restored run");
    let ids = out.published();
    let distinct: std::collections::BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(ids.len() - distinct.len(), 0, "records published twice");
    assert_eq!(distinct.len(), 18_000, "records missing");
    assert_eq!(distinct.last(), Some(&17_999));
}

#[test]
fn micro_batches_without_a_checkpoint_location_publish_every_file() {
    // Batches are epochs here, but nothing commits: files must be written in place.
    let dir = common::gated::temp_dir("files-micro-batch");
    let out = StoreLocation::parse(dir.to_str().expect("utf-8 path")).expect("dir");
    let sink = FileSink::new(out.clone(), Format::json_lines()).roll_size(50_000);
    let job = Job::new("micro-batch-files");
    job.source(MemorySource::new(events(20_000)))
        .sink(sink.clone());
    let config = Config::default()
        .with_workers(2)
        .with_mode(Mode::MicroBatch(Trigger::ProcessingTime(
            Duration::from_millis(5),
        )));
    common::finish(job.run(config).expect("job")).expect("run");
    assert_eq!(sink.stats().records, 20_000);
    assert_eq!(read_back(out, Format::json_lines()), expected(20_000));
}
