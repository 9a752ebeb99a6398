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
use rill::engine::state::{decode, encode, RestoredState};
use rill::engine::Progress;
use rill::prelude::*;
use rill::BoxError;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "rill-it-{name}-{}-{}",
        std::process::id(),
        rill::engine::time::now_nanos()
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
    let mut m = HashMap::new();
    for i in 0..n {
        *m.entry(word(i)).or_default() += 1;
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
