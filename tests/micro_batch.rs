//! Micro-batch mode: the same job gives the same results as in continuous mode, output comes
//! in batches at the end of each, and batches are checkpoints when a location is set.

use rill::engine::sync::Lock;
mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::finish;
use rill::prelude::*;

fn word(i: u64) -> String {
    format!("w{}", (i * i + 3 * i) % 23)
}

/// Word count over `n` words in `mode`; the update sequence of every word.
fn run(n: u64, mode: Mode, workers: usize) -> BTreeMap<String, Vec<u64>> {
    let job = Job::new("mb-words");
    let out = CollectSink::default();
    job.source(MemorySource::new((0..n).map(word).collect()))
        .key_by(|w: &String| w.clone())
        .count()
        .sink(out.clone());
    let config = Config::default().with_workers(workers).with_mode(mode);
    finish(job.run(config).expect("starts")).expect("runs");
    let mut per_word: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (w, c) in out.take() {
        per_word.entry(w).or_default().push(c);
    }
    per_word
}

#[test]
fn every_trigger_gives_the_continuous_result() {
    let n = 20_000;
    let continuous = run(n, Mode::Continuous, 2);
    let total: u64 = continuous.values().map(|v| v.len() as u64).sum();
    assert_eq!(total, n);
    for (w, counts) in &continuous {
        assert_eq!(
            *counts,
            (1..=counts.len() as u64).collect::<Vec<_>>(),
            "{w}"
        );
    }
    for trigger in [
        Trigger::AsFastAsPossible,
        Trigger::ProcessingTime(Duration::from_millis(5)),
        Trigger::AvailableNow,
    ] {
        for workers in [1, 3] {
            assert_eq!(
                run(n, Mode::MicroBatch(trigger), workers),
                continuous,
                "{trigger:?} at {workers} workers"
            );
        }
    }
}

/// A source that emits one record per `step` the test allows.
#[derive(Clone)]
struct Steps(Arc<AtomicU64>);

struct StepsReader {
    allowed: Arc<AtomicU64>,
    next: u64,
    active: bool,
}

impl Source for Steps {
    type Reader = StepsReader;
    fn create(&self, ctx: &WorkerContext) -> Result<StepsReader, rill::BoxError> {
        Ok(StepsReader {
            allowed: self.0.clone(),
            next: 0,
            active: ctx.worker() == 0,
        })
    }
    fn name(&self) -> &str {
        "steps"
    }
}

impl SourceReader for StepsReader {
    type Out = u64;
    fn poll<E: Emit<u64>>(
        &mut self,
        out: &mut E,
        _budget: usize,
    ) -> Result<Progress, rill::BoxError> {
        if !self.active {
            return Ok(Progress::Done);
        }
        if self.next < self.allowed.load(Ordering::Acquire) {
            out.emit(self.next);
            self.next += 1;
            return Ok(Progress::Busy);
        }
        Ok(Progress::Idle {
            deadline: Some(std::time::Instant::now() + Duration::from_millis(1)),
        })
    }
}

