//! A gated source of clicks, and the small helpers the event-time and state tests share.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rill::engine::state::{decode, encode, RestoredState};
use rill::prelude::*;

/// One click: (key, event time in ms).
pub(crate) type Click = (u8, i64);

/// A source whose worker 0 emits `clicks` up to a limit the test raises; its position
/// restores at any parallelism. The other workers' instances have nothing at all (more
/// workers than partitions). An endless one never ends, not even on the workers without input.
#[derive(Clone)]
pub(crate) struct GatedClicks {
    pub(crate) clicks: Arc<Vec<Click>>,
    pub(crate) limit: Arc<AtomicU64>,
    pub(crate) ends: bool,
}

impl GatedClicks {
    /// All of `clicks` at once, and then nothing, for ever.
    pub(crate) fn endless(clicks: Vec<Click>) -> Self {
        Self {
            clicks: Arc::new(clicks),
            limit: Arc::new(AtomicU64::new(u64::MAX)),
            ends: false,
        }
    }
}

pub(crate) struct GatedClicksReader {
    source: GatedClicks,
    next: usize,
    active: bool,
}

impl Source for GatedClicks {
    type Reader = GatedClicksReader;
    fn create(&self, ctx: &WorkerContext) -> Result<GatedClicksReader, rill::BoxError> {
        Ok(GatedClicksReader {
            source: self.clone(),
            next: 0,
            active: ctx.worker() == 0,
        })
    }
    fn name(&self) -> &str {
        "gated-clicks"
    }
}

impl SourceReader for GatedClicksReader {
    type Out = Click;
    fn poll<E: Emit<Click>>(
        &mut self,
        out: &mut E,
        budget: usize,
    ) -> Result<Progress, rill::BoxError> {
        let end = self.source.clicks.len();
        if !self.active || self.next >= end {
            return Ok(if self.source.ends {
                Progress::Done
            } else {
                Progress::Idle {
                    deadline: Some(Instant::now() + Duration::from_millis(5)),
                }
            });
        }
        let limit = (self.source.limit.load(Ordering::Acquire) as usize).min(end);
        let mut n = 0;
        while self.next < limit && n < budget && !out.should_yield() {
            out.emit(self.source.clicks[self.next]);
            self.next += 1;
            n += 1;
        }
        Ok(if n > 0 {
            Progress::Busy
        } else {
            Progress::Idle {
                deadline: Some(Instant::now() + Duration::from_millis(1)),
            }
        })
    }
    fn position(&mut self) -> Result<Option<Vec<u8>>, rill::BoxError> {
        Ok(self.active.then(|| encode(&self.next)).transpose()?)
    }
    fn restore(&mut self, state: &RestoredState<'_>) -> Result<(), rill::BoxError> {
        for blob in state.worker_blobs().iter().flatten() {
            self.next = self.next.max(decode::<usize>(blob, state.node())?);
        }
        Ok(())
    }
}

pub(crate) fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "rill-et-{name}-{}-{}",
        std::process::id(),
        rill::time::now_nanos()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

pub(crate) fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < super::HANG,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The configuration of a restore test's runs: `workers`, micro-batch (a 10 ms trigger) or
/// continuous, a checkpoint every 10 ms into `dir`.
pub(crate) fn restore_config(dir: &std::path::Path, workers: usize, micro_batch: bool) -> Config {
    let mode = if micro_batch {
        Mode::MicroBatch(Trigger::ProcessingTime(Duration::from_millis(10)))
    } else {
        Mode::Continuous
    };
    Config::default()
        .with_workers(workers)
        .with_mode(mode)
        .with_checkpoints(CheckpointConfig::new(dir).with_interval(Duration::from_millis(10)))
}

/// Interrupts a job and restores it at another worker count: `run(2)` until `published()`
/// reaches `first`, then lets the gated source go on to 1,500 clicks, waits for two more
/// checkpoints, and aborts the job (or, with `stop`, stops it gracefully); then `run(3)`
/// restores from the checkpoint and runs to the end of the input. Returns how many records
/// were published before the restore.
pub(crate) fn interrupt_and_restore(
    limit: &AtomicU64,
    published: impl Fn() -> usize,
    first: usize,
    stop: bool,
    run: impl Fn(usize) -> JobHandle,
) -> usize {
    let handle = run(2);
    wait_until("output published", || published() >= first);
    limit.store(1_500, Ordering::Release);
    let done = handle.checkpoints().expect("checkpoints").completed.len();
    wait_until("two more checkpoints", || {
        handle.checkpoints().expect("checkpoints").completed.len() >= done + 2
    });
    if stop {
        handle.stop();
        super::finish(handle).expect("stops");
    } else {
        drop(handle); // abort: output since the last commit is lost, and redone
    }
    let before = published();
    limit.store(u64::MAX, Ordering::Release);
    let handle = run(3);
    assert!(handle.checkpoints().expect("log").restored_from.is_some());
    super::finish(handle).expect("the restored run finishes");
    before
}
