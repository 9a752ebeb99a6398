//! Checkpoints in memory: final checkpoints on stop and at the end of input, recovery after an
//! abort, restoring keyed state at another parallelism, a refused changed graph, and falling
//! back from a corrupt newest checkpoint.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::finish;
use common::published::Published;
use rill::prelude::*;
use rill::BoxError;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "rill-it-{name}-{}-{}",
        std::process::id(),
        rill::time::now_nanos()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn word(i: u64) -> String {
    // 37 words with uneven frequencies.
    format!("w{}", (i * i + 7 * i) % 37)
}

fn config(workers: usize, dir: &PathBuf, interval_ms: u64) -> Config {
    Config::default().with_workers(workers).with_checkpoints(
        CheckpointConfig::new(dir).with_interval(Duration::from_millis(interval_ms)),
    )
}

/// Word count over the first `n` words; returns the updates.
fn count_words(n: u64, workers: usize, dir: &PathBuf) -> Vec<(String, u64)> {
    let job = Job::new("ckpt-words");
    let out = CollectSink::default();
    job.source(MemorySource::new((0..n).map(word).collect()))
        .key_by(|w: &String| w.clone())
        .count()
        .sink(out.clone());
    let handle = job.run(config(workers, dir, 20)).expect("starts");
    finish(handle).expect("job succeeds");
    out.take()
}

/// Per word: the sequence of counts seen, in order.
fn by_word(updates: &[(String, u64)]) -> HashMap<String, Vec<u64>> {
    let mut m: HashMap<String, Vec<u64>> = HashMap::new();
    for (w, c) in updates {
        m.entry(w.clone()).or_default().push(*c);
    }
    m
}

fn truth(n: u64) -> HashMap<String, u64> {
    truth_of(n, word)
}

/// Each key's count over the first `n` records, record `i` having key `key_of(i)`.
fn truth_of(n: u64, key_of: fn(u64) -> String) -> HashMap<String, u64> {
    let mut m = HashMap::new();
    for i in 0..n {
        *m.entry(key_of(i)).or_default() += 1;
    }
    m
}

