//! Word count through key_by + count equals a sequential reference, at 1, 2 and 4 workers.

mod common;

use std::collections::HashMap;

use proptest::prelude::*;
use proptest::test_runner::{Config as PropConfig, RngAlgorithm, TestRng, TestRunner};
use rill::prelude::*;

/// The job under test: lines -> words -> running count per word (update mode).
fn run_wordcount(lines: Vec<String>, workers: usize) -> Vec<(String, u64)> {
    let job = Job::new("wordcount");
    let out = CollectSink::default();
    job.source(MemorySource::new(lines))
        .flat_map(|line: String| {
            line.split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .key_by(|w: &String| w.clone())
        .count()
        .sink(out.clone());
    let handle = job
        .run(
            Config::default()
                .with_workers(workers)
                .with_ring_capacity(64),
        )
        .expect("job starts");
    common::finish(handle).expect("job succeeds");
    out.take()
}

fn reference(lines: &[String]) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    for line in lines {
        for w in line.split_whitespace() {
            *counts.entry(w.to_string()).or_insert(0) += 1;
        }
    }
    counts
}

/// Lines over a small vocabulary (so words repeat) joined by assorted Unicode whitespace.
fn lines() -> impl Strategy<Value = Vec<String>> {
    let word = prop::sample::select(vec!["a", "b", "rill", "Rill", "über", "日本", "x,", "42"]);
    let space = prop::sample::select(vec![" ", "  ", "\t", "\u{3000}", "\u{a0}", " \u{2009}"]);
    let line = prop::collection::vec((word, space), 0..12).prop_map(|parts| {
        parts
            .into_iter()
            .map(|(w, s)| format!("{w}{s}"))
            .collect::<String>()
    });
    prop::collection::vec(line, 0..60)
}

#[test]
fn update_mode_counts_match_sequential_reference_at_1_2_4_workers() {
    let config = PropConfig {
        cases: 24,
        failure_persistence: None,
        ..PropConfig::default()
    };
    // Fixed seed: the same cases on every run and machine.
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    runner
        .run(
            &(lines(), prop::sample::select(vec![1usize, 2, 4])),
            |(lines, workers)| {
                let expected = reference(&lines);
                let updates = run_wordcount(lines, workers);
                // Update mode: every word's counts are exactly 1, 2, ..., n, each once.
                let mut seen: HashMap<String, Vec<u64>> = HashMap::new();
                for (w, n) in updates {
                    seen.entry(w).or_default().push(n);
                }
                prop_assert_eq!(seen.len(), expected.len());
                for (word, counts) in seen {
                    let n = expected.get(&word).copied();
                    prop_assert!(n.is_some(), "unexpected word {:?}", word);
                    // Per key, updates come from one worker in order: no sort needed.
                    let want: Vec<u64> = (1..=n.unwrap_or(0)).collect();
                    prop_assert_eq!(counts, want, "word {:?} at {} workers", word, workers);
                }
                Ok(())
            },
        )
        .expect("word count matches the reference");
}

#[test]
fn every_worker_count_gives_the_same_final_table() {
    let text: Vec<String> = (0..2000)
        .map(|i| format!("w{} w{} common", i % 97, (i * 7) % 13))
        .collect();
    let expected = reference(&text);
    for workers in [1, 2, 3, 4] {
        let mut last: HashMap<String, u64> = HashMap::new();
        for (w, n) in run_wordcount(text.clone(), workers) {
            let e = last.entry(w).or_insert(0);
            assert_eq!(n, *e + 1, "counts of a word arrive in order");
            *e = n;
        }
        assert_eq!(last, expected, "{workers} workers");
    }
}
