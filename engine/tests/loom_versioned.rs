//! Model check of `Versioned` (engine/src/sync.rs), the atomic swap of reference tables:
//! under every interleaving loom finds, a reader sees whole versions, in order, and the
//! version number it reports matches the value it holds.
//!
//! Run with: `RUSTFLAGS="--cfg loom" cargo test -p rill-engine --test loom_versioned --release`

#![cfg(loom)]

use loom::thread;
use std::sync::Arc;

use rill_engine::sync::Versioned;

/// A "table" whose rows all carry its version: a torn one would mix numbers.
fn table(version: u64) -> Vec<u64> {
    vec![version; 3]
}

#[test]
fn readers_see_whole_versions_in_order() {
    loom::model(|| {
        let cell = Arc::new(Versioned::new(table(0)));
        let writer = {
            let cell = cell.clone();
            thread::spawn(move || {
                for v in 1..=2 {
                    let old = cell.publish(Arc::new(table(v)));
                    assert_eq!(old[0], v - 1);
                }
            })
        };
        let mut reader = Versioned::reader(&cell);
        let mut last = 0;
        for _ in 0..3 {
            let rows = reader.current().clone();
            assert!(rows.iter().all(|&r| r == rows[0]), "torn: {rows:?}");
            assert!(rows[0] >= last, "went back from {last} to {}", rows[0]);
            assert_eq!(reader.version(), rows[0], "version and value disagree");
            last = rows[0];
        }
        writer.join().expect("writer");
        assert_eq!(
            reader.current()[0],
            2,
            "the last version is seen once published"
        );
    });
}