#[test]
fn output_waits_for_the_trigger_and_comes_at_the_end_of_the_batch() {
    let allowed = Arc::new(AtomicU64::new(0));
    let job = Job::new("mb-trigger");
    let out = CollectSink::default();
    job.source(Steps(allowed.clone()))
        .map(|x: u64| x * 10)
        .sink(out.clone());
    let config = Config::default()
        .with_workers(2)
        .with_mode(Mode::MicroBatch(Trigger::ProcessingTime(
            Duration::from_millis(1_000),
        )));
    let handle = job.run(config).expect("starts");
    // The first batch starts at once and finds nothing; the next one is a second after it,
    // a wide margin over the 100 ms this test looks for early output on a loaded machine.
    let start = std::time::Instant::now();
    while handle.checkpoints().map_or(0, |l| l.completed.len()) == 0 {
        assert!(
            start.elapsed() < common::HANG,
            "the first batch never ended"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    allowed.store(5, Ordering::Release);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(out.len(), 0, "records wait for the next trigger");
    let start = std::time::Instant::now();
    while out.len() < 5 {
        assert!(start.elapsed() < common::HANG, "the batch never ran");
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(out.snapshot(), [0, 10, 20, 30, 40]);
    handle.stop();
    finish(handle).expect("stops");
}

#[test]
fn batches_are_checkpoints_and_a_restart_continues() {
    let dir = std::env::temp_dir().join(format!("rill-mb-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let counts = |n: u64| {
        let job = Job::new("mb-ckpt");
        let out = CollectSink::default();
        job.source(MemorySource::new((0..n).map(word).collect()))
            .key_by(|w: &String| w.clone())
            .count()
            .sink(out.clone());
        let config = Config::default()
            .with_workers(2)
            .with_mode(Mode::MicroBatch(Trigger::AsFastAsPossible))
            .with_checkpoints(CheckpointConfig::new(&dir));
        let handle = job.run(config).expect("starts");
        let restored = handle.checkpoints().and_then(|l| l.restored_from);
        finish(handle).expect("runs");
        (out.take(), restored)
    };
    let (first, restored) = counts(1_000);
    assert_eq!(restored, None);
    assert_eq!(first.len(), 1_000);
    let (second, restored) = counts(1_500);
    assert!(restored.is_some());
    assert_eq!(second.len(), 500, "only the new input");
    let mut finals: BTreeMap<String, u64> = BTreeMap::new();
    for (w, c) in first.into_iter().chain(second) {
        let e = finals.entry(w).or_default();
        assert_eq!(c, *e + 1);
        *e = c;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Batches as recorded: (epoch, the records one sink instance received in it).
type Batches<T> = Vec<(u64, Vec<T>)>;

/// Records every batch a sink instance receives, as (epoch, records), and fails at the end of
/// the first batch from `fail_from` on that read anything, once all `workers` instances have
/// recorded it, like a crash before its checkpoint completes. Which batch that is depends on
/// when input arrives, so the test asks [`BatchRecorder::failed_at`] rather than assuming.
struct BatchRecorder<T> {
    batches: Arc<std::sync::Mutex<Batches<T>>>,
    failed_at: Arc<std::sync::Mutex<Option<u64>>>,
    fail_from: Option<u64>,
    workers: usize,
}

impl<T> Clone for BatchRecorder<T> {
    fn clone(&self) -> Self {
        Self {
            batches: self.batches.clone(),
            failed_at: self.failed_at.clone(),
            fail_from: self.fail_from,
            workers: self.workers,
        }
    }
}

impl<T> BatchRecorder<T> {
    fn new(fail_from: Option<u64>, workers: usize) -> Self {
        Self {
            batches: Arc::default(),
            failed_at: Arc::default(),
            fail_from,
            workers,
        }
    }

    /// The batch at whose end the recorder failed, if it did.
    fn failed_at(&self) -> Option<u64> {
        *self.failed_at.locked()
    }

    /// The records of batch `epoch` over all sink instances, sorted.
    fn batch(&self, epoch: u64) -> Vec<T>
    where
        T: Ord + Clone,
    {
        let batches = self.batches.locked();
        let mut all: Vec<T> = batches
            .iter()
            .filter(|(e, _)| *e == epoch)
            .flat_map(|(_, b)| b.iter().cloned())
            .collect();
        all.sort_unstable();
        all
    }
}

struct BatchRecorderWriter<T> {
    shared: BatchRecorder<T>,
    current: Vec<T>,
}

impl<T: Send + 'static> Sink<T> for BatchRecorder<T> {
    type Writer = BatchRecorderWriter<T>;
    fn create(&self, _: &WorkerContext) -> Result<Self::Writer, rill::BoxError> {
        Ok(BatchRecorderWriter {
            shared: self.clone(),
            current: Vec::new(),
        })
    }
    fn name(&self) -> &str {
        "batch-recorder"
    }
}

impl<T: Send + 'static> SinkWriter<T> for BatchRecorderWriter<T> {
    fn write(&mut self, record: T) -> Result<(), rill::BoxError> {
        self.current.push(record);
        Ok(())
    }
    fn on_barrier(&mut self, epoch: u64) -> Result<(), rill::BoxError> {
        let batch = std::mem::take(&mut self.current);
        let mut batches = self.shared.batches.locked();
        batches.push((epoch, batch));
        let this_batch = || batches.iter().filter(|(e, _)| *e == epoch);
        let all_recorded = this_batch().count() == self.shared.workers;
        let read_any = this_batch().any(|(_, b)| !b.is_empty());
        if self.shared.fail_from.is_some_and(|from| epoch >= from) && all_recorded && read_any {
            *self.shared.failed_at.locked() = Some(epoch);
            return Err(format!("crash at the end of batch {epoch}").into());
        }
        Ok(())
    }
}

/// Runs a micro-batch job with checkpoints: until it fails, or (`stop_after_two`) until two
/// batches completed, then stops it. Returns its result and the epoch it restored.
fn run_batches(
    job: Job,
    config: Config,
    stop_after_two: bool,
) -> (Result<rill::JobMetrics, rill::JobError>, Option<u64>) {
    let handle = job.run(config).expect("starts");
    let restored = handle.checkpoints().and_then(|l| l.restored_from);
    if stop_after_two {
        let deadline = std::time::Instant::now() + common::HANG;
        while handle.checkpoints().is_none_or(|l| l.completed.len() < 2) {
            assert!(std::time::Instant::now() < deadline, "batches complete");
            std::thread::sleep(Duration::from_millis(5));
        }
        handle.stop();
    }
    (finish(handle), restored)
}

/// Checks that a first run crashed (started fresh, ended in error) and returns the batch the
/// recorder crashed it in, with that batch's records.
fn the_crashed_batch<T: Ord + Clone>(
    result: Result<rill::JobMetrics, rill::JobError>,
    restored: Option<u64>,
    recorder: &BatchRecorder<T>,
) -> (u64, Vec<T>) {
    assert!(result.is_err(), "the first run crashes");
    assert_eq!(restored, None);
    let crashed = recorder.failed_at().expect("the recorder crashed the run");
    (crashed, recorder.batch(crashed))
}

/// Checks a restarted run: it ended well, restored the checkpoint just before the crashed
/// batch, and replayed that batch with exactly its records (`why` says what that shows).
fn assert_replayed<T: Ord + Clone + std::fmt::Debug>(
    result: Result<rill::JobMetrics, rill::JobError>,
    restored: Option<u64>,
    recorder: &BatchRecorder<T>,
    (crashed, interrupted): (u64, &[T]),
    why: &str,
) {
    result.expect("the restarted run");
    assert_eq!(
        restored,
        Some(crashed - 1),
        "the crashed batch never completed"
    );
    assert_eq!(recorder.batch(crashed), interrupted, "{why}");
}

/// A batch interrupted before its checkpoint is replayed after the restart with exactly the
/// input it had: its ends were logged before it ran. The generator makes this observable: its
/// input is "what is due by now", and its schedule restarts with the job, so a batch planned
/// afresh after the restart would hold a different (much smaller) set of records.
#[test]
fn an_interrupted_batch_is_replayed_exactly() {
    let dir = std::env::temp_dir().join(format!("rill-mb-replay-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let run = |fail_from: Option<u64>| {
        let job = Job::new("mb-replay");
        let recorder = BatchRecorder::new(fail_from, 2);
        job.source(Generator::new(20_000.0, |i| i).with_count(1_000_000))
            .map(|g: Generated<u64>| g.seq)
            .sink(recorder.clone());
        let config = Config::default()
            .with_workers(2)
            .with_mode(Mode::MicroBatch(Trigger::ProcessingTime(
                Duration::from_millis(30),
            )))
            .with_checkpoints(CheckpointConfig::new(&dir));
        let (result, restored) = run_batches(job, config, fail_from.is_none());
        (result, restored, recorder)
    };
    let (result, restored, first) = run(Some(4));
    let (crashed, interrupted) = the_crashed_batch(result, restored, &first);
    // 30 ms at 20,000 records/s: hundreds of records, so an afresh plan could not match.
    assert!(
        interrupted.len() > 100,
        "batch {crashed} held {}",
        interrupted.len()
    );

    let (result, restored, second) = run(None);
    assert_replayed(
        result,
        restored,
        &second,
        (crashed, &interrupted),
        "the replayed batch holds exactly the interrupted batch's records",
    );
    // And the batch after it continues where the replay ended.
    let next = second.batch(crashed + 1);
    assert!(next.iter().all(|s| !interrupted.contains(s)));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same through Kafka, restarted at another number of workers: the replayed batch reads
/// exactly up to the end offsets logged for it, although the topic has grown since (a batch
/// planned afresh would take the new records too).
#[test]
fn an_interrupted_kafka_batch_is_replayed_to_its_logged_offsets_at_another_parallelism() {
    use rill::connectors::kafka::{EmbeddedKafka, KafkaRecord, KafkaSource, StartFrom};
    let kafka = EmbeddedKafka::start().expect("mock cluster");
    kafka.create_topic("mb-in", 4).expect("topic");
    let brokers = kafka.bootstrap_servers();
    let records = |from: u64, to: u64| -> Vec<(Vec<u8>, Vec<u8>)> {
        (from..to)
            .map(|i| (format!("k{i}").into_bytes(), format!("{i:06}").into_bytes()))
            .collect()
    };
    common::kafka::produce(&brokers, "mb-in", &records(0, 400));
    let dir = std::env::temp_dir().join(format!("rill-mb-kafka-replay-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let run = |workers: usize, fail_from: Option<u64>| {
        let job = Job::new("mb-kafka-replay");
        let recorder = BatchRecorder::new(fail_from, workers);
        job.source(
            KafkaSource::new(&brokers, "mb-replay")
                .topics(["mb-in"])
                .start_from(StartFrom::Earliest),
        )
        .map(|r: KafkaRecord| String::from_utf8_lossy(&r.value.unwrap_or_default()).into_owned())
        .sink(recorder.clone());
        let config = Config::default()
            .with_workers(workers)
            .with_mode(Mode::MicroBatch(Trigger::ProcessingTime(
                Duration::from_millis(50),
            )))
            .with_checkpoints(CheckpointConfig::new(&dir));
        let (result, restored) = run_batches(job, config, fail_from.is_none());
        (result, restored, recorder)
    };
    // Input keeps arriving while the first run works through its batches.
    let feeding = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let feeder = {
        let (brokers, feeding) = (brokers.clone(), feeding.clone());
        std::thread::spawn(move || {
            let mut next = 400;
            while feeding.load(Ordering::Relaxed) && next < 4_000 {
                common::kafka::produce(&brokers, "mb-in", &records(next, next + 20));
                next += 20;
            }
            next
        })
    };
    // The crash comes at the end of the first batch from 3 on that read records: batches
    // are 50 ms apart and input arrives in bursts, so batch 3 itself may find nothing.
    let (result, restored, first) = run(2, Some(3));
    feeding.store(false, Ordering::Relaxed);
    let produced = feeder.join().expect("feeder");
    let (crashed, interrupted) = the_crashed_batch(result, restored, &first);
    assert!(!interrupted.is_empty(), "batch {crashed} read records");
    // The topic grows before the restart.
    common::kafka::produce(&brokers, "mb-in", &records(produced, produced + 1_000));

    let (result, restored, second) = run(3, None);
    assert_replayed(
        result,
        restored,
        &second,
        (crashed, &interrupted),
        "the replayed batch reads exactly to the logged end offsets",
    );
    // Nothing before the replayed batch is read again, and the next batch goes on from it.
    let earlier: Vec<String> = (1..crashed).flat_map(|e| first.batch(e)).collect();
    assert!(second.batch(crashed).iter().all(|r| !earlier.contains(r)));
    assert!(second
        .batch(crashed + 1)
        .iter()
        .all(|r| !interrupted.contains(r)));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A large backlog in capped batches: `AvailableNow` reads what is there at its first batch
/// in batches of at most `max_records_per_batch`, each record once, then ends by itself.
#[test]
fn a_backlog_is_read_in_capped_batches_and_available_now_ends_after_it() {
    use rill::connectors::kafka::{EmbeddedKafka, KafkaRecord, KafkaSource, StartFrom};
    let kafka = EmbeddedKafka::start().expect("mock cluster");
    kafka.create_topic("mb-capped", 4).expect("topic");
    let brokers = kafka.bootstrap_servers();
    let records: Vec<(Vec<u8>, Vec<u8>)> = (0..2_000u32)
        .map(|i| (format!("k{i}").into_bytes(), format!("{i:06}").into_bytes()))
        .collect();
    common::kafka::produce(&brokers, "mb-capped", &records);
    let job = Job::new("mb-capped");
    let recorder = BatchRecorder::new(None, 2);
    job.source(
        KafkaSource::new(&brokers, "mb-capped")
            .topics(["mb-capped"])
            .start_from(StartFrom::Earliest)
            .max_records_per_batch(100),
    )
    .map(|r: KafkaRecord| String::from_utf8_lossy(&r.value.unwrap_or_default()).into_owned())
    .sink(recorder.clone());
    let config = Config::default()
        .with_workers(2)
        .with_mode(Mode::MicroBatch(Trigger::AvailableNow));
    let handle = job.run(config).expect("starts");
    // Written after the first batch: not part of an AvailableNow run.
    let deadline = std::time::Instant::now() + common::HANG;
    while handle.checkpoints().is_none_or(|l| l.completed.is_empty()) {
        assert!(std::time::Instant::now() < deadline, "a first batch");
        std::thread::sleep(Duration::from_millis(1));
    }
    common::kafka::produce(
        &brokers,
        "mb-capped",
        &[(b"late".to_vec(), b"late".to_vec())],
    );
    finish(handle).expect("ends by itself");
    let mut all = Vec::new();
    let mut batches = 0;
    for epoch in 1..1_000 {
        let batch = recorder.batch(epoch);
        assert!(
            batch.len() <= 100,
            "batch {epoch} has {} records",
            batch.len()
        );
        batches += usize::from(!batch.is_empty());
        all.extend(batch);
    }
    all.sort();
    let want: Vec<String> = (0..2_000).map(|i| format!("{i:06}")).collect();
    assert!(
        all == want,
        "every record once, and nothing written after the start: {} records in {batches} \
         batches, {} distinct, {} late",
        all.len(),
        all.iter().collect::<std::collections::BTreeSet<_>>().len(),
        all.iter().filter(|r| *r == "late").count()
    );
    assert!(batches >= 20, "{batches} batches");
}

/// Counts writes and flushes; `on_barrier` can be made slow.
#[derive(Clone, Default)]
struct FlushCounter {
    writes: Arc<std::sync::atomic::AtomicU64>,
    flushes_with_writes: Arc<std::sync::atomic::AtomicU64>,
    barrier_delay: Duration,
}

struct FlushCounterWriter(FlushCounter, u64);

impl Sink<u64> for FlushCounter {
    type Writer = FlushCounterWriter;
    fn create(&self, _: &WorkerContext) -> Result<Self::Writer, rill::BoxError> {
        Ok(FlushCounterWriter(self.clone(), 0))
    }
    fn name(&self) -> &str {
        "flush-counter"
    }
}

impl SinkWriter<u64> for FlushCounterWriter {
    fn write(&mut self, _: u64) -> Result<(), rill::BoxError> {
        self.1 += 1;
        self.0.writes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), rill::BoxError> {
        if std::mem::take(&mut self.1) > 0 {
            self.0.flushes_with_writes.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
    fn on_barrier(&mut self, _: u64) -> Result<(), rill::BoxError> {
        std::thread::sleep(self.0.barrier_delay);
        Ok(())
    }
}

#[test]
fn a_batch_holds_at_most_its_output_limit_and_its_timeout_is_configurable() {
    let run = |sink: FlushCounter, config: Config| {
        let job = Job::new("mb-limits");
        job.source(MemorySource::new((0..10_000u64).collect()))
            .sink(sink);
        finish(job.run(config.with_workers(1)).expect("starts"))
    };
    let config = || Config::default().with_mode(Mode::MicroBatch(Trigger::AvailableNow));
    // Unlimited (the default is far above 10,000): the batch's output is written once, at
    // its end.
    let held = FlushCounter::default();
    run(held.clone(), config()).expect("runs");
    assert_eq!(held.writes.load(Ordering::Relaxed), 10_000);
    assert_eq!(held.flushes_with_writes.load(Ordering::Relaxed), 1);
    // At most 100 held: the output goes out while the batch runs.
    let bounded = FlushCounter::default();
    run(bounded.clone(), config().with_batch_output_limit(100)).expect("runs");
    assert_eq!(bounded.writes.load(Ordering::Relaxed), 10_000);
    assert!(bounded.flushes_with_writes.load(Ordering::Relaxed) > 1);
    // A batch slower than the timeout fails the job, naming the timeout.
    let slow = FlushCounter {
        barrier_delay: Duration::from_millis(400),
        ..FlushCounter::default()
    };
    let err = run(
        slow,
        config().with_batch_timeout(Duration::from_millis(100)),
    )
    .expect_err("too slow");
    assert!(err.to_string().contains("checkpoint 1 failed"), "{err}");
    assert!(
        rill::ErrorChain(&err).to_string().contains("100ms"),
        "{err:?}"
    );
}