#[test]
fn a_finished_run_checkpoints_its_end_and_the_next_run_continues_from_it() {
    let dir = temp_dir("continue");
    let first = count_words(3_000, 2, &dir);
    let second = count_words(5_000, 2, &dir);
    let t1 = truth(3_000);
    let t2 = truth(5_000);
    let (a, b) = (by_word(&first), by_word(&second));
    for (w, n) in &t2 {
        let before = t1.get(w).copied().unwrap_or(0);
        let want_a: Vec<u64> = (1..=before).collect();
        let want_b: Vec<u64> = (before + 1..=*n).collect();
        assert_eq!(
            a.get(w).cloned().unwrap_or_default(),
            want_a,
            "{w}, first run"
        );
        assert_eq!(
            b.get(w).cloned().unwrap_or_default(),
            want_b,
            "{w}, second run"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A source whose worker 0 emits `word(0), word(1), ...` up to a limit the test raises, and
/// ends at `end`; its position (the next index) restores at any parallelism.
#[derive(Clone)]
struct Gated {
    limit: Arc<AtomicU64>,
    end: u64,
    key_of: fn(u64) -> String,
}

struct GatedReader {
    limit: Arc<AtomicU64>,
    end: u64,
    key_of: fn(u64) -> String,
    next: u64,
    active: bool,
}

impl Source for Gated {
    type Reader = GatedReader;
    fn create(&self, ctx: &WorkerContext) -> Result<GatedReader, BoxError> {
        Ok(GatedReader {
            limit: self.limit.clone(),
            end: self.end,
            key_of: self.key_of,
            next: 0,
            active: ctx.worker() == 0,
        })
    }
    fn name(&self) -> &str {
        "gated"
    }
}

impl SourceReader for GatedReader {
    type Out = String;
    fn poll<E: Emit<String>>(&mut self, out: &mut E, budget: usize) -> Result<Progress, BoxError> {
        if !self.active || self.next >= self.end {
            return Ok(Progress::Done);
        }
        let limit = self.limit.load(Ordering::Acquire).min(self.end);
        let mut n = 0;
        while self.next < limit && n < budget && !out.should_yield() {
            out.emit((self.key_of)(self.next));
            self.next += 1;
            n += 1;
        }
        Ok(if n > 0 {
            Progress::Busy
        } else {
            Progress::Idle {
                deadline: Some(std::time::Instant::now() + Duration::from_millis(1)),
            }
        })
    }
    fn position(&mut self) -> Result<Option<Vec<u8>>, BoxError> {
        Ok(self.active.then(|| encode(&self.next)).transpose()?)
    }
    fn restore(&mut self, state: &RestoredState<'_>) -> Result<(), BoxError> {
        for blob in state.worker_blobs().iter().flatten() {
            self.next = self.next.max(decode::<u64>(blob, state.node())?);
        }
        Ok(())
    }
}

fn gated_job(limit: &Arc<AtomicU64>, end: u64) -> (Job, CollectSink<(String, u64)>) {
    gated_job_of(limit, end, word)
}

/// [`gated_job`] whose record `i` has key `key_of(i)`.
fn gated_job_of(
    limit: &Arc<AtomicU64>,
    end: u64,
    key_of: fn(u64) -> String,
) -> (Job, CollectSink<(String, u64)>) {
    let job = Job::new("ckpt-gated");
    let out = CollectSink::default();
    job.source(Gated {
        limit: limit.clone(),
        end,
        key_of,
    })
    .key_by(|w: &String| w.clone())
    .count()
    .sink(out.clone());
    (job, out)
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < common::HANG,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Checks a recovered run: it restored at some input position `p`, so for every word its
/// updates are exactly `truth_p(w) + 1 ..= truth_end(w)`. Returns `p`.
fn check_resumed(updates: &[(String, u64)], end: u64) -> u64 {
    check_resumed_of(updates, end, word)
}

/// [`check_resumed`] for records keyed by `key_of`.
fn check_resumed_of(updates: &[(String, u64)], end: u64, key_of: fn(u64) -> String) -> u64 {
    let p = end - updates.len() as u64;
    let (before, after) = (truth_of(p, key_of), truth_of(end, key_of));
    let got = by_word(updates);
    for (w, n) in &after {
        let from = before.get(w).copied().unwrap_or(0);
        let want: Vec<u64> = (from + 1..=*n).collect();
        assert_eq!(
            got.get(w).cloned().unwrap_or_default(),
            want,
            "word {w} after restoring at input position {p}"
        );
    }
    p
}

#[test]
fn an_aborted_job_restarts_from_its_last_checkpoint_at_another_parallelism() {
    let dir = temp_dir("abort");
    let limit = Arc::new(AtomicU64::new(1_000));
    let (job, out) = gated_job(&limit, 3_000);
    let handle = job.run(config(2, &dir, 10)).expect("starts");
    wait_until("the first 1000 updates", || out.len() >= 1_000);
    let done_before = handle.checkpoints().unwrap().completed.len();
    wait_until("a checkpoint after them", || {
        handle.checkpoints().unwrap().completed.len() >= done_before + 2
    });
    limit.store(1_500, Ordering::Release);
    wait_until("1500 updates", || out.len() >= 1_500);
    let log = handle.checkpoints().unwrap();
    assert!(log.completed.iter().all(|c| !c.last));
    assert!(log.completed.iter().any(|c| c.bytes > 0));
    drop(handle); // abort: no final checkpoint
    let first = out.take();
    assert_eq!(first.len(), 1_500);

    for (workers, end) in [(3, 2_000), (1, 3_000)] {
        limit.store(u64::MAX, Ordering::Release);
        let (job, out) = gated_job(&limit, end);
        let handle = job.run(config(workers, &dir, 10)).expect("restarts");
        let restored = handle.checkpoints().unwrap().restored_from;
        assert!(restored.is_some(), "restored from a checkpoint");
        finish(handle).expect("recovered run succeeds");
        let p = check_resumed(&out.take(), end);
        if workers == 3 {
            assert!((1_000..=1_500).contains(&p), "restored position {p}");
        } else {
            // The previous run ended with a final checkpoint at its end.
            assert_eq!(p, 2_000);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_corrupt_newest_checkpoint_falls_back_to_the_previous_one_with_a_warning() {
    let dir = temp_dir("corrupt");
    let limit = Arc::new(AtomicU64::new(0));
    let (job, _) = gated_job(&limit, 2_000);
    let handle = job.run(config(2, &dir, 5)).expect("starts");
    for step in 1..=3 {
        limit.store(step * 500, Ordering::Release);
        let n = handle.checkpoints().unwrap().completed.len();
        wait_until("a checkpoint", || {
            handle.checkpoints().unwrap().completed.len() >= n + 2
        });
    }
    // Reaching the end of the input ends the job with a final checkpoint.
    limit.store(2_000, Ordering::Release);
    finish(handle).expect("first run");
    let mut epochs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("chk-"))
        })
        .collect();
    epochs.sort();
    // Three complete ones, and any older one whose files an incremental one still lists.
    assert!(epochs.len() >= 3, "three checkpoints retained: {epochs:?}");
    let newest = epochs.last().unwrap();
    let state = std::fs::read_dir(newest)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "state"))
        .unwrap();
    let mut bytes = std::fs::read(&state).unwrap();
    bytes[0] ^= 0x55;
    std::fs::write(&state, bytes).unwrap();

    limit.store(u64::MAX, Ordering::Release);
    let (job, out) = gated_job(&limit, 2_500);
    let handle = job.run(config(2, &dir, 5)).expect("restarts");
    let log = handle.checkpoints().unwrap();
    assert_eq!(log.warnings.len(), 1, "{:?}", log.warnings);
    assert!(log.warnings[0].contains("unusable"), "{}", log.warnings[0]);
    finish(handle).expect("second run");
    let p = check_resumed(&out.take(), 2_500);
    assert!(p <= 2_000, "restored before the end of the first run: {p}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_committed_checkpoint_that_cannot_be_loaded_is_refused_not_skipped() {
    let dir = temp_dir("committed-corrupt");
    let out = Published::<u64>::default();
    let run = |n: u64| {
        let job = Job::new("transactional");
        job.source(MemorySource::new((0..n).collect()))
            .sink(out.clone());
        job.run(config(2, &dir, 5))
    };
    finish(run(1_000).expect("starts")).expect("first run");
    let committed = out.0.lock().unwrap().committed.expect("committed");
    assert_eq!(out.0.lock().unwrap().published.len(), 1_000);
    let newest = dir.join(format!("chk-{committed:020}"));
    let state = std::fs::read_dir(&newest)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "state"))
        .expect("a state file");
    let mut bytes = std::fs::read(&state).unwrap();
    bytes[0] ^= 0x55;
    std::fs::write(&state, bytes).unwrap();
    // Falling back would publish the first run's output again.
    let err = run(1_000).expect_err("refused at start");
    let msg = err.to_string();
    assert!(matches!(err, JobError::Restore(_)), "{err:?}");
    assert!(
        msg.contains(&format!(
            "the output of checkpoint {committed} is committed"
        )),
        "{msg}"
    );
    assert_eq!(
        out.0.lock().unwrap().published.len(),
        1_000,
        "nothing published twice"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_sink_that_lost_its_commit_record_is_refused_until_an_operator_names_the_epoch() {
    let dir = temp_dir("lost-marker");
    let out = Published::<u64>::default();
    let run = |n: u64, config: Config| {
        let job = Job::new("transactional");
        job.source(MemorySource::new((0..n).collect()))
            .sink(out.clone());
        job.run(config)
    };
    // Two runs: the second one's checkpoints record the first one's commits.
    finish(run(1_000, config(2, &dir, 5)).expect("starts")).expect("first run");
    finish(run(1_000, config(2, &dir, 5)).expect("restarts")).expect("second run");
    let committed = out.0.lock().unwrap().committed.expect("committed");
    // The sink's record vanishes (Kafka: its marker group expired or was deleted).
    out.0.lock().unwrap().committed = None;
    let err = run(1_000, config(2, &dir, 5)).expect_err("refused at start");
    let msg = err.to_string();
    assert!(matches!(err, JobError::Restore(_)), "{err:?}");
    assert!(msg.contains("record of its commits is gone"), "{msg}");
    assert!(msg.contains("kept by sink `published`"), "{msg}");
    assert!(msg.contains(&format!("and {committed})")), "{msg}");
    let kept = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            let e = e.as_ref().unwrap();
            e.file_name().to_string_lossy().starts_with("chk-")
        })
        .count();
    assert!(kept > 0, "the checkpoints are kept");
    // An assumption outside what the checkpoints allow is refused too.
    let err = run(
        1_000,
        config(2, &dir, 5).with_checkpoints(
            CheckpointConfig::new(&dir)
                .with_interval(Duration::from_millis(5))
                .assume_committed(committed + 1),
        ),
    )
    .expect_err("out of range");
    assert!(
        err.to_string().contains("outside the possible range"),
        "{err}"
    );
    // The operator says what was committed: the job resumes there, publishing nothing twice.
    let handle = run(
        1_000,
        config(2, &dir, 5).with_checkpoints(
            CheckpointConfig::new(&dir)
                .with_interval(Duration::from_millis(5))
                .assume_committed(committed),
        ),
    )
    .expect("starts with the assumption");
    assert_eq!(handle.checkpoints().unwrap().restored_from, Some(committed));
    finish(handle).expect("resumed run");
    assert_eq!(out.0.lock().unwrap().published.len(), 1_000);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_changed_job_graph_refuses_to_restore() {
    let dir = temp_dir("changed");
    count_words(100, 1, &dir);
    let job = Job::new("ckpt-words");
    job.source(MemorySource::new((0..100).map(word).collect()))
        .map(|w: String| w.to_uppercase())
        .key_by(|w: &String| w.clone())
        .count()
        .sink(DiscardSink::default());
    let err = job.run(config(1, &dir, 20)).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("different job graph"), "{msg}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_union_aligns_barriers_and_restores_both_inputs() {
    let dir = temp_dir("union");
    let run = |n: u64| {
        let job = Job::new("ckpt-union");
        let out = CollectSink::default();
        let evens = job
            .source(MemorySource::new(
                (0..n).filter(|i| i % 2 == 0).map(word).collect(),
            ))
            .name("evens");
        let odds = job
            .source(MemorySource::new(
                (0..n).filter(|i| i % 2 == 1).map(word).collect(),
            ))
            .name("odds");
        evens
            .union(odds)
            .key_by(|w: &String| w.clone())
            .count()
            .sink(out.clone());
        finish(job.run(config(2, &dir, 1)).expect("starts")).expect("runs");
        out.take()
    };
    let first = run(4_000);
    let second = run(6_000);
    let (t1, t2) = (truth(4_000), truth(6_000));
    let (a, b) = (by_word(&first), by_word(&second));
    for (w, n) in &t2 {
        let before = t1.get(w).copied().unwrap_or(0);
        assert_eq!(
            a.get(w).cloned().unwrap_or_default(),
            (1..=before).collect::<Vec<_>>()
        );
        assert_eq!(
            b.get(w).cloned().unwrap_or_default(),
            (before + 1..=*n).collect::<Vec<_>>()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn file_lines_resume_mid_file_and_skip_finished_files_at_another_parallelism() {
    let dir = temp_dir("files");
    std::fs::create_dir_all(&dir).unwrap();
    let ckpt = dir.join("checkpoints");
    let big = dir.join("big.txt");
    let n: u64 = 200_000;
    let text: String = (0..n).map(|i| word(i) + "\n").collect();
    std::fs::write(&big, text).unwrap();
    let job_over = |paths: Vec<PathBuf>| {
        let job = Job::new("ckpt-files");
        let out = CollectSink::default();
        job.source(FileLines::new(paths))
            .map(|l: rill::connectors::FileLine| String::from_utf8(l.bytes).unwrap())
            .key_by(|w: &String| w.clone())
            .count()
            .sink(out.clone());
        (job, out)
    };

    // Abort while the big file is being read, after a checkpoint.
    let (job, out) = job_over(vec![big.clone()]);
    let handle = job.run(config(2, &ckpt, 1)).expect("starts");
    wait_until("some lines and a checkpoint", || {
        out.len() >= 20_000 && !handle.checkpoints().unwrap().completed.is_empty()
    });
    drop(handle);
    let first = out.take().len() as u64;

    // Restore at 3 workers: the file resumes at the checkpoint's byte position.
    let (job, out) = job_over(vec![big.clone()]);
    finish(job.run(config(3, &ckpt, 1)).expect("restarts")).expect("second run");
    let p = check_resumed(&out.take(), n);
    assert!(
        p <= first,
        "restored position {p} is after what the first run emitted ({first})"
    );

    // The big file is finished now: a run over it and a new file reads only the new one.
    let small = dir.join("small.txt");
    std::fs::write(
        &small,
        (n..n + 50).map(|i| word(i) + "\n").collect::<String>(),
    )
    .unwrap();
    let (job, out) = job_over(vec![big, small]);
    finish(job.run(config(2, &ckpt, 1)).expect("third run")).expect("third run");
    check_resumed(&out.take(), n + 50);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn end_of_input_output_goes_into_the_final_committed_epoch() {
    let dir = temp_dir("final-output");
    let out = Published::<u64>::default();
    let run = |n: u64| {
        let job = Job::new("transactional-latest");
        job.source(MemorySource::new((0..n).collect()))
            .key_by(|n: &u64| n % 7)
            .count()
            .latest_per_key()
            .map(|(k, c): (u64, u64)| k * 1_000_000 + c)
            .sink(out.clone());
        job.run(config(2, &dir, 5))
    };
    finish(run(700).expect("starts")).expect("the final output is committed");
    let store = out.0.lock().unwrap();
    assert!(store.staged.is_empty(), "nothing left uncommitted");
    let mut published = store.published.clone();
    published.sort();
    let want: Vec<u64> = (0..7).map(|k| k * 1_000_000 + 100).collect();
    assert_eq!(published, want, "each key's final count, once");
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs the gated job until checkpoint `n` completes, then makes the next checkpoint's
/// directory fail as `plant` arranges; returns the job's error.
fn fail_next_checkpoint(dir: &PathBuf, plant: impl Fn(&std::path::Path)) -> JobError {
    let limit = Arc::new(AtomicU64::new(500));
    let (job, _) = gated_job(&limit, 5_000);
    // A long interval: the next checkpoint's directory is planted well before it starts.
    let handle = job.run(config(1, dir, 1_500)).expect("starts");
    wait_until("a checkpoint", || {
        !handle.checkpoints().unwrap().completed.is_empty()
    });
    let newest = handle
        .checkpoints()
        .unwrap()
        .completed
        .last()
        .unwrap()
        .epoch;
    plant(&dir.join(format!("chk-{:020}", newest + 1)));
    limit.store(1_000, Ordering::Release);
    finish(handle).expect_err("the failing checkpoint fails the job")
}

#[test]
fn a_full_or_unwritable_checkpoint_directory_fails_the_job_and_a_restart_recovers() {
    let dir = temp_dir("full");
    // Full: every state file of the next checkpoint is /dev/full.
    let err = fail_next_checkpoint(&dir, |next| {
        std::fs::create_dir_all(next).unwrap();
        for task in 0..4 {
            std::os::unix::fs::symlink("/dev/full", next.join(format!("t{task}-w0.state")))
                .unwrap();
        }
    });
    let msg = rill::ErrorChain(&err).to_string();
    assert!(matches!(err, JobError::Checkpoint { .. }), "{err:?}");
    assert!(msg.contains("No space left on device"), "{msg}");
    // Unwritable: the next checkpoint's directory is a file.
    let err = fail_next_checkpoint(&dir, |next| {
        let _ = std::fs::remove_dir_all(next);
        std::fs::write(next, b"not a directory").unwrap();
    });
    let msg = rill::ErrorChain(&err).to_string();
    assert!(matches!(err, JobError::Checkpoint { .. }), "{err:?}");
    assert!(msg.contains("Not a directory"), "{msg}");
    // Once the operator frees the directory, a restart resumes from the last complete
    // checkpoint and the output continues exactly from there.
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file()
            && path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("chk-"))
        {
            std::fs::remove_file(&path).unwrap();
        }
    }
    let limit = Arc::new(AtomicU64::new(u64::MAX));
    let (job, out) = gated_job(&limit, 2_000);
    let handle = job.run(config(1, &dir, 10)).expect("restarts");
    assert!(handle.checkpoints().unwrap().restored_from.is_some());
    finish(handle).expect("recovered run succeeds");
    check_resumed(&out.take(), 2_000);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Holds records after each barrier until the checkpoint completes (as an exactly-once
/// writer does), reporting itself full at `limit` held records; remembers the most it held.
#[derive(Clone)]
struct Holding {
    limit: usize,
    most: Arc<AtomicU64>,
    delivered: Arc<AtomicU64>,
}

struct HoldingWriter(Holding, Vec<u64>, bool);

impl Sink<u64> for Holding {
    type Writer = HoldingWriter;
    fn create(&self, _: &WorkerContext) -> Result<HoldingWriter, BoxError> {
        Ok(HoldingWriter(self.clone(), Vec::new(), false))
    }
    fn name(&self) -> &str {
        "holding"
    }
}

impl SinkWriter<u64> for HoldingWriter {
    fn write(&mut self, item: u64) -> Result<(), BoxError> {
        if self.2 {
            self.1.push(item);
            self.0
                .most
                .fetch_max(self.1.len() as u64, Ordering::Relaxed);
        } else {
            self.0.delivered.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
    fn on_barrier(&mut self, _: Epoch) -> Result<(), BoxError> {
        self.2 = true;
        Ok(())
    }
    fn checkpoint_complete(&mut self, _: Epoch) -> Result<(), BoxError> {
        self.2 = false;
        let n = std::mem::take(&mut self.1).len() as u64;
        self.0.delivered.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }
    fn close(&mut self) -> Result<(), BoxError> {
        let n = std::mem::take(&mut self.1).len() as u64;
        self.0.delivered.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }
    fn is_full(&self) -> bool {
        self.1.len() >= self.0.limit
    }
}

#[test]
fn a_full_sink_pauses_the_input_until_its_checkpoint_completes() {
    let dir = temp_dir("holding");
    let sink = Holding {
        limit: 100,
        most: Arc::default(),
        delivered: Arc::default(),
    };
    let job = Job::new("holding");
    // Paced over 200 ms, so that barriers come while records flow (an in-memory list could
    // be written out before the first one, 5 ms after the start, and nothing held).
    job.source(Generator::new(1_000_000.0, |i| i).with_count(200_000))
        .map(|g: Generated<u64>| g.value)
        .rebalance()
        .sink(sink.clone());
    finish(job.run(config(2, &dir, 5)).expect("starts")).expect("runs");
    assert_eq!(sink.delivered.load(Ordering::Relaxed), 200_000);
    let most = sink.most.load(Ordering::Relaxed);
    assert!(most > 0, "records were held after barriers");
    assert!(
        most <= 100,
        "held {most} records, more than the sink's limit of 100"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// 20,000 distinct keys (every key group), then updates of 50 keys only.
fn many_then_few(i: u64) -> String {
    if i < 20_000 {
        format!("k{i}")
    } else {
        format!("k{}", i % 50)
    }
}

/// [`many_then_few`], then from record 30,000 on each of the 20,000 keys once.
fn then_each_once(i: u64) -> String {
    if i < 30_000 {
        many_then_few(i)
    } else {
        format!("k{}", i - 30_000)
    }
}

/// The `.state` files of `epoch`'s checkpoint under `dir`.
fn state_files(dir: &std::path::Path, epoch: u64) -> Vec<PathBuf> {
    let chk = dir.join(format!("chk-{epoch:020}"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&chk)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "state"));
    files
}

#[test]
fn incremental_checkpoints_store_only_what_changed_and_restore_like_full_ones() {
    let dir = temp_dir("incremental");
    let limit = Arc::new(AtomicU64::new(20_000));
    let (job, out) = gated_job_of(&limit, 40_000, many_then_few);
    let checkpoints = |full_every| {
        Config::default().with_workers(2).with_checkpoints(
            CheckpointConfig::new(&dir)
                .with_interval(Duration::from_millis(10))
                .with_full_every(full_every),
        )
    };
    let handle = job.run(checkpoints(1_000)).expect("starts");
    wait_until("the 20,000 distinct keys", || out.len() >= 20_000);
    let n = handle.checkpoints().unwrap().completed.len();
    wait_until("two checkpoints after them", || {
        handle.checkpoints().unwrap().completed.len() >= n + 2
    });
    // Now only 50 keys change: what each checkpoint stores shrinks to them.
    for step in 1..=4u64 {
        limit.store(20_000 + step * 1_000, Ordering::Release);
        let n = handle.checkpoints().unwrap().completed.len();
        wait_until("a checkpoint of the new records", || {
            handle.checkpoints().unwrap().completed.len() >= n + 2
        });
    }
    let log = handle.checkpoints().unwrap();
    drop(handle); // abort: no final checkpoint
    let first = out.take();
    assert_eq!(first.len(), 24_000);
    assert!(
        log.completed[0].full,
        "the first checkpoint of a run is full"
    );
    let largest = log.completed.iter().map(|c| c.bytes).max().unwrap();
    let newest = log.completed.last().unwrap();
    assert!(!newest.full);
    assert!(
        newest.bytes * 100 < largest,
        "an incremental checkpoint of 50 changed keys wrote {} bytes; the one with 20,000 keys {largest}",
        newest.bytes
    );

    // The newest checkpoint's files are damaged: the restart falls back to the one before,
    // itself incremental: the full checkpoint it builds on and the changes since (kept by
    // retention though older than the three newest), applied at another parallelism.
    for file in state_files(&dir, newest.epoch) {
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[0] ^= 0x55;
        std::fs::write(&file, bytes).unwrap();
    }
    limit.store(u64::MAX, Ordering::Release);
    let (job, out) = gated_job_of(&limit, 30_000, many_then_few);
    let handle = job.run(checkpoints(3)).expect("restarts at 3 workers");
    let restored = handle.checkpoints().unwrap();
    assert!(
        restored.restored_from.is_some_and(|e| e < newest.epoch),
        "restored from {:?}, newest {}",
        restored.restored_from,
        newest.epoch
    );
    assert!(
        restored.warnings.iter().any(|w| w.contains("unusable")),
        "{:?}",
        restored.warnings
    );
    finish(handle).expect("second run");
    let p = check_resumed_of(&out.take(), 30_000, many_then_few);
    assert!((20_000..=24_000).contains(&p), "restored position {p}");

    // A later run restores the second run's final checkpoint at 1 worker and touches each
    // of the 20,000 keys once more: every one comes back with its count.
    let (job, out) = gated_job_of(&limit, 50_000, then_each_once);
    finish(job.run(checkpoints(3).with_workers(1)).expect("third run")).expect("third run");
    let updates = out.take();
    assert_eq!(updates.len(), 20_000);
    let before = truth_of(30_000, many_then_few);
    for (key, count) in &updates {
        assert_eq!(*count, before[key] + 1, "key {key}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A transactional sink whose commit takes `COMMIT_TAKES`: a sink whose system is slow.
#[derive(Clone, Default)]
struct SlowCommits(Published<u64>);

const COMMIT_TAKES: Duration = Duration::from_millis(15);

impl Committer for SlowCommits {
    fn recover(&self) -> Result<Option<Epoch>, BoxError> {
        self.0.recover()
    }
    fn begin(&self, after: Epoch) -> Result<(), BoxError> {
        self.0.begin(after)
    }
    fn commit(&self, epoch: Epoch) -> Result<(), BoxError> {
        std::thread::sleep(COMMIT_TAKES);
        self.0.commit(epoch)
    }
    fn name(&self) -> &str {
        "slow-commits"
    }
}

impl Sink<u64> for SlowCommits {
    type Writer = <Published<u64> as Sink<u64>>::Writer;
    fn create(&self, ctx: &WorkerContext) -> Result<Self::Writer, BoxError> {
        self.0.create(ctx)
    }
    fn name(&self) -> &str {
        "slow-commits"
    }
    fn committer(&self) -> Option<Arc<dyn Committer>> {
        Some(Arc::new(self.clone()))
    }
}

#[test]
fn checkpoint_stats_say_which_step_took_the_time_and_old_ones_are_deleted() {
    let dir = temp_dir("steps");
    let sink = SlowCommits::default();
    let job = Job::new("steps");
    job.source(Generator::new(20_000.0, |i| i).with_count(4_000))
        .map(|g: Generated<u64>| g.value)
        .key_by(|i: &u64| i % 64)
        .reduce(|a: &u64, b: u64| a + b)
        .map(|(_, sum): (u64, u64)| sum)
        .sink(sink.clone());
    // Every checkpoint full, so that retention keeps exactly the newest ones.
    let checkpoints = CheckpointConfig::new(&dir)
        .with_interval(Duration::from_millis(5))
        .with_full_every(1);
    let retain = checkpoints.retain;
    let handle = job
        .run(
            Config::default()
                .with_workers(2)
                .with_checkpoints(checkpoints),
        )
        .expect("starts");
    // The generator paces the run over 200 ms, so several checkpoints complete before it ends.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = handle.checkpoints().expect("checkpointing");
        if log.completed.len() >= 4 || std::time::Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    finish(handle).expect("runs");
    assert!(
        log.completed.len() >= 4,
        "{} checkpoints",
        log.completed.len()
    );
    for c in &log.completed {
        assert!(
            c.commit_time >= COMMIT_TAKES,
            "checkpoint {} says its commit took {:?}; it took at least {COMMIT_TAKES:?}",
            c.epoch,
            c.commit_time
        );
        // Barriers, then the manifest's write, then the commit, one after another; the
        // state writes overlap the barriers.
        assert!(
            c.barrier_time + c.commit_time <= c.duration,
            "checkpoint {}: barriers {:?} and commit {:?} exceed its duration {:?}",
            c.epoch,
            c.barrier_time,
            c.commit_time,
            c.duration
        );
        assert!(
            c.write_time > Duration::ZERO,
            "state and manifest were written"
        );
    }
    assert_eq!(sink.0.published().len(), 4_000, "every sum published once");
    // Retention runs on a thread of its own, which the job joins before it ends.
    let kept = std::fs::read_dir(&dir)
        .expect("checkpoint directory")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("chk-"))
        })
        .count();
    assert!(
        kept <= retain,
        "{kept} checkpoints left after retention, more than the {retain} retained"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
